//! [`MemoryStore`]: an in-process [`DedupStore`] bounded in entries and time.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Ready, ready};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Claim, DedupKey, DedupStore, Lease, StoreError};

/// Keeps keys in this process's memory: at most `capacity` of them, each delivered key for
/// `ttl`.
///
/// - A claim lives exactly as long as its delivery: it is released when the handler fails,
///   when the response future is dropped and when the handler panics, so it needs no lease.
/// - Beyond `capacity`, the oldest keys go first (oldest within a shard: large stores are
///   split into up to 16 shards by key hash, so that concurrent deliveries do not wait on one
///   lock). An evicted claim is forgotten; its delivery can still settle it as delivered.
/// - Memory is bounded by `capacity` whatever the mix of successes, failures and expiries.
/// - `ttl` may be [`Duration::MAX`]: keys are then forgotten only beyond `capacity`.
///
/// Clones share one table. For several replicas behind a load balancer, each has its own
/// table and a duplicate can reach two replicas: use a shared store there
/// (`RedisStore`, with the `redis` feature).
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    capacity: usize,
    ttl: Duration,
}

struct Shard {
    entries: HashMap<DedupKey, Entry>,
    /// Each key once, by the sequence number of its latest write: the oldest first.
    order: BTreeMap<u64, DedupKey>,
    next_sequence: u64,
    capacity: usize,
}

struct Entry {
    /// The write that made this entry; for a claim, the token its lease holds.
    sequence: u64,
    state: State,
}

enum State {
    InFlight,
    /// `None`: the TTL is beyond what the clock can represent; never expires.
    Delivered {
        until: Option<Instant>,
    },
}

/// Stores at or below this many keys use one shard, so that eviction is strictly oldest first.
const KEYS_PER_SHARD: usize = 1024;
const MAX_SHARDS: usize = 16;

impl MemoryStore {
    /// A store of at most `capacity` keys, each delivered key kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        let count = (capacity / KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let shards = (0..count)
            .map(|index| {
                // The first `capacity % count` shards take one more key: the sum is `capacity`.
                let capacity = capacity / count + usize::from(index < capacity % count);
                Mutex::new(Shard {
                    entries: HashMap::with_capacity(capacity.min(KEYS_PER_SHARD) + 1),
                    order: BTreeMap::new(),
                    next_sequence: 0,
                    capacity,
                })
            })
            .collect();
        MemoryStore { shared: Arc::new(Shared { shards, hasher: RandomState::new(), capacity, ttl }) }
    }

    /// The number of keys held (claimed or delivered, not yet evicted; expired keys may count
    /// until a claim in their shard sweeps them).
    pub fn len(&self) -> usize {
        (0..self.shared.shards.len()).map(|index| self.shared.lock(index).entries.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    fn shard_of(&self, key: &DedupKey) -> usize {
        // Truncating the hash is fine: it only spreads keys over a few shards.
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A shard is consistent after every statement, so a panic elsewhere leaves it usable.
        self.shards[shard].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shard {
    /// Writes `key` as the newest entry and returns its sequence number.
    fn write(&mut self, key: DedupKey, state: State) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if let Some(previous) = self.entries.insert(key.clone(), Entry { sequence, state }) {
            self.order.remove(&previous.sequence);
        }
        self.order.insert(sequence, key);
        sequence
    }

    fn remove(&mut self, key: &DedupKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.sequence);
        }
    }

    /// Drops the expired keys at the front, then the oldest ones beyond capacity.
    fn evict(&mut self, now: Instant) {
        while let Some(entry) = self.order.first_key_value().and_then(|(_, key)| self.entries.get(key)) {
            let expired = matches!(entry.state, State::Delivered { until: Some(until) } if until <= now);
            if !expired && self.entries.len() <= self.capacity {
                break;
            }
            if let Some((_, key)) = self.order.pop_first() {
                self.entries.remove(&key);
            }
        }
    }
}

impl DedupStore for MemoryStore {
    type Lease = MemoryLease;
    type ClaimFuture = Ready<Result<Claim<MemoryLease>, StoreError>>;

    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture {
        let now = Instant::now();
        let shard = self.shared.shard_of(key);
        let mut table = self.shared.lock(shard);
        table.evict(now);
        let claim = match table.entries.get(key).map(|entry| &entry.state) {
            Some(State::InFlight) => Claim::InFlight,
            Some(State::Delivered { until }) if until.is_none_or(|until| until > now) => Claim::Delivered,
            _ => {
                let token = table.write(key.clone(), State::InFlight);
                table.evict(now);
                drop(table);
                Claim::New(MemoryLease {
                    shared: Arc::clone(&self.shared),
                    shard,
                    key: Some(key.clone()),
                    token,
                })
            }
        };
        ready(Ok(claim))
    }
}

