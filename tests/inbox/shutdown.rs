//! The `inbox` example stopped as a container runtime stops it: SIGTERM during a slow handler.
//! The server stops accepting, the worker gives the job in flight its grace, the process exits
//! within that grace, and the interrupted job is handled after a restart.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use periskope_webhook::inbox::{InboxStore, JobState, ListQuery, SqliteStore};

use crate::common::{self, KEY, client, signed};
use crate::crash::{Lines, Process, short_digest};
use crate::support::{TempDir, all_in, chat_message, wait_for_jobs};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_slow_handler_exits_within_the_grace_and_the_job_is_handled_after_a_restart() {
    let dir = TempDir::new("sigterm");
    let lines = Lines::default();
    let grace = Duration::from_millis(500);
    let grace_ms = grace.as_millis().to_string();
    // The handler would take a minute: far longer than the grace.
    let example = Process::start_with(dir.db(), 60_000, 0, &lines, &[("INBOX_SHUTDOWN_GRACE_MS", &grace_ms)]);
    let body = chat_message("c", "slow");
    common::send(&client(), signed(&example.url(), KEY, body.clone()))
        .await
        .assert(StatusCode::OK, "accepted");
    // The SIGTERM must come while the handler runs: wait until the example has claimed the job,
    // reading the file as the command line's `inbox` commands do while a server holds it.
    let reader = SqliteStore::options().read_only(true).open(dir.db()).unwrap();
    wait_for_jobs(&reader, "the example claims the job", all_in(JobState::Running)).await;
    drop(reader);

    let took = example.stop_with("TERM", grace + Duration::from_secs(5));
    assert!(took >= grace, "exited after {took:?}, before the grace of {grace:?} was over");
    assert!(lines.lock().unwrap().is_empty(), "the slow handler never finished");

    // Released, not failed: pending again, its attempt not counted.
    let store = SqliteStore::open(dir.db()).unwrap();
    let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Pending, 0));
    assert_eq!(store.stats(SystemTime::now()).await.unwrap().queue_depth(), 1);
    // Dropped outside the runtime, the store has closed the file before the example reopens it.
    std::thread::spawn(move || drop(store)).join().unwrap();

    let restarted = Process::start(dir.db(), 0, 1, &lines);
    let expected = format!("processed message.created {}", short_digest(&body));
    common::within("the job is handled after the restart", async {
        while !lines.lock().unwrap().iter().any(|(run, line)| *run == 1 && *line == expected) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    restarted.stop_with("TERM", Duration::from_secs(20));
}
