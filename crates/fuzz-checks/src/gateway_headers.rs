//! The headers the gateway and every service read from clients: `x-request-id`,
//! `traceparent` and `tracestate` (kept or replaced, then echoed and passed on), `X-Forwarded-For` with the
//! trusted-proxy list, and `Authorization` down to token verification (HS256 and EdDSA).
//! Echoed values must be safe header values; a client that is not a trusted proxy is never
//! someone else; no fuzzed token is ever accepted.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use http::{HeaderMap, HeaderValue, header};
use kit::auth::{Jwk, JwkSet, JwtSettings, KeySource, RevocationSet, TokenVerifier, bearer_token};
use kit::client_ip::TrustedProxies;
use kit::config::Settings;
use kit::context::RequestContext;

struct Verifiers {
    runtime: tokio::runtime::Runtime,
    hs256: TokenVerifier,
    eddsa: TokenVerifier,
}

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let hs = Settings::from_pairs([("JWT_SECRET", "a-fuzzing-secret-that-is-32-bytes-long")]);
        let hs = JwtSettings::from_settings(&hs.global()).unwrap();
        let ed = JwtSettings::from_settings(&Settings::from_pairs([("JWT_ALGORITHM", "EdDSA")]).global()).unwrap();
        // RFC 8037's example public key.
        let keys = JwkSet {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
                kid: "k1".into(),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
            }],
        };
        Verifiers {
            runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
            hs256: TokenVerifier::new(&hs, KeySource::Secret(hs.secret.clone().unwrap()), RevocationSet::default()),
            eddsa: TokenVerifier::new(&ed, KeySource::Local(Arc::new(RwLock::new(keys))), RevocationSet::default()),
        }
    })
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    let mut fields = data.split(|b| *b == b'\n');
    let request_id = fields.next().unwrap_or_default();
    let traceparent = fields.next().unwrap_or_default();
    let forwarded_for = fields.next().unwrap_or_default();
    let authorization = fields.next().unwrap_or_default();
    let trusted = fields.next().unwrap_or_default();
    let tracestate = fields.next().unwrap_or_default();

    // Request id and trace context: whatever comes in, what goes out is a plain header value.
    let rid = HeaderValue::from_bytes(request_id).ok();
    let tp = HeaderValue::from_bytes(traceparent).ok();
    let ts = HeaderValue::from_bytes(tracestate).ok();
    let ctx = RequestContext::from_headers(rid.as_ref(), tp.as_ref()).with_tracestate(ts.as_ref());
    assert!(!ctx.request_id.is_empty() && ctx.request_id.len() <= 128);
    assert!(HeaderValue::from_str(&ctx.request_id).is_ok());
    if rid.as_ref().and_then(|v| v.to_str().ok()) != Some(&*ctx.request_id) {
        assert_eq!(ctx.request_id.len(), 32, "a replaced request id is a fresh one");
    }
    let out: Vec<_> = ctx.outgoing_headers().map(|(_, value)| value).collect();
    assert_eq!(out[0], &*ctx.request_id, "the request id went out altered: {ctx:?}");
    assert_eq!(out[1], ctx.traceparent().as_str(), "the trace context went out altered: {ctx:?}");
    match (&ctx.tracestate, out.get(2)) {
        (Some(state), Some(sent)) => {
            assert!(ctx.parent_span_id.is_some(), "a trace state without a trace to join: {ctx:?}");
            assert!(state.len() <= 512 && sent == &**state, "the trace state went out altered: {ctx:?}");
        }
        (None, None) => {}
        _ => panic!("the trace state and what went out disagree: {ctx:?}"),
    }
    assert_eq!(ctx.trace_id.len(), 32);

    // X-Forwarded-For with a fuzzed trusted-proxy list.
    if let Ok(trusted) = std::str::from_utf8(trusted) {
        let settings = Settings::from_pairs([("TRUSTED_PROXIES", trusted)]);
        if let Ok(proxies) = TrustedProxies::from_settings(&settings.global()) {
            let xff = std::str::from_utf8(forwarded_for).ok();
            for peer in ["127.0.0.1", "203.0.113.7", "10.1.2.3", "::1", "2001:db8::1"] {
                let peer: IpAddr = peer.parse().unwrap();
                let client = proxies.client_ip(peer, xff);
                if !proxies.trusts(peer) {
                    assert_eq!(client, peer, "an untrusted peer chose its address");
                }
                if client != peer {
                    assert!(xff.is_some_and(|x| x.split(',').any(|h| h.trim().parse::<IpAddr>() == Ok(client))));
                }
            }
        }
    }

    // Authorization → bearer token → verification: nothing made up verifies.
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(authorization) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Ok(Some(token)) = bearer_token(&headers) {
        let v = verifiers();
        v.runtime.block_on(async {
            assert!(v.hs256.verify(token).await.is_err(), "a fuzzed token verified (HS256): {token:?}");
            assert!(v.eddsa.verify(token).await.is_err(), "a fuzzed token verified (EdDSA): {token:?}");
        });
    }
}
