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

/// An inbox with a dead letter (a message in a chat with a phone number) and a pending job;
/// returns their ids. The store is closed on return, so the binary can open the file.
fn fill(db: &Path) -> (JobId, JobId) {
    block_on(async {
        let store = SqliteStore::open(db).unwrap();
        store.insert(delivery(&format!("{PHONE}@c.us"), "m1")).await.unwrap();
        store.insert(delivery("other-chat", "m2")).await.unwrap();
        let claimed = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 1)).await.unwrap();
        store.fail(claimed[0].lease(), "the CRM said no".to_owned(), None).await.unwrap();
        let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
        assert_eq!(jobs.iter().map(|job| job.state).collect::<Vec<_>>(), [JobState::Dead, JobState::Pending]);
        (jobs[0].id, jobs[1].id)
    })
}

/// The jobs in the file, as `(id, state, attempts)`.
fn jobs(db: &Path) -> Vec<(JobId, JobState, u32)> {
    block_on(async {
        let store = SqliteStore::open(db).unwrap();
        let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
        jobs.into_iter().map(|job| (job.id, job.state, job.attempts)).collect()
    })
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
    assert!(lines[0].contains("the CRM said no"), "{text}");
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

    let output = run(inbox(&db).args(["show", &dead.to_string()]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("key: ") && text.contains("*@c.us"), "{text}");
    assert!(!text.contains("hello") && !text.contains(PHONE), "{text}");

    let output = run(inbox(&db).args(["show", &dead.to_string(), "--body", "--show-ids"]));
    let text = stdout(&output);
    assert!(text.contains("hello m1") && text.contains(PHONE), "{text}");

    let output = run(inbox(&db).args(["--json", "show", &dead.to_string(), "--body"]));
    let object: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert!(object["body"].as_str().unwrap().contains("hello m1"));
    assert!(!object["key"].as_str().unwrap().contains(PHONE));

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
fn a_missing_directory_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(inbox(&dir.path().join("missing").join("inbox.db")).arg("list"));
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.starts_with("periskope-webhook: error: "), "{error}");
}
