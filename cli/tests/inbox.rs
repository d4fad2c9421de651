//! `inbox`, run as the built binary on an embedded inbox file filled through the library: what
//! `list` and `show` print (and keep hidden), and what `retry` and `purge` change in the store.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use periskope_webhook::WebhookEvent;
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{
    ClaimRequest, InboxStore, JobId, JobState, ListQuery, NewDelivery, SqliteStore,
};

const PHONE: &str = "919289665999";

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn delivery(chat: &str, id: &str) -> NewDelivery {
    let body = Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"{id}","chat_id":"{chat}","body":"hello {id}"}},"org_id":"org-1"}}"#
    ));
    let event = WebhookEvent::decode(body).expect("a delivery");
    NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now())
}

/// An inbox with a dead letter (a message in a chat with a phone number, whose handler's error
/// quotes that number, received with verification off) and a pending job (verified by key-0);
/// returns their ids. The store is closed on return, so the binary can open the file.
fn fill(db: &Path) -> (JobId, JobId) {
    let (store, ids) = block_on(async {
        let store = SqliteStore::open(db).unwrap();
        store.insert(delivery(&format!("{PHONE}@c.us"), "m1")).await.unwrap();
        let mut verified = delivery("other-chat", "m2");
        verified.signing_key = Some("key-0".to_owned());
        store.insert(verified).await.unwrap();
        let claimed = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 1)).await.unwrap();
        store.fail(claimed[0].lease(), format!("the CRM said no to {PHONE}@c.us"), None).await.unwrap();
        let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
        assert_eq!(jobs.iter().map(|job| job.state).collect::<Vec<_>>(), [JobState::Dead, JobState::Pending]);
        (store, (jobs[0].id, jobs[1].id))
    });
    // Dropped outside the runtime, the store has closed the file when the drop returns.
    drop(store);
    ids
}

/// The jobs in the file, as `(id, state, attempts)`.
fn jobs(db: &Path) -> Vec<(JobId, JobState, u32)> {
    let (store, jobs) = block_on(async {
        let store = SqliteStore::open(db).unwrap();
        let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
        (store, jobs.into_iter().map(|job| (job.id, job.state, job.attempts)).collect())
    });
    drop(store);
    jobs
}

fn inbox(db: &Path) -> std::process::Command {
    let mut command = cli();
    command.arg("inbox").arg("--store").arg(db).env_remove("PERISKOPE_INBOX");
    command
}

