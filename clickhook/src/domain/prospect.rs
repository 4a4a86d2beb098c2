//! Prospects: the people emails go to, their fields, and how an upsert merges into them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{wire_enum, Millis, ParseError};

/// An email address, trimmed, kept with the case it was given; compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        let bad = |why: &str| ParseError::email(format!("Invalid email address {s:?}: {why}."));
        if s.is_empty() {
            return Err(ParseError::required("email"));
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

impl Interested {
    /// `""` means "no interest level", as in the payload.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, ParseError> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(raw).map(Some)
        }
    }
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
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ParseError> {
        if value.contains('\0') {
            return Err(ParseError::invalid(format!("{name} holds a NUL character, which clickhook does not store.")));
        }
        match name {
            "status" => {
                self.status = if value.trim().is_empty() { None } else { Some(ProspectStatus::parse(value)?) };
            }
            "interested" => self.interested = Some(Interested::parse_optional(value)?),
            "tags" => self.tags = Some(normalize_tags(value)),
            _ => match self.text_mut(name) {
                Some(slot) => {
                    if value.len() > 10_000 {
                        return Err(ParseError::invalid(format!("{name} is longer than 10000 bytes.")));
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

/// A prospect as stored. The derived fields are computed from emails and enrollments on read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prospect {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub website: String,
    pub linkedin_url: String,
    pub tags: String,
    pub title: String,
    pub phone: String,
    pub address: String,
    pub city: String,
    pub country: String,
    pub industry: String,
    pub state: String,
    pub snippets: [String; 15],
    pub status: ProspectStatus,
    pub interested: Option<Interested>,
    pub imported: String,
    /// Derived from the emails sent, never written directly.
    pub last_contacted: Option<Millis>,
    pub in_campaign: i64,
    pub emails_sent: i64,
    pub updated_at: Millis,
}

impl Prospect {
    /// A prospect with nothing but its account: what an upsert of a new email starts from.
    pub fn blank(account_id: i64) -> Self {
        Prospect {
            id: 0,
            account_id,
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            company: String::new(),
            website: String::new(),
            linkedin_url: String::new(),
            tags: String::new(),
            title: String::new(),
            phone: String::new(),
            address: String::new(),
            city: String::new(),
            country: String::new(),
            industry: String::new(),
            state: String::new(),
            snippets: Default::default(),
            status: ProspectStatus::Active,
            interested: None,
            imported: String::new(),
            last_contacted: None,
            in_campaign: 0,
            emails_sent: 0,
            updated_at: 0,
        }
    }

    /// The key prospects are matched on (see [`EmailAddress::key`]).
    pub fn email_key(&self) -> String {
        self.email.to_lowercase()
    }

    /// The text fields, in the order of [`TEXT_FIELDS`].
    pub fn text_fields(&self) -> [&String; 13] {
        [
            &self.first_name,
            &self.last_name,
            &self.company,
            &self.website,
            &self.linkedin_url,
            &self.tags,
            &self.title,
            &self.phone,
            &self.address,
            &self.city,
            &self.country,
            &self.industry,
            &self.state,
        ]
    }

    fn text_fields_mut(&mut self) -> [&mut String; 13] {
        [
            &mut self.first_name,
            &mut self.last_name,
            &mut self.company,
            &mut self.website,
            &mut self.linkedin_url,
            &mut self.tags,
            &mut self.title,
            &mut self.phone,
            &mut self.address,
            &mut self.city,
            &mut self.country,
            &mut self.industry,
            &mut self.state,
        ]
    }

    /// Sets the text fields from stored values in [`TEXT_FIELDS`] order.
    pub fn set_text_fields(&mut self, values: [String; 13]) {
        for (slot, v) in self.text_fields_mut().into_iter().zip(values) {
            *slot = v;
        }
    }

    /// Applies the fields `input` gives (all of them, on a blank prospect) and its email.
    pub fn apply(&mut self, input: &ProspectInput) {
        let f = &input.fields;
        let given = [
            &f.first_name,
            &f.last_name,
            &f.company,
            &f.website,
            &f.linkedin_url,
            &f.tags,
            &f.title,
            &f.phone,
            &f.address,
            &f.city,
            &f.country,
            &f.industry,
            &f.state,
        ];
        for (slot, v) in self.text_fields_mut().into_iter().zip(given) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        for (slot, given) in self.snippets.iter_mut().zip(&f.snippets) {
            if let Some(v) = given {
                *slot = v.clone();
            }
        }
        if let Some(s) = f.status {
            self.status = s;
        }
        if let Some(i) = f.interested {
            self.interested = i;
        }
        self.email = input.email.as_str().to_string();
    }
}

/// What an upsert did to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created(i64),
    Updated(i64),
    /// The email was known and `update` was off: nothing changed.
    Unchanged(i64),
}

impl Upserted {
    pub fn id(self) -> i64 {
        match self {
            Upserted::Created(id) | Upserted::Updated(id) | Upserted::Unchanged(id) => id,
        }
    }
}

/// How a chunk of inputs merges into the prospects already stored: which to create, which to
/// change, and what each input did. An email given twice is created once and then updated.
#[derive(Debug, Clone)]
pub struct UpsertPlan {
    /// New prospects, in input order; their ids are the store's to assign.
    pub created: Vec<Prospect>,
    /// Stored prospects with new field values.
    pub changed: Vec<Prospect>,
    outcomes: Vec<PlannedOutcome>,
}

#[derive(Debug, Clone, Copy)]
enum PlannedOutcome {
    Created(usize),
    /// An email this chunk created already, given again: updated, or left alone.
    CreatedBefore(usize, bool),
    /// Updated or unchanged: a prospect stored before this chunk.
    Stored(i64, bool),
}

impl UpsertPlan {
    /// `existing` holds the stored prospects whose email key an input names.
    pub fn new(
        account_id: i64,
        inputs: &[ProspectInput],
        existing: Vec<Prospect>,
        update: bool,
        imported: Option<&str>,
    ) -> Self {
        enum Slot {
            /// An index into `stored`.
            Stored(usize),
            /// An index into `created`.
            New(usize),
        }
        // Stored prospects, with whether this chunk changed them.
        let mut stored: Vec<(Prospect, bool)> = existing.into_iter().map(|p| (p, false)).collect();
        let mut slots: HashMap<String, Slot> =
            stored.iter().enumerate().map(|(i, (p, _))| (p.email_key(), Slot::Stored(i))).collect();
        let mut created: Vec<Prospect> = Vec::new();
        let mut outcomes = Vec::with_capacity(inputs.len());
        for input in inputs {
            let outcome = match slots.get(&input.email.key()) {
                Some(&Slot::Stored(i)) if !update => PlannedOutcome::Stored(stored[i].0.id, false),
                Some(&Slot::Stored(i)) => {
                    let (p, dirty) = &mut stored[i];
                    p.apply(input);
                    if let Some(f) = imported {
                        p.imported = f.to_string();
                    }
                    *dirty = true;
                    PlannedOutcome::Stored(p.id, true)
                }
                Some(&Slot::New(i)) if !update => PlannedOutcome::CreatedBefore(i, false),
                Some(&Slot::New(i)) => {
                    let p = &mut created[i];
                    p.apply(input);
                    if let Some(f) = imported {
                        p.imported = f.to_string();
                    }
                    PlannedOutcome::CreatedBefore(i, true)
                }
                None => {
                    let mut p = Prospect::blank(account_id);
                    p.apply(input);
                    p.imported = imported.unwrap_or_default().to_string();
                    created.push(p);
                    slots.insert(input.email.key(), Slot::New(created.len() - 1));
                    PlannedOutcome::Created(created.len() - 1)
                }
            };
            outcomes.push(outcome);
        }
        let mut changed: Vec<Prospect> = stored.into_iter().filter(|(_, dirty)| *dirty).map(|(p, _)| p).collect();
        changed.sort_by_key(|p| p.id);
        UpsertPlan { created, changed, outcomes }
    }

    /// What each input did, once the store has given the created prospects their ids (in order).
    pub fn outcomes(&self, created_ids: &[i64]) -> Vec<Upserted> {
        self.outcomes
            .iter()
            .map(|o| match *o {
                PlannedOutcome::Created(i) => Upserted::Created(created_ids[i]),
                PlannedOutcome::CreatedBefore(i, true) => Upserted::Updated(created_ids[i]),
                PlannedOutcome::CreatedBefore(i, false) => Upserted::Unchanged(created_ids[i]),
                PlannedOutcome::Stored(id, true) => Upserted::Updated(id),
                PlannedOutcome::Stored(id, false) => Upserted::Unchanged(id),
            })
            .collect()
    }
}

/// A column a prospects list may be searched on. Only these names ever reach SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchField(&'static str);

impl SearchField {
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        ["email", "status", "imported"].iter().chain(TEXT_FIELDS.iter()).find(|f| **f == name).map(|f| SearchField(f))
    }
    pub fn name(self) -> &'static str {
        self.0
    }
    /// Email is matched on its key (lower case), so a search term is lowered too.
    pub fn is_email(self) -> bool {
        self.0 == "email"
    }
}

/// What a prospects list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Email,
    FirstName,
    LastName,
    Company,
    Status,
    LastContacted,
    Updated,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => SortKey::Id,
            "email" => SortKey::Email,
            "first_name" => SortKey::FirstName,
            "last_name" => SortKey::LastName,
            "company" => SortKey::Company,
            "status" => SortKey::Status,
            "last_contacted" => SortKey::LastContacted,
            "updated" => SortKey::Updated,
            _ => return None,
        })
    }
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

