//! Resource names: applications, groups, registries, deployments and scaling groups
//! all follow one grammar, `[a-z0-9][a-z0-9-]{0,62}`, so they are safe in URLs, file
//! names and shell environments without quoting.

use crate::ValidationError;

/// The longest resource name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a resource name against `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_name(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            field,
            format!(
                "must be at most {MAX_NAME_LEN} characters, got {}",
                value.len()
            ),
        ));
    }
    let bytes = value.as_bytes();
    let first_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !first_ok || !rest_ok {
        return Err(ValidationError::new(
            field,
            format!(
                "{value:?} is not a valid name: use lowercase letters, digits and '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// The longest description accepted on an application.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// Checks a free-text description: bounded, and without control characters that
/// would garble a terminal table.
pub fn validate_description(value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            "description",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Instance names are hostnames or operator-chosen labels: a little looser than
/// resource names (upper case and dots are common in hostnames), still URL-safe.
pub fn validate_instance_name(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 253 {
        return Err(ValidationError::new(
            "name",
            "instance name must be 1 to 253 characters",
        ));
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok || value.starts_with(['-', '.']) {
        return Err(ValidationError::new(
            "name",
            format!(
                "{value:?} is not a valid instance name: use letters, digits, '-', '.' and '_'"
            ),
        ));
    }
    if value.starts_with("i-") && crate::ids::InstanceId::parse(value).is_ok() {
        return Err(ValidationError::new(
            "name",
            "an instance name must not look like an instance id",
        ));
    }
    Ok(())
}

/// Labels are `KEY=VALUE` pairs: keys are short identifiers, values short text.
pub fn validate_label(key: &str, value: &str) -> Result<(), ValidationError> {
    let key_ok = !key.is_empty()
        && key.len() <= 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'));
    if !key_ok {
        return Err(ValidationError::new(
            "labels",
            format!("{key:?} is not a valid label key"),
        ));
    }
    if value.len() > 255 || value.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            "labels",
            format!("the value of label {key:?} must be at most 255 characters of text"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for ok in ["a", "0", "my-app", "web-2", &"a".repeat(63)] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names_naming_the_field() {
        for bad in [
            "",
            "-a",
            "A",
            "my_app",
            "a b",
            "é",
            &"a".repeat(64),
            "a/b",
            "a.b",
        ] {
            let err = validate_name("app", bad).unwrap_err();
            assert_eq!(err.field, "app", "{bad}");
        }
    }

    #[test]
    fn instance_names_allow_hostnames() {
        assert!(validate_instance_name("web-01.example.com").is_ok());
        assert!(validate_instance_name("Web_01").is_ok());
        assert!(validate_instance_name("").is_err());
        assert!(validate_instance_name("-x").is_err());
        assert!(validate_instance_name("a b").is_err());
        assert!(validate_instance_name("i-0123456789abcdef").is_err());
    }

    #[test]
    fn labels() {
        assert!(validate_label("zone", "eu-1").is_ok());
        assert!(validate_label("", "x").is_err());
        assert!(validate_label("a b", "x").is_err());
        assert!(validate_label("k", "line\nbreak").is_err());
    }

    #[test]
    fn descriptions() {
        assert!(validate_description("Our web shop").is_ok());
        assert!(validate_description(&"x".repeat(1025)).is_err());
        assert!(validate_description("bell\u{7}").is_err());
    }
}
