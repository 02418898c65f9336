//! Rate limiting with GCRA (the generic cell rate algorithm): each key has a theoretical
//! arrival time; a request is allowed while that time is less than a burst ahead of now.
//! One small implementation, run in memory or, with `REDIS_URL`, as a Lua script in Redis so
//! every gateway instance shares the counters. When Redis fails the gateway keeps limiting
//! with its local counters and says so in its logs and metrics.
//!
//! Written here rather than taken from `governor` so that the in-memory and the Redis limiter
//! are the same arithmetic (a request allowed by one is allowed by the other) and both report
//! what the `RateLimit-*` headers need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use kit::metrics::Metrics;

use crate::config::Quota;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// For a refused request: until it would be allowed.
    pub retry_after: Duration,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The GCRA step: given the stored theoretical arrival time (µs), decide and return the new
/// one. Shared by the local limiter and (transcribed) by the Redis script.
fn gcra(stored_tat: u64, now: u64, quota: Quota) -> (Decision, u64) {
    let interval = (60_000_000 / quota.per_minute.max(1) as u64).max(1);
    let burst = quota.burst.max(1) as u64;
    let tolerance = interval * (burst - 1);
    let tat = stored_tat.max(now);
    if tat - now > tolerance {
        let retry_after = Duration::from_micros(tat - now - tolerance);
        let decision = Decision {
            allowed: false,
            limit: quota.burst,
            remaining: 0,
            reset: Duration::from_micros(tat - now),
            retry_after,
        };
        return (decision, stored_tat);
    }
    let new_tat = tat + interval;
    let used = new_tat - now;
    let remaining = ((interval * burst).saturating_sub(used) / interval) as u32;
    let decision = Decision {
        allowed: true,
        limit: quota.burst,
        remaining,
        reset: Duration::from_micros(used),
        retry_after: Duration::ZERO,
    };
    (decision, new_tat)
}

/// Counters in this process.
#[derive(Default)]
pub struct LocalLimiter {
    tats: DashMap<String, u64>,
}

impl LocalLimiter {
    pub fn check(&self, key: &str, quota: Quota) -> Decision {
        let now = now_micros();
        let mut entry = self.tats.entry(key.to_string()).or_insert(0);
        let (decision, tat) = gcra(*entry, now, quota);
        *entry = tat;
        decision
    }

    /// Forgets keys whose buckets are full again; they behave exactly like unknown keys.
    pub fn sweep(&self) {
        let now = now_micros();
        self.tats.retain(|_, tat| *tat > now);
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

/// The same algorithm in Redis. KEYS[1] = key; ARGV = now µs, interval µs, burst.
const GCRA_LUA: &str = r#"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tolerance = interval * (burst - 1)
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = math.max(stored, now)
if tat - now > tolerance then
  return {0, 0, tat - now, tat - now - tolerance}
end
local new_tat = tat + interval
local used = new_tat - now
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(used / 1000) + 1000)
return {1, math.floor((interval * burst - used) / interval), used, 0}
"#;

pub struct RedisLimiter {
    manager: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("bad REDIS_URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(200))
            .set_number_of_retries(1);
        let manager = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        Ok(RedisLimiter { manager, script: redis::Script::new(GCRA_LUA), prefix: prefix.to_string() })
    }

    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, String> {
        let interval = (60_000_000 / quota.per_minute.max(1) as u64).max(1);
        let mut conn = self.manager.clone();
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(now_micros())
            .arg(interval)
            .arg(quota.burst.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.burst,
            remaining: remaining.max(0) as u32,
            reset: Duration::from_micros(reset_us.max(0) as u64),
            retry_after: Duration::from_micros(retry_us.max(0) as u64),
        })
    }

    pub fn connection(&self) -> redis::aio::ConnectionManager {
        self.manager.clone()
    }
}

