//! Sign-in throttling that slows guessing without ever locking the owner out:
//!
//! - **Per address**: after `max_failures_per_address` failures within the window, that
//!   address is refused (429 with Retry-After) until the window ends, before any password is
//!   checked, so a guesser also costs us no hashing. Only the guesser's address is refused.
//! - **Per account** (the account itself, however it was named, username or e-mail): after
//!   `max_failures_per_account` failures within the window, every further attempt on it waits
//!   before its password is checked, `slowdown_base` at first and twice as long with each new
//!   failure, up to `slowdown_max`. It is never refused: the right password still signs in, a
//!   little later, and clears the count. A guesser spread over many addresses is slowed to a
//!   few guesses per account and address; the owner is at worst kept waiting `slowdown_max`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
    pub slowdown_base: Duration,
    pub slowdown_max: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(15 * 60),
            slowdown_base: Duration::from_millis(500),
            slowdown_max: Duration::from_secs(5),
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

    /// `Err(seconds)` when the address must wait before trying again.
    pub fn check_address(&self, address: IpAddr) -> Result<(), u64> {
        match self.failures(&Key::Address(address)) {
            Some((failures, elapsed)) if failures >= self.config.max_failures_per_address => {
                Err((self.config.window - elapsed).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// How long an attempt on `account` (a stable key of the account) waits before its
    /// password is checked: nothing until the account has had its share of failures.
    pub fn account_delay(&self, account: &str) -> Duration {
        let max = self.config.max_failures_per_account;
        match self.failures(&Key::Account(account.to_string())) {
            Some((failures, _)) if failures >= max => {
                let doublings = (failures - max).min(20);
                self.config.slowdown_base.saturating_mul(1 << doublings).min(self.config.slowdown_max)
            }
            _ => Duration::ZERO,
        }
    }

    /// The failures counted under `key` in its current window, and the window's age.
    fn failures(&self, key: &Key) -> Option<(u32, Duration)> {
        let w = self.windows.get(key)?;
        let elapsed = w.started.elapsed();
        (elapsed < self.config.window).then_some((w.failures, elapsed))
    }

    pub fn record_failure(&self, account: &str, address: IpAddr) {
        if self.windows.len() >= MAX_TRACKED {
            let window = self.config.window;
            self.windows.retain(|_, w| w.started.elapsed() < window);
        }
        for key in [Key::Account(account.to_string()), Key::Address(address)] {
            let mut entry = self.windows.entry(key).or_insert(Window { failures: 0, started: Instant::now() });
            if entry.started.elapsed() >= self.config.window {
                entry.failures = 0;
                entry.started = Instant::now();
            }
            entry.failures += 1;
        }
    }

    pub fn record_success(&self, account: &str) {
        self.windows.remove(&Key::Account(account.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config(per_account: u32, per_address: u32, window: Duration) -> ThrottleConfig {
        ThrottleConfig {
            max_failures_per_account: per_account,
            max_failures_per_address: per_address,
            window,
            slowdown_base: Duration::from_millis(100),
            slowdown_max: Duration::from_millis(350),
        }
    }

    /// Issue 16, finding 5: five wrong passwords locked the owner out, right password or not.
    #[test]
    fn an_account_is_slowed_never_locked_and_its_delay_grows_to_the_cap() {
        let t = LoginThrottle::new(config(3, 100, Duration::from_millis(300)));
        for _ in 0..3 {
            assert_eq!(t.account_delay("id:bob"), Duration::ZERO);
            t.record_failure("id:bob", ip("10.0.0.1"));
        }
        assert_eq!(t.account_delay("id:bob"), Duration::from_millis(100));
        t.record_failure("id:bob", ip("10.0.0.2"));
        assert_eq!(t.account_delay("id:bob"), Duration::from_millis(200));
        t.record_failure("id:bob", ip("10.0.0.3"));
        assert_eq!(t.account_delay("id:bob"), Duration::from_millis(350), "capped");
        assert!(t.check_address(ip("10.0.0.1")).is_ok(), "no address is refused for the account's failures");
        assert_eq!(t.account_delay("id:alice"), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(t.account_delay("id:bob"), Duration::ZERO, "the window ended");
    }

    #[test]
    fn an_address_is_refused_across_accounts() {
        let t = LoginThrottle::new(config(100, 2, Duration::from_secs(60)));
        t.record_failure("id:a", ip("10.0.0.9"));
        t.record_failure("id:b", ip("10.0.0.9"));
        assert!(t.check_address(ip("10.0.0.9")).unwrap_err() >= 1);
        assert!(t.check_address(ip("10.0.0.8")).is_ok());
    }

    #[test]
    fn success_clears_the_account() {
        let t = LoginThrottle::new(config(1, 100, Duration::from_secs(60)));
        t.record_failure("id:bob", ip("10.0.0.1"));
        assert!(t.account_delay("id:bob") > Duration::ZERO);
        t.record_success("id:bob");
        assert_eq!(t.account_delay("id:bob"), Duration::ZERO);
    }
}
