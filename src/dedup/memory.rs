//! [`MemoryStore`]: an in-process [`DedupStore`] bounded in entries and time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Claim, DedupKey, DedupStore};

/// Keeps keys in this process's memory: at most `capacity` of them (the oldest go first), each
/// for `ttl` after it was claimed or delivered.
///
/// Clones share one table. For several replicas behind a load balancer, each has its own
/// table and a duplicate can reach two replicas: use a shared [`DedupStore`] there.
#[derive(Clone)]
pub struct MemoryStore {
    table: Arc<Mutex<Table>>,
    capacity: usize,
    ttl: Duration,
}

struct Table {
    entries: HashMap<DedupKey, Entry>,
    /// Keys in the order their entries were (re)written; a record whose generation no longer
    /// matches its entry is stale and skipped.
    order: VecDeque<(DedupKey, u64)>,
    next_generation: u64,
}

struct Entry {
    delivered: bool,
    expires: Instant,
    generation: u64,
}

impl MemoryStore {
    /// A store of at most `capacity` keys, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let table = Table { entries: HashMap::new(), order: VecDeque::new(), next_generation: 0 };
        MemoryStore { table: Arc::new(Mutex::new(table)), capacity: capacity.max(1), ttl }
    }

    /// The number of keys held (claimed or delivered, not yet expired or evicted).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement, so a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Table {
    fn write(&mut self, key: DedupKey, delivered: bool, expires: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.order.push_back((key.clone(), generation));
        self.entries.insert(key, Entry { delivered, expires, generation });
    }

    /// Drops expired entries and, beyond `capacity`, the oldest ones.
    fn evict(&mut self, now: Instant, capacity: usize) {
        while let Some((key, generation)) = self.order.front() {
            let current = self.entries.get(key).filter(|entry| entry.generation == *generation);
            match current {
                None => {}
                Some(entry) if entry.expires <= now || self.entries.len() > capacity => {
                    self.entries.remove(key);
                }
                Some(_) => break,
            }
            self.order.pop_front();
        }
    }
}

impl DedupStore for MemoryStore {
    type ClaimFuture = Ready<Claim>;
    type SettleFuture = Ready<()>;

    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture {
        let now = Instant::now();
        let mut table = self.lock();
        table.evict(now, self.capacity);
        let claim = match table.entries.get(key) {
            Some(entry) if entry.expires > now && entry.delivered => Claim::Delivered,
            Some(entry) if entry.expires > now => Claim::InFlight,
            _ => {
                table.write(key.clone(), false, now + self.ttl);
                table.evict(now, self.capacity);
                Claim::New
            }
        };
        ready(claim)
    }

    fn settle(&self, key: DedupKey, delivered: bool) -> Self::SettleFuture {
        let now = Instant::now();
        let mut table = self.lock();
        if delivered {
            table.write(key, true, now + self.ttl);
            table.evict(now, self.capacity);
        } else {
            table.entries.remove(&key);
        }
        ready(())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
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

    #[test]
    fn a_key_is_new_then_in_flight_then_delivered() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        assert_eq!(now(store.claim(&key("a"))), Claim::New);
        assert_eq!(now(store.claim(&key("a"))), Claim::InFlight);
        now(store.settle(key("a"), true));
        assert_eq!(now(store.claim(&key("a"))), Claim::Delivered);
        assert_eq!(now(store.claim(&key("b"))), Claim::New);
    }

    #[test]
    fn a_failed_delivery_releases_its_key() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        assert_eq!(now(store.claim(&key("a"))), Claim::New);
        now(store.settle(key("a"), false));
        assert_eq!(now(store.claim(&key("a"))), Claim::New);
    }

    #[test]
    fn keys_expire_after_the_ttl() {
        let store = MemoryStore::new(10, Duration::from_millis(30));
        now(store.claim(&key("a")));
        now(store.settle(key("a"), true));
        assert_eq!(now(store.claim(&key("a"))), Claim::Delivered);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(now(store.claim(&key("a"))), Claim::New);
    }

    #[test]
    fn the_oldest_keys_go_beyond_capacity() {
        let store = MemoryStore::new(3, Duration::from_secs(60));
        for name in ["a", "b", "c", "d"] {
            now(store.claim(&key(name)));
            now(store.settle(key(name), true));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(now(store.claim(&key("a"))), Claim::New);
        assert_eq!(now(store.claim(&key("d"))), Claim::Delivered);
        for round in 0..1000 {
            let name = format!("k{round}");
            now(store.claim(&key(&name)));
            now(store.settle(key(&name), true));
        }
        assert!(store.len() <= 3);
        assert!(store.lock().order.len() <= 2 * 3 + 1, "stale records are bounded too");
    }
}
