//! The embedded store's reads beside its writer: the console's queries, `get`, `list` and
//! `stats` run on read-only connections of their own, so they answer while the writer thread
//! is held up, here by another connection holding the file's write lock (as a checkpoint, or
//! another program writing, would), and a read its caller gave up on holds no connection.

use std::time::{Duration, SystemTime};

use periskope_webhook::inbox::{
    ConsoleStore, InboxError, InboxStore, JobFilter, JobState, ListQuery, SqliteStore, Stored,
};

use crate::support::{TempDir, chat_message, delivery};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_the_writer_waits_for_the_write_lock() {
    let dir = TempDir::new("reads-beside-the-writer");
    let store = SqliteStore::open(dir.db()).unwrap();
    for n in 1..=3 {
        store.insert(delivery(chat_message("c1", &format!("m{n}")))).await.unwrap();
    }
    let first = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0).id;

    // Another connection takes the write lock and keeps it until every read has answered: the
    // delivery queued meanwhile holds the writer thread, waiting for the lock.
    let holder = rusqlite::Connection::open(dir.db()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let delivery_waiting = tokio::spawn(store.insert(delivery(chat_message("c1", "m4"))));

    let mut text = JobFilter::default();
    text.text = Some("m2".to_owned());
    let found = store.search(text.clone()).await.expect("a search beside the busy writer");
    assert_eq!(found.len(), 1);
    assert!(found[0].key.contains("m2"), "{}", found[0].key);
    assert_eq!(store.count(text).await.unwrap(), 1);
    assert_eq!(store.search(JobFilter::default()).await.unwrap().len(), 3, "the last commit, whole");
    assert!(store.attempts(first).await.unwrap().is_empty());
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let minutes = store.per_minute(hour_ago, SystemTime::now()).await.unwrap();
    assert_eq!(minutes.iter().map(|minute| minute.received).sum::<u64>(), 3);
    assert!(store.dead_letters_by_event(5).await.unwrap().is_empty());
    let job = store.get(first).await.unwrap().expect("the first job");
    assert_eq!(job.summary.state, JobState::Pending);
    assert_eq!(store.stats(SystemTime::now()).await.unwrap().pending, 3);
    assert_eq!(store.list(ListQuery::new(None, 10)).await.unwrap().len(), 3);

    holder.execute_batch("ROLLBACK").unwrap();
    // The delivery waited for the lock: it is stored once the lock is released, or, had the
    // reads taken longer than the writer's busy timeout, refused as locked (a 503, which
    // Periskope retries).
    match delivery_waiting.await.unwrap() {
        Ok(stored) => assert_eq!(stored, Stored::New),
        Err(InboxError::Storage(reason)) => assert!(reason.contains("locked"), "{reason}"),
        Err(other) => panic!("the waiting delivery failed otherwise: {other:?}"),
    }
}

/// Each dropped read either never runs or finishes on its connection: the one connection
/// still answers the next read, and the writer is untouched.
#[tokio::test]
async fn reads_dropped_before_they_answer_hold_no_read_connection() {
    let dir = TempDir::new("dropped-reads");
    let store = SqliteStore::options().read_connections(1).open(dir.db()).unwrap();
    store.insert(delivery(chat_message("c1", "m1"))).await.unwrap();
    for _ in 0..100 {
        let search = store.search(JobFilter::default());
        let stats = store.stats(SystemTime::now());
        drop((search, stats));
    }
    assert_eq!(store.search(JobFilter::default()).await.unwrap().len(), 1);
    assert_eq!(store.insert(delivery(chat_message("c1", "m2"))).await.unwrap(), Stored::New);
    assert_eq!(store.stats(SystemTime::now()).await.unwrap().pending, 2);
}
