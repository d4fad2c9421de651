//! [`RedisStore`]: a [`DedupStore`] shared by several replicas through Redis (feature `redis`).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::{Claim, DedupKey, DedupStore, Lease, StoreError};

/// Keeps claims and delivered keys in Redis, so that replicas behind a load balancer
/// de-duplicate together.
///
/// ```no_run
/// use std::time::Duration;
/// use periskope_webhook::PeriskopeWebhookLayer;
/// use periskope_webhook::dedup::{Dedup, RedisStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?
///     .prefix("myapp:periskope:")
///     .ttl(Duration::from_secs(24 * 60 * 60));
/// let layer = PeriskopeWebhookLayer::new("peri_demo-key").deduplicate(Dedup::new(store));
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
///
/// - A claim is one atomic `SET key token NX PX lease`; settling and releasing compare the token
///   first (Lua scripts), so only the claimant ends its claim.
/// - The claim is renewed every third of the lease while its delivery is being handled, so a
///   handler slower than the lease never lets a second copy in. When the process dies, the
///   claim ends when its lease runs out (default 60 s).
/// - A claim dropped unsettled (a cancelled request, a panicking handler) is released by a task
///   spawned on the current tokio runtime; without one, the lease ends it.
/// - Every call is bounded by a timeout (default 1 s); past it the store counts as unable to
///   answer (see [`StoreError`]).
/// - URLs are redis-rs's: `redis://user:password@host:port/db`; `rediss://` (TLS) works when your
///   build enables one of redis-rs's TLS features (e.g. `redis/tokio-rustls-comp`). Redis Cluster
///   is not supported.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    settings: Arc<Settings>,
}

#[derive(Clone, Debug)]
struct Settings {
    prefix: String,
    ttl: Duration,
    lease: Duration,
    timeout: Duration,
}

const DEFAULT_PREFIX: &str = "periskope:dedup:";
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The value of a delivered key; tokens are 32 hexadecimal digits, so never this.
const DELIVERED: &str = "delivered";

/// `SET NX PX` with the token; otherwise says what holds the key. 0: claimed, 1: delivered,
/// 2: in flight.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
          if redis.call('GET', KEYS[1]) == ARGV[3] then return 1 end
          return 2",
    )
});

/// Records the key as delivered if the claim is still this token's, or if the key is gone.
/// ARGV[3] is the TTL in milliseconds, `0` for none.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local held = redis.call('GET', KEYS[1])
          if held and held ~= ARGV[1] then return 0 end
          if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
          else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
          return 1",
    )
});

/// Deletes the key if the claim is still this token's.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
          return 0",
    )
});

/// Extends the lease if the claim is still this token's.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
          return 0",
    )
});

impl RedisStore {
    /// Connects to the Redis at `url` with a connection manager that reconnects by itself.
    pub async fn connect(url: &str) -> Result<RedisStore, RedisError> {
        let client = redis::Client::open(url)?;
        // No response timeout in the manager: every call is bounded by the store's own
        // [`RedisStore::timeout`], which a manager's shorter limit would cut.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            .set_response_timeout(None);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisStore::from_connection(connection))
    }

    /// A store over an existing connection manager (shared with the rest of the app).
    pub fn from_connection(connection: ConnectionManager) -> RedisStore {
        let settings = Settings {
            prefix: DEFAULT_PREFIX.to_owned(),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            timeout: DEFAULT_TIMEOUT,
        };
        RedisStore { connection, settings: Arc::new(settings) }
    }

    /// Prefixes every key with `prefix` (default `periskope:dedup:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.settings).prefix = prefix.into();
        self
    }

    /// Keeps delivered keys for `ttl` (default 24 hours; [`Duration::MAX`]: until Redis evicts
    /// them).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.settings).ttl = ttl;
        self
    }

    /// How long a claim outlives a process that died while handling it (default 60 s). A live
    /// handler renews it every third of this.
    pub fn lease(mut self, lease: Duration) -> Self {
        Arc::make_mut(&mut self.settings).lease = lease.max(Duration::from_millis(3));
        self
    }

    /// Bounds every call to Redis (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).timeout = timeout;
        self
    }
}

/// Milliseconds for `PX`, at least 1; `None` beyond what Redis accepts (no expiry).
fn millis(duration: Duration) -> Option<u64> {
    const MAX_PX: u64 = (i64::MAX / 2) as u64;
    u64::try_from(duration.as_millis()).ok().filter(|ms| *ms <= MAX_PX).map(|ms| ms.max(1))
}

