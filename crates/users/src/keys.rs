//! The token signing keys: a ring of Ed25519 keys kept in one PEM file (generated in the data
//! directory on first start, or given by configuration) of which the first signs and every one
//! is published in the JWKS; or the shared HS256 secret.
//!
//! Rotation (`ordermesh keys rotate`) writes the ring again with a fresh key first and the old
//! signing key behind it, marked with when it retired. The service reads the file again when it
//! changes, so it signs with the new key within a reload interval while tokens signed with the
//! old one keep verifying until they expire; a later rotation drops keys that retired longer ago
//! than any token lives.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::auth::{Claims, Jwk, JwkSet, JwtAlgorithm, JwtSettings, KeySource};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::error::{Result, UsersError};

/// Where the Ed25519 private keys come from.
#[derive(Debug, Clone)]
pub enum KeyConfig {
    /// PKCS#8 PEM text given directly (`JWT_PRIVATE_KEY`); one key or a ring.
    Pem(String),
    /// A PEM file, read again when it changes; generated there on first start when `create`.
    File { path: PathBuf, create: bool },
}

/// The line that marks the key after it as retired, with the Unix second it stopped signing.
const RETIRED_MARK: &str = "# retired ";

/// One key of a ring: its PKCS#8 document, and when it stopped signing (`None` for the key that
/// signs).
#[derive(Clone)]
struct RingKey {
    der: Vec<u8>,
    retired_at: Option<i64>,
}

/// Every key tokens may still be signed with, the signing one first.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

/// What a rotation did, by key id.
#[derive(Debug)]
pub struct Rotation {
    pub new_kid: String,
    /// Still published, so tokens they signed keep verifying.
    pub kept: Vec<String>,
    /// Retired longer ago than any token lives.
    pub dropped: Vec<String>,
}

impl KeyRing {
    /// Reads PEM text: one or more `PRIVATE KEY` blocks, each optionally preceded by a
    /// `# retired <unix seconds>` line. Other text between blocks is ignored, as PEM allows.
    pub fn parse(text: &str) -> Result<KeyRing> {
        let invalid = |why: &str| UsersError::Internal(format!("the signing key file is not valid: {why}"));
        let mut keys = Vec::new();
        let (mut retired_at, mut body): (Option<i64>, Option<String>) = (None, None);
        for line in text.lines().map(str::trim) {
            if let Some(secs) = line.strip_prefix(RETIRED_MARK) {
                let secs = secs.split_whitespace().next().unwrap_or_default();
                retired_at = Some(secs.parse().map_err(|_| invalid("a `# retired` line without a Unix time"))?);
            } else if line == "-----BEGIN PRIVATE KEY-----" {
                body = Some(String::new());
            } else if line == "-----END PRIVATE KEY-----" {
                let b64 = body.take().ok_or_else(|| invalid("an END line without its BEGIN"))?;
                let der = STANDARD.decode(b64).map_err(|_| invalid("a key is not base64 PKCS#8"))?;
                public_jwk(&der)?;
                keys.push(RingKey { der, retired_at: retired_at.take() });
            } else if let Some(b) = body.as_mut() {
                b.push_str(line);
            }
        }
        if body.is_some() {
            return Err(invalid("a key block is not closed"));
        }
        if keys.is_empty() {
            return Err(invalid("it holds no `PRIVATE KEY` block"));
        }
        if keys[0].retired_at.is_some() {
            return Err(invalid("the first key, the one that signs, is marked as retired"));
        }
        Ok(KeyRing { keys })
    }

    /// A ring of one fresh key.
    pub fn generate() -> Result<KeyRing> {
        Ok(KeyRing { keys: vec![RingKey { der: generate_key()?, retired_at: None }] })
    }

    pub fn to_pem(&self) -> String {
        let mut out = String::from(
            "# ordermesh token signing keys: the first signs, every one verifies.\n\
             # `ordermesh keys rotate` adds a key; keys retired longer ago than a token lives are dropped.\n",
        );
        for key in &self.keys {
            if let Some(at) = key.retired_at {
                out.push_str(&format!("{RETIRED_MARK}{at}\n"));
            }
            out.push_str(&der_to_pem(&key.der));
        }
        out
    }

