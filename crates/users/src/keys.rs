//! The token signing key: an Ed25519 key generated on first start and kept in the data
//! directory (or given by configuration), published as a JWKS; or the shared HS256 secret.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::auth::{Claims, JwkSet, JwtAlgorithm, JwtSettings, KeySource};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::error::{Result, UsersError};

/// Where the Ed25519 private key comes from.
#[derive(Debug, Clone)]
pub enum KeyConfig {
    /// PKCS#8 PEM text given directly (`JWT_PRIVATE_KEY`).
    Pem(String),
    /// A PEM file; generated there on first start when `create` is true.
    File { path: PathBuf, create: bool },
}

pub struct Signer {
    algorithm: Algorithm,
    encoding: EncodingKey,
    kid: Option<String>,
    jwks: Arc<RwLock<JwkSet>>,
    secret: Option<Arc<[u8]>>,
}

impl Signer {
    pub fn load(settings: &JwtSettings, keys: &KeyConfig) -> Result<Self> {
        match settings.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret =
                    settings.secret.clone().ok_or_else(|| UsersError::Internal("HS256 without a secret".into()))?;
                Ok(Signer {
                    algorithm: Algorithm::HS256,
                    encoding: EncodingKey::from_secret(&secret),
                    kid: None,
                    jwks: Arc::new(RwLock::new(JwkSet { keys: vec![] })),
                    secret: Some(secret),
                })
            }
            JwtAlgorithm::EdDsa => {
                let der = match keys {
                    KeyConfig::Pem(pem) => pem_to_der(pem)?,
                    KeyConfig::File { path, create } => load_or_create(path, *create)?,
                };
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                    .map_err(|e| UsersError::Internal(format!("the Ed25519 signing key is not valid PKCS#8: {e}")))?;
                let public = pair.public_key().as_ref().to_vec();
                let kid = hex::encode(&Sha256::digest(&public)[..8]);
                let jwk = kit::auth::Jwk {
                    kty: "OKP".into(),
                    crv: Some("Ed25519".into()),
                    x: Some(URL_SAFE_NO_PAD.encode(&public)),
                    kid: kid.clone(),
                    alg: Some("EdDSA".into()),
                    use_: Some("sig".into()),
                };
                Ok(Signer {
                    algorithm: Algorithm::EdDSA,
                    encoding: EncodingKey::from_ed_der(&der),
                    kid: Some(kid),
                    jwks: Arc::new(RwLock::new(JwkSet { keys: vec![jwk] })),
                    secret: None,
                })
            }
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| UsersError::Internal(format!("signing: {e}")))
    }

    pub fn jwks(&self) -> JwkSet {
        self.jwks.read().expect("jwks lock").clone()
    }

    /// Keys for this service's own verifier.
    pub fn key_source(&self) -> KeySource {
        match &self.secret {
            Some(secret) => KeySource::Secret(secret.clone()),
            None => KeySource::Local(self.jwks.clone()),
        }
    }
}

fn load_or_create(path: &Path, create: bool) -> Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(pem) => pem_to_der(&pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let rng = ring::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| UsersError::Internal("could not generate an Ed25519 key".into()))?;
            let der = doc.as_ref().to_vec();
            write_private(path, &der_to_pem(&der))?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(der)
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

fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem.lines().map(str::trim).filter(|l| !l.starts_with("-----") && !l.is_empty()).collect();
    STANDARD.decode(body).map_err(|_| UsersError::Internal("the signing key is not PEM-encoded PKCS#8".into()))
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
}