/// A token no other claim holds: 128 bits from two randomly seeded hashers, over a process-wide
/// counter, the process id and the time.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = (
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    format!("{:016x}{:016x}", RandomState::new().hash_one(seed), RandomState::new().hash_one(seed))
}

async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(StoreError::new(error)),
        Err(_) => Err(StoreError::timed_out()),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

impl DedupStore for RedisStore {
    type Lease = RedisLease;
    type ClaimFuture = BoxFuture<Claim<RedisLease>>;

    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture {
        // The lease exists before the request is sent: if this future is dropped mid-call, its
        // Drop releases whatever the call may have claimed.
        let mut lease = RedisLease {
            store: self.clone(),
            key: format!("{}{}", self.settings.prefix, key.as_str()),
            token: new_token(),
            renewal: None,
            armed: true,
        };
        Box::pin(async move {
            let settings = Arc::clone(&lease.store.settings);
            let mut connection = lease.store.connection.clone();
            let lease_ms = millis(settings.lease).unwrap_or(u64::MAX / 4);
            let mut call = CLAIM.key(&lease.key);
            call.arg(&lease.token).arg(lease_ms).arg(DELIVERED);
            let answer: i64 = bounded(settings.timeout, call.invoke_async(&mut connection)).await?;
            match answer {
                0 => {
                    lease.renew_while_held();
                    Ok(Claim::New(lease))
                }
                other => {
                    // Not this token's claim: nothing to release.
                    lease.armed = false;
                    drop(lease);
                    Ok(if other == 1 { Claim::Delivered } else { Claim::InFlight })
                }
            }
        })
    }
}

/// The claim of a [`RedisStore`] key: renewed while held, released when dropped unsettled.
pub struct RedisLease {
    store: RedisStore,
    key: String,
    token: String,
    renewal: Option<AbortHandle>,
    /// Whether the claim may still be in Redis under this token.
    armed: bool,
}

impl RedisLease {
    fn renew_while_held(&mut self) {
        let Ok(runtime) = Handle::try_current() else { return };
        let settings = Arc::clone(&self.store.settings);
        let mut connection = self.store.connection.clone();
        let (key, token) = (self.key.clone(), self.token.clone());
        let task = runtime.spawn(async move {
            let lease_ms = millis(settings.lease).unwrap_or(u64::MAX / 4);
            loop {
                tokio::time::sleep(settings.lease / 3).await;
                let mut call = RENEW.key(&key);
                call.arg(&token).arg(lease_ms);
                // A failed renewal is retried at the next tick; a lost claim ends the task.
                if let Ok(0) = bounded::<i64>(settings.timeout, call.invoke_async(&mut connection)).await {
                    return;
                }
            }
        });
        self.renewal = Some(task.abort_handle());
    }
}

impl Lease for RedisLease {
    type SettleFuture = BoxFuture<()>;

    fn settle(mut self, delivered: bool) -> Self::SettleFuture {
        Box::pin(async move {
            let settings = Arc::clone(&self.store.settings);
            let mut connection = self.store.connection.clone();
            let done: Result<i64, StoreError> = if delivered {
                let ttl_ms = millis(settings.ttl).unwrap_or(0);
                let mut call = SETTLE.key(&self.key);
                call.arg(&self.token).arg(DELIVERED).arg(ttl_ms);
                bounded(settings.timeout, call.invoke_async(&mut connection)).await
            } else {
                let mut call = RELEASE.key(&self.key);
                call.arg(&self.token);
                bounded(settings.timeout, call.invoke_async(&mut connection)).await
            };
            // On failure the lease stays armed: dropping it tries a release once more.
            done.map(|_| self.armed = false)
        })
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if !self.armed {
            return;
        }
        let Ok(runtime) = Handle::try_current() else { return };
        let timeout = self.store.settings.timeout;
        let mut connection = self.store.connection.clone();
        let (key, token) = (std::mem::take(&mut self.key), std::mem::take(&mut self.token));
        runtime.spawn(async move {
            let mut call = RELEASE.key(&key);
            call.arg(&token);
            // Best effort: when Redis cannot be told, the lease ends the claim.
            let _ = bounded::<i64>(timeout, call.invoke_async(&mut connection)).await;
        });
    }
}

impl fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLease").field("armed", &self.armed).finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("settings", &self.settings).finish_non_exhaustive()
    }
}
