//! TLS at a listener: a certificate chain and its key from PEM files, checked before the
//! listener serves (a key that is not the certificate's, a certificate out of its validity
//! period or files that hold nothing usable stop the start with a message naming the file),
//! read again whenever the files change, its end published (`report_to`) and warned about in
//! its last two weeks, and HTTP/2 offered by ALPN next to HTTP/1.1.
//!
//! rustls with its safe defaults: TLS 1.2 and 1.3 only, forward-secret AEAD suites only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Scoped};
use crate::metrics::Metrics;

/// Where the certificate and key are, and how the listener uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `TLS_CERT_FILE`: the certificate chain, leaf first, PEM.
    pub cert_file: PathBuf,
    /// `TLS_KEY_FILE`: its private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key_file: PathBuf,
    /// `TLS_RELOAD_INTERVAL` (default 10 s): how often the files are looked at for a change.
    pub reload_interval: Duration,
    /// `HSTS_MAX_AGE` (default one year): the `Strict-Transport-Security` answers carry.
    pub hsts_max_age: Duration,
}

impl TlsSettings {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE` (both or neither; neither means plain HTTP).
    pub fn from_settings(s: &Scoped<'_>) -> Result<Option<Self>, ConfigError> {
        let cert = s.string(&["TLS_CERT_FILE"]);
        let key = s.string(&["TLS_KEY_FILE"]);
        let (cert_file, key_file) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
            (Some(_), None) => return Err(s.invalid(&["TLS_CERT_FILE"], "TLS_KEY_FILE must be set with it")),
            (None, Some(_)) => return Err(s.invalid(&["TLS_KEY_FILE"], "TLS_CERT_FILE must be set with it")),
        };
        Ok(Some(TlsSettings {
            cert_file,
            key_file,
            reload_interval: s.duration_or(
                &["TLS_RELOAD_INTERVAL"],
                Duration::from_secs(1),
                Duration::from_secs(10),
            )?,
            hsts_max_age: s.duration_or(
                &["HSTS_MAX_AGE"],
                Duration::from_secs(1),
                Duration::from_secs(365 * 86_400),
            )?,
        }))
    }
}

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("the private key in {} cannot be used: {reason}", path.display())]
    UnusableKey { path: PathBuf, reason: String },
    #[error("the private key in {} is not the key of the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {} cannot be read as X.509: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the certificate in {} expired on {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("the certificate in {} is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("TLS cannot be set up: {0}")]
    Setup(String),
}

/// A listener's TLS: what accepts connections, and the certificate it presents (replaced when
/// the files change while [`Tls::watch`] runs).
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: Arc<CurrentCertificate>,
    settings: TlsSettings,
    hsts: HeaderValue,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the files; an error says what is wrong with which.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, not_after) = load_certified_key(settings, &provider, SystemTime::now())?;
        let certificate = Arc::new(CurrentCertificate {
            key: ArcSwap::new(key),
            files: ArcSwap::new(Arc::new(FileStamp::now(settings))),
            not_after: AtomicI64::new(not_after),
            metrics: OnceLock::new(),
            warned: Mutex::new(None),
            cert_file: settings.cert_file.clone(),
        });
        certificate.warn_if_expiring(SystemTime::now());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Returning clients resume without a full handshake, as nginx lets them by default.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
        let hsts = HeaderValue::from_str(&format!("max-age={}", settings.hsts_max_age.as_secs()))
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate, settings: settings.clone(), hsts })
    }

    /// A server configuration for QUIC (HTTP/3, WebTransport) presenting the same certificate,
    /// reloads included: TLS 1.3 only, as QUIC requires, and no ALPN (the caller sets its own).
    pub fn quic_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.certificate.clone()))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The `Strict-Transport-Security` value answers over this listener carry.
    pub fn hsts(&self) -> &HeaderValue {
        &self.hsts
    }

    /// Publishes the certificate's expiry in `metrics` from now on
    /// (`tls_certificate_expiry_timestamp_seconds`, Unix seconds), renewals included.
    pub fn report_to(&self, metrics: Metrics) {
        if self.certificate.metrics.set(metrics).is_ok() {
            self.certificate.publish();
        }
    }

    /// The leaf certificate presented right now (DER), for tests and diagnostics.
    pub fn presented(&self) -> CertificateDer<'static> {
        self.certificate.key.load().cert[0].clone()
    }

    /// Looks at the files every `TLS_RELOAD_INTERVAL` until `stop`; a changed pair that passes
    /// the start-up checks replaces the certificate for new connections, one that does not is
    /// logged and the previous certificate stays.
    pub fn watch(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let certificate = Arc::downgrade(&self.certificate);
        let settings = self.settings.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if !reload_if_changed(&certificate, &settings) {
                    return;
                }
            }
        })
    }
}

/// One look at the files; false once nobody serves this certificate any more.
fn reload_if_changed(certificate: &Weak<CurrentCertificate>, settings: &TlsSettings) -> bool {
    let Some(certificate) = certificate.upgrade() else { return false };
    let stamp = FileStamp::now(settings);
    if stamp == **certificate.files.load() {
        certificate.warn_if_expiring(SystemTime::now());
        return true;
    }
    // Remember the attempt either way: a broken pair is reported once, not every interval.
    certificate.files.store(Arc::new(stamp));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match load_certified_key(settings, &provider, SystemTime::now()) {
        Ok((key, not_after)) => {
            certificate.present(key, not_after);
            tracing::info!(cert = %settings.cert_file.display(), "TLS certificate reloaded");
        }
        Err(e) => {
            tracing::warn!(error = %e, "TLS certificate files changed but cannot be used; still presenting the previous one")
        }
    }
    true
}

/// The certificate every handshake gets.
struct CurrentCertificate {
    key: ArcSwap<CertifiedKey>,
    files: ArcSwap<FileStamp>,
    /// When the presented certificate stops being valid (Unix seconds).
    not_after: AtomicI64,
    /// Where its expiry is published, once a service hands its metrics over.
    metrics: OnceLock<Metrics>,
    /// When an approaching expiry was last logged (once a day is enough).
    warned: Mutex<Option<Instant>>,
    cert_file: PathBuf,
}

impl std::fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentCertificate").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// Within this of its end, a certificate's coming expiry is logged as a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

impl CurrentCertificate {
    fn present(&self, key: Arc<CertifiedKey>, not_after: i64) {
        self.key.store(key);
        self.not_after.store(not_after, Ordering::Relaxed);
        self.publish();
        *self.warned.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.warn_if_expiring(SystemTime::now());
    }

    /// `tls_certificate_expiry_timestamp_seconds`: what an alert compares with `time()`.
    fn publish(&self) {
        if let Some(metrics) = self.metrics.get() {
            let not_after = self.not_after.load(Ordering::Relaxed) as f64;
            metrics.record(|| metrics::gauge!("tls_certificate_expiry_timestamp_seconds").set(not_after));
        }
    }

    /// Logs, at most once a day, that the certificate expires within [`EXPIRY_WARNING`].
    fn warn_if_expiring(&self, now: SystemTime) -> bool {
        let now = unix_seconds(now);
        let left = self.not_after.load(Ordering::Relaxed) - now;
        if left > EXPIRY_WARNING.as_secs() as i64 {
            return false;
        }
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_some_and(|at| at.elapsed() < Duration::from_secs(86_400)) {
            return false;
        }
        *warned = Some(Instant::now());
        tracing::warn!(
            cert = %self.cert_file.display(),
            days_left = left / 86_400,
            "the TLS certificate expires soon; write a renewed one over the files (it is picked up without a restart)"
        );
        true
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.load_full())
    }
}

/// What a change of the files looks like from outside: their modification times and sizes.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp(Vec<Option<(SystemTime, u64)>>);

impl FileStamp {
    fn now(settings: &TlsSettings) -> FileStamp {
        let stamp = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        FileStamp(vec![stamp(&settings.cert_file), stamp(&settings.key_file)])
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// The pair in `settings`, checked: parsable, the key the certificate's, valid at `now`; with
/// the end of the certificate's validity (Unix seconds).
fn load_certified_key(
    settings: &TlsSettings,
    provider: &rustls::crypto::CryptoProvider,
    now: SystemTime,
) -> Result<(Arc<CertifiedKey>, i64), TlsError> {
    let cert_path = &settings.cert_file;
    let key_path = &settings.key_file;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate { path: cert_path.clone(), reason: e.to_string() })?;
    let Some(leaf) = chain.first() else { return Err(TlsError::NoCertificate { path: cert_path.clone() }) };
    let not_after = check_validity(cert_path, leaf, now)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: key_path.clone() },
        other => TlsError::UnusableKey { path: key_path.clone(), reason: other.to_string() },
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::UnusableKey { path: key_path.clone(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // A key type whose public half rustls cannot derive: the handshake is the check.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(TlsError::KeyMismatch { cert: cert_path.clone(), key: key_path.clone() }),
    }
    Ok((Arc::new(certified), not_after))
}

/// `at` as Unix seconds, the unit of a certificate's validity.
fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Checks the leaf is valid at `now`; gives the end of its validity (Unix seconds).
fn check_validity(path: &Path, leaf: &CertificateDer<'_>, now: SystemTime) -> Result<i64, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::BadCertificate { path: path.to_path_buf(), reason: e.to_string() })?;
    let now = unix_seconds(now);
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(TlsError::Expired { path: path.to_path_buf(), not_after: validity.not_after.to_string() });
    }
    if now < validity.not_before.timestamp() {
        return Err(TlsError::NotYetValid { path: path.to_path_buf(), not_before: validity.not_before.to_string() });
    }
    Ok(validity.not_after.timestamp())
}

/// The plain-HTTP listener beside a TLS one (`HTTP_REDIRECT_PORT`): every request is sent,
/// path and query kept, to the same host on `https_port` with `308 Permanent Redirect`, which
/// keeps the method and body. A request without a usable `Host` gets a 400 problem.
pub fn redirect_to_https(https_port: u16) -> axum::Router {
    use axum::http::{Request, StatusCode, header};
    use axum::response::IntoResponse;
    axum::Router::new().fallback(move |request: Request<axum::body::Body>| async move {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
        let Some(host) = host else {
            return crate::problem::Problem::bad_request("A Host header is needed to redirect to HTTPS")
                .into_response();
        };
        let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
        let location = format!("https://{}{port}{path}", host.host());
        match HeaderValue::from_str(&location) {
            Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
            Err(_) => crate::problem::Problem::bad_request("The request cannot be redirected").into_response(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::test_certs::TestCa;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ordermesh-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings(cert: &Path, key: &Path) -> TlsSettings {
        TlsSettings {
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
            reload_interval: Duration::from_secs(1),
            hsts_max_age: Duration::from_secs(600),
        }
    }

    fn error_of(settings: &TlsSettings) -> String {
        Tls::load(settings).expect_err("the pair is refused").to_string()
    }

    #[test]
    fn both_files_or_neither() {
        let s = |pairs: &[(&str, &str)]| {
            TlsSettings::from_settings(&Settings::from_pairs(pairs.to_vec()).scoped("gateway"))
        };
        assert_eq!(s(&[]).unwrap(), None);
        let both =
            s(&[("TLS_CERT_FILE", "/a.crt"), ("GATEWAY_TLS_KEY_FILE", "/a.key"), ("HSTS_MAX_AGE", "60")]).unwrap();
        let both = both.expect("TLS on");
        assert_eq!((both.cert_file, both.key_file), (PathBuf::from("/a.crt"), PathBuf::from("/a.key")));
        assert_eq!(both.hsts_max_age, Duration::from_secs(60));
        let error = s(&[("TLS_CERT_FILE", "/a.crt")]).unwrap_err().to_string();
        assert!(error.contains("TLS_KEY_FILE must be set"), "{error}");
        let error = s(&[("TLS_KEY_FILE", "/a.key")]).unwrap_err().to_string();
        assert!(error.contains("TLS_CERT_FILE must be set"), "{error}");
    }

    #[test]
    fn a_good_pair_is_served_and_bad_ones_are_refused_with_the_reason() {
        let dir = scratch();
        let ca = TestCa::new();
        let good = ca.server_cert(&dir, "good");
        let tls = Tls::load(&settings(&good.cert_file, &good.key_file)).expect("a good pair loads");
        assert_eq!(tls.presented().as_ref(), good.der.as_slice());
        assert_eq!(tls.hsts(), "max-age=600");

        let other = ca.server_cert(&dir, "other");
        let error = error_of(&settings(&good.cert_file, &other.key_file));
        assert!(error.contains("is not the key of the certificate"), "{error}");
        assert!(error.contains("other.key") && error.contains("good.crt"), "names both files: {error}");

        let expired = ca.server_cert_valid(&dir, "expired", -30, -1);
        let error = error_of(&settings(&expired.cert_file, &expired.key_file));
        assert!(error.contains("expired on"), "{error}");

        let future = ca.server_cert_valid(&dir, "future", 2, 30);
        let error = error_of(&settings(&future.cert_file, &future.key_file));
        assert!(error.contains("is not valid before"), "{error}");

        let error = error_of(&settings(&dir.join("missing.crt"), &good.key_file));
        assert!(error.contains("cannot read") && error.contains("missing.crt"), "{error}");

        std::fs::write(dir.join("empty.crt"), "").unwrap();
        let error = error_of(&settings(&dir.join("empty.crt"), &good.key_file));
        assert!(error.contains("holds no PEM certificate"), "{error}");

        // The certificate where the key should be: a common slip.
        let error = error_of(&settings(&good.cert_file, &good.cert_file));
        assert!(error.contains("holds no PEM private key"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Moves a file's modification time on, as a deployment writing it again would.
    fn touch_later(path: &Path) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn changed_files_replace_the_certificate_and_a_broken_change_keeps_the_old_one() {
        let dir = scratch();
        let ca = TestCa::new();
        let first = ca.server_cert(&dir, "live");
        let s = settings(&first.cert_file, &first.key_file);
        let tls = Tls::load(&s).unwrap();
        let current = Arc::downgrade(&tls.certificate);

        assert!(reload_if_changed(&current, &s));
        assert_eq!(tls.presented().as_ref(), first.der.as_slice(), "unchanged files: same certificate");

        // A new certificate whose key is not written yet: refused, the first one stays.
        let second = ca.server_cert(&dir, "next");
        std::fs::copy(&second.cert_file, &first.cert_file).unwrap();
        touch_later(&first.cert_file);
        assert!(reload_if_changed(&current, &s));
        assert_eq!(tls.presented().as_ref(), first.der.as_slice(), "a mismatched pair is not served");

        // The key follows: now the pair is whole and replaces the first.
        std::fs::copy(&second.key_file, &first.key_file).unwrap();
        touch_later(&first.key_file);
        assert!(reload_if_changed(&current, &s));
        assert_eq!(tls.presented().as_ref(), second.der.as_slice(), "the new pair is served");

        drop(tls);
        assert!(!reload_if_changed(&current, &s), "the watcher ends with the listener");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The value of `tls_certificate_expiry_timestamp_seconds` in `metrics`.
    fn published_expiry(metrics: &Metrics) -> i64 {
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("tls_certificate_expiry_timestamp_seconds"))
            .unwrap_or_else(|| panic!("no expiry gauge in {text}"));
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as i64
    }

    #[test]
    fn the_expiry_is_published_and_an_approaching_one_is_warned_about_once_a_day() {
        let dir = scratch();
        let ca = TestCa::new();
        let year = ca.server_cert(&dir, "year");
        let s = settings(&year.cert_file, &year.key_file);
        let tls = Tls::load(&s).unwrap();
        let metrics = Metrics::new("gateway");
        tls.report_to(metrics.clone());
        let now = unix_seconds(SystemTime::now());
        let in_a_year = published_expiry(&metrics) - now;
        assert!((364 * 86_400..=366 * 86_400).contains(&in_a_year), "{in_a_year} s");
        assert!(!tls.certificate.warn_if_expiring(SystemTime::now()), "a year left: nothing to say");

        // Renewed with a certificate that has five days left: the gauge follows, one warning.
        let short = ca.server_cert_valid(&dir, "short", -1, 5);
        std::fs::copy(&short.cert_file, &year.cert_file).unwrap();
        std::fs::copy(&short.key_file, &year.key_file).unwrap();
        touch_later(&year.cert_file);
        assert!(reload_if_changed(&Arc::downgrade(&tls.certificate), &s));
        let left = published_expiry(&metrics) - now;
        assert!((4 * 86_400..=6 * 86_400).contains(&left), "{left} s");
        assert!(!tls.certificate.warn_if_expiring(SystemTime::now()), "warned when presented, not again today");
        *tls.certificate.warned.lock().unwrap() = Some(Instant::now() - Duration::from_secs(86_401));
        assert!(tls.certificate.warn_if_expiring(SystemTime::now()), "a day later, again");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_tls_listener_speaks_http2_and_http1_and_marks_its_requests() {
        use axum::routing::get;
        let dir = scratch();
        let ca = TestCa::new();
        let cert = ca.server_cert(&dir, "server");
        let tls = Tls::load(&settings(&cert.cert_file, &cert.key_file)).unwrap();
        let router = axum::Router::new().route(
            "/",
            get(|request: axum::extract::Request| async move {
                if request.extensions().get::<crate::server::OverTls>().is_some() { "over tls" } else { "plain" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        tokio::spawn(crate::server::serve_tls(listener, router, tls, stop.clone(), Duration::from_secs(1)));

        let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
        for (http1_only, version) in [(false, reqwest::Version::HTTP_2), (true, reqwest::Version::HTTP_11)] {
            let mut client =
                reqwest::Client::builder().add_root_certificate(root.clone()).tls_built_in_root_certs(false);
            if http1_only {
                client = client.http1_only();
            }
            let answer = client.build().unwrap().get(format!("https://localhost:{port}/")).send().await.unwrap();
            assert_eq!(answer.version(), version, "ALPN chose it");
            assert_eq!(answer.headers()["strict-transport-security"], "max-age=600");
            assert_eq!(answer.text().await.unwrap(), "over tls");
        }
        // A client that does not trust the certificate gets no answer.
        let untrusting = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
        assert!(untrusting.get(format!("https://localhost:{port}/")).send().await.is_err());
        // Plain HTTP on the TLS port is not answered as HTTP.
        let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/")).send().await;
        assert!(plain.is_err() || !plain.unwrap().status().is_success());
        stop.cancel();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_redirect_port_sends_every_request_to_https_keeping_path_and_method() {
        use tower::ServiceExt;
        let redirect = |host: Option<&str>, uri: &str, method: &str| {
            let mut request = axum::http::Request::builder().method(method).uri(uri);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            redirect_to_https(8443).oneshot(request.body(axum::body::Body::empty()).unwrap())
        };
        let answer = redirect(Some("shop.example:8080"), "/products?page=2", "POST").await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::PERMANENT_REDIRECT);
        assert_eq!(answer.headers()["location"], "https://shop.example:8443/products?page=2");
        let answer = redirect(Some("[::1]:8080"), "/", "GET").await.unwrap();
        assert_eq!(answer.headers()["location"], "https://[::1]:8443/");
        let answer = redirect(None, "/", "GET").await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::BAD_REQUEST);
        let answer = redirect(Some("evil.example/@x"), "/", "GET").await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::BAD_REQUEST, "a Host that is no authority");
        let at_443 = redirect_to_https(443)
            .oneshot(
                axum::http::Request::builder()
                    .uri("/a")
                    .header("host", "shop.example")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(at_443.headers()["location"], "https://shop.example/a");
    }
}
