//! The console fails closed: a filter it cannot read changes nothing, a short token is refused,
//! a rebound host gets nothing, a one-time code opens once, a masked search cannot recover a
//! phone number, and bulk actions go batch by batch. The store-generic cases run on every store
//! from `main.rs`; the others need no store of their own.

use std::time::Duration;

use http::{Method, StatusCode, header};
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ConsoleStore, JobFilter, JobId, JobState, MemoryInboxStore};

use crate::pages::job_ids;
use crate::support::{chat_message, delivery};
use crate::{Answer, PHONE_CHAT, Served, TOKEN, seed};

const PREFIX: &str = "/console";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn job_count<St: ConsoleStore>(store: &St) -> u64 {
    store.count(JobFilter::default()).await.unwrap()
}

/// The count a confirmation page announces.
fn matching(answer: &Answer) -> u64 {
    let rest = &answer.text[answer.text.find("data-matching=\"").expect("a count") + 15..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

pub async fn a_filter_that_cannot_be_read_is_refused_and_changes_nothing<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let all = job_count(&store).await;
    let served =
        Served::start(Console::new(store.clone()).bearer_token(TOKEN).mount_path(PREFIX), PREFIX).await;
    let auth = [("authorization", bearer())];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let unreadable = [
        ("state=deadd", "state"),
        ("state=Dead", "state"),
        ("until=2020-01-01Z", "until"),
        ("until=yesterday", "until"),
        ("from=1577836800", "from"),
        ("stat=dead", "stat"),
        ("ids=all", "ids"),
        ("state=dead&state=done", "state"),
    ];
    for (query, parameter) in unreadable {
        for (method, path) in [
            (Method::GET, "/jobs"),
            (Method::GET, "/jobs/purge"),
            (Method::POST, "/jobs/purge"),
            (Method::POST, "/jobs/retry"),
        ] {
            let answer = served.send(method.clone(), &format!("{path}?{query}"), &auth, "").await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {path}?{query}: {}", answer.text);
            assert!(answer.text.contains("bad_query"), "{method} {path}?{query}");
            assert!(answer.text.contains(&format!("“{parameter}”")), "names {parameter}: {}", answer.text);
        }
    }
    assert_eq!(
        served.send(Method::POST, "/jobs/purge?after=3", &auth, "").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(job_count(&store).await, all, "nothing was purged");
    assert_eq!(store.get(seeded.dead).await.unwrap().unwrap().summary.state, JobState::Dead, "nor retried");

    // Each time form is read: every job was received after these, so none is before them.
    for until in ["2020-01-01", "2020-01-01T00:00:00Z", "2020-01-01T02:00:00%2B02:00", "2020-01-01T00:00"] {
        let confirm = served.send(Method::GET, &format!("/jobs/purge?until={until}"), &auth, "").await;
        assert_eq!(confirm.status, StatusCode::OK, "{until}");
        assert_eq!(matching(&confirm), 0, "{until}");
        assert!(
            confirm.text.contains("received before 2020-01-01 00:00:00 UTC"),
            "{until}: {}",
            confirm.text
        );
        let purged = served.send(Method::POST, &format!("/jobs/purge?until={until}"), &auth, "").await;
        assert_eq!(purged.status, StatusCode::SEE_OTHER, "{until}");
        assert_eq!(job_count(&store).await, all, "until={until} purged nothing");
    }

    // The confirmation describes the filter as read, with its count.
    let confirm = served.send(Method::GET, "/jobs/retry?state=dead&from=2020-01-01&event=", &auth, "").await;
    assert_eq!(matching(&confirm), 1);
    assert!(confirm.text.contains("<li>state is dead</li>"), "{}", confirm.text);
    assert!(
        confirm.text.contains("<li>received at or after 2020-01-01 00:00:00 UTC</li>"),
        "{}",
        confirm.text
    );
    assert!(!confirm.text.contains("event is"), "an empty field sets no condition");
    let every = served.send(Method::GET, "/jobs/purge", &auth, "").await;
    assert_eq!(matching(&every), all);
    assert!(every.text.contains("Every job in the inbox"), "{}", every.text);
}

pub async fn a_masked_search_cannot_recover_a_phone_number<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let all = job_count(&store).await;
    // The hostile job's last error holds the chat's number, 919999912345@c.us.
    let read_only =
        Served::start(Console::new(store.clone()).bearer_token(TOKEN).read_only(true), PREFIX).await;
    async fn ids(served: &Served, query: String) -> Vec<JobId> {
        let page = served.get(&format!("/jobs?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
        assert!(!page.text.contains("919999912345"), "{query}");
        job_ids(&page.text)
    }
    // A digit and the id's suffix, the way a script walks the number digit by digit.
    for guess in ["5@c.us", "45@c.us", "12345", "9999912345@c.us", "919999912345"] {
        assert_eq!(
            ids(&read_only, format!("q={}", guess.replace('@', "%40"))).await,
            Vec::<JobId>::new(),
            "{guess}"
        );
    }
    assert_eq!(
        ids(&read_only, "q=*%40c.us".to_owned()).await,
        [seeded.hostile],
        "the masked text is what matches"
    );
    assert_eq!(ids(&read_only, "q=CRM+refused".to_owned()).await, [seeded.hostile]);
    let by_chat = read_only.get(&format!("/jobs?chat={PHONE_CHAT}")).await;
    assert_eq!(by_chat.status, StatusCode::FORBIDDEN);
    assert!(by_chat.text.contains("ids_masked"));
    assert_eq!(read_only.get("/jobs?ids=show&q=5%40c.us").await.status, StatusCode::FORBIDDEN);

    // Where ids may be shown, asking for them searches them.
    let served =
        Served::start(Console::new(store.clone()).bearer_token(TOKEN).mount_path(PREFIX), PREFIX).await;
    assert_eq!(ids(&served, "q=5%40c.us".to_owned()).await, Vec::<JobId>::new());
    let shown = served.get("/jobs?q=5%40c.us&ids=show").await;
    assert_eq!(job_ids(&shown.text), [seeded.hostile]);
    assert_eq!(served.get(&format!("/jobs?chat={PHONE_CHAT}&ids=show")).await.status, StatusCode::OK);

    // A bulk action selects what its page showed: masked text unless ids are shown.
    let auth = [("authorization", bearer())];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(name, value)| (*name, value.as_str())).collect();
    assert_eq!(matching(&served.send(Method::GET, "/jobs/purge?q=12345", &auth, "").await), 0);
    served.send(Method::POST, "/jobs/purge?q=12345", &auth, "").await;
    assert_eq!(job_count(&store).await, all, "a masked search for digits purges nothing");
    assert_eq!(matching(&served.send(Method::GET, "/jobs/purge?q=*%40c.us", &auth, "").await), 1);
    let purged = served.send(Method::POST, "/jobs/purge?q=*%40c.us", &auth, "").await;
    assert_eq!(purged.status, StatusCode::SEE_OTHER);
    assert_eq!(store.get(seeded.hostile).await.unwrap(), None);
    assert_eq!(job_count(&store).await, all - 1);
}

pub async fn bulk_actions_cover_every_batch<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    // More than two batches of one chat, beside the seed.
    let many = 2 * 1000 + 345;
    for n in 0..many {
        store.insert(delivery(chat_message("c7", &format!("bulk-{n}")))).await.unwrap();
    }
    let served =
        Served::start(Console::new(store.clone()).bearer_token(TOKEN).mount_path(PREFIX), PREFIX).await;
    let auth = [("authorization", bearer())];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(name, value)| (*name, value.as_str())).collect();
    // While ids are masked, the store reads the masked text step by step: every step counts.
    let masked = served.send(Method::GET, "/jobs/retry?q=bulk-", &auth, "").await;
    assert_eq!(matching(&masked), many);
    let retried = served.send(Method::POST, "/jobs/retry?q=bulk-", &auth, "").await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    assert_eq!(retried.header(header::LOCATION), format!("/console/jobs?q=bulk-&done=retried&count={many}"));
    let confirm = served.send(Method::GET, "/jobs/purge?q=bulk-&ids=show", &auth, "").await;
    assert_eq!(matching(&confirm), many);
    let purged = served.send(Method::POST, "/jobs/purge?q=bulk-&ids=show", &auth, "").await;
    assert_eq!(purged.status, StatusCode::SEE_OTHER);
    assert_eq!(
        purged.header(header::LOCATION),
        format!("/console/jobs?q=bulk-&done=purged&count={many}&ids=show")
    );
    let left = store.search(JobFilter::default().limit(1000)).await.unwrap();
    assert_eq!(left.len(), 6, "every batch purged, nothing else");
    assert!(left.iter().any(|job| job.id == seeded.dead));
}

