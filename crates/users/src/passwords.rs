//! Argon2id hashing off the async workers, with bounded concurrency: each hash takes ~19 MiB
//! and tens of milliseconds of one core, so a login flood must queue (briefly) or be refused,
//! never stall the runtime or exhaust memory.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::domain::Password;
use crate::error::{Result, UserFailure, UsersError};

#[derive(Debug, Clone, Copy)]
pub struct HashingConfig {
    /// Argon2 memory cost in KiB (OWASP: 19456 with t=2, p=1).
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes run at once.
    pub concurrency: usize,
    /// How long a request waits for a hashing slot before it is told to come back later.
    pub queue_timeout: Duration,
}

impl Default for HashingConfig {
    fn default() -> Self {
        HashingConfig {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            queue_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password, checked against when the account does not exist so that
    /// "no such user" costs the same time as "wrong password".
    decoy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(config: HashingConfig) -> Result<Self> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| UsersError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(PasswordHasher {
            params,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queue_timeout: config.queue_timeout,
            decoy: Arc::new(OnceCell::new()),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce(Argon2<'static>) -> T + Send + 'static) -> Result<T> {
        self.run_waiting(self.queue_timeout, work).await
    }

    async fn run_waiting<T: Send + 'static>(
        &self,
        queue_timeout: Duration,
        work: impl FnOnce(Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T> {
        // In a trace: the wait for a hashing slot and the hashing itself.
        let run = async move {
            let permit = tokio::time::timeout(queue_timeout, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| UsersError::Domain(UserFailure::Busy))?
                .map_err(|_| UsersError::Domain(UserFailure::Busy))?;
            let argon2 = self.argon2();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                work(argon2)
            })
            .await
            .map_err(|e| UsersError::Internal(format!("hashing task: {e}")))
        };
        tracing::Instrument::instrument(run, kit::traces::internal("users", "users argon2")).await
    }

    pub async fn hash(&self, password: &Password) -> Result<String> {
        self.hash_waiting(password, self.queue_timeout).await
    }

    /// For start-up work (demo data), which may wait for a slot as long as it takes.
    pub async fn hash_at_startup(&self, password: &Password) -> Result<String> {
        self.hash_waiting(password, Duration::from_secs(300)).await
    }

    async fn hash_waiting(&self, password: &Password, queue_timeout: Duration) -> Result<String> {
        let password = password.expose().to_string();
        self.run_waiting(queue_timeout, move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| UsersError::Internal(format!("hashing: {e}")))
        })
        .await?
    }

    /// Whether `password` matches `stored`. Hashes made with other parameters still verify
    /// (the parameters travel inside the PHC string).
    pub async fn verify(&self, password: &str, stored: &str) -> Result<bool> {
        let password = password.to_string();
        let stored = stored.to_string();
        self.run(move |argon2| match PasswordHash::new(&stored) {
            Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        })
        .await
    }

    /// Spends the time of a real verification and fails.
    pub async fn verify_decoy(&self, password: &str) -> Result<bool> {
        let decoy = self
            .decoy
            .get_or_try_init(|| async {
                let random: String = uuid::Uuid::new_v4().to_string();
                self.hash(&Password::unchecked(&random)).await
            })
            .await?
            .clone();
        self.verify(password, &decoy).await?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(HashingConfig { memory_kib: 1024, iterations: 1, ..HashingConfig::default() }).unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let h = fast();
        let p = Password::unchecked("correct horse");
        let a = h.hash(&p).await.unwrap();
        let b = h.hash(&p).await.unwrap();
        assert_ne!(a, b, "same password, same hash: no salt?");
        assert!(a.starts_with("$argon2id$"));
        assert!(h.verify("correct horse", &a).await.unwrap());
        assert!(!h.verify("wrong horse", &a).await.unwrap());
        assert!(!h.verify("x", "not a hash").await.unwrap());
        assert!(!h.verify_decoy("anything").await.unwrap());
    }

    #[tokio::test]
    async fn saturation_is_an_error_not_a_hang() {
        let h = PasswordHasher::new(HashingConfig {
            memory_kib: 1024,
            iterations: 1,
            concurrency: 1,
            queue_timeout: Duration::from_millis(10),
            ..HashingConfig::default()
        })
        .unwrap();
        let _held = h.slots.clone().acquire_owned().await.unwrap();
        assert!(matches!(h.hash(&Password::unchecked("abcdefgh")).await, Err(UsersError::Domain(UserFailure::Busy))));
    }
}
