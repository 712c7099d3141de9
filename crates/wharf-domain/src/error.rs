//! The one error type of the domain: a rule broken by one named field.

/// A value that breaks a rule. `field` names the input as the user wrote it (for
/// example `tag` or `start_script`), so that every layer can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
