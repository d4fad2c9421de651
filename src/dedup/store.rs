//! [`DedupStore`]: where claims and delivered keys are kept, and the [`Lease`] a claim gives.

use std::error::Error;
use std::fmt;
use std::future::Future;

use super::DedupKey;

/// What a store knows of a key when a delivery claims it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Claim<L> {
    /// Not seen, forgotten, released, or its lease ran out: this delivery now holds the claim
    /// and goes to the handler. Only the [`Lease`] can settle or release it.
    New(L),
    /// Already delivered: a duplicate.
    Delivered,
    /// Another delivery with this key holds a live claim: it is being handled right now.
    InFlight,
}

/// A claim held by one delivery, identified by a token of its own: only its holder settles
/// or releases it, so a claim that ran out and was taken over is never touched by the
/// delivery that lost it.
///
/// Dropping a lease that was not settled releases the claim: at once for an in-process store,
/// as soon as the store can be told for a remote one (and when it cannot, the claim's lease
/// runs out). The middleware drops it when the response future is dropped (client gone, a
/// timeout in front of the layer, shutdown) or the handler panics.
pub trait Lease {
    /// The completion of [`Lease::settle`].
    type SettleFuture: Future<Output = Result<(), StoreError>>;

    /// Ends the claim. `delivered` (the handler answered 2xx) keeps the key as delivered for
    /// the store's TTL; otherwise the claim is released so that a retry is handled.
    fn settle(self, delivered: bool) -> Self::SettleFuture;
}

/// A store of de-duplication keys, shared by every clone of the middleware.
///
/// Implemented by [`MemoryStore`](super::MemoryStore) (one process) and, with the `redis`
/// feature, `RedisStore` (several replicas).
///
/// An implementation bounds each call in time (about a second is a good default) and answers
/// [`StoreError`] when it cannot answer: the middleware then hands the delivery to the handler
/// (or answers 503, see [`Dedup::reject_when_unavailable`](super::Dedup::reject_when_unavailable)),
/// never "duplicate".
pub trait DedupStore: Clone {
    /// The claim a new delivery holds.
    type Lease: Lease;
    /// The answer of [`DedupStore::claim`].
    type ClaimFuture: Future<Output = Result<Claim<Self::Lease>, StoreError>>;

    /// Claims `key` for a delivery about to be handled, atomically: of two concurrent claims of
    /// a new key, one gets [`Claim::New`] and the other [`Claim::InFlight`].
    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture;
}

/// A store could not answer: unreachable, failing, or slower than its timeout.
///
/// Its `Display` names the cause, never a key.
#[derive(Debug)]
pub struct StoreError {
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    TimedOut,
    Failed(Box<dyn Error + Send + Sync>),
}

impl StoreError {
    /// The store did not answer within its timeout.
    pub fn timed_out() -> Self {
        StoreError { cause: Cause::TimedOut }
    }

    /// The store failed with `error` (which must not quote the key).
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        StoreError { cause: Cause::Failed(error.into()) }
    }

    /// Whether the store did not answer within its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.cause, Cause::TimedOut)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::TimedOut => f.write_str("the de-duplication store did not answer in time"),
            Cause::Failed(error) => write!(f, "the de-duplication store failed: {error}"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.cause {
            Cause::TimedOut => None,
            Cause::Failed(error) => Some(error.as_ref()),
        }
    }
}
