//! Identifiers. The random bytes come from the caller so that this crate stays free
//! of IO and every id is reproducible in tests.

use crate::ValidationError;
use std::fmt;

/// An instance id: `i-` followed by 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn from_random(bytes: [u8; 8]) -> Self {
        Self(format!("i-{}", hex16(bytes)))
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex16(value, "i-") {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                "instance",
                format!("{value:?} is not an instance id (i- followed by 16 hex characters)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release id: `r-` followed by 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId(String);

impl ReleaseId {
    pub fn from_random(bytes: [u8; 8]) -> Self {
        Self(format!("r-{}", hex16(bytes)))
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex16(value, "r-") {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                "release",
                format!("{value:?} is not a release id (r- followed by 16 hex characters)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex16(bytes: [u8; 8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_prefixed_hex16(value: &str, prefix: &str) -> bool {
    value.len() == prefix.len() + 16
        && value.starts_with(prefix)
        && value[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_round_trip() {
        let id = InstanceId::from_random([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        assert_eq!(id.as_str(), "i-deadbeef00010203");
        assert_eq!(InstanceId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "i-",
            "i-DEADBEEF00010203",
            "x-deadbeef00010203",
            "i-deadbeef0001020",
            "i-deadbeef000102030",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
        assert!(ReleaseId::parse("r-0123456789abcdef").is_ok());
        assert!(ReleaseId::parse("i-0123456789abcdef").is_err());
    }
}
