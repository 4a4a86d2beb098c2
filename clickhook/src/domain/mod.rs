//! The domain: what clickhook's words mean, and the rules over them.
//!
//! Types here parse raw input at the edge (emails, statuses, zones) and own their error,
//! [`ParseError`]; the API turns it into its envelope. The rules the product lives by are
//! plain functions here, one module per concept, tested without a database: each store reads
//! rows, asks the rule what to change, and applies the answer in its transaction. Nothing here
//! imports the store, the API or the click path.

pub mod account;
pub mod campaign;
pub mod click;
pub mod delivery;
pub mod import;
pub mod prospect;
pub mod retention;
pub mod stats;
pub mod tracking_domain;

pub use account::{parse_timezone, Account, AccountPatch, ClickFilter, NewAccount};
pub use campaign::{
    Campaign, CampaignPatch, CampaignStatus, Enrollment, EnrollmentKey, EnrollmentPatch, NewCampaign, Step, StepType,
};
pub use click::Verdict;
pub use delivery::{parse_event_name, AttemptOutcome, DeliveryState, Subscription, SubscriptionStatus, LINK_CLICKED};
pub use prospect::{
    normalize_tags, EmailAddress, Interested, Prospect, ProspectFields, ProspectInput, ProspectStatus, TEXT_FIELDS,
};

/// Time in storage and in rules: Unix milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A duration with its unit: `250ms`, `5s` (or bare `5`), `5m`, `2h`, `30d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}: expected a number and a unit, like 5s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m, h or d")),
    })
}

/// Input that does not parse, or a change a rule refuses. The API answers it with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub msg: String,
}

/// Which of Woodpecker's error codes a [`ParseError`] maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A value of the wrong form (`E_WRONG_PARAM`).
    Invalid,
    /// A required element is missing (`E_REQUIRED_ELEMENT`).
    Required,
    /// A malformed email address (`E_EMAIL`).
    Email,
}

impl ParseError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ParseError { kind: ParseErrorKind::Invalid, msg: msg.into() }
    }
    pub fn required(field: &str) -> Self {
        ParseError { kind: ParseErrorKind::Required, msg: format!("Missing required element: {field}.") }
    }
    pub fn email(msg: impl Into<String>) -> Self {
        ParseError { kind: ParseErrorKind::Email, msg: msg.into() }
    }
    /// Prefixes the message with where in the input the problem is (`prospects[3]`).
    pub fn at(mut self, place: impl std::fmt::Display) -> Self {
        self.msg = format!("{place}: {}", self.msg);
        self
    }
}

/// Declares a closed set of wire names with `parse`/`as_str`, serialized as the wire name.
/// `upper` names parse in any case; the others must match exactly.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire names, in order.
            pub const WIRE: &'static [&'static str] = &[$($wire),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
            /// Parses a wire name given in any case.
            pub fn parse(raw: &str) -> Result<Self, $crate::domain::ParseError> {
                let trimmed = raw.trim();
                $(if trimmed.eq_ignore_ascii_case($wire) $(|| trimmed.eq_ignore_ascii_case($alias))* {
                    return Ok($name::$variant);
                })+
                Err($crate::domain::ParseError::invalid(format!(
                    "Unknown {} {:?}; expected one of {}.",
                    $what,
                    raw,
                    [$($wire),+].join(", ")
                )))
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use wire_enum;