#[test]
fn list_and_show_print_jobs_without_bodies_or_phone_numbers_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (dead, pending) = fill(&db);

    let output = run(inbox(&db).arg("list"));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(&dead.to_string()) && lines[0].contains("dead"), "{text}");
    assert!(lines[0].contains("last error: the CRM said no to *@c.us"), "{text}");
    assert!(lines[1].contains(&pending.to_string()) && lines[1].contains("pending"), "{text}");
    assert!(!text.contains("hello") && !text.contains(PHONE), "{text}");

    let output = run(inbox(&db).args(["--json", "list", "--state", "dead"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let objects: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["id"], dead);
    assert_eq!(objects[0]["state"], "dead");
    assert_eq!(objects[0]["attempts"], 1);
    assert_eq!(objects[0]["event"], "message.created");
    assert_eq!(objects[0]["last_error"], "the CRM said no to *@c.us");

    let output = run(inbox(&db).args(["show", &dead.to_string()]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("key: ") && text.contains("*@c.us"), "{text}");
    assert!(!text.contains("hello") && !text.contains(PHONE), "{text}");

    assert!(text.contains("last error: the CRM said no to *@c.us"), "{text}");
    assert!(text.contains("verified by: nothing"), "{text}");

    let output = run(inbox(&db).args(["show", &dead.to_string(), "--body", "--show-ids"]));
    let text = stdout(&output);
    assert!(text.contains("hello m1") && text.contains(PHONE), "{text}");
    assert!(text.contains(&format!("last error: the CRM said no to {PHONE}@c.us")), "{text}");

    let output = run(inbox(&db).args(["--json", "show", &dead.to_string(), "--body"]));
    let object: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert!(object["body"].as_str().unwrap().contains("hello m1"));
    assert!(!object["key"].as_str().unwrap().contains(PHONE));
    assert_eq!(object["last_error"], "the CRM said no to *@c.us");

    // `list` shows the error texts in full only when asked, too.
    let output = run(inbox(&db).args(["--json", "list", "--state", "dead", "--show-ids"]));
    let objects = json_lines(&stdout(&output));
    assert_eq!(objects[0]["last_error"], format!("the CRM said no to {PHONE}@c.us"));

    // Which key verified a delivery, in words: `key-0` is the server's first key.
    let output = run(inbox(&db).args(["show", &pending.to_string()]));
    let text = stdout(&output);
    assert!(text.contains("verified by: key-0 (the first signing key the server was given)"), "{text}");

    // A missing job: one line, exit 2.
    let output = run(inbox(&db).args(["show", "999"]));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[test]
fn retry_makes_a_dead_letter_pending_again_and_purge_deletes_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (dead, pending) = fill(&db);

    let output = run(inbox(&db).args(["retry", &dead.to_string()]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1 job due again\n");
    assert_eq!(jobs(&db), [(dead, JobState::Pending, 0), (pending, JobState::Pending, 0)]);

    let output = run(inbox(&db).args(["--json", "purge", &pending.to_string()]));
    assert!(output.status.success(), "{}", stderr(&output));
    let object: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(object["jobs"], 1);
    assert_eq!(jobs(&db), [(dead, JobState::Pending, 0)]);

    let output = run(inbox(&db).args(["purge", "--state", "pending"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1 job deleted\n");
    assert!(jobs(&db).is_empty());

    // Neither an id nor a state: a usage error.
    assert_eq!(run(inbox(&db).arg("purge")).status.code(), Some(2));
}

#[test]
fn a_missing_file_is_one_line_and_exit_2_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    for action in [&["list"][..], &["stats"], &["retry", "--state", "dead"], &["purge", "--state", "dead"]] {
        let output = run(inbox(&db).args(action));
        assert_eq!(output.status.code(), Some(2), "{action:?}");
        let error = stderr(&output);
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.contains("no inbox file at"), "{error}");
        assert!(!db.exists(), "{action:?} created the file");
    }
}

#[test]
fn the_help_says_which_actions_work_beside_a_running_server() {
    let output = run(cli().args(["inbox", "--help"]));
    assert_eq!(output.status.code(), Some(0));
    // Wrapped as clap prints it: compared as one line of words.
    let help = stdout(&output).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("`list`, `show`, `stats` and `console` read it"), "{help}");
    assert!(help.contains("`retry` and `purge` need the server stopped"), "{help}");
    assert!(!help.contains("before opening"), "{help}");
}

#[test]
fn a_missing_directory_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(inbox(&dir.path().join("missing").join("inbox.db")).arg("list"));
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.starts_with("periskope-webhook: error: "), "{error}");
}

#[test]
fn the_store_is_accepted_after_the_subcommand_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (dead, _) = fill(&db);
    let after = |args: &[&str]| {
        let mut command = cli();
        command.arg("inbox").args(args).arg("--store").arg(&db).env_remove("PERISKOPE_INBOX");
        run(&mut command)
    };
    let dead = dead.to_string();
    for args in [&["list"][..], &["show", &dead], &["stats"], &["retry", &dead], &["purge", &dead]] {
        let output = after(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(jobs(&db).len(), 1, "the purge after the retry deleted the first job");

    // Neither before nor after, nor in PERISKOPE_INBOX: one line naming both ways, exit 2.
    let output = run(cli().args(["inbox", "list"]).env_remove("PERISKOPE_INBOX"));
    assert_eq!(output.status.code(), Some(2));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains("--store") && stderr(&output).contains("PERISKOPE_INBOX"));
}

/// A password no output may show, and the user name that goes with it.
const PASSWORD: &str = "S3cretPw";

#[test]
fn a_store_argument_with_a_password_is_never_echoed() {
    // Port 1 refuses at once: a build with PostgreSQL support fails to connect, one without it
    // says so; neither may print the password, and neither may create a file.
    let mut urls = vec![
        format!("POSTGRES://app:{PASSWORD}@127.0.0.1:1/inbox"),
        format!("PostgreSQL://app:{PASSWORD}@127.0.0.1:1/inbox?sslmode=disable&x=1"),
        format!("host=127.0.0.1 port=1 user=app password={PASSWORD} dbname=inbox"),
        format!("host=127.0.0.1 port=1 user=app password='S3cr etPw host=S3cr' dbname=inbox"),
    ];
    // The driver ends the credentials at the first `@`: a password holding `/`, `?`, `#` or
    // `:` is the password still, and an `@` in it is written %40. Neither half of it may show.
    for separator in ["/", "?", "#", ":", "%40"] {
        urls.push(format!("postgres://app:S3cr{separator}etPw@127.0.0.1:1/inbox"));
    }
    // An `@` written as it is: what follows it is a piece of the password, never printed.
    urls.push("postgres://app:S3cr@etPw@127.0.0.1:1/inbox".to_owned());
    for url in &urls {
        for through_env in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut command = cli();
            command.current_dir(dir.path()).arg("inbox");
            if through_env {
                command.env("PERISKOPE_INBOX", url);
            } else {
                command.env_remove("PERISKOPE_INBOX").args(["--store", url]);
            }
            command.arg("list");
            let output = run(&mut command);
            assert_eq!(output.status.code(), Some(2), "{url}");
            assert_one_error_line(&output);
            let error = stderr(&output);
            for piece in [PASSWORD, "S3cr", "etPw", "app"] {
                assert!(!error.contains(piece), "{url}: {error}");
            }
            assert!(error.to_lowercase().contains("postgres"), "{url}: {error}");
            assert!(!error.contains("no inbox file"), "{url} was taken for a file: {error}");
            let created: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(created.is_empty(), "{url} created {created:?}");
        }
    }

    // A URL of another scheme is refused by its scheme alone.
    let output = run(cli()
        .args(["inbox", "--store", &format!("mysql://app:{PASSWORD}@127.0.0.1:1/inbox"), "list"])
        .env_remove("PERISKOPE_INBOX"));
    assert_eq!(output.status.code(), Some(2));
    assert_one_error_line(&output);
    let error = stderr(&output);
    assert!(error.contains("mysql://") && !error.contains(PASSWORD) && !error.contains("app"), "{error}");
}

#[test]
fn the_inbox_example_reads_a_postgres_store_in_any_case_and_never_echoes_it() {
    let example = common::process::example_binary(&workspace_root(), "inbox");
    for url in [
        format!("POSTGRES://app:{PASSWORD}@127.0.0.1:1/inbox"),
        format!("host=127.0.0.1 port=1 user=app password={PASSWORD} dbname=inbox"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(&example)
            .current_dir(dir.path())
            .env("PERISKOPE_INBOX", &url)
            .env("ADDR", "127.0.0.1:0")
            .env("PERISKOPE_SIGNING_KEY", VECTOR_KEY)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the inbox example starts");
        // Refused at once on port 1; a server that took the URL for a file would keep running.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let (out, error) = (stdout(&output), stderr(&output));
        assert!(!output.status.success(), "{url}: {out}{error}");
        assert!(
            !out.contains("listening") && error.to_lowercase().contains("postgres"),
            "{url}: {out}{error}"
        );
        assert!(!error.contains(PASSWORD) && !out.contains(PASSWORD), "{url}: {out}{error}");
        let created: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(created.is_empty(), "{url} created {created:?}");
    }
}

/// `inbox console` on `db`, killed when dropped, with the link of its first line and the token
/// of its second.
struct ServedConsole {
    child: std::process::Child,
    url: String,
    token: String,
    stderr: std::process::ChildStderr,
}

impl ServedConsole {
    fn start(db: &Path) -> ServedConsole {
        ServedConsole::start_with(db, &[])
    }

    fn start_with(db: &Path, args: &[&str]) -> ServedConsole {
        let mut child = inbox(db)
            .arg("console")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the console starts");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let url = lines.next().expect("a first line").unwrap();
        let second = lines.next().expect("a second line").unwrap();
        let token =
            second.rsplit_once(": ").unwrap_or_else(|| panic!("the token second: {second}")).1.to_owned();
        let stderr = child.stderr.take().unwrap();
        ServedConsole { child, url, token, stderr }
    }

    /// The address and the one-time code of the first line, `http://ADDR/?code=CODE`.
    fn addr_and_code(&self) -> (String, String) {
        let rest = self.url.strip_prefix("http://").unwrap_or_else(|| panic!("a URL first: {}", self.url));
        let (addr, code) = rest.split_once("/?code=").unwrap();
        (addr.to_owned(), code.to_owned())
    }

    /// The address and the token.
    fn addr_and_token(&self) -> (String, String) {
        (self.addr_and_code().0, self.token.clone())
    }

    /// Stops the console and returns what it wrote on standard error.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut text);
        text
    }
}

impl Drop for ServedConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange with `addr`: the status and the whole answer, headers included.
fn exchange(addr: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    exchange_as(addr, addr, method, path, headers)
}

/// [`exchange`] with `host` in the `Host` header.
fn exchange_as(addr: &str, host: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    (answer[9..12].parse().unwrap(), answer)
}

#[test]
fn the_console_serves_the_inbox_on_loopback_behind_a_fresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (dead, _) = fill(&db);
    let console = ServedConsole::start(&db);
    let (addr, token) = console.addr_and_token();
    let (_, code) = console.addr_and_code();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(token.len() >= 32, "a long random token");
    assert!(!console.url.contains(&token), "the link holds a code, not the token");
    assert_ne!(ServedConsole::start(&db).addr_and_token().1, token, "a fresh token each time");

    let (status, _) = exchange(&addr, "GET", "/", &[]);
    assert_eq!(status, 401);
    // The link's code opens one session, once: history keeps a spent code.
    let (status, answer) = exchange(&addr, "GET", &format!("/?code={code}"), &[]);
    assert_eq!(status, 303);
    let cookie = answer.lines().find_map(|line| line.strip_prefix("set-cookie: ")).expect("a session cookie");
    assert!(cookie.contains("; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(&token) && !cookie.contains(&code), "{cookie}");
    let session = format!("Cookie: {}", cookie.split(';').next().unwrap());
    assert_eq!(exchange(&addr, "GET", "/", &[&session]).0, 200);
    let (status, spent) = exchange(&addr, "GET", &format!("/?code={code}"), &[]);
    assert_eq!(status, 401);
    assert!(spent.contains("sign_in_code_spent"), "{spent}");
    // A page that rebinds its name to 127.0.0.1 gets nothing, even with the token.
    let bearer = format!("Authorization: Bearer {token}");
    let port = addr.rsplit_once(':').unwrap().1;
    let (status, _) = exchange_as(&addr, &format!("rebind.attacker.example:{port}"), "GET", "/", &[&bearer]);
    assert_eq!(status, 403);
    assert_eq!(exchange_as(&addr, &format!("localhost:{port}"), "GET", "/", &[&bearer]).0, 200);
    let (status, overview) = exchange(&addr, "GET", "/", &[&bearer]);
    assert_eq!(status, 200);
    assert!(overview.contains("data-count=\"dead\">1<"), "{overview}");
    let (status, _) = exchange(&addr, "POST", &format!("/jobs/{dead}/retry"), &[&bearer]);
    assert_eq!(status, 303);
    let printed = console.stop();
    assert!(!printed.contains("read-only"), "{printed}");
    assert_eq!(jobs(&db)[0].1, JobState::Pending, "retried from the console");

    // --allowed-host adds a name beside loopback.
    let listed = ServedConsole::start_with(&db, &["--allowed-host", "ops.example"]);
    let (addr, token) = listed.addr_and_token();
    let (port, bearer) =
        (addr.rsplit_once(':').unwrap().1.to_owned(), format!("Authorization: Bearer {token}"));
    assert_eq!(exchange_as(&addr, &format!("ops.example:{port}"), "GET", "/", &[&bearer]).0, 200);
    assert_eq!(exchange_as(&addr, &format!("other.example:{port}"), "GET", "/", &[&bearer]).0, 403);
    let refused = run(inbox(&db).args(["console", "--allowed-host", "https://ops.example/"]));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--allowed-host"), "{}", stderr(&refused));
}

#[test]
fn a_running_servers_inbox_is_read_beside_it_and_writes_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (dead, pending) = fill(&db);
    let example = common::process::example_binary(&workspace_root(), "inbox");
    let mut server = std::process::Command::new(&example)
        .env("PERISKOPE_INBOX", &db)
        .env("ADDR", "127.0.0.1:0")
        .env("PERISKOPE_SIGNING_KEY", VECTOR_KEY)
        // Slow enough that the pending job is still running while the commands below read.
        .env("HANDLER_DELAY_MS", "60000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the inbox example starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(server.stdout.take().unwrap()));
    let listening = lines.next().expect("a first line").unwrap();
    assert!(listening.starts_with("listening on "), "{listening}");

    let stats = run(inbox(&db).args(["stats", "--json"]));
    assert!(stats.status.success(), "{}", stderr(&stats));
    let counts = &json_lines(&stdout(&stats))[0];
    assert_eq!(counts["dead"], 1, "{counts}");
    assert_eq!(counts["pending"].as_u64().unwrap() + counts["running"].as_u64().unwrap(), 1, "{counts}");

    let list = run(inbox(&db).args(["list", "--json"]));
    assert!(list.status.success(), "{}", stderr(&list));
    let ids: Vec<_> = json_lines(&stdout(&list)).iter().map(|job| job["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [dead, pending]);

    for write in [vec!["retry", "--state", "dead"], vec!["purge", &dead.to_string()]] {
        let refused = run(inbox(&db).args(&write));
        assert_eq!(refused.status.code(), Some(2), "{write:?}: {}", stderr(&refused));
        assert_one_error_line(&refused);
        assert!(stderr(&refused).contains("running server"), "{}", stderr(&refused));
    }
    // The console reads it too, read-only, and says why.
    let console = ServedConsole::start(&db);
    let (addr, token) = console.addr_and_token();
    let bearer = format!("Authorization: Bearer {token}");
    let (status, page) = exchange(&addr, "GET", &format!("/jobs/{dead}"), &[&bearer]);
    assert_eq!(status, 200);
    assert!(!page.contains("<button"), "no actions on a read-only console");
    let (status, _) = exchange(&addr, "POST", &format!("/jobs/{dead}/retry"), &[&bearer]);
    assert_eq!(status, 403);
    let stderr = console.stop();
    assert!(stderr.contains("read-only: a running server holds this file"), "{stderr}");

    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(jobs(&db)[0], (dead, JobState::Dead, 1), "nothing was retried or purged");
}