    /// A fresh key signs from now on; the one that signed until now stays published, retired
    /// at `now`; keys retired more than `longest_token_life` ago go.
    pub fn rotate(&mut self, now: i64, longest_token_life: Duration) -> Result<Rotation> {
        let life = longest_token_life.as_secs() as i64;
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        let mut next = vec![RingKey { der: generate_key()?, retired_at: None }];
        for mut key in std::mem::take(&mut self.keys) {
            let retired_at = *key.retired_at.get_or_insert(now);
            let kid = public_jwk(&key.der)?.kid;
            if now - retired_at > life {
                dropped.push(kid);
            } else {
                kept.push(kid);
                next.push(key);
            }
        }
        self.keys = next;
        Ok(Rotation { new_kid: self.signing_kid()?, kept, dropped })
    }

    pub fn signing_kid(&self) -> Result<String> {
        Ok(public_jwk(&self.keys[0].der)?.kid)
    }

    fn jwks(&self) -> Result<JwkSet> {
        Ok(JwkSet { keys: self.keys.iter().map(|k| public_jwk(&k.der)).collect::<Result<_>>()? })
    }
}

/// The published half of a key; its id is a digest of the public key, so the same key always
/// has the same id.
fn public_jwk(der: &[u8]) -> Result<Jwk> {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|e| UsersError::Internal(format!("an Ed25519 signing key is not valid PKCS#8: {e}")))?;
    let public = pair.public_key().as_ref();
    Ok(Jwk {
        kty: "OKP".into(),
        crv: Some("Ed25519".into()),
        x: Some(URL_SAFE_NO_PAD.encode(public)),
        kid: hex::encode(&Sha256::digest(public)[..8]),
        alg: Some("EdDSA".into()),
        use_: Some("sig".into()),
    })
}

fn generate_key() -> Result<Vec<u8>> {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| UsersError::Internal("could not generate an Ed25519 key".into()))?;
    Ok(doc.as_ref().to_vec())
}

/// What signs right now.
struct Active {
    encoding: EncodingKey,
    kid: Option<String>,
}

/// Signs tokens with the ring's first key (or the HS256 secret) and publishes the ring.
/// Cloning shares it.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<SignerInner>,
}

struct SignerInner {
    algorithm: Algorithm,
    active: RwLock<Active>,
    jwks: Arc<RwLock<JwkSet>>,
    secret: Option<Arc<[u8]>>,
    /// The file to read again when it changes, and its text as last loaded.
    file: Option<(PathBuf, Mutex<String>)>,
}

impl Signer {
    pub fn load(settings: &JwtSettings, keys: &KeyConfig) -> Result<Self> {
        let inner = match settings.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret =
                    settings.secret.clone().ok_or_else(|| UsersError::Internal("HS256 without a secret".into()))?;
                SignerInner {
                    algorithm: Algorithm::HS256,
                    active: RwLock::new(Active { encoding: EncodingKey::from_secret(&secret), kid: None }),
                    jwks: Arc::new(RwLock::new(JwkSet { keys: vec![] })),
                    secret: Some(secret),
                    file: None,
                }
            }
            JwtAlgorithm::EdDsa => {
                let (text, file) = match keys {
                    KeyConfig::Pem(pem) => (pem.clone(), None),
                    KeyConfig::File { path, create } => {
                        let text = load_or_create(path, *create)?;
                        (text.clone(), Some((path.clone(), Mutex::new(text))))
                    }
                };
                let ring = KeyRing::parse(&text)?;
                SignerInner {
                    algorithm: Algorithm::EdDSA,
                    active: RwLock::new(active(&ring)?),
                    jwks: Arc::new(RwLock::new(ring.jwks()?)),
                    secret: None,
                    file,
                }
            }
        };
        Ok(Signer { inner: Arc::new(inner) })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let active = self.inner.active.read().expect("signing key lock");
        let mut header = Header::new(self.inner.algorithm);
        header.kid = active.kid.clone();
        jsonwebtoken::encode(&header, claims, &active.encoding)
            .map_err(|e| UsersError::Internal(format!("signing: {e}")))
    }

    pub fn jwks(&self) -> JwkSet {
        self.inner.jwks.read().expect("jwks lock").clone()
    }

    /// Keys for this service's own verifier; it sees a reloaded ring at once.
    pub fn key_source(&self) -> KeySource {
        match &self.inner.secret {
            Some(secret) => KeySource::Secret(secret.clone()),
            None => KeySource::Local(self.inner.jwks.clone()),
        }
    }

    /// Reads the key file again and, when its text changed, publishes the new ring before
    /// signing with its first key. `Ok(false)` when nothing changed or the keys are not a file.
    pub fn reload(&self) -> Result<bool> {
        let Some((path, loaded)) = &self.inner.file else { return Ok(false) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsersError::Internal(format!("cannot read the signing key {}: {e}", path.display())))?;
        let mut loaded = loaded.lock().expect("key file lock");
        if *loaded == text {
            return Ok(false);
        }
        let ring = KeyRing::parse(&text)?;
        let next = active(&ring)?;
        // Published first: a verifier that sees a token from the new key must find it.
        *self.inner.jwks.write().expect("jwks lock") = ring.jwks()?;
        *self.inner.active.write().expect("signing key lock") = next;
        *loaded = text;
        tracing::info!(kid = ring.signing_kid()?, published = ring.keys.len(), "token signing keys reloaded");
        Ok(true)
    }

    /// Checks the key file every `every`; a file that cannot be read or parsed is reported
    /// once and the keys in use stay in use.
    pub fn spawn_reloader(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.inner.file.as_ref()?;
        let this = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_error = None;
            loop {
                tick.tick().await;
                let Some(inner) = this.upgrade() else { break };
                match (Signer { inner }).reload() {
                    Ok(_) => last_error = None,
                    Err(e) => {
                        let e = e.to_string();
                        if last_error.as_ref() != Some(&e) {
                            tracing::warn!(error = %e, "the signing key file could not be reloaded; keeping the keys in use");
                        }
                        last_error = Some(e);
                    }
                }
            }
        }))
    }
}