#[cfg(test)]
mod upsert_tests {
    use super::*;

    fn input(email: &str, first_name: &str) -> ProspectInput {
        let fields = ProspectFields { first_name: Some(first_name.into()), ..Default::default() };
        ProspectInput { email: EmailAddress::parse(email).unwrap(), fields }
    }

    fn stored(id: i64, email: &str) -> Prospect {
        Prospect { id, email: email.into(), first_name: "Old".into(), ..Prospect::blank(1) }
    }

    #[test]
    fn creates_updates_and_keeps() {
        let inputs = [input("new@x.co", "N"), input("OLD@x.co", "Changed")];
        let plan = UpsertPlan::new(1, &inputs, vec![stored(7, "old@x.co")], true, Some("f.csv"));
        assert_eq!(plan.created.len(), 1);
        assert_eq!(plan.created[0].imported, "f.csv");
        assert_eq!(plan.changed[0].first_name, "Changed");
        assert_eq!(plan.changed[0].email, "OLD@x.co", "the address is kept as last given");
        assert_eq!(plan.outcomes(&[40]), [Upserted::Created(40), Upserted::Updated(7)]);

        let plan = UpsertPlan::new(1, &inputs, vec![stored(7, "old@x.co")], false, None);
        assert!(plan.changed.is_empty(), "without update a known prospect is left alone");
        assert_eq!(plan.outcomes(&[40]), [Upserted::Created(40), Upserted::Unchanged(7)]);
    }

    #[test]
    fn an_email_given_twice_is_created_once() {
        let inputs = [input("a@x.co", "First"), input("A@x.co", "Second")];
        let plan = UpsertPlan::new(1, &inputs, vec![], true, None);
        assert_eq!(plan.created.len(), 1);
        assert_eq!(plan.created[0].first_name, "Second");
        assert_eq!(plan.outcomes(&[5]), [Upserted::Created(5), Upserted::Updated(5)]);
        let plan = UpsertPlan::new(1, &inputs, vec![], false, None);
        assert_eq!(plan.created[0].first_name, "First");
        assert_eq!(plan.outcomes(&[5]), [Upserted::Created(5), Upserted::Unchanged(5)]);
    }

    #[test]
    fn search_fields_are_a_closed_set() {
        assert_eq!(SearchField::parse("Company").map(SearchField::name), Some("company"));
        assert!(SearchField::parse("email").unwrap().is_email());
        assert_eq!(SearchField::parse("id; DROP TABLE prospects"), None);
        assert_eq!(SearchField::parse("snippet1"), None);
    }
}
