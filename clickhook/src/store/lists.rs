//! The filters of the paged lists (prospects, clicks, deliveries), built once for both
//! dialects: SQL with `?` placeholders in order, and their values. A dialect supplies the few
//! words that differ ([`Dialect`]) and binds the values its own way. Only fixed column names
//! reach the SQL text; everything from a request is a bound value.

use super::records::{ClickQuery, DeliveryQuery, ProspectQuery, VerdictFilter};
use super::rows::{DELIVERY_COLS, PROSPECT_COLS};
use crate::domain::prospect::{Interested, SortKey};

/// A bound value of a list filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(i64),
    Text(String),
    Ints(Vec<i64>),
}

/// What the dialects spell differently in list filters.
pub struct Dialect {
    /// `column` is one of the ids bound as one [`Arg::Ints`] value; `{}` stands for the column.
    pub in_ids: &'static str,
    /// A true boolean column value.
    pub yes: &'static str,
    /// Substring match ignoring ASCII case.
    pub like: &'static str,
}

/// A paged list's two statements, a count and a page (ending in `LIMIT ? OFFSET ?`), and
/// the values of the filter they share.
#[derive(Debug)]
pub struct Paged {
    pub count: String,
    pub page: String,
    pub filter: Where,
}

/// A WHERE clause and its values.
#[derive(Debug, Default)]
pub struct Where {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Where {
    fn and(&mut self, clause: &str, arg: Option<Arg>) {
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(clause);
        self.args.extend(arg);
    }
}

pub fn prospects_paged(d: &Dialect, account_id: i64, q: &ProspectQuery) -> Paged {
    let filter = prospects(d, account_id, q);
    Paged {
        count: format!("SELECT count(*) FROM prospects p WHERE {}", filter.sql),
        page: format!(
            "SELECT {PROSPECT_COLS} FROM prospects p WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
            filter.sql,
            prospects_order(q)
        ),
        filter,
    }
}

fn prospects(d: &Dialect, account_id: i64, q: &ProspectQuery) -> Where {
    let mut w = Where::default();
    w.and("p.account_id = ?", Some(Arg::Int(account_id)));
    if !q.ids.is_empty() {
        w.and(&d.in_ids.replace("{}", "p.id"), Some(Arg::Ints(q.ids.clone())));
    }
    if let Some(s) = q.status {
        w.and("p.status = ?", Some(Arg::Text(s.as_str().into())));
    }
    if let Some(i) = q.interested {
        w.and("p.interested = ?", Some(Arg::Text(i.map(Interested::as_str).unwrap_or_default().into())));
    }
    if !q.campaign_ids.is_empty() {
        let enrolled = d.in_ids.replace("{}", "n.campaign_id");
        w.and(
            &format!("EXISTS (SELECT 1 FROM enrollments n WHERE n.prospect_id = p.id AND {enrolled})"),
            Some(Arg::Ints(q.campaign_ids.clone())),
        );
    }
    for (field, term) in &q.search {
        let (column, term) =
            if field.is_email() { ("email_key", term.to_lowercase()) } else { (field.name(), term.clone()) };
        w.and(&format!("p.{column} {} ? ESCAPE '\\'", d.like), Some(Arg::Text(like_pattern(&term))));
    }
    w
}

/// The ORDER BY of a prospects list; ties by id.
fn prospects_order(q: &ProspectQuery) -> String {
    let mut order: Vec<String> =
        q.sort.iter().map(|(k, desc)| format!("{} {}", sort_column(*k), if *desc { "DESC" } else { "ASC" })).collect();
    order.push("p.id ASC".into());
    order.join(", ")
}

fn sort_column(k: SortKey) -> &'static str {
    match k {
        SortKey::Id => "p.id",
        SortKey::Email => "p.email_key",
        SortKey::FirstName => "p.first_name",
        SortKey::LastName => "p.last_name",
        SortKey::Company => "p.company",
        SortKey::Status => "p.status",
        SortKey::LastContacted => "last_contacted",
        SortKey::Updated => "p.updated_at",
    }
}

