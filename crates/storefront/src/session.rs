//! What the storefront keeps in the browser, all of it in cookies encrypted and authenticated
//! with the gateway's session key (AES-256-GCM through axum-extra's `PrivateCookieJar`, the
//! cookie's name bound in as associated data, so one cookie cannot be replayed as another):
//!
//! - the session: the platform's access and refresh tokens, the display name, and the CSRF
//!   secret that every form echoes;
//! - the cart: at most [`MAX_CART_LINES`] lines of at most [`MAX_QUANTITY`] units, with the
//!   price each product had when it was added (sent to the orders service as the expected
//!   price, so a price change is refused, never charged) and the checkout's Idempotency-Key;
//! - a one-shot flash message shown on the next page.
//!
//! Nothing here is stored on the server: any gateway instance with the same `SESSION_KEY` can
//! serve any request.

use api::money::Money;
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Distinct products in one cart.
pub const MAX_CART_LINES: usize = 20;
/// Units of one product in one cart.
pub const MAX_QUANTITY: u32 = 99;
/// Browsers keep at least 4096 bytes per cookie (name, value and attributes); stay well below.
pub const MAX_COOKIE_BYTES: usize = 3800;

/// A random URL-safe token of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(rename = "a")]
    pub access: String,
    #[serde(rename = "r")]
    pub refresh: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The CSRF secret; every form carries it back in `_csrf`.
    #[serde(rename = "c")]
    pub csrf: String,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// The signed-in user's display name (the tokens carry username and role).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Session {
    pub fn anonymous() -> Self {
        Session { csrf: random_token(32), tokens: None, name: None }
    }

    /// A signed-in session. The CSRF secret is new: one fixed before sign-in (possibly by
    /// someone else) is worth nothing after it.
    pub fn signed_in(tokens: Tokens, name: String) -> Self {
        Session { csrf: random_token(32), tokens: Some(tokens), name: Some(name) }
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        !self.csrf.is_empty() && self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    #[serde(rename = "p")]
    pub product_id: i64,
    #[serde(rename = "q")]
    pub quantity: u32,
    /// The unit price, in cents, when the product was put in the cart (or last confirmed).
    #[serde(rename = "c")]
    pub price_cents: i64,
}

impl CartLine {
    pub fn price(&self) -> Money {
        Money::from_cents(self.price_cents).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    #[serde(rename = "l", default)]
    pub lines: Vec<CartLine>,
    /// The checkout's Idempotency-Key: new whenever the cart changes, so the same cart
    /// submitted twice is one order and a changed cart is a new one.
    #[serde(rename = "k")]
    pub key: String,
}

impl Default for Cart {
    fn default() -> Self {
        Cart { lines: Vec::new(), key: random_token(16) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("The cart holds at most {MAX_CART_LINES} different products; check out or remove one first.")]
    TooManyLines,
    #[error("Choose a quantity from 1 to {MAX_QUANTITY}.")]
    BadQuantity,
    #[error("That product is not in your cart.")]
    NotInCart,
}

impl Cart {
    pub fn units(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn changed(&mut self) {
        self.key = random_token(16);
    }

    /// Adds units of a product (merging with a line already there), at `price_cents`.
    pub fn add(&mut self, product_id: i64, quantity: u32, price_cents: i64) -> Result<(), CartError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(CartError::BadQuantity);
        }
        match self.lines.iter_mut().find(|l| l.product_id == product_id) {
            Some(line) => {
                let total = line.quantity + quantity;
                if total > MAX_QUANTITY {
                    return Err(CartError::BadQuantity);
                }
                line.quantity = total;
                line.price_cents = price_cents;
            }
            None => {
                if self.lines.len() >= MAX_CART_LINES {
                    return Err(CartError::TooManyLines);
                }
                self.lines.push(CartLine { product_id, quantity, price_cents });
            }
        }
        self.changed();
        Ok(())
    }

    /// Sets a line's quantity; 0 removes it.
    pub fn set_quantity(&mut self, product_id: i64, quantity: u32) -> Result<(), CartError> {
        if quantity > MAX_QUANTITY {
            return Err(CartError::BadQuantity);
        }
        if quantity == 0 {
            return self.remove(product_id);
        }
        let line = self.lines.iter_mut().find(|l| l.product_id == product_id).ok_or(CartError::NotInCart)?;
        line.quantity = quantity;
        self.changed();
        Ok(())
    }