fn active(ring: &KeyRing) -> Result<Active> {
    Ok(Active { encoding: EncodingKey::from_ed_der(&ring.keys[0].der), kid: Some(ring.signing_kid()?) })
}

/// `ordermesh keys rotate`: a fresh signing key in the key file, the old ones kept as long as
/// a token they signed can live. A running users service picks the file up by itself. Errors
/// are sentences for the operator.
pub fn rotate(
    settings: &JwtSettings,
    keys: &KeyConfig,
    longest_token_life: Duration,
) -> std::result::Result<(PathBuf, Rotation), String> {
    if settings.algorithm == JwtAlgorithm::Hs256 {
        return Err("tokens are signed with the shared HS256 secret (JWT_SECRET); rotating it means changing it on \
                    every service at once. Rotation works on Ed25519 key files"
            .into());
    }
    let path = match keys {
        KeyConfig::File { path, .. } => path,
        KeyConfig::Pem(_) => {
            return Err("the signing key is given inline (JWT_PRIVATE_KEY); rotate a key file instead \
                        (JWT_PRIVATE_KEY_FILE, or the one generated in DATA_DIR)"
                .into());
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "there is no signing key at {} to rotate (the users service creates it on first start)",
            path.display()
        ),
        _ => format!("cannot read the signing key {}: {e}", path.display()),
    })?;
    let operator_message = |e: UsersError| match e {
        UsersError::Internal(m) => m,
        e => e.to_string(),
    };
    let mut ring = KeyRing::parse(&text).map_err(operator_message)?;
    let rotation = ring.rotate(kit::auth::unix_now(), longest_token_life).map_err(operator_message)?;
    write_private(path, &ring.to_pem()).map_err(operator_message)?;
    Ok((path.clone(), rotation))
}

