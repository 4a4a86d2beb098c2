//! The statistics' SQL, written once for both dialects (`?` placeholders, numbered by
//! PostgreSQL's binder): reads that add up the rollup rows of a range, and the upserts that
//! add a released batch to them ([`crate::domain::stats::Rollup`]).

use super::lists::{Arg, Dialect, Where};
use super::records::StatsQuery;
use crate::domain::stats::Span;

/// The statements that answer a [`StatsQuery`], each with its values.
pub struct StatsSql {
    /// step, emails sent
    pub emails: Where,
    /// step, url, human, bot
    pub links: Where,
    /// reason, clicks
    pub reasons: Where,
    /// step, prospect: those with a person's click, one statement per part of the range (a
    /// pair may come from several)
    pub clickers: Vec<Where>,
    /// bucket, human, bot: a row per campaign and bucket of the series' parts, in no order
    pub series: Where,
}

/// `SELECT cols FROM table` for each part of the range, glued with UNION ALL: every part
/// reads its own span's rows through the primary key (campaign, span, bucket).
fn parts(d: &Dialect, q: &StatsQuery, table: &str, cols: &str) -> Where {
    parts_of(d, q, &q.range.parts(), table, cols)
}

fn parts_of(d: &Dialect, q: &StatsQuery, parts: &[(Span, i64, i64)], table: &str, cols: &str) -> Where {
    let mut w = Where::default();
    let in_ids = d.in_ids.replace("{}", "campaign_id");
    let selects: Vec<String> = parts
        .iter()
        .map(|&(span, from, to)| {
            w.args.extend([Arg::Ints(q.campaign_ids.clone()), Arg::Int(span.code()), Arg::Int(from), Arg::Int(to)]);
            format!("SELECT {cols} FROM {table} WHERE {in_ids} AND span = ? AND bucket >= ? AND bucket < ?")
        })
        .collect();
    w.sql = selects.join(" UNION ALL ");
    w
}

fn over(mut w: Where, head: &str, tail: &str) -> Where {
    w.sql = format!("{head} FROM ({}) AS parts {tail}", w.sql);
    w
}

pub fn stats_sql(d: &Dialect, q: &StatsQuery) -> StatsSql {
    let series = parts_of(d, q, &q.series_parts, "stats_series", "bucket, human, bot");
    StatsSql {
        emails: over(
            parts(d, q, "stats_emails", "step, sent"),
            "SELECT step, CAST(sum(sent) AS BIGINT)",
            "GROUP BY step ORDER BY step",
        ),
        links: over(
            parts(d, q, "stats_links", "step, url, human, bot"),
            "SELECT step, url, CAST(sum(human) AS BIGINT), CAST(sum(bot) AS BIGINT)",
            "GROUP BY step, url",
        ),
        reasons: over(
            parts(d, q, "stats_reasons", "reason, clicks"),
            "SELECT reason, CAST(sum(clicks) AS BIGINT)",
            "GROUP BY reason",
        ),
        clickers: q
            .range
            .parts()
            .into_iter()
            .map(|(span, from, to)| Where {
                sql: format!(
                    "SELECT DISTINCT step, prospect_id FROM {} WHERE {} AND bucket >= ? AND bucket < ?",
                    clickers_table(span),
                    d.in_ids.replace("{}", "campaign_id")
                ),
                args: vec![Arg::Ints(q.campaign_ids.clone()), Arg::Int(from), Arg::Int(to)],
            })
            .collect(),
        series,
    }
}

/// Adds to a series row.
pub const ADD_SERIES: &str = "INSERT INTO stats_series (campaign_id, span, bucket, human, bot) \
     VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign_id, span, bucket) \
     DO UPDATE SET human = stats_series.human + excluded.human, bot = stats_series.bot + excluded.bot";

pub const ADD_LINK: &str = "INSERT INTO stats_links (campaign_id, span, bucket, step, url, human, bot) \
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, span, bucket, step, url) \
     DO UPDATE SET human = stats_links.human + excluded.human, bot = stats_links.bot + excluded.bot";

pub const ADD_REASON: &str = "INSERT INTO stats_reasons (campaign_id, span, bucket, reason, clicks) \
     VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign_id, span, bucket, reason) \
     DO UPDATE SET clicks = stats_reasons.clicks + excluded.clicks";

fn clickers_table(span: Span) -> &'static str {
    match span {
        Span::Quarter => "stats_clickers_quarter",
        Span::Day => "stats_clickers_day",
        Span::Hour => unreachable!("prospects who clicked are kept by quarter hour and by day"),
    }
}

/// A prospect whose click is a person's, in a bucket of this span; it may already be there.
/// The prospect may have been deleted since the email went out: then there is no one to count.
/// Values: campaign, bucket, step, prospect.
pub fn add_clicker(span: Span) -> &'static str {
    match span {
        Span::Quarter => {
            "INSERT INTO stats_clickers_quarter (campaign_id, bucket, step, prospect_id) \
             SELECT ?, ?, ?, id FROM prospects WHERE id = ? ON CONFLICT DO NOTHING"
        }
        Span::Day => {
            "INSERT INTO stats_clickers_day (campaign_id, bucket, step, prospect_id) \
             SELECT ?, ?, ?, id FROM prospects WHERE id = ? ON CONFLICT DO NOTHING"
        }
        Span::Hour => unreachable!("prospects who clicked are kept by quarter hour and by day"),
    }
}

/// Emails sent in a bucket and step ([`crate::domain::stats::emails_rollup`]).
pub const ADD_EMAILS: &str = "INSERT INTO stats_emails (campaign_id, span, bucket, step, sent) \
     VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign_id, span, bucket, step) \
     DO UPDATE SET sent = stats_emails.sent + excluded.sent";

/// How many rows the backfill reads at a time.
pub const BACKFILL_CHUNK: i64 = 50_000;

/// Released clicks after an id, in id order, with what [`crate::domain::stats::Counted`] needs:
/// the backfill of a store that released them before statistics existed. `{yes}` is the
/// dialect's true.
pub const RELEASED_AFTER: &str = "SELECT c.id, e.account_id, e.campaign_id, e.step, e.prospect_id, \
     coalesce(l.url, ''), c.at, c.verdict, c.reasons FROM clicks c JOIN emails e ON e.id = c.email_id \
     LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
     WHERE c.id > ? AND c.released = {yes} AND c.verdict IS NOT NULL ORDER BY c.id LIMIT ?";

/// Emails after an id, in id order: (id, campaign, step, sent_at).
pub const EMAILS_AFTER: &str = "SELECT id, campaign_id, step, sent_at FROM emails WHERE id > ? ORDER BY id LIMIT ?";