/// The claim of a [`MemoryStore`] key; released when dropped unsettled.
pub struct MemoryLease {
    shared: Arc<Shared>,
    shard: usize,
    /// `None` once settled.
    key: Option<DedupKey>,
    token: u64,
}

impl MemoryLease {
    fn finish(&mut self, delivered: bool) {
        let Some(key) = self.key.take() else { return };
        let mut table = self.shared.lock(self.shard);
        let held = table.entries.get(&key).is_some_and(|entry| entry.sequence == self.token);
        if delivered {
            // An entry another delivery wrote since this claim was evicted stays as it is.
            if held || !table.entries.contains_key(&key) {
                let until = Instant::now().checked_add(self.shared.ttl);
                table.write(key, State::Delivered { until });
                table.evict(Instant::now());
            }
        } else if held {
            table.remove(&key);
        }
    }
}

impl Lease for MemoryLease {
    type SettleFuture = Ready<Result<(), StoreError>>;

    fn settle(mut self, delivered: bool) -> Self::SettleFuture {
        self.finish(delivered);
        ready(Ok(()))
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl fmt::Debug for MemoryLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLease").field("settled", &self.key.is_none()).finish_non_exhaustive()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.shared.capacity)
            .field("ttl", &self.shared.ttl)
            .field("shards", &self.shared.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn now<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => unreachable!("the memory store answers at once"),
        }
    }

    fn key(text: &str) -> DedupKey {
        DedupKey::new(text)
    }

    fn claim(store: &MemoryStore, name: &str) -> Claim<MemoryLease> {
        now(store.claim(&key(name))).expect("the memory store always answers")
    }

    fn lease(store: &MemoryStore, name: &str) -> MemoryLease {
        match claim(store, name) {
            Claim::New(lease) => lease,
            other => panic!("expected a new claim of {name}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_claim(store: &MemoryStore, name: &str, expected: &str) {
        let got = match claim(store, name) {
            Claim::New(_) => "new",
            Claim::Delivered => "delivered",
            Claim::InFlight => "in flight",
        };
        assert_eq!(got, expected, "claim of {name}");
    }

    #[test]
    fn a_key_is_new_then_in_flight_then_delivered() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        let held = lease(&store, "a");
        assert_claim(&store, "a", "in flight");
        now(held.settle(true)).unwrap();
        assert_claim(&store, "a", "delivered");
        assert_claim(&store, "b", "new");
    }

    #[test]
    fn a_failed_or_dropped_claim_is_released() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        now(lease(&store, "a").settle(false)).unwrap();
        drop(lease(&store, "a"));
        assert!(store.is_empty());
        assert_claim(&store, "a", "new");
    }

    #[test]
    fn only_the_holder_settles_its_claim() {
        // Capacity 1: claiming "b" evicts the claim on "a", which a second delivery then takes.
        let store = MemoryStore::new(1, Duration::from_secs(60));
        let evicted = lease(&store, "a");
        drop(lease(&store, "b"));
        let current = lease(&store, "a");
        now(evicted.settle(false)).unwrap();
        assert_claim(&store, "a", "in flight");
        drop(current);
        assert_claim(&store, "a", "new");
    }

    #[test]
    fn keys_expire_after_the_ttl_and_an_endless_ttl_works() {
        let store = MemoryStore::new(10, Duration::from_millis(30));
        now(lease(&store, "a").settle(true)).unwrap();
        assert_claim(&store, "a", "delivered");
        std::thread::sleep(Duration::from_millis(60));
        assert_claim(&store, "a", "new");

        let forever = MemoryStore::new(10, Duration::MAX);
        now(lease(&forever, "a").settle(true)).unwrap();
        assert_claim(&forever, "a", "delivered");
    }

    #[test]
    fn the_oldest_keys_go_beyond_capacity_and_records_stay_bounded() {
        let store = MemoryStore::new(3, Duration::from_secs(60));
        for name in ["a", "b", "c", "d"] {
            now(lease(&store, name).settle(true)).unwrap();
        }
        assert_eq!(store.len(), 3);
        assert_claim(&store, "a", "new");
        assert_claim(&store, "d", "delivered");
        for round in 0..1000 {
            let name = format!("k{}", round % 7);
            if let Claim::New(lease) = claim(&store, &name) {
                now(lease.settle(round % 3 == 0)).unwrap();
            }
            let shard = store.shared.lock(0);
            assert!(shard.entries.len() <= 3 && shard.order.len() == shard.entries.len());
        }
    }

    #[test]
    fn large_stores_are_sharded_within_their_capacity() {
        let store = MemoryStore::new(100_000, Duration::from_secs(60));
        assert_eq!(store.shared.shards.len(), MAX_SHARDS);
        let total: usize = (0..MAX_SHARDS).map(|index| store.shared.lock(index).capacity).sum();
        assert_eq!(total, 100_000);
    }
}