/// Runs `case` against a console that lets everyone in, on a memory store with the seed.
async fn allow_all(hosts: Option<&[&str]>) -> (Served, MemoryInboxStore, crate::Seeded) {
    let store = MemoryInboxStore::new();
    let seeded = seed(&store).await;
    let mut console = Console::new(store.clone()).insecure_allow_all().mount_path(PREFIX);
    if let Some(hosts) = hosts {
        console = console.allowed_hosts(hosts.iter().copied());
    }
    (Served::start(console, PREFIX).await, store, seeded)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebound_host_reaches_nothing_on_a_console_that_lets_everyone_in() {
    let (served, store, seeded) = allow_all(None).await;
    let port = served.addr.port();
    let rebound = format!("rebind.attacker.example:{port}");
    for path in ["/", "/jobs", &format!("/jobs/{}?ids=show", seeded.hostile), "/jobs/purge"] {
        let answer = served.send(Method::GET, path, &[("host", &rebound)], "").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.text.contains("host_not_allowed"), "{path}");
        assert!(!answer.text.contains("919999912345") && !answer.text.contains("data-count"), "{path}");
    }
    // Even with a session and a CSRF token read from loopback, a rebound POST changes nothing.
    let page = served.send(Method::GET, &format!("/jobs/{}", seeded.dead), &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page.header(header::SET_COOKIE).split(';').next().unwrap().to_owned();
    let csrf = {
        let rest = &page.text[page.text.find("name=\"csrf\" value=\"").unwrap() + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    };
    let form = format!("csrf={csrf}");
    let post = |host: String, site: (&'static str, String)| {
        let (served, cookie, form) = (&served, cookie.clone(), form.clone());
        async move {
            let headers = [
                ("host", host.as_str()),
                ("cookie", cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
                (site.0, site.1.as_str()),
            ];
            served.send(Method::POST, "/jobs/purge", &headers, &form).await
        }
    };
    let refused = post(rebound.clone(), ("sec-fetch-site", "same-origin".to_owned())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let other_port = post(format!("127.0.0.1:{port}"), ("origin", "http://127.0.0.1:1".to_owned())).await;
    assert_eq!(other_port.status, StatusCode::FORBIDDEN, "another server on this host is another origin");
    assert!(other_port.text.contains("csrf"));
    assert_eq!(job_count(&store).await, 6, "nothing purged");

    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")] {
        assert_eq!(
            served.send(Method::GET, "/", &[("host", &host)], "").await.status,
            StatusCode::OK,
            "{host}"
        );
    }
    let accepted = post(format!("localhost:{port}"), ("origin", format!("http://localhost:{port}"))).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.text);
    assert_eq!(job_count(&store).await, 0, "the console's own page may act");

    // HTTP/2 names the host in the URI's authority, not in `Host`.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let response = client.get(served.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_hosts_are_answered_beside_loopback_and_no_other() {
    let (served, _store, _seeded) = allow_all(Some(&["console.example"])).await;
    let port = served.addr.port();
    for (host, status) in [
        (format!("console.example:{port}"), StatusCode::OK),
        (format!("127.0.0.1:{port}"), StatusCode::OK),
        (format!("ops.example:{port}"), StatusCode::FORBIDDEN),
    ] {
        assert_eq!(served.send(Method::GET, "/", &[("host", &host)], "").await.status, status, "{host}");
    }
    // Behind a token, a listed console refuses other hosts even with the token.
    let store = MemoryInboxStore::new();
    let listed = Served::start(
        Console::new(store.clone()).bearer_token(TOKEN).allowed_hosts(["console.example"]),
        PREFIX,
    )
    .await;
    let other = format!("ops.example:{}", listed.addr.port());
    let answer = listed.send(Method::GET, "/", &[("host", &other), ("authorization", &bearer())], "").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Unlisted, a console behind a token answers the names its app is reached by.
    let open = Served::start(Console::new(store).bearer_token(TOKEN), PREFIX).await;
    let answer =
        open.send(Method::GET, "/", &[("host", "app.example"), ("authorization", &bearer())], "").await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_code_opens_one_session_once() {
    let console = Console::new(MemoryInboxStore::new()).bearer_token(TOKEN).mount_path(PREFIX);
    let code = console.sign_in_code(Duration::from_secs(60)).unwrap();
    let expired = console.sign_in_code(Duration::ZERO).unwrap();
    assert!(
        Console::new(MemoryInboxStore::new())
            .insecure_allow_all()
            .sign_in_code(Duration::from_secs(60))
            .is_none()
    );
    let served = Served::start(console, PREFIX).await;

    let opened = served.send(Method::GET, &format!("/?code={code}"), &[], "").await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(opened.header(header::LOCATION), "/console/", "the page reloads without the code");
    let session = opened.header(header::SET_COOKIE).split(';').next().unwrap().to_owned();
    assert!(!session.contains(&code) && !session.contains(TOKEN));
    assert_eq!(served.send(Method::GET, "/", &[("cookie", &session)], "").await.status, StatusCode::OK);

    for spent in [code, expired, "guess".to_owned()] {
        let again = served.send(Method::GET, &format!("/?code={spent}"), &[], "").await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{spent}");
        assert!(again.text.contains("sign_in_code_spent") && again.text.contains("name=\"token\""));
        assert!(again.headers.get(header::SET_COOKIE).is_none());
    }
}

#[test]
#[should_panic(expected = "at least 16 bytes")]
fn an_empty_token_is_refused_when_the_console_is_built() {
    let _ = Console::new(MemoryInboxStore::new()).bearer_token("");
}

#[test]
#[should_panic(expected = "at least 16 bytes")]
fn a_short_token_is_refused_when_the_console_is_built() {
    let _ = Console::new(MemoryInboxStore::new()).bearer_token("fifteen-bytes!!");
}
