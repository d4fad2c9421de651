//! Wake-ups from other replicas: every batch of stored deliveries sends one notification on
//! [`CHANNEL`] (one per batch, as a notifying commit takes a lock that serializes commits), and
//! each store keeps one connection that listens to it and wakes the workers of its process.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel stored deliveries are announced on.
pub(super) const CHANNEL: &str = "periskope_inbox";

/// How long the listener waits before it connects again after losing its connection. Workers
/// poll meanwhile ([`WorkerConfig::poll_interval`](crate::inbox::WorkerConfig::poll_interval)),
/// so nothing is missed, only picked up later.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

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
