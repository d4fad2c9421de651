//! Group commit for PostgreSQL: concurrent calls of one kind (inserts, completions) written by
//! one statement in one transaction, as the SQLite store's single writer does, so that a busy
//! inbox pays one round trip and one commit for many deliveries, never a weaker promise: each
//! caller is answered once the commit holding its call returned.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::inbox::InboxError;

/// The most calls one statement writes.
const MAX_BATCH: usize = 512;

/// A queue of calls of one kind and the task that writes them in batches: it takes every call
/// queued, writes them together, and, while `in_flight` batches are being written, lets the
/// next ones gather.
pub(super) struct Batches<T, R> {
    queue: mpsc::UnboundedSender<Call<T, R>>,
}

struct Call<T, R> {
    item: T,
    answer: oneshot::Sender<Result<R, InboxError>>,
}

impl<T: Send + 'static, R: Send + 'static> Batches<T, R> {
    /// Starts the task, on the current tokio runtime. `write` writes a batch in one statement
    /// and answers each item in order; the task ends once every handle is dropped.
    pub(super) fn start<W, F>(in_flight: usize, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<Vec<R>, InboxError>> + Send + 'static,
    {
        let (queue, mut calls) = mpsc::unbounded_channel::<Call<T, R>>();
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = calls.recv().await {
                // Waiting here, for a batch in flight to end, is what lets the next one grow.
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match calls.try_recv() {
                        Ok(call) => batch.push(call),
                        Err(_) => break,
                    }
                }
                // A caller that gave up (a timeout, a dropped request) before its batch was
                // written is left out: a call not yet started has no effect.
                batch.retain(|call| !call.answer.is_closed());
                if batch.is_empty() {
                    continue;
                }
                let (items, answers): (Vec<T>, Vec<_>) =
                    batch.into_iter().map(|call| (call.item, call.answer)).unzip();
                let written = write(items);
                tokio::spawn(async move {
                    let result = written.await;
                    drop(permit);
                    match result {
                        Ok(results) if results.len() == answers.len() => {
                            for (answer, result) in answers.into_iter().zip(results) {
                                let _ = answer.send(Ok(result));
                            }
                        }
                        Ok(_) => {
                            let error = InboxError::Storage(
                                "a batch was answered for the wrong number of calls".to_owned(),
                            );
                            for answer in answers {
                                let _ = answer.send(Err(error.clone()));
                            }
                        }
                        Err(error) => {
                            for answer in answers {
                                let _ = answer.send(Err(error.clone()));
                            }
                        }
                    }
                });
            }
        });
        Batches { queue }
    }

    /// Queues `item`; its answer once the batch holding it was written (committed or not).
    pub(super) async fn call(&self, item: T) -> Result<R, InboxError> {
        let (answer, receiver) = oneshot::channel();
        self.queue.send(Call { item, answer }).map_err(|_| InboxError::Closed)?;
        receiver.await.unwrap_or(Err(InboxError::Closed))
    }
}
