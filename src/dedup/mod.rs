//! De-duplication: answer a delivery Periskope already made without calling the handler again.
//!
//! ```
//! use std::time::Duration;
//! use periskope_webhook::PeriskopeWebhookLayer;
//! use periskope_webhook::dedup::{Dedup, MemoryStore};
//!
//! // Remember up to 100,000 deliveries for 24 hours, in this process.
//! let store = MemoryStore::new(100_000, Duration::from_secs(24 * 60 * 60));
//! let layer = PeriskopeWebhookLayer::new("peri_demo-key").deduplicate(Dedup::new(store));
//! # let _ = layer;
//! ```
//!
//! Periskope delivers the same group message once per connected org phone, and presumably
//! retries deliveries that failed; its signature carries no nonce, so a captured delivery can
//! also be replayed. With a [`Dedup`] policy the middleware derives a [`DedupKey`] per
//! occurrence ([`EventKeys`]), claims it in a [`DedupStore`] before calling the handler, and
//! records it as delivered only when the handler answered 2xx.
//!
//! # What is guaranteed
//! - **Each occurrence is handled at least once**, as long as Periskope retries what was not
//!   answered 2xx. A claim is a [`Lease`] owned by its delivery: when the handler fails, panics
//!   or is cancelled (the response future dropped by a timeout, a client gone, a shutdown), the
//!   claim is released and the next copy is handled. A claim whose process died ends when its
//!   lease runs out (the `redis` store's lease, about a minute by default, is renewed while the
//!   handler runs).
//! - **Duplicates are absorbed on a best-effort basis**: a key already delivered within the
//!   store's TTL is answered `200 duplicate` without the handler; a key being handled right now
//!   is answered `409 duplicate_in_flight`, so the sender retries later rather than the delivery
//!   being lost. A key forgotten (TTL over, evicted beyond capacity) is handled again.
//! - **When the store cannot answer** (unreachable, slower than its timeout), a delivery is
//!   never answered "duplicate": it goes to the handler, marked
//!   [`DedupOutcome::StoreUnavailable`] in [`DeliveryMetadata::dedup`](crate::DeliveryMetadata::dedup),
//!   or, with [`Dedup::reject_when_unavailable`], is answered `503 dedup_unavailable`.
//! - **When settling fails after a 2xx**, the answer stays the handler's 2xx (the work is
//!   done); the key is not recorded as delivered, so a later copy may be handled again once the
//!   claim is released or its lease runs out.
//!
//! [`Dedup::pass_through`] forwards duplicates instead, marked in
//! [`DeliveryMetadata::dedup`](crate::DeliveryMetadata::dedup).

mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::future::Ready;

pub use key::{DedupKey, EventKeys, KeyFn};
pub use memory::{MemoryLease, MemoryStore};
#[cfg(feature = "redis")]
pub use redis::{RedisLease, RedisStore};
pub use store::{Claim, DedupStore, Lease, StoreError};

use crate::event::WebhookEvent;

/// What de-duplication made of a delivery that reached the handler, in
/// [`DeliveryMetadata::dedup`](crate::DeliveryMetadata::dedup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupOutcome {
    /// No de-duplication policy is configured.
    #[default]
    Off,
    /// The first copy of this occurrence: this delivery holds the claim.
    New,
    /// Handled before; forwarded because of [`Dedup::pass_through`].
    Duplicate,
    /// Being handled by another delivery right now; forwarded because of
    /// [`Dedup::pass_through`].
    InFlight,
    /// The store could not answer; forwarded so that the delivery is not lost. It may be a
    /// duplicate.
    StoreUnavailable,
}

mod sealed {
    pub trait Sealed {}
}

/// How the middleware de-duplicates: [`NoDedup`] (the default) or a [`Dedup`] policy.
///
/// Sealed: configure [`Dedup`] instead, with your own [`DedupStore`] if needed.
pub trait DedupPolicy: Clone + sealed::Sealed {
    /// The claim a new delivery holds.
    type Lease: Lease;
    /// The store's answer to a claim.
    type ClaimFuture: std::future::Future<Output = Result<Claim<Self::Lease>, StoreError>>;

    /// The claim of `event` in the store; `None` when the policy does not de-duplicate.
    fn claim(&self, event: &WebhookEvent) -> Option<Self::ClaimFuture>;

    /// Whether duplicates reach the handler (marked) instead of being answered.
    fn pass_through(&self) -> bool;

    /// Whether a store that cannot answer gets `503` instead of the handler.
    fn reject_when_unavailable(&self) -> bool;
}

/// No de-duplication: every verified delivery reaches the handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDedup;

/// The lease of [`NoDedup`], which never claims anything.
#[derive(Debug)]
pub enum NoLease {}

impl Lease for NoLease {
    type SettleFuture = Ready<Result<(), StoreError>>;

    fn settle(self, _delivered: bool) -> Self::SettleFuture {
        match self {}
    }
}

impl sealed::Sealed for NoDedup {}

impl DedupPolicy for NoDedup {
    type Lease = NoLease;
    type ClaimFuture = Ready<Result<Claim<NoLease>, StoreError>>;

    fn claim(&self, _event: &WebhookEvent) -> Option<Self::ClaimFuture> {
        None
    }

    fn pass_through(&self) -> bool {
        true
    }

    fn reject_when_unavailable(&self) -> bool {
        false
    }
}

/// A de-duplication policy: a store, how keys are derived, and what happens to duplicates.
#[derive(Clone, Debug)]
pub struct Dedup<St, K = EventKeys> {
    store: St,
    keys: K,
    pass_through: bool,
    reject_when_unavailable: bool,
}

impl<St: DedupStore> Dedup<St> {
    /// De-duplicates with `store` and [`EventKeys::default`] (one copy per occurrence,
    /// whichever org phone it came through).
    pub fn new(store: St) -> Self {
        Dedup { store, keys: EventKeys::default(), pass_through: false, reject_when_unavailable: false }
    }
}

impl<St, K> Dedup<St, K> {
    /// Derives keys with `keys` instead: [`EventKeys::per_phone`], or any
    /// `Fn(&WebhookEvent) -> DedupKey`.
    pub fn keys<K2: KeyFn>(self, keys: K2) -> Dedup<St, K2> {
        Dedup {
            store: self.store,
            keys,
            pass_through: self.pass_through,
            reject_when_unavailable: self.reject_when_unavailable,
        }
    }

    /// Forwards duplicates to the handler, marked in
    /// [`DeliveryMetadata::dedup`](crate::DeliveryMetadata::dedup), instead of answering them.
    pub fn pass_through(mut self, pass_through: bool) -> Self {
        self.pass_through = pass_through;
        self
    }

    /// Answers `503 dedup_unavailable` when the store cannot answer, instead of handing the
    /// delivery to the handler (the default: a copy handled twice beats a delivery lost).
    /// For apps that would rather rely on Periskope's retry, whose schedule is undocumented.
    pub fn reject_when_unavailable(mut self, reject: bool) -> Self {
        self.reject_when_unavailable = reject;
        self
    }
}

impl<St, K> sealed::Sealed for Dedup<St, K> {}

impl<St: DedupStore, K: KeyFn> DedupPolicy for Dedup<St, K> {
    type Lease = St::Lease;
    type ClaimFuture = St::ClaimFuture;

    fn claim(&self, event: &WebhookEvent) -> Option<Self::ClaimFuture> {
        Some(self.store.claim(&self.keys.key(event)))
    }

    fn pass_through(&self) -> bool {
        self.pass_through
    }

    fn reject_when_unavailable(&self) -> bool {
        self.reject_when_unavailable
    }
}