    pub fn remove(&mut self, product_id: i64) -> Result<(), CartError> {
        let before = self.lines.len();
        self.lines.retain(|l| l.product_id != product_id);
        if self.lines.len() == before {
            return Err(CartError::NotInCart);
        }
        self.changed();
        Ok(())
    }

    /// Records the price the shopper has now seen (after a price-changed answer).
    pub fn confirm_price(&mut self, product_id: i64, price_cents: i64) {
        if let Some(line) = self.lines.iter_mut().find(|l| l.product_id == product_id)
            && line.price_cents != price_cents
        {
            line.price_cents = price_cents;
            self.changed();
        }
    }

    /// A cart read from a cookie is trusted only as far as these bounds.
    fn is_well_formed(&self) -> bool {
        self.lines.len() <= MAX_CART_LINES
            && self.lines.iter().all(|l| l.product_id > 0 && (1..=MAX_QUANTITY).contains(&l.quantity))
            && !self.key.is_empty()
            && self.key.len() <= 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

/// The cookies' names. With `Secure` cookies the `__Host-` prefix also pins them to this host
/// and path (no Domain attribute can widen them).
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: &'static str,
    pub cart: &'static str,
    pub flash: &'static str,
}

impl CookieNames {
    pub fn new(secure: bool) -> Self {
        if secure {
            CookieNames { session: "__Host-om_session", cart: "__Host-om_cart", flash: "__Host-om_flash" }
        } else {
            CookieNames { session: "om_session", cart: "om_cart", flash: "om_flash" }
        }
    }
}

/// Reads and decrypts a JSON cookie; anything missing, tampered with, encrypted under another
/// key or malformed reads as absent.
pub fn read<T: DeserializeOwned>(jar: &PrivateCookieJar, name: &str) -> Option<T> {
    let cookie = jar.get(name)?;
    serde_json::from_str(cookie.value()).ok()
}

pub fn read_cart(jar: &PrivateCookieJar, name: &str) -> Option<Cart> {
    read::<Cart>(jar, name).filter(Cart::is_well_formed)
}

/// A cookie with the storefront's attributes: HttpOnly, SameSite=Lax (sent on top-level
/// navigations, never with a cross-site POST), Path=/, and Secure when configured.
pub fn cookie<T: Serialize>(
    name: &'static str,
    value: &T,
    secure: bool,
    max_age: Option<time::Duration>,
) -> Cookie<'static> {
    let json = serde_json::to_string(value).unwrap_or_default();
    let mut c = Cookie::build((name, json)).path("/").http_only(true).secure(secure).same_site(SameSite::Lax);
    if let Some(age) = max_age {
        c = c.max_age(age);
    }
    c.build()
}

/// A cookie that removes `name` (same path, so the browser matches it).
pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/").build()
}

