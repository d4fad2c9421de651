//! The operator console (`periskope_webhook::console`) served by axum on 127.0.0.1 under a
//! prefix, over real HTTP, on every store: access decisions, signing in, CSRF, allowed hosts,
//! escaping, masking, strict filters and pages, the actions, read-only consoles and the headers
//! of every answer; and, on SQLite, pages that answer while the store's writer is held up.

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod fail_closed;
mod masking;
mod pages;
mod sqlite_reads;
#[allow(dead_code)]
#[path = "../inbox/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ClaimRequest, ConsoleStore, JobId, JobState};

use crate::support::{TempDir, chat_message, delivery};

/// The bearer token of the consoles under test.
pub const TOKEN: &str = "console-test-token-3f9a";

/// A console served by axum under `prefix` on 127.0.0.1.
pub struct Served {
    pub addr: SocketAddr,
    pub prefix: String,
    client: Client<HttpConnector, Full<Bytes>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An answer: status, headers, body as text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }
}

impl Served {
    pub async fn start<St>(console: Console<St>, prefix: &str) -> Served
    where
        St: ConsoleStore + Clone + Send + Sync + 'static,
    {
        let app = if prefix.is_empty() {
            Router::new().fallback_service(console)
        } else {
            Router::new().nest_service(prefix, console)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Served { addr, prefix: prefix.to_owned(), client, server }
    }

    /// The absolute URL of `path` below the console's prefix (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.addr, self.prefix)
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .expect("the console answers within 10 s")
            .expect("the console answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            text: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A GET with the bearer token in the `Authorization` header.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[("authorization", &format!("Bearer {TOKEN}"))], "").await
    }
}

/// The jobs a console test starts with, their ids by what they are.
pub struct Seeded {
    pub done: JobId,
    pub dead: JobId,
    pub pending: Vec<JobId>,
    /// A pending job whose body and last error carry markup and a phone number.
    pub hostile: JobId,
}

/// The chat of the hostile job: a phone number the pages must mask.
pub const PHONE_CHAT: &str = "919999912345@c.us";
/// Markup in the hostile job's body: shown as text, never run.
pub const SCRIPT: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";

/// Stores five messages in chat c1 and the hostile one; handles the first, kills the second.
pub async fn seed<St: ConsoleStore>(store: &St) -> Seeded {
    for n in 1..=5 {
        store.insert(delivery(chat_message("c1", &format!("m{n}")))).await.unwrap();
    }
    let hostile_body = serde_json::json!({
        "event": "message.created",
        "data": {"message_id": "hostile-1", "chat_id": PHONE_CHAT, "body": SCRIPT},
        "org_id": "org-1"
    });
    store.insert(delivery(Bytes::from(hostile_body.to_string()))).await.unwrap();

    // c1's jobs run one at a time: m1 is handled, then m2 dies; the hostile chat's job fails once.
    let first = claim(store, 2).await;
    let m1 = first.iter().find(|job| !job.key.contains("hostile-1")).unwrap();
    store.complete(m1.lease(), SystemTime::now()).await.unwrap();
    let hostile = first.iter().find(|job| job.key.contains("hostile-1")).unwrap();
    let error = format!("CRM refused {PHONE_CHAT}: <b>{SCRIPT}</b>");
    store.fail(hostile.lease(), error, Some(SystemTime::now() + Duration::from_secs(3600))).await.unwrap();
    let second = claim(store, 1).await;
    store.fail(second[0].lease(), "CRM down".to_owned(), None).await.unwrap();
    let (done, hostile, dead) = (m1.id, hostile.id, second[0].id);
    let all = store.search(periskope_webhook::inbox::JobFilter::default()).await.unwrap();
    let pending = all
        .iter()
        .filter(|job| job.state == JobState::Pending && job.id != hostile)
        .map(|job| job.id)
        .collect();
    Seeded { done, dead, pending, hostile }
}

async fn claim<St: ConsoleStore>(store: &St, limit: usize) -> Vec<periskope_webhook::inbox::ClaimedJob> {
    let jobs = store.claim(ClaimRequest::new(limit, Duration::from_secs(60), 5)).await.unwrap();
    assert_eq!(jobs.len(), limit, "claimed what the seed needs");
    jobs
}

/// Runs each generic case of `$cases` on the memory store, on SQLite and on PostgreSQL (when
/// installed).
macro_rules! on_every_store {
    ($cases:ident: $($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    crate::$cases::$case(periskope_webhook::inbox::MemoryInboxStore::new()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let dir = crate::TempDir::new(concat!("console-", stringify!($case)));
                    crate::$cases::$case(periskope_webhook::inbox::SqliteStore::open(dir.db()).unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let Some(cluster) = crate::common::postgres::cluster() else { return };
                    let database = cluster.database();
                    let store = periskope_webhook::inbox::PostgresStore::connect(&database.url()).await.unwrap();
                    crate::$cases::$case(store).await;
                }
            )*
        }
    };
}

mod pages_on_every_store {
    on_every_store!(
        pages: nobody_gets_in_without_a_decision_or_the_token,
        signing_in_opens_a_session_that_is_not_the_token_and_ends,
        every_answer_carries_the_security_headers,
        the_overview_counts_every_state,
        delivery_content_is_escaped_and_phone_numbers_masked,
        filters_select_exactly_their_jobs_and_pages_cover_each_once,
        a_browser_post_without_its_csrf_token_or_from_another_site_changes_nothing,
        retry_replay_and_purge_act_on_their_job,
        bulk_actions_confirm_the_count_then_act,
        a_read_only_console_shows_no_actions_and_refuses_them,
        links_work_under_any_prefix,
        an_action_is_confirmed_on_the_page_it_leads_to,
        a_handled_job_shows_no_old_error_and_the_attempts_its_count_counts,
    );
}

mod fail_closed_on_every_store {
    on_every_store!(
        fail_closed: a_filter_that_cannot_be_read_is_refused_and_changes_nothing,
        a_masked_search_cannot_recover_a_phone_number,
        bulk_actions_cover_every_batch,
    );
}
