//! Accounts: a tenant's name, time zone, snippet labels and bot-click filter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Millis, ParseError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Snippet slot (1..=15) → label.
    pub snippet_labels: BTreeMap<u8, String>,
    pub click_filter: ClickFilter,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Chosen by the operator (the `firm_id` an integration knows), or given by the store.
    pub id: Option<i64>,
    pub name: String,
    pub timezone: String,
}

/// The largest id clickhook gives or accepts: JavaScript clients hold integers up to 2^53 − 1.
pub const MAX_ID: i64 = (1 << 53) - 1;

/// An account id an operator chose.
pub fn parse_account_id(id: i64) -> Result<i64, ParseError> {
    if (1..=MAX_ID).contains(&id) {
        Ok(id)
    } else {
        Err(ParseError::invalid(format!("An account id is from 1 to {MAX_ID}, not {id}.")))
    }
}

/// The fields a change to an account sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub snippet_labels: Option<BTreeMap<u8, String>>,
    pub click_filter: Option<ClickFilter>,
}

impl AccountPatch {
    /// The account as it is after this change.
    pub fn apply(self, mut a: Account) -> Account {
        if let Some(v) = self.name {
            a.name = v;
        }
        if let Some(v) = self.timezone {
            a.timezone = v;
        }
        if let Some(v) = self.snippet_labels {
            a.snippet_labels = v;
        }
        if let Some(v) = self.click_filter {
            a.click_filter = v;
        }
        a
    }
}

/// Per-account settings of the bot-click filter (`click_filter` in `/rest/v2/account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickFilter {
    /// A click sooner than this after the email was sent is a scanner's.
    pub min_seconds_after_send: u32,
    /// Clicks on different links of one email within this many seconds are a scanner's.
    pub burst_seconds: u32,
    /// Add an invisible link to tracked HTML; whoever follows it is not a person.
    pub honeypot: bool,
    /// Send webhooks for bot clicks too (they are always recorded).
    pub deliver_bot_clicks: bool,
    /// Judge by the shipped lists of crawler user agents and scanner networks.
    pub known_scanners: bool,
}

impl Default for ClickFilter {
    fn default() -> Self {
        ClickFilter {
            min_seconds_after_send: 10,
            burst_seconds: 3,
            honeypot: false,
            deliver_bot_clicks: false,
            known_scanners: true,
        }
    }
}

impl ClickFilter {
    /// Longest burst window accepted; the event of every click waits this long at most.
    pub const MAX_BURST_SECONDS: u32 = 60;

    pub fn burst_window_ms(&self) -> Millis {
        i64::from(self.burst_seconds) * 1000
    }
}

/// An IANA time zone name (`Europe/Warsaw`).
pub fn parse_timezone(raw: &str) -> Result<chrono_tz::Tz, ParseError> {
    raw.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        ParseError::invalid(format!("Unknown time zone {raw:?}; expected an IANA name such as Europe/Warsaw."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let a = Account {
            id: 1,
            name: "A".into(),
            timezone: "UTC".into(),
            snippet_labels: BTreeMap::new(),
            click_filter: ClickFilter::default(),
            created_at: 5,
        };
        let b = AccountPatch { name: Some("B".into()), ..Default::default() }.apply(a.clone());
        assert_eq!(b, Account { name: "B".into(), ..a });
    }
}
