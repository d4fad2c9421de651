//! Temporary inbox files and deliveries for the inbox suites.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use periskope_webhook::WebhookEvent;
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{InboxStore, JobState, JobSummary, ListQuery, NewDelivery, WorkerConfig};

use crate::common::within;

/// A directory under the system temp dir, removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("periskope-inbox-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The inbox file in this directory.
    pub fn db(&self) -> PathBuf {
        self.0.join("inbox.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `message.created` in `chat` whose message id is `id`.
pub fn chat_message(chat: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"{id}","chat_id":"{chat}","body":"hello {id}"}},"org_id":"org-1"}}"#
    ))
}

/// What the acceptor would store for `body`.
pub fn delivery(body: Bytes) -> NewDelivery {
    let event = WebhookEvent::decode(body).expect("a delivery");
    NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now())
}

/// The de-duplication key the acceptor stores for `body`.
pub fn key_of(body: &Bytes) -> String {
    delivery(body.clone()).key
}

/// The message id of a `message.*` body.
pub fn message_id(body: &Bytes) -> String {
    let event = WebhookEvent::decode(body.clone()).expect("a delivery");
    event
        .event()
        .message()
        .and_then(|message| message.message_id.as_deref())
        .expect("a message id")
        .to_owned()
}

/// Polls the store's jobs until `condition` holds, bounded in time.
pub async fn wait_for_jobs<St, F>(store: &St, what: &str, condition: F) -> Vec<JobSummary>
where
    St: InboxStore,
    F: Fn(&[JobSummary]) -> bool,
{
    within(what, async {
        loop {
            let jobs = store.list(ListQuery::new(None, 1000)).await.unwrap();
            if condition(&jobs) {
                return jobs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Whether there are jobs and all are in `state`.
pub fn all_in(state: JobState) -> impl Fn(&[JobSummary]) -> bool {
    move |jobs| !jobs.is_empty() && jobs.iter().all(|job| job.state == state)
}

/// A worker configuration that retries and polls quickly.
pub fn fast() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.backoff_base = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(20);
    config.poll_interval = Duration::from_millis(10);
    config.max_attempts = 3;
    config
}

/// What `tracing` logs on this thread (the current-thread runtime of `#[tokio::test]` keeps
/// the worker's and the server's tasks on it), from [`CapturedLog::start`] until the guard is
/// dropped.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    pub fn start() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
        let captured = CapturedLog::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
