//! Values that cannot be invalid once constructed: parse at the edge, trust inside.

use std::fmt;

use crate::error::UsersError;

/// A lower-cased e-mail address of plausible shape (we do not send mail, so no deeper check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, UsersError> {
        let s = raw.trim().to_lowercase();
        let invalid =
            |why: &str| UsersError::invalid("email", format!("{why}: {raw:?} is not a usable e-mail address"));
        if s.len() > 254 {
            return Err(invalid("too long"));
        }
        let (local, domain) = s.split_once('@').ok_or_else(|| invalid("no @"))?;
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(invalid("bad local part"));
        }
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if !domain_ok {
            return Err(invalid("bad domain"));
        }
        let local_ok = local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(invalid("bad characters"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or("")
    }
}

/// 3 to 32 characters of `a-z 0-9 _ . -`, starting with a letter or digit; case-insensitive
/// (stored lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, UsersError> {
        let s = raw.trim().to_ascii_lowercase();
        if s.len() < Self::MIN || s.len() > Self::MAX {
            return Err(UsersError::invalid(
                "username",
                format!("must be {} to {} characters long", Self::MIN, Self::MAX),
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
            return Err(UsersError::invalid("username", "may contain only letters, digits, '_', '.' and '-'"));
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(UsersError::invalid("username", "must start with a letter or a digit"));
        }
        Ok(Username(s))
    }

    /// A username derived from an e-mail's local part, for clients (seed 001) that register
    /// with an e-mail only. `suffix` makes it unique when the plain one is taken.
    pub fn derive_from(email: &Email, suffix: Option<u32>) -> Username {
        let mut base: String = email
            .local_part()
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        while base.starts_with(['_', '.', '-']) {
            base.remove(0);
        }
        if base.len() < Self::MIN {
            base = format!("user{base}");
        }
        base.truncate(Self::MAX - 6);
        match suffix {
            Some(n) => Username(format!("{base}{n}")),
            None => Username(base),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8 to 128 characters, not one of the passwords every attacker tries first, not the
/// username. Never logged or serialised.
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The most common passwords of public breach corpora (lower-case), the ones that fall to the
/// first seconds of any guessing attack.
const WELL_KNOWN: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd",
    "p@ssword",
    "p@ssw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "qwerty123",
    "qwertyuiop",
    "qwerty12",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "asdfghjkl",
    "asdf1234",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "admin123",
    "administrator",
    "letmein1",
    "trustno1",
    "abc12345",
    "abcd1234",
    "monkey123",
    "dragon123",
    "superman",
    "starwars",
    "whatever",
    "computer",
    "michelle",
    "jennifer",
    "1234qwer",
    "qwer1234",
    "changeme",
    "default1",
    "secret123",
    "test1234",
    "testtest",
    "aaaaaaaa",
    "11223344",
    "12341234",
    "password!",
    "passwort",
    "motdepasse",
    "contraseña",
];

impl Password {
    pub const MIN: usize = 8;
    pub const MAX: usize = 128;

    pub fn parse(raw: &str, username: Option<&str>) -> Result<Self, UsersError> {
        let n = raw.chars().count();
        if n < Self::MIN {
            return Err(UsersError::invalid("password", format!("must be at least {} characters long", Self::MIN)));
        }
        if n > Self::MAX {
            return Err(UsersError::invalid("password", format!("must be at most {} characters long", Self::MAX)));
        }
        if raw.chars().all(char::is_whitespace) {
            return Err(UsersError::invalid("password", "must contain characters other than spaces"));
        }
        let lower = raw.to_lowercase();
        if WELL_KNOWN.contains(&lower.as_str()) {
            return Err(UsersError::invalid("password", "is one of the most common passwords; choose another"));
        }
        if username.is_some_and(|u| u.eq_ignore_ascii_case(raw)) {
            return Err(UsersError::invalid("password", "must not be the username"));
        }
        Ok(Password(raw.to_string()))
    }

    /// For passwords that were checked elsewhere (demo data, a login attempt).
    pub fn unchecked(raw: &str) -> Self {
        Password(raw.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A person's display name: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, UsersError> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > 100 {
            return Err(UsersError::invalid("name", "must be 1 to 100 characters long"));
        }
        if s.chars().any(char::is_control) {
            return Err(UsersError::invalid("name", "must not contain control characters"));
        }
        Ok(DisplayName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Bob@Example.COM ").unwrap().as_str(), "bob@example.com");
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@example",
            "bob@@example.com",
            "b ob@example.com",
            "bob@exa mple.com",
            "bob@.com",
            "'; DROP TABLE users; --@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        for bad in ["ab", "-abc", "has space", "ünï", &"x".repeat(33), "a<script>"] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn derived_usernames_are_valid() {
        let e = Email::parse("john.doe+shop@example.com").unwrap();
        let u = Username::derive_from(&e, None);
        assert!(Username::parse(u.as_str()).is_ok(), "{u:?}");
        let e = Email::parse("x@example.com").unwrap();
        assert_eq!(Username::derive_from(&e, Some(2)).as_str(), "userx2");
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short", None).is_err());
        assert!(Password::parse("Password123", None).is_err());
        assert!(Password::parse("johnnyboy", Some("johnnyboy")).is_err());
        assert!(Password::parse(&"x".repeat(129), None).is_err());
        assert!(Password::parse("correct horse battery", None).is_ok());
        // Issue 16, finding 6: a password of spaces only was accepted.
        for blank in
            ["        ", "\t\t\t\t\t\t\t\t\t", "\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}"]
        {
            assert!(Password::parse(blank, None).is_err(), "{blank:?} was accepted");
        }
        assert_eq!(format!("{:?}", Password::unchecked("s3cret")), "Password(<redacted>)");
    }

    #[test]
    fn names() {
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert_eq!(DisplayName::parse(" John Doe ").unwrap().as_str(), "John Doe");
    }
}
