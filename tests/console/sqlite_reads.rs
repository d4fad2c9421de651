//! The console on SQLite answers while the store's writer is held up: its pages read on the
//! store's read-only connections, beside the writer, here waiting for the file's write lock,
//! which another connection holds (as a checkpoint, or another program writing, would).

use http::StatusCode;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{InboxStore, SqliteStore};

use crate::support::{TempDir, chat_message, delivery};
use crate::{Served, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_while_the_writer_waits_for_the_write_lock() {
    let dir = TempDir::new("console-beside-the-writer");
    let store = SqliteStore::open(dir.db()).unwrap();
    for n in 1..=3 {
        store.insert(delivery(chat_message("c1", &format!("m{n}")))).await.unwrap();
    }
    let served = Served::start(Console::new(store.clone()).bearer_token(TOKEN), "/console").await;

    // Another connection takes the write lock and keeps it until the pages have answered: the
    // delivery queued meanwhile holds the writer thread, waiting for the lock.
    let holder = rusqlite::Connection::open(dir.db()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let delivery_waiting = tokio::spawn(store.insert(delivery(chat_message("c1", "m4"))));

    let search = served.get("/jobs?q=m2").await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text);
    assert_eq!(search.text.matches("data-job-id=").count(), 1, "{}", search.text);
    let overview = served.get("/").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    assert!(overview.text.contains("data-count=\"pending\""), "{}", overview.text);
    let job = served.get("/jobs/1").await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.text);

    holder.execute_batch("ROLLBACK").unwrap();
    // Stored once the lock is released, or, had the pages taken longer than the writer's busy
    // timeout, refused as locked (a 503, which Periskope retries).
    if let Err(error) = delivery_waiting.await.unwrap() {
        assert!(error.to_string().contains("locked"), "{error}");
    }
}
