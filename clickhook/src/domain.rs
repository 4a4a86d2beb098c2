//! Domain newtypes that parse and validate at the edge.
//!
//! Handlers turn raw input into these types first; everything behind them
//! (store, event builder) can then trust its inputs.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// An email address, trimmed, kept with the case it was given; compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim();
        let bad = |why: &str| ApiError::email(format!("Invalid email address {s:?}: {why}."));
        if s.is_empty() {
            return Err(ApiError::required("email"));
        }
        if s.len() > 254 {
            return Err(bad("longer than 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(bad("empty or over-long local part"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',') {
            return Err(bad("forbidden character"));
        }
        if local.contains('@') && !local.starts_with('"') {
            return Err(bad("more than one @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(bad("invalid domain"));
        }
        Ok(EmailAddress(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The key prospects are matched on: one address in any case is one prospect.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Declares a closed set of upper-case wire names with `parse`/`as_str`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($variant:ident = $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
            pub fn parse(raw: &str) -> Result<Self, ApiError> {
                let up = raw.trim().to_ascii_uppercase();
                match up.as_str() {
                    $($wire $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(ApiError::wrong_param(format!(
                        "Unknown {} {:?}; expected one of {}.",
                        $what,
                        raw,
                        [$($wire),+].join(", ")
                    ))),
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum!(ProspectStatus, "prospect status" {
    Active = "ACTIVE",
    Blacklist = "BLACKLIST",
    Replied = "REPLIED",
    Autoreplied = "AUTOREPLIED",
    Bounced = "BOUNCED",
    Invalid = "INVALID",
    ToCheck = "TO-CHECK" | "TO_CHECK",
    ToReview = "TO-REVIEW" | "TO_REVIEW",
});

wire_enum!(
    /// The payload spells `MAYBE_LATER`; Woodpecker's filter spells `MAYBE-LATER`. Both parse.
    Interested, "interest level" {
    Interested = "INTERESTED",
    MaybeLater = "MAYBE_LATER" | "MAYBE-LATER",
    NotInterested = "NOT_INTERESTED" | "NOT-INTERESTED",
});

wire_enum!(StepType, "step type" {
    Email = "EMAIL",
    ManualTask = "MANUAL_TASK",
    LinkedinDirectMessage = "LINKEDIN_DIRECT_MESSAGE",
});

wire_enum!(CampaignStatus, "campaign status" {
    Draft = "DRAFT",
    Running = "RUNNING",
    Paused = "PAUSED",
    Stopped = "STOPPED",
    Completed = "COMPLETED",
    Edited = "EDITED",
});

impl Interested {
    /// `""` means "no interest level", as in the payload.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, ApiError> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(raw).map(Some)
        }
    }
}

/// An IANA time zone name (`Europe/Warsaw`).
pub fn parse_timezone(raw: &str) -> Result<chrono_tz::Tz, ApiError> {
    raw.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        ApiError::wrong_param(format!("Unknown time zone {raw:?}; expected an IANA name such as Europe/Warsaw."))
    })
}

/// Normalises tags to Woodpecker's form: each starts with `#`, one space between.
/// Accepts `#A #B`, `A, B` or `A B`.
pub fn normalize_tags(raw: &str) -> String {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .map(|t| t.trim_start_matches('#'))
        .filter(|t| !t.is_empty())
        .map(|t| format!("#{t}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Webhook event names clickhook emits. Woodpecker has more; only this one is produced here.
pub const LINK_CLICKED: &str = "link_clicked";

pub fn parse_event_name(raw: &str) -> Result<&'static str, ApiError> {
    if raw.trim().eq_ignore_ascii_case(LINK_CLICKED) {
        Ok(LINK_CLICKED)
    } else if raw.trim().is_empty() {
        Err(ApiError::required("event"))
    } else {
        Err(ApiError::wrong_param(format!("Unsupported event {raw:?}; clickhook emits \"link_clicked\".")))
    }
}

/// The person fields of a prospect; `None` means "not given" (an update leaves it alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProspectFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub website: Option<String>,
    pub linkedin_url: Option<String>,
    pub tags: Option<String>,
    pub title: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub industry: Option<String>,
    pub state: Option<String>,
    pub snippets: [Option<String>; 15],
    pub status: Option<ProspectStatus>,
    /// `Some(None)` clears the interest level.
    pub interested: Option<Option<Interested>>,
}

/// Text columns of a prospect in storage order, shared by the store, the import and the API.
pub const TEXT_FIELDS: [&str; 13] = [
    "first_name",
    "last_name",
    "company",
    "website",
    "linkedin_url",
    "tags",
    "title",
    "phone",
    "address",
    "city",
    "country",
    "industry",
    "state",
];

impl ProspectFields {
    /// Whether `name` is a prospect field other than `email`.
    pub fn is_field(name: &str) -> bool {
        matches!(name, "status" | "interested") || ProspectFields::default().text_mut(name).is_some()
    }

    pub fn text_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "first_name" => &mut self.first_name,
            "last_name" => &mut self.last_name,
            "company" => &mut self.company,
            "website" => &mut self.website,
            "linkedin_url" => &mut self.linkedin_url,
            "tags" => &mut self.tags,
            "title" => &mut self.title,
            "phone" => &mut self.phone,
            "address" => &mut self.address,
            "city" => &mut self.city,
            "country" => &mut self.country,
            "industry" => &mut self.industry,
            "state" => &mut self.state,
            _ => {
                let n: usize = name.strip_prefix("snippet")?.parse().ok()?;
                if (1..=15).contains(&n) && name == format!("snippet{n}") {
                    &mut self.snippets[n - 1]
                } else {
                    return None;
                }
            }
        })
    }

    /// Sets one field from its wire name and string value, validating enums and tags.
    /// Returns Ok(false) for names that are not prospect fields (callers decide whether that is an error).
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ApiError> {
        match name {
            "status" => {
                self.status = if value.trim().is_empty() { None } else { Some(ProspectStatus::parse(value)?) };
            }
            "interested" => self.interested = Some(Interested::parse_optional(value)?),
            "tags" => self.tags = Some(normalize_tags(value)),
            _ => match self.text_mut(name) {
                Some(slot) => {
                    if value.len() > 10_000 {
                        return Err(ApiError::wrong_param(format!("{name} is longer than 10000 bytes.")));
                    }
                    *slot = Some(value.trim().to_string())
                }
                None => return Ok(false),
            },
        }
        Ok(true)
    }
}

/// A prospect to add or update, matched by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProspectInput {
    pub email: EmailAddress,
    pub fields: ProspectFields,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(EmailAddress::parse("erlich@bachmanity.com").is_ok());
        assert_eq!(EmailAddress::parse(" A@B.co ").unwrap().key(), "a@b.co");
        for bad in ["", "x", "a@b", "a@@b.com", "a b@c.com", "@b.com", "a@-b.com", "a@b..com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_accept_both_spellings() {
        assert_eq!(Interested::parse("maybe-later").unwrap(), Interested::MaybeLater);
        assert_eq!(Interested::parse("MAYBE_LATER").unwrap().as_str(), "MAYBE_LATER");
        assert_eq!(ProspectStatus::parse("to_check").unwrap().as_str(), "TO-CHECK");
        assert!(StepType::parse("SMS").is_err());
        assert_eq!(Interested::parse_optional("").unwrap(), None);
    }

    #[test]
    fn tags() {
        assert_eq!(normalize_tags("VIP, #VISIONARY"), "#VIP #VISIONARY");
        assert_eq!(normalize_tags("  "), "");
    }

    #[test]
    fn fields_by_name() {
        let mut f = ProspectFields::default();
        assert!(f.set("snippet15", "x").unwrap());
        assert!(!f.set("snippet16", "x").unwrap());
        assert!(!f.set("snippet01", "x").unwrap());
        assert!(f.set("status", "bogus").is_err());
        assert_eq!(f.snippets[14].as_deref(), Some("x"));
    }
}
