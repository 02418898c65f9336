//! Sign-in throttling: after too many failures for one account or from one address within a
//! window, further attempts are refused with 429 and Retry-After until the window ends, before
//! any password is checked (so a guessing attack also costs us no hashing).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

struct Window {
    failures: u32,
    started: Instant,
}

/// Failure windows are counted per process; with several users instances an attacker gets
/// each instance's allowance, which is still bounded.
pub struct LoginThrottle {
    config: ThrottleConfig,
    windows: DashMap<Key, Window>,
}

/// Beyond this many tracked keys, stale windows are swept before adding more.
const MAX_TRACKED: usize = 100_000;

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle { config, windows: DashMap::new() }
    }

    /// `Err(seconds)` when the account or the address must wait before trying again.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), u64> {
        let account_wait = self.wait(&Key::Account(account.to_lowercase()), self.config.max_failures_per_account);
        let address_wait = self.wait(&Key::Address(address), self.config.max_failures_per_address);
        match account_wait.max(address_wait) {
            0 => Ok(()),
            secs => Err(secs),
        }
    }

    fn wait(&self, key: &Key, max: u32) -> u64 {
        let Some(w) = self.windows.get(key) else {
            return 0;
        };
        let elapsed = w.started.elapsed();
        if elapsed >= self.config.window || w.failures < max {
            return 0;
        }
        (self.config.window - elapsed).as_secs().max(1)
    }

    pub fn record_failure(&self, account: &str, address: IpAddr) {
        if self.windows.len() >= MAX_TRACKED {
            let window = self.config.window;
            self.windows.retain(|_, w| w.started.elapsed() < window);
        }
        for key in [Key::Account(account.to_lowercase()), Key::Address(address)] {
            let mut entry = self.windows.entry(key).or_insert(Window { failures: 0, started: Instant::now() });
            if entry.started.elapsed() >= self.config.window {
                entry.failures = 0;
                entry.started = Instant::now();
            }
            entry.failures += 1;
        }
    }

    pub fn record_success(&self, account: &str) {
        self.windows.remove(&Key::Account(account.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn account_is_locked_after_max_failures_then_released() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_failures_per_account: 3,
            max_failures_per_address: 100,
            window: Duration::from_millis(200),
        });
        for _ in 0..3 {
            assert!(t.check("Bob", ip("10.0.0.1")).is_ok());
            t.record_failure("bob", ip("10.0.0.1"));
        }
        let wait = t.check("bob", ip("10.0.0.2")).unwrap_err();
        assert!(wait >= 1);
        assert!(t.check("alice", ip("10.0.0.1")).is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("bob", ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn address_is_locked_across_accounts() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_failures_per_account: 100,
            max_failures_per_address: 2,
            window: Duration::from_secs(60),
        });
        t.record_failure("a", ip("10.0.0.9"));
        t.record_failure("b", ip("10.0.0.9"));
        assert!(t.check("c", ip("10.0.0.9")).is_err());
        assert!(t.check("c", ip("10.0.0.8")).is_ok());
    }

    #[test]
    fn success_clears_the_account() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_failures_per_account: 1,
            max_failures_per_address: 100,
            window: Duration::from_secs(60),
        });
        t.record_failure("bob", ip("10.0.0.1"));
        assert!(t.check("bob", ip("10.0.0.1")).is_err());
        t.record_success("bob");
        assert!(t.check("bob", ip("10.0.0.1")).is_ok());
    }
}
