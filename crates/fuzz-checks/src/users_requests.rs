//! The users service's JSON request bodies (registration, sign-in, profile updates, refresh,
//! logout, token checks, service credentials), deserialised as the handlers do, then checked
//! by the same validators the service runs on them. Any panic is a bug; so is a normalised
//! value that does not validate again, or a derived username that the service would refuse.

use users::domain::{DisplayName, Email, Password, Username};
use users::routes::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, UpdateRequest, VerifyRequest};

fn email(raw: &str) -> Option<Email> {
    let e = Email::parse(raw).ok()?;
    assert_eq!(Email::parse(e.as_str()).ok().as_ref(), Some(&e), "a normalised e-mail must validate again");
    Some(e)
}

fn username(raw: &str) -> Option<Username> {
    let u = Username::parse(raw).ok()?;
    assert_eq!(Username::parse(u.as_str()).ok().as_ref(), Some(&u), "a normalised username must validate again");
    Some(u)
}

fn name(raw: &str) {
    if let Ok(n) = DisplayName::parse(raw) {
        assert_eq!(DisplayName::parse(n.as_str()).ok().as_ref(), Some(&n));
    }
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<RegisterRequest>(data) {
        // As UsersService::register: e-mail, then the username (given or derived), then the
        // password against it, then the display name.
        let email = r.email.as_deref().and_then(email);
        let user = match (&r.username, &email) {
            (Some(u), _) => username(u),
            (None, Some(e)) => {
                for suffix in [None, Some(2), Some(49)] {
                    let derived = Username::derive_from(e, suffix);
                    assert!(
                        Username::parse(derived.as_str()).is_ok(),
                        "derived username {derived:?} from {e:?} is refused"
                    );
                }
                Some(Username::derive_from(e, None))
            }
            (None, None) => None,
        };
        let _ = Password::parse(&r.password, user.as_ref().map(Username::as_str));
        if let Some(n) = &r.name {
            name(n);
        }
    }
    if let Ok(r) = serde_json::from_slice::<LoginRequest>(data) {
        let _ = r.identifier();
    }
    if let Ok(r) = serde_json::from_slice::<UpdateRequest>(data) {
        if let Some(n) = &r.name {
            name(n);
        }
        if let Some(u) = &r.username {
            let _ = username(u);
        }
        if let Some(e) = &r.email {
            let _ = email(e);
        }
        if let Some(p) = &r.password {
            let _ = Password::parse(p, r.username.as_deref());
        }
    }
    let _ = serde_json::from_slice::<RefreshRequest>(data);
    let _ = serde_json::from_slice::<LogoutRequest>(data);
    let _ = serde_json::from_slice::<VerifyRequest>(data);
    let _ = serde_json::from_slice::<kit::auth::ClientCredentials>(data);
    let _ = serde_json::from_slice::<users::dialects::GetTokenRequest>(data);
    // Raw text straight into the validators, as path segments and form fields reach them.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = email(text);
        let _ = username(text);
        name(text);
        let _ = Password::parse(text, None);
    }
}
