//! Certificates for tests: a private certificate authority and the server certificates it
//! signs for `localhost` and 127.0.0.1, written as PEM files a listener is configured with.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use time::{Duration, OffsetDateTime};

/// A certificate authority made for one test; clients trust [`TestCa::pem`].
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate and its key, as files.
pub struct TestCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate as DER, to compare with what a server presents.
    pub der: Vec<u8>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, "ordermesh test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM, for a client's trust store.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1 valid now (from yesterday for a year),
    /// written into `dir` as `<name>.crt` and `<name>.key`.
    pub fn server_cert(&self, dir: &Path, name: &str) -> TestCert {
        self.server_cert_valid(dir, name, -1, 365)
    }

    /// As [`TestCa::server_cert`], valid from `from_days` to `until_days` days from now.
    pub fn server_cert_valid(&self, dir: &Path, name: &str, from_days: i64, until_days: i64) -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(from_days);
        params.not_after = now + Duration::days(until_days);
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("a signed server certificate");
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        TestCert { cert_file, key_file, der: cert.der().to_vec() }
    }
}
