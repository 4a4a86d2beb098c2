//! The store's one error type.

use crate::domain::ParseError;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A change the domain's rules refuse.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached or is shutting down; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database cannot write (its disk is full); nothing was changed, and it takes writes
    /// again by itself once it has room.
    #[error("the store cannot write: {0}")]
    CannotWrite(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// A stored value that does not read back as what it should be: never a silent default.
    pub fn corrupt(what: &str, e: impl std::fmt::Display) -> Self {
        StoreError::Other(format!("stored {what} is unreadable: {e}"))
    }

    pub fn closed() -> Self {
        StoreError::Unavailable("the store is closed".into())
    }
}

impl From<ParseError> for StoreError {
    fn from(e: ParseError) -> Self {
        StoreError::Invalid(e.msg)
    }
}