/// `%`, `_` and `\` are literal in a search term.
pub fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Clicks, newest first, for [`super::rows::click_record`].
pub fn clicks_paged(d: &Dialect, account_id: i64, q: &ClickQuery) -> Paged {
    let filter = clicks(d, account_id, q);
    let from = "FROM clicks c JOIN emails e ON e.id = c.email_id \
                LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no";
    Paged {
        count: format!("SELECT count(*) {from} WHERE {}", filter.sql),
        page: format!(
            "SELECT c.id, c.at, e.campaign_id, e.prospect_id, c.email_id, c.link_no, coalesce(l.url, ''), c.head, \
             c.ip, c.user_agent, CASE WHEN c.released = {yes} THEN c.verdict END, \
             CASE WHEN c.released = {yes} THEN c.reasons END {from} WHERE {} ORDER BY c.id DESC LIMIT ? OFFSET ?",
            filter.sql,
            yes = d.yes
        ),
        filter,
    }
}

fn clicks(d: &Dialect, account_id: i64, q: &ClickQuery) -> Where {
    let mut w = Where::default();
    w.and("c.account_id = ?", Some(Arg::Int(account_id)));
    if let Some(id) = q.after_id {
        w.and("c.id > ?", Some(Arg::Int(id)));
    }
    if let Some(c) = q.campaign_id {
        w.and("e.campaign_id = ?", Some(Arg::Int(c)));
    }
    if let Some(p) = q.prospect_id {
        w.and("e.prospect_id = ?", Some(Arg::Int(p)));
    }
    match q.verdict {
        Some(VerdictFilter::Pending) => w.and(&format!("(c.verdict IS NULL OR c.released <> {})", d.yes), None),
        Some(VerdictFilter::Final(v)) => {
            w.and(&format!("c.released = {} AND c.verdict = ?", d.yes), Some(Arg::Text(v.as_str().into())))
        }
        None => {}
    }
    if let Some(s) = q.since {
        w.and("c.at >= ?", Some(Arg::Int(s)));
    }
    if let Some(u) = q.until {
        w.and("c.at <= ?", Some(Arg::Int(u)));
    }
    w
}

/// Deliveries, newest first, for [`super::rows::delivery`].
pub fn deliveries_paged(account_id: i64, q: &DeliveryQuery) -> Paged {
    let filter = deliveries(account_id, q);
    Paged {
        count: format!("SELECT count(*) FROM deliveries WHERE {}", filter.sql),
        page: format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE {} ORDER BY id DESC LIMIT ? OFFSET ?", filter.sql),
        filter,
    }
}

fn deliveries(account_id: i64, q: &DeliveryQuery) -> Where {
    let mut w = Where::default();
    w.and("account_id = ?", Some(Arg::Int(account_id)));
    if let Some(s) = q.subscription_id {
        w.and("subscription_id = ?", Some(Arg::Int(s)));
    }
    if let Some(s) = q.state {
        w.and("state = ?", Some(Arg::Text(s.as_str().into())));
    }
    if let Some(t) = q.since {
        w.and("created_at >= ?", Some(Arg::Int(t)));
    }
    if let Some(t) = q.until {
        w.and("created_at <= ?", Some(Arg::Int(t)));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::prospect::SearchField;

    const D: Dialect = Dialect { in_ids: "{} = ANY(?)", yes: "TRUE", like: "ILIKE" };

    #[test]
    fn request_text_is_only_ever_a_value() {
        let q = ProspectQuery {
            search: vec![(SearchField::parse("company").unwrap(), "a'b%".into())],
            ids: vec![1, 2],
            ..Default::default()
        };
        let w = prospects(&D, 7, &q);
        assert_eq!(w.sql, "p.account_id = ? AND p.id = ANY(?) AND p.company ILIKE ? ESCAPE '\\'");
        assert_eq!(w.args, [Arg::Int(7), Arg::Ints(vec![1, 2]), Arg::Text("%a'b\\%%".into())]);
    }

    #[test]
    fn email_search_is_on_the_lower_cased_key() {
        let q =
            ProspectQuery { search: vec![(SearchField::parse("email").unwrap(), "A@B".into())], ..Default::default() };
        let w = prospects(&D, 7, &q);
        assert!(w.sql.ends_with("p.email_key ILIKE ? ESCAPE '\\'"), "{}", w.sql);
        assert_eq!(w.args[1], Arg::Text("%a@b%".into()));
    }
}
