//! Builds the `link_clicked` element, field for field as Woodpecker documents it.
//!
//! The contract (`shared/spec/link_clicked.example.json`) fixes key order, types and
//! spelling: integers where the example has integers, `""` for empty strings, `null` where
//! the field table allows it, `followup_after` left out when null, and every timestamp as
//! `%Y-%m-%dT%H:%M:%S%z` in the account's time zone. Nothing else in clickhook formats
//! this payload; delivery sends these bytes as they are.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use crate::store::{EventContext, Millis};

pub const METHOD: &str = "link_clicked";

/// `2025-03-21T20:47:47+0100`: whole seconds, numeric offset without colon.
pub fn format_time(at: Millis, tz: &str) -> String {
    let utc: DateTime<Utc> = Utc.timestamp_millis_opt(at).single().unwrap_or_default();
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => utc.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        Err(_) => utc.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
    }
}

/// One element of the webhook body's array.
pub fn link_clicked(ctx: &EventContext, click_url: &str, clicked_at: Millis) -> Value {
    let p = &ctx.prospect;
    let tz = ctx.timezone.as_str();
    let mut prospect = Map::new();
    let mut put = |k: &str, v: Value| {
        prospect.insert(k.to_string(), v);
    };
    put("id", json!(p.id));
    put("email", json!(p.email));
    put("first_name", json!(p.first_name));
    put("last_name", json!(p.last_name));
    put("company", json!(p.company));
    put("website", json!(p.website));
    put("linkedin_url", json!(p.linkedin_url));
    put("tags", json!(p.tags));
    put("title", json!(p.title));
    put("phone", json!(p.phone));
    put("address", json!(p.address));
    put("city", json!(p.city));
    put("country", json!(p.country));
    for (i, s) in p.snippets.iter().enumerate() {
        put(&format!("snippet{}", i + 1), json!(s));
    }
    let mut labels = Map::new();
    for (slot, label) in &ctx.snippet_labels {
        if let Some(value) = p.snippets.get(usize::from(*slot).wrapping_sub(1)) {
            labels.insert(label.clone(), json!(value));
        }
    }
    put("snippet_labels", Value::Object(labels));
    put("industry", json!(p.industry));
    put("state", json!(p.state));
    put("last_contacted", json!(p.last_contacted.map(|t| format_time(t, tz)).unwrap_or_default()));
    put("status", json!(p.status));
    put("in_campaign", json!(p.in_campaign));
    put("emails_sent", json!(p.emails_sent));
    put("imported", json!(p.imported));
    put("interested", json!(p.interested));
    put("campaign_id", json!(ctx.campaign_id));
    put("campaign_name", json!(ctx.campaign_name));
    put("campaign_email", json!(ctx.enrollment.mailbox.clone().unwrap_or_default()));
    put("campaign_emails", json!(ctx.campaign_mailboxes));
    put("campaign_email_sent", json!(ctx.enrollment.emails_sent));
    put("step", json!(ctx.enrollment.step));
    put("step_type", json!(ctx.enrollment.step_type));
    if let Some(f) = ctx.enrollment.followup_after {
        put("followup_after", json!(format_time(f, tz)));
    }

    let mut event = Map::new();
    event.insert("method".into(), json!(METHOD));
    event.insert("prospect".into(), Value::Object(prospect));
    event.insert("click_url".into(), json!(click_url));
    event.insert("step".into(), json!(ctx.email_step));
    event.insert("email_no".into(), json!(format!("#{}", ctx.email_no)));
    event.insert("timestamp".into(), json!(format_time(clicked_at, tz)));
    event.insert("firm_id".into(), json!(ctx.account_id));
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warsaw_offsets_follow_daylight_saving() {
        // 2025-03-21T19:47:47Z is winter time in Warsaw, 2025-07-01 summer time.
        assert_eq!(format_time(1_742_586_467_000, "Europe/Warsaw"), "2025-03-21T20:47:47+0100");
        assert_eq!(format_time(1_751_371_200_000, "Europe/Warsaw"), "2025-07-01T14:00:00+0200");
        assert_eq!(format_time(0, "UTC"), "1970-01-01T00:00:00+0000");
    }
}
