//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver by
//! `chromedriver`, against a console and a worker on an SQLite inbox. Skipped (with the reason
//! printed) when Chromium or chromedriver is missing, unless `PERISKOPE_REQUIRE_SERVERS=1`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ConsoleStore, Inbox, JobId, JobState, SqliteStore};
use periskope_webhook::{EventRouter, WebhookEvent};
use serde_json::{Value, json};

use crate::support::{TempDir, fast};
use crate::{PHONE_CHAT, SCRIPT, Served, TOKEN, seed};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `chromedriver` on a free port, stopped when dropped, with the browser profile it used.
struct Driver {
    process: Child,
    port: u16,
    profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Driver {
    /// `None` (the reason printed) when the browser is not installed and not required.
    fn start() -> Option<Driver> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(binary).exists() {
                let reason = format!("{binary} is missing (Debian packages chromium and chromium-driver)");
                assert!(std::env::var_os("PERISKOPE_REQUIRE_SERVERS").is_none(), "{reason}");
                eprintln!("skipped: {reason}");
                return None;
            }
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { process, port, profile: TempDir::new("console-browser") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver listens within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }

    /// A new headless Chromium session.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1200,900",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

/// Where the test's screenshots go: `target/tmp/console-screenshots/`. Its `overview.png` is the
/// README's `docs/console.png`, copied over when the console's look changes.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The handler's side: how many times each message id ran, and the ids that fail for now.
#[derive(Clone, Default)]
struct Handler {
    runs: Arc<Mutex<HashMap<String, u32>>>,
    broken: Arc<Mutex<Vec<String>>>,
}

impl Handler {
    fn router(&self) -> EventRouter {
        let handler = self.clone();
        EventRouter::new().fallback(move |event: WebhookEvent| {
            let handler = handler.clone();
            async move {
                let id = event
                    .event()
                    .message()
                    .and_then(|message| message.message_id.as_deref())
                    .unwrap_or("")
                    .to_owned();
                if handler.broken.lock().unwrap().contains(&id) {
                    return Err(format!("the CRM refused {id}"));
                }
                *handler.runs.lock().unwrap().entry(id).or_default() += 1;
                Ok(())
            }
        })
    }

    fn runs(&self, id: &str) -> u32 {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// Clicks what `locator` finds, then waits until the browser has left the page it was on. A
/// form's POST is only sure to have reached the console once its answer replaced the page: a
/// reload before then can cancel the POST, and a read can see the page before the action.
async fn click_and_wait_for_next_page(browser: &Client, locator: Locator<'_>) {
    let page = browser.find(Locator::Css("html")).await.unwrap();
    browser.find(locator).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match page.tag_name().await {
            // Chromium says so in one of two ways, depending on when it is asked during the
            // navigation: a stale element, or a node that no longer belongs to the document.
            Err(error)
                if error.is_stale_element_reference()
                    || error.to_string().contains("does not belong to the document") =>
            {
                return;
            }
            Err(error) => panic!("reading the page that was clicked: {error}"),
            Ok(_) => assert!(Instant::now() < deadline, "the click leaves the page within 20 s"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reloads the page until the job's state cell says `state`, for at most 20 s.
async fn poll_until_state(browser: &Client, state: JobState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.refresh().await.unwrap();
        let shown = text_of(browser, "td[data-state]").await;
        if shown == state.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows the job {} within 20 s; {} shows {shown}",
            state.as_str(),
            browser.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Basic accessibility of the current page, checked in the DOM: a title, a language, a label
/// for every control, and header cells in every table.
async fn assert_accessible(browser: &Client, page: &str) {
    let problems = browser
        .execute(
            "const problems = [];
             if (!document.title.trim()) problems.push('no title');
             if (!document.documentElement.lang) problems.push('no lang');
             for (const control of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
               if (!control.id || !document.querySelector(`label[for=\"${control.id}\"]`)) problems.push('unlabelled ' + control.name);
             }
             for (const table of document.querySelectorAll('table')) {
               if (!table.querySelector('th')) problems.push('a table without headers');
             }
             return problems;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(problems, json!([]), "{page}");
}

/// The job's state in the store.
async fn state_of<St: ConsoleStore>(store: &St, id: JobId) -> JobState {
    store.get(id).await.unwrap().expect("the job").summary.state
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_fixes_retries_and_replays_jobs_in_a_real_browser() {
    let Some(driver) = Driver::start() else { return };
    let dir = TempDir::new("console-browser-inbox");
    let store = SqliteStore::open(dir.db()).unwrap();
    let seeded = seed(&store).await;
    let served =
        Served::start(Console::new(store.clone()).bearer_token(TOKEN).mount_path("/console"), "/console")
            .await;
    let browser = driver.browser().await;
    let console = served.url("/");

    // Not signed in: the sign-in form, and nothing of the inbox.
    browser.goto(&console).await.unwrap();
    assert!(browser.title().await.unwrap().starts_with("Sign in"));
    assert!(browser.find_all(Locator::Css("[data-count]")).await.unwrap().is_empty());
    assert_accessible(&browser, "sign-in").await;

    // Signing in through the form, which POSTs the token: it never enters the address bar.
    browser.find(Locator::Id("token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    click_and_wait_for_next_page(&browser, Locator::XPath("//button[text()='Sign in']")).await;
    assert_eq!(browser.current_url().await.unwrap().as_str(), console);
    let pending = seeded.pending.len() + 1;
    for (state, count) in [("pending", pending), ("running", 0), ("done", 1), ("dead", 1)] {
        assert_eq!(
            text_of(&browser, &format!("[data-count=\"{state}\"]")).await,
            count.to_string(),
            "{state}"
        );
    }
    assert_accessible(&browser, "overview").await;
    std::fs::write(screenshots().join("overview.png"), browser.screenshot().await.unwrap()).unwrap();

    // Filtering by dead lists exactly the dead job.
    browser.goto(&served.url("/jobs")).await.unwrap();
    assert_accessible(&browser, "jobs").await;
    let state = browser.find(Locator::Id("state")).await.unwrap();
    state.select_by_value("dead").await.unwrap();
    browser.find(Locator::XPath("//button[text()='Filter']")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.current_url().await.unwrap().as_str().contains("state=dead") {
        assert!(Instant::now() < deadline, "the filter form navigates");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.wait().for_element(Locator::Css("tr[data-job-id]")).await.unwrap();
    let rows = browser.find_all(Locator::Css("tr[data-job-id]")).await.unwrap();
    let mut listed = Vec::new();
    for row in rows {
        listed.push(row.attr("data-job-id").await.unwrap().unwrap().parse::<JobId>().unwrap());
    }
    assert_eq!(listed, [seeded.dead]);

    // The worker runs; the dead job's cause stays until it is fixed.
    let handler = Handler::default();
    let dead_message = "m2".to_owned();
    handler.broken.lock().unwrap().push(dead_message.clone());
    let worker = Inbox::new(store.clone()).worker(handler.router()).config(fast()).spawn();

    // Open the dead job, fix the cause, press Retry: the page shows it done.
    click_and_wait_for_next_page(&browser, Locator::Css(&format!("tr[data-job-id=\"{}\"] a", seeded.dead)))
        .await;
    assert_accessible(&browser, "job").await;
    assert_eq!(text_of(&browser, "td[data-state]").await, "dead");
    handler.broken.lock().unwrap().clear();
    click_and_wait_for_next_page(&browser, Locator::XPath("//button[text()='Retry']")).await;
    poll_until_state(&browser, JobState::Done).await;
    assert_eq!(handler.runs(&dead_message), 1);

    // A handled job replayed runs again.
    browser.goto(&served.url(&format!("/jobs/{}", seeded.done))).await.unwrap();
    click_and_wait_for_next_page(&browser, Locator::XPath("//button[text()='Replay']")).await;
    poll_until_state(&browser, JobState::Done).await;
    assert_eq!(handler.runs("m1"), 1, "m1 was handled by the seed, then once by the worker on replay");

    // A body with script and onerror payloads: shown as text, never run.
    browser.goto(&served.url(&format!("/jobs/{}", seeded.hostile))).await.unwrap();
    assert!(browser.get_alert_text().await.is_err(), "no alert is open");
    assert_eq!(browser.execute("return typeof window.pwned", vec![]).await.unwrap(), json!("undefined"));
    let body = text_of(&browser, "pre.body").await;
    // In the pretty JSON, the payload's quotes are escaped: its script and handler show as written.
    assert!(
        body.contains("<script>window.pwned=1</script>") && body.contains("onerror="),
        "visible as text: {body}"
    );
    assert!(SCRIPT.starts_with("<script>window.pwned=1</script>"));
    assert!(!body.contains(PHONE_CHAT), "masked by default");

    // A form POSTed from the page without the CSRF token: 403, and the job is unchanged. (The
    // CSP has no `connect-src`: even a script could not `fetch` from the page.)
    let before = state_of(&store, seeded.hostile).await;
    browser
        .execute(
            "const form = document.createElement('form');
             form.method = 'post';
             form.action = arguments[0];
             document.body.appendChild(form);
             form.submit();",
            vec![Value::String(served.url(&format!("/jobs/{}/purge", seeded.hostile)))],
        )
        .await
        .unwrap();
    let refused = browser.wait().for_element(Locator::XPath("//code[text()='csrf']")).await;
    assert!(refused.is_ok(), "the refusal page names the csrf code");
    assert_eq!(state_of(&store, seeded.hostile).await, before);

    // Sign out: the cookie is gone, and the console asks to sign in again.
    browser.goto(&console).await.unwrap();
    click_and_wait_for_next_page(&browser, Locator::XPath("//button[text()='Sign out']")).await;
    assert!(browser.title().await.unwrap().starts_with("Sign in"));
    assert!(browser.get_all_cookies().await.unwrap().is_empty(), "the session cookie was cleared");
    browser.goto(&console).await.unwrap();
    assert!(browser.find_all(Locator::Css("[data-count]")).await.unwrap().is_empty());

    browser.close().await.unwrap();
    worker.shutdown().await.unwrap();
}
