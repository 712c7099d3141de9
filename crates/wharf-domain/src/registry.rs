//! Registry endpoints: `HOST[:PORT]`, as Docker writes them in image references.

use crate::ValidationError;

/// Checks an endpoint such as `registry.example.com`, `10.0.0.5:5000` or
/// `[::1]:5000`. A scheme or a path is refused: the `insecure` flag says whether
/// plain HTTP is used, and the path belongs to the namespace.
pub fn validate_endpoint(field: &str, value: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| ValidationError::new(field, format!("{value:?} {why}"));
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > 255 {
        return Err(ValidationError::new(
            field,
            "must be at most 255 characters",
        ));
    }
    if value.contains("://") {
        return Err(bad(
            "must be HOST[:PORT] without a scheme (use --insecure for plain HTTP)",
        ));
    }
    if value.contains('/') {
        return Err(bad(
            "must be HOST[:PORT] without a path (put the path in the namespace)",
        ));
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("has an unclosed '[' around an IPv6 address"))?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad("is not a valid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("has text after the IPv6 address"))?,
            ),
        };
        (None, port)
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(value), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err(bad("is not a valid host name or address"));
        }
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(bad("has a port that is not a number from 1 to 65535")),
        }
    }
    Ok(())
}

/// The longest registry user name accepted.
pub const MAX_USERNAME_LEN: usize = 255;
/// The longest registry password accepted.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Checks the optional credentials: a user name needs a password and the reverse.
pub fn validate_credentials(
    username: Option<&str>,
    password: Option<&str>,
) -> Result<(), ValidationError> {
    match (username, password) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(ValidationError::new(
            "password",
            "a username needs a password",
        )),
        (None, Some(_)) => Err(ValidationError::new(
            "username",
            "a password needs a username",
        )),
        (Some(u), Some(p)) => {
            if u.is_empty()
                || u.len() > MAX_USERNAME_LEN
                || u.chars().any(|c| c.is_control() || c == ':')
            {
                return Err(ValidationError::new(
                    "username",
                    format!("must be 1 to {MAX_USERNAME_LEN} characters, without ':' or control characters"),
                ));
            }
            if p.is_empty() || p.len() > MAX_PASSWORD_LEN {
                return Err(ValidationError::new(
                    "password",
                    format!("must be 1 to {MAX_PASSWORD_LEN} bytes"),
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "registry.example.com",
            "localhost:5000",
            "10.0.0.5:5000",
            "[::1]:5000",
            "[fe80::1]",
            "reg-1.internal",
        ] {
            assert!(validate_endpoint("endpoint", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "http://reg",
            "reg/path",
            "reg:",
            "reg:0",
            "reg:65536",
            "reg:abc",
            "-reg",
            "re g",
            "[::1",
            "a..b",
            "[::1]x",
        ] {
            assert_eq!(
                validate_endpoint("endpoint", bad).unwrap_err().field,
                "endpoint",
                "{bad}"
            );
        }
    }

    #[test]
    fn credentials_come_in_pairs() {
        assert!(validate_credentials(None, None).is_ok());
        assert!(validate_credentials(Some("u"), Some("p?>/+= \"'")).is_ok());
        assert_eq!(
            validate_credentials(Some("u"), None).unwrap_err().field,
            "password"
        );
        assert_eq!(
            validate_credentials(None, Some("p")).unwrap_err().field,
            "username"
        );
        assert_eq!(
            validate_credentials(Some("a:b"), Some("p"))
                .unwrap_err()
                .field,
            "username"
        );
        assert_eq!(
            validate_credentials(Some("u"), Some("")).unwrap_err().field,
            "password"
        );
    }
}
