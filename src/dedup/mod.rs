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
//! also be replayed. With a [`Dedup`] policy the middleware derives a [`DedupKey`] per event
//! ([`EventKeys`]), claims it in a [`DedupStore`] before calling the handler, and records it as
//! delivered only when the handler answered 2xx:
//!
//! - a key already delivered is answered `200` with code `duplicate`, without the handler;
//! - a key whose first delivery is still being handled is answered `409` with code
//!   `duplicate_in_flight`, so the sender retries later rather than the delivery being lost;
//! - when the handler fails, the claim is released and a retry is handled normally.
//!
//! [`Dedup::pass_through`] forwards duplicates instead, marked in
//! [`DeliveryMetadata::duplicate`](crate::DeliveryMetadata::duplicate). The default store,
//! [`MemoryStore`], is bounded in entries and time; implement [`DedupStore`] to share one
//! store (e.g. Redis) between replicas.

mod key;
mod memory;
mod store;

use std::future::{Ready, ready};

pub use key::{DedupKey, EventKeys, KeyFn};
pub use memory::MemoryStore;
pub use store::{Claim, DedupStore};

use crate::event::WebhookEvent;

/// How the middleware de-duplicates: [`NoDedup`] (the default) or a [`Dedup`] policy.
///
/// Not meant to be implemented outside this crate; configure [`Dedup`] instead.
pub trait DedupPolicy: Clone {
    /// Whether the policy does anything; `false` skips it entirely.
    const ENABLED: bool;
    /// The store's claim.
    type ClaimFuture: std::future::Future<Output = Claim>;
    /// The store's settlement.
    type SettleFuture: std::future::Future<Output = ()>;

    /// The key of `event` and its claim in the store.
    fn claim(&self, event: &WebhookEvent) -> (DedupKey, Self::ClaimFuture);

    /// Records how the delivery of `key` ended.
    fn settle(&self, key: DedupKey, delivered: bool) -> Self::SettleFuture;

    /// Whether duplicates reach the handler (marked) instead of being answered.
    fn pass_through(&self) -> bool;
}

/// No de-duplication: every verified delivery reaches the handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDedup;

impl DedupPolicy for NoDedup {
    const ENABLED: bool = false;
    type ClaimFuture = Ready<Claim>;
    type SettleFuture = Ready<()>;

    fn claim(&self, _event: &WebhookEvent) -> (DedupKey, Self::ClaimFuture) {
        (DedupKey::new(String::new()), ready(Claim::New))
    }

    fn settle(&self, _key: DedupKey, _delivered: bool) -> Self::SettleFuture {
        ready(())
    }

    fn pass_through(&self) -> bool {
        true
    }
}

/// A de-duplication policy: a store, how keys are derived, and what happens to duplicates.
#[derive(Clone, Debug)]
pub struct Dedup<St, K = EventKeys> {
    store: St,
    keys: K,
    pass_through: bool,
}

impl<St: DedupStore> Dedup<St> {
    /// De-duplicates with `store` and [`EventKeys::default`] (one copy per message, whichever
    /// org phone it came through).
    pub fn new(store: St) -> Self {
        Dedup { store, keys: EventKeys::default(), pass_through: false }
    }
}

impl<St, K> Dedup<St, K> {
    /// Derives keys with `keys` instead: [`EventKeys::per_phone`], or any
    /// `Fn(&WebhookEvent) -> DedupKey`.
    pub fn keys<K2: KeyFn>(self, keys: K2) -> Dedup<St, K2> {
        Dedup { store: self.store, keys, pass_through: self.pass_through }
    }

    /// Forwards duplicates to the handler, marked in
    /// [`DeliveryMetadata::duplicate`](crate::DeliveryMetadata::duplicate), instead of
    /// answering them.
    pub fn pass_through(mut self, pass_through: bool) -> Self {
        self.pass_through = pass_through;
        self
    }
}

impl<St: DedupStore, K: KeyFn> DedupPolicy for Dedup<St, K> {
    const ENABLED: bool = true;
    type ClaimFuture = St::ClaimFuture;
    type SettleFuture = St::SettleFuture;

    fn claim(&self, event: &WebhookEvent) -> (DedupKey, Self::ClaimFuture) {
        let key = self.keys.key(event);
        let claim = self.store.claim(&key);
        (key, claim)
    }

    fn settle(&self, key: DedupKey, delivered: bool) -> Self::SettleFuture {
        self.store.settle(key, delivered)
    }

    fn pass_through(&self) -> bool {
        self.pass_through
    }
}
