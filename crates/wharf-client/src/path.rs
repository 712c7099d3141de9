//! Encoding of user-supplied values into request paths, so that no input can change
//! which route a request reaches.

use crate::ClientError;
use std::fmt::Write as _;

/// Percent-encodes `value` as one path segment.
///
/// Every byte outside RFC 3986's unreserved set is encoded, so `/`, `?`, `#` and `%`
/// stay inside the segment. The empty string, `.` and `..` are refused: an empty
/// segment reaches a different route, and URL parsers resolve dot segments (even
/// when written `%2E%2E`), so no encoding can keep them in place.
pub(crate) fn segment(what: &'static str, value: &str) -> Result<String, ClientError> {
    let reason = match value {
        "" => Some("must not be empty"),
        "." | ".." => Some("is not a name"),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(ClientError::InvalidArgument {
            what,
            value: value.to_owned(),
            reason,
        });
    }
    Ok(percent_encode(value))
}

/// A query string (`?a=1&b=x%20y`, or nothing when every value is `None`) from
/// `(key, value)` pairs; values are percent-encoded like path segments, so `&`, `=`
/// and `#` stay inside them.
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if let Some(value) = value {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(key);
            out.push('=');
            out.push_str(&percent_encode(value));
        }
    }
    out
}

/// Encodes every byte outside RFC 3986's unreserved set.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::{query, segment};

    #[test]
    fn keeps_unreserved_characters() {
        assert_eq!(segment("app", "web-1.prod_x~").unwrap(), "web-1.prod_x~");
    }

    #[test]
    fn encodes_everything_else() {
        assert_eq!(segment("app", "a/b").unwrap(), "a%2Fb");
        assert_eq!(segment("app", "a?b#c%d").unwrap(), "a%3Fb%23c%25d");
        assert_eq!(segment("app", "é ").unwrap(), "%C3%A9%20");
    }

    #[test]
    fn refuses_segments_that_change_the_route() {
        for value in ["", ".", ".."] {
            assert!(segment("app", value).is_err(), "{value:?}");
        }
        assert_eq!(segment("app", "...").unwrap(), "...");
    }

    #[test]
    fn query_strings_skip_absent_values_and_encode_the_rest() {
        assert_eq!(query(&[("app", None), ("limit", None)]), "");
        assert_eq!(
            query(&[("app", Some("web")), ("group", None), ("limit", Some("5"))]),
            "?app=web&limit=5"
        );
        assert_eq!(
            query(&[("instance", Some("a&b=c#d e"))]),
            "?instance=a%26b%3Dc%23d%20e"
        );
    }
}
