//! Wake-ups from other replicas: each store announces the deliveries it stored on [`CHANNEL`]
//! ([`Announcer`]), and keeps one connection that listens to it and wakes the workers of its
//! process ([`Arrivals`]).
//!
//! A notifying transaction holds a lock that serializes every notifying commit in the cluster,
//! sync included, until it ends. A notification inside each batch of stored deliveries made
//! their commits queue on it one after another, replicas included, instead of syncing
//! together. So a notification goes in a transaction of its own, after the deliveries it
//! announces are committed, whose commit does not wait for its sync (a notification lost in a
//! crash costs a poll, nothing stored); and one is in flight per store at a time, however many
//! batches commit meanwhile.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::Connections;

/// The channel stored deliveries are announced on.
pub(super) const CHANNEL: &str = "periskope_inbox";

/// How long the listener waits before it connects again after losing its connection. Workers
/// poll meanwhile ([`WorkerConfig::poll_interval`](crate::inbox::WorkerConfig::poll_interval)),
/// so nothing is missed, only picked up later.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Sends one notification: `synchronous_commit` is off for its own transaction only, so that
/// its commit holds the notification lock for no sync.
const ANNOUNCE: &str = "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')";

/// The task that announces a store's stored deliveries; it stops with the last clone of its
/// store.
pub(super) struct Announcer {
    wanted: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Announcer {
    /// Starts the task, on the current tokio runtime, sending on `connections`.
    pub(super) fn start(connections: Arc<Connections>) -> Self {
        let wanted = Arc::new(Notify::new());
        let task = {
            let wanted = Arc::clone(&wanted);
            tokio::spawn(async move {
                loop {
                    wanted.notified().await;
                    if let Err(_error) = connections.execute(ANNOUNCE, &[&CHANNEL]).await {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(error = %_error, "periskope inbox could not announce stored deliveries to other replicas; their workers poll");
                    }
                }
            })
        };
        Announcer { wanted, task }
    }

    /// Announces deliveries just committed: once the announcement in flight, if any, is sent,
    /// one more is, for every call made meanwhile.
    pub(super) fn announce(&self) {
        self.wanted.notify_one();
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listening connection of a store and its clones; it closes with the last of them.
pub(super) struct Arrivals {
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Arrivals {
    /// Listens on `config`'s database until dropped, reconnecting as needed.
    pub(super) fn listen(config: tokio_postgres::Config) -> Self {
        let notify = Arc::new(Notify::new());
        let task = {
            let notify = Arc::clone(&notify);
            tokio::spawn(async move {
                loop {
                    if let Err(_error) = listen_until_lost(&config, &notify).await {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(error = %_error, "periskope inbox stopped listening for deliveries stored by other replicas; polling until it listens again");
                    }
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            })
        };
        Arrivals { notify, task }
    }

    /// Completes at the next notification from now on, even one that comes before it is first
    /// polled (or once listening starts again after a loss, when deliveries may have been
    /// stored unannounced).
    pub(super) fn next(&self) -> tokio::sync::futures::OwnedNotified {
        Arc::clone(&self.notify).notified_owned()
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects, listens, and wakes the waiting workers at each notification, until the connection
/// is lost.
async fn listen_until_lost(
    config: &tokio_postgres::Config,
    notify: &Notify,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let listen = format!("LISTEN {CHANNEL}");
    let mut listening = std::pin::pin!(client.batch_execute(&listen));
    let mut listened = false;
    loop {
        tokio::select! {
            result = &mut listening, if !listened => {
                result?;
                listened = true;
                // Deliveries stored while nobody listened were announced to no one.
                notify.notify_waiters();
            }
            message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(_))) => notify.notify_waiters(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
        }
    }
}
