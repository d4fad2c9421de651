//! [`DedupStore`]: where claimed and delivered keys are kept.

use std::future::Future;

use super::DedupKey;

/// What a store knows of a key when a delivery claims it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Not seen (or forgotten): this delivery now holds the claim and goes to the handler.
    New,
    /// Already delivered: a duplicate.
    Delivered,
    /// Another delivery with this key is being handled right now.
    InFlight,
}

/// A store of de-duplication keys, shared by every clone of the middleware.
///
/// A store that cannot answer (a network error, say) should return [`Claim::New`]: a
/// delivery handled twice is better than one lost. Implemented by [`MemoryStore`](super::MemoryStore);
/// implement it over a shared store (Redis `SET key value NX PX ttl`, for example) when several
/// replicas receive webhooks.
pub trait DedupStore: Clone {
    /// The answer of [`DedupStore::claim`].
    type ClaimFuture: Future<Output = Claim>;
    /// The completion of [`DedupStore::settle`].
    type SettleFuture: Future<Output = ()>;

    /// Claims `key` for a delivery about to be handled, atomically: of two concurrent claims of
    /// a new key, one gets [`Claim::New`] and the other [`Claim::InFlight`].
    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture;

    /// Ends the claim: `delivered` (the handler answered 2xx) keeps the key as delivered;
    /// otherwise the key is released so that a retry is handled.
    fn settle(&self, key: DedupKey, delivered: bool) -> Self::SettleFuture;
}
