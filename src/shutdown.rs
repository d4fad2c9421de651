//! [`shutdown_signal`]: one future for the server and the inbox worker that resolves on Ctrl-C
//! (SIGINT) or SIGTERM, the signal Docker, systemd and Kubernetes send (feature `inbox`).
//!
//! ```no_run
//! use periskope_webhook::inbox::{Inbox, SqliteStore};
//! use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, shutdown_signal};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = Inbox::new(SqliteStore::open("periskope-inbox.db")?);
//! let worker = inbox.worker(EventRouter::new()).spawn();
//! let app = axum::Router::new()
//!     .route_service("/webhooks/periskope", PeriskopeWebhookLayer::new("peri_demo").service(inbox.acceptor()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // First the server stops accepting and finishes the requests in flight ...
//! axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
//! // ... then the worker gets its grace for the jobs in flight.
//! worker.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// A future that resolves once the process receives SIGINT or SIGTERM (on Windows, Ctrl-C).
///
/// Clones share one listener: a clone made, or first polled, after the signal came resolves at
/// once. Build it inside a tokio runtime, which runs the listener.
pub fn shutdown_signal() -> ShutdownSignal {
    let (received, receiver) = watch::channel(false);
    // Listening starts here, not when the task first runs: a signal that comes right after this
    // call is not missed (and no longer ends the process the default way).
    let signal = signal_received();
    tokio::spawn(async move {
        tokio::select! {
            () = signal => { let _ = received.send(true); }
            // Every handle is gone: nobody waits any more.
            () = received.closed() => {}
        }
    });
    ShutdownSignal { receiver, waiting: None }
}

#[cfg(unix)]
fn signal_received() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            // Neither can be listened to: only the default action will end the process.
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
fn signal_received() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The future [`shutdown_signal`] returns; clone it to wait in several places.
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl Clone for ShutdownSignal {
    fn clone(&self) -> Self {
        ShutdownSignal { receiver: self.receiver.clone(), waiting: None }
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal").field("received", &*self.receiver.borrow()).finish()
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let waiting = this.waiting.get_or_insert_with(|| {
            let mut receiver = this.receiver.clone();
            Box::pin(async move {
                // An error means the listener is gone without a signal (its runtime shut
                // down): nothing will ever come, so keep waiting rather than stop the server.
                if receiver.wait_for(|received| *received).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        });
        waiting.as_mut().poll(cx)
    }
}