/// How often a gateway whose Redis failed checks whether it answers again.
const REDIS_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The limiter the gateway uses: Redis when configured and answering, local otherwise.
pub struct Limiter {
    local: LocalLimiter,
    /// Set once Redis answers; a gateway that starts while Redis is down keeps trying.
    redis: std::sync::OnceLock<RedisLimiter>,
    redis_configured: bool,
    degraded: AtomicBool,
    last_warning: std::sync::Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl Limiter {
    /// A limiter that uses Redis at `redis_url` when given (connecting in the background
    /// until it answers) and its own counters otherwise.
    pub fn new(redis_url: Option<String>, redis_prefix: String, metrics: Metrics) -> Arc<Self> {
        let limiter = Arc::new(Limiter {
            local: LocalLimiter::default(),
            redis: std::sync::OnceLock::new(),
            redis_configured: redis_url.is_some(),
            degraded: AtomicBool::new(redis_url.is_some()),
            last_warning: std::sync::Mutex::new(None),
            metrics,
        });
        if let Some(url) = redis_url {
            let weak = Arc::downgrade(&limiter);
            tokio::spawn(async move {
                loop {
                    match RedisLimiter::connect(&url, &redis_prefix).await {
                        Ok(redis) => {
                            let Some(l) = weak.upgrade() else { break };
                            let _ = l.redis.set(redis);
                            l.degraded.store(false, Ordering::Relaxed);
                            l.metrics.record(|| metrics::gauge!("rate_limit_shared").set(1.0));
                            tracing::info!("rate limits are shared through Redis");
                            break;
                        }
                        Err(e) => {
                            let Some(l) = weak.upgrade() else { break };
                            l.degrade(&e);
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
        // While Redis is failing, requests do not wait on it: they are limited locally at
        // once, and this probe alone finds out when Redis answers again.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDIS_PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { break };
                if !l.degraded.load(Ordering::Relaxed) {
                    continue;
                }
                let Some(redis) = l.redis.get() else { continue };
                let mut conn = redis.connection();
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() && l.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: rate limits are shared across gateways");
                    l.metrics.record(|| metrics::gauge!("rate_limit_shared").set(1.0));
                }
            }
        });
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { break };
                l.local.sweep();
            }
        });
        limiter
    }

    pub fn shared(&self) -> bool {
        self.redis.get().is_some() && !self.degraded.load(Ordering::Relaxed)
    }

    pub fn redis_configured(&self) -> bool {
        self.redis_configured
    }

    /// The Redis connection, once there is one (for revocation broadcasts).
    pub fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        self.redis.get().map(RedisLimiter::connection)
    }

    pub async fn check(&self, key: &str, quota: Quota) -> Decision {
        if let Some(redis) = self.redis.get()
            && !self.degraded.load(Ordering::Relaxed)
        {
            match redis.check(key, quota).await {
                Ok(decision) => return decision,
                Err(e) => self.degrade(&e),
            }
        }
        self.local.check(key, quota)
    }

    fn degrade(&self, error: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            self.metrics.record(|| metrics::gauge!("rate_limit_shared").set(0.0));
        }
        self.metrics.record(|| metrics::counter!("rate_limit_backend_errors_total").increment(1));
        let mut last = self.last_warning.lock().expect("warning lock");
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(error, "Redis is unavailable: limiting with this gateway's own counters");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_then_refills() {
        let quota = Quota { per_minute: 60, burst: 3 };
        let start = 1_000_000_000u64;
        let mut tat = 0;
        let mut allowed = Vec::new();
        for _ in 0..4 {
            let (d, t) = gcra(tat, start, quota);
            tat = t;
            allowed.push((d.allowed, d.remaining));
        }
        assert_eq!(allowed, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let (refused, _) = gcra(tat, start, quota);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // One interval later exactly one more is allowed.
        let (d, _) = gcra(tat, start + 1_000_000, quota);
        assert!(d.allowed);
    }

    #[test]
    fn local_keys_are_independent_and_swept() {
        let l = LocalLimiter::default();
        let quota = Quota { per_minute: 6000, burst: 1 };
        assert!(l.check("a", quota).allowed);
        assert!(!l.check("a", quota).allowed);
        assert!(l.check("b", quota).allowed);
        std::thread::sleep(Duration::from_millis(20));
        l.sweep();
        assert!(l.is_empty());
    }
}