/// A local path to return to after signing in; anything else (another host, a scheme, a
/// protocol-relative `//host`, a backslash trick) becomes the home page.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control())
                && n.len() <= 512
                && !n.starts_with("/logout") =>
        {
            n.to_string()
        }
        _ => "/home".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};
    use axum::response::IntoResponse;
    use axum_extra::extract::cookie::Key;

    fn key() -> Key {
        Key::try_from(&[7u8; 64][..]).unwrap()
    }

    /// What a browser would send back after receiving `jar`'s Set-Cookie headers.
    fn browser_round_trip(jar: PrivateCookieJar) -> HeaderMap {
        let res = (jar, ()).into_response();
        let pairs: Vec<String> = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        headers
    }

    fn set_cookie_headers(jar: PrivateCookieJar) -> Vec<String> {
        let res = (jar, ()).into_response();
        res.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect()
    }

    #[test]
    fn sessions_survive_the_round_trip_encrypted() {
        let session = Session::signed_in(
            Tokens { access: "header.payload.signature".into(), refresh: "refresh-secret".into() },
            "Bob <b>".into(),
        );
        let jar = PrivateCookieJar::new(key()).add(cookie("om_session", &session, true, None));
        let headers = browser_round_trip(jar.clone());
        let raw = headers[header::COOKIE].to_str().unwrap();
        assert!(!raw.contains("refresh-secret") && !raw.contains("Bob"), "the value is encrypted: {raw}");
        let back = PrivateCookieJar::from_headers(&headers, key());
        assert_eq!(read::<Session>(&back, "om_session"), Some(session));

        // Another key, a tampered value, or the value moved under another name: absent.
        let other = Key::try_from(&[8u8; 64][..]).unwrap();
        assert_eq!(read::<Session>(&PrivateCookieJar::from_headers(&headers, other), "om_session"), None);
        let value = raw.split_once('=').unwrap().1;
        let mut tampered = value.as_bytes().to_vec();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("om_session={}", String::from_utf8(tampered).unwrap())).unwrap(),
        );
        assert_eq!(read::<Session>(&PrivateCookieJar::from_headers(&h, key()), "om_session"), None);
        let mut moved = HeaderMap::new();
        moved.insert(header::COOKIE, HeaderValue::from_str(&format!("om_cart={value}")).unwrap());
        assert_eq!(read::<Session>(&PrivateCookieJar::from_headers(&moved, key()), "om_cart"), None);
    }

    #[test]
    fn cookies_carry_the_security_attributes() {
        let jar = PrivateCookieJar::new(key()).add(cookie("__Host-om_session", &Session::anonymous(), true, None));
        let set = set_cookie_headers(jar);
        let line = &set[0];
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(line.contains(attribute), "{attribute} missing from {line}");
        }
        let jar = PrivateCookieJar::new(key()).add(cookie("om_session", &Session::anonymous(), false, None));
        assert!(!set_cookie_headers(jar)[0].contains("Secure"));
        assert!(CookieNames::new(true).session.starts_with("__Host-"));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Session::anonymous();
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&s.csrf[..s.csrf.len() - 1]));
        assert!(!s.csrf_matches(&Session::anonymous().csrf));
        let empty = Session { csrf: String::new(), tokens: None, name: None };
        assert!(!empty.csrf_matches(""), "an empty secret matches nothing");
        // Signing in starts a new secret.
        let signed = Session::signed_in(Tokens { access: "a".into(), refresh: "r".into() }, "n".into());
        assert_ne!(signed.csrf, s.csrf);
    }

    #[test]
    fn carts_are_bounded() {
        let mut cart = Cart::default();
        for id in 1..=MAX_CART_LINES as i64 {
            cart.add(id, MAX_QUANTITY, 100_000_000).unwrap();
        }
        assert_eq!(cart.add(999, 1, 1), Err(CartError::TooManyLines));
        assert_eq!(cart.add(1, 1, 1), Err(CartError::BadQuantity), "merging past the per-line bound");
        assert_eq!(cart.set_quantity(2, MAX_QUANTITY + 1), Err(CartError::BadQuantity));
        assert_eq!(Cart::default().add(1, 0, 1), Err(CartError::BadQuantity));
        assert_eq!(cart.units(), MAX_CART_LINES as u32 * MAX_QUANTITY);

        // The fullest cart still fits a cookie, encrypted and encoded.
        let jar = PrivateCookieJar::new(key()).add(cookie("__Host-om_cart", &cart, true, None));
        let set = set_cookie_headers(jar);
        assert!(set[0].len() < MAX_COOKIE_BYTES, "{} bytes", set[0].len());

        // A forged oversized cart (say, from an older version) is not believed.
        let mut big = cart.clone();
        big.lines.push(CartLine { product_id: 1000, quantity: 1, price_cents: 1 });
        let jar = PrivateCookieJar::new(key()).add(cookie("om_cart", &big, false, None));
        let back = PrivateCookieJar::from_headers(&browser_round_trip(jar), key());
        assert_eq!(read_cart(&back, "om_cart"), None);
    }

    #[test]
    fn cart_changes_renew_the_checkout_key() {
        let mut cart = Cart::default();
        let k0 = cart.key.clone();
        cart.add(1, 2, 999).unwrap();
        let k1 = cart.key.clone();
        assert_ne!(k0, k1);
        cart.confirm_price(1, 999);
        assert_eq!(cart.key, k1, "the same price is no change");
        cart.confirm_price(1, 1099);
        assert_ne!(cart.key, k1);
        cart.set_quantity(1, 0).unwrap();
        assert!(cart.is_empty());
        assert_eq!(cart.remove(1), Err(CartError::NotInCart));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/cart")), "/cart");
        assert_eq!(safe_next(Some("/products?q=a&page=2")), "/products?q=a&page=2");
        for bad in ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/logout"] {
            assert_eq!(safe_next(Some(bad)), "/home", "{bad}");
        }
        assert_eq!(safe_next(None), "/home");
    }
}