fn load_or_create(path: &Path, create: bool) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let text = KeyRing::generate()?.to_pem();
            write_private(path, &text)?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(text)
        }
        Err(e) => Err(UsersError::Internal(format!("cannot read the signing key {}: {e}", path.display()))),
    }
}
fn write_private(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| UsersError::Internal(format!("{}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| UsersError::Internal(format!("{}: {e}", tmp.display())))?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| UsersError::Internal(format!("{}: {e}", tmp.display())))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| UsersError::Internal(format!("{}: {e}", path.display())))
}

fn der_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_generated_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("users-keys-{}", uuid::Uuid::new_v4()));
        let path = dir.join("key.pem");
        let settings = JwtSettings::from_settings(&kit::config::Settings::default().global()).unwrap();
        let a = Signer::load(&settings, &KeyConfig::File { path: path.clone(), create: true }).unwrap();
        let b = Signer::load(&settings, &KeyConfig::File { path: path.clone(), create: false }).unwrap();
        assert_eq!(a.jwks().keys[0].x, b.jwks().keys[0].x);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let pem = std::fs::read_to_string(&path).unwrap();
        let c = Signer::load(&settings, &KeyConfig::Pem(pem)).unwrap();
        assert_eq!(a.jwks().keys[0].kid, c.jwks().keys[0].kid);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_key_without_create_is_an_error() {
        let settings = JwtSettings::from_settings(&kit::config::Settings::default().global()).unwrap();
        let path = std::env::temp_dir().join(format!("nope-{}.pem", uuid::Uuid::new_v4()));
        assert!(Signer::load(&settings, &KeyConfig::File { path, create: false }).is_err());
    }

    fn claims(aud: &str) -> Claims {
        let now = kit::auth::unix_now();
        Claims {
            sub: uuid::Uuid::new_v4().to_string(),
            username: None,
            role: "user".into(),
            perms: vec![],
            iss: "ordermesh".into(),
            aud: aud.into(),
            exp: now + 60,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: None,
        }
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[test]
    fn a_rotation_signs_with_a_fresh_key_and_keeps_the_old_ones_as_long_as_a_token_lives() {
        let mut ring = KeyRing::generate().unwrap();
        let first = ring.signing_kid().unwrap();
        let life = Duration::from_secs(900);
        let r1 = ring.rotate(1_000, life).unwrap();
        assert_ne!(r1.new_kid, first);
        assert_eq!(r1.kept, vec![first.clone()]);
        let r2 = ring.rotate(1_100, life).unwrap();
        assert_eq!(r2.kept, vec![r1.new_kid.clone(), first.clone()]);
        // The file keeps when each key retired, so a later rotation knows what to drop.
        let mut reread = KeyRing::parse(&ring.to_pem()).unwrap();
        assert_eq!(reread.jwks().unwrap().keys.len(), 3);
        let r3 = reread.rotate(1_000 + 901, life).unwrap();
        assert_eq!(r3.dropped, vec![first], "retired 901 s ago, longer than a token lives");
        assert_eq!(r3.kept, vec![r2.new_kid, r1.new_kid]);
    }

    #[test]
    fn a_signer_picks_up_a_rotated_file_and_old_tokens_still_verify() {
        let dir = std::env::temp_dir().join(format!("users-rotate-{}", uuid::Uuid::new_v4()));
        let path = dir.join("key.pem");
        let settings = JwtSettings::from_settings(&kit::config::Settings::default().global()).unwrap();
        let keys = KeyConfig::File { path: path.clone(), create: true };
        let signer = Signer::load(&settings, &keys).unwrap();
        let verifier = kit::auth::TokenVerifier::new(&settings, signer.key_source(), Default::default());
        let before = signer.sign(&claims(&settings.audience)).unwrap();
        assert!(!signer.reload().unwrap(), "nothing changed yet");

        let (_, rotation) = rotate(&settings, &keys, Duration::from_secs(900)).unwrap();
        assert!(signer.reload().unwrap());
        let after = signer.sign(&claims(&settings.audience)).unwrap();
        assert_eq!(kid_of(&after), rotation.new_kid);
        assert_ne!(kid_of(&before), kid_of(&after));
        assert_eq!(signer.jwks().keys.len(), 2);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            verifier.verify(&before).await.expect("a token from the retired key");
            verifier.verify(&after).await.expect("a token from the new key");
        });
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_broken_key_file_is_refused_and_the_keys_in_use_stay() {
        let dir = std::env::temp_dir().join(format!("users-broken-{}", uuid::Uuid::new_v4()));
        let path = dir.join("key.pem");
        let settings = JwtSettings::from_settings(&kit::config::Settings::default().global()).unwrap();
        let signer = Signer::load(&settings, &KeyConfig::File { path: path.clone(), create: true }).unwrap();
        let kid = kid_of(&signer.sign(&claims("ordermesh")).unwrap());
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
        assert!(signer.reload().is_err());
        assert_eq!(kid_of(&signer.sign(&claims("ordermesh")).unwrap()), kid);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn hs256_and_inline_keys_are_not_rotated_by_file() {
        let settings = JwtSettings::from_settings(
            &kit::config::Settings::from_pairs([("JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes!!")]).global(),
        )
        .unwrap();
        let file = KeyConfig::File { path: PathBuf::from("/nonexistent/key.pem"), create: false };
        assert!(rotate(&settings, &file, Duration::from_secs(60)).unwrap_err().contains("HS256"));
        let eddsa = JwtSettings::from_settings(&kit::config::Settings::default().global()).unwrap();
        let inline = KeyConfig::Pem(KeyRing::generate().unwrap().to_pem());
        assert!(rotate(&eddsa, &inline, Duration::from_secs(60)).unwrap_err().contains("JWT_PRIVATE_KEY"));
    }
}
