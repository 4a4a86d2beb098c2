//! Builds the `link_clicked` element, field for field as Woodpecker documents it.
//!
//! The contract (`shared/spec/link_clicked.example.json`) fixes key order, types and
//! spelling: integers where the example has integers, `""` for empty strings, `null` where
//! the field table allows it, `followup_after` left out when null, and every timestamp as
//! `%Y-%m-%dT%H:%M:%S%z` in the account's time zone. Nothing else in clickhook formats
//! this payload; delivery sends these bytes as they are.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};

use crate::domain::Millis;
use crate::store::EventContext;

pub const METHOD: &str = "link_clicked";

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

/// `2025-03-21T20:47:47+0100`: whole seconds, numeric offset without colon.
pub fn format_time(at: Millis, tz: &str) -> String {
    format_in(tz.parse().ok(), at)
}

/// [`format_time`] with the zone already looked up (`None`: UTC).
fn format_in(zone: Option<chrono_tz::Tz>, at: Millis) -> String {
    let utc: DateTime<Utc> = Utc.timestamp_millis_opt(at).single().unwrap_or_default();
    match zone {
        Some(zone) => write_time(utc.with_timezone(&zone)),
        None => write_time(utc),
    }
}

/// chrono's `TIME_FORMAT` without parsing the format string each time (settling formats one
/// per click); years and offsets it would print otherwise are left to chrono.
fn write_time<Z: TimeZone>(t: DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    let offset = t.offset().fix().local_minus_utc();
    if !(0..=9999).contains(&t.year()) || offset % 60 != 0 {
        return t.format(TIME_FORMAT).to_string();
    }
    let (sign, minutes) = if offset < 0 { ('-', -offset / 60) } else { ('+', offset / 60) };
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        minutes / 60,
        minutes % 60
    );
    out
}

/// One element of the webhook body's array. The reference for [`LinkClicked`], which settling
/// uses to build the same bytes faster.
pub fn link_clicked(ctx: &EventContext, click_url: &str, clicked_at: Millis) -> Value {
    let tz = ctx.timezone.as_str();
    let mut event = Map::new();
    event.insert("method".into(), json!(METHOD));
    event.insert("prospect".into(), Value::Object(prospect(ctx)));
    event.insert("click_url".into(), json!(click_url));
    event.insert("step".into(), json!(ctx.email_step));
    event.insert("email_no".into(), json!(format!("#{}", ctx.email_no)));
    event.insert("timestamp".into(), json!(format_time(clicked_at, tz)));
    event.insert("firm_id".into(), json!(ctx.account_id));
    Value::Object(event)
}

/// An email's `link_clicked` element, serialized, with the click's URL and time left open:
/// everything else is the same for every click on that email, so a settling round serializes
/// it once per email rather than once per click.
pub struct LinkClicked {
    /// `{"method":"link_clicked","prospect":{…},"click_url":`
    head: String,
    /// `,"step":1,"email_no":"#2","timestamp":`
    middle: String,
    /// `,"firm_id":42}`
    tail: String,
    zone: Option<chrono_tz::Tz>,
}

impl LinkClicked {
    pub fn new(ctx: &EventContext) -> Self {
        let json = |v: Value| v.to_string();
        LinkClicked {
            head: format!(
                "{{\"method\":{},\"prospect\":{},\"click_url\":",
                json(json!(METHOD)),
                json(Value::Object(prospect(ctx)))
            ),
            middle: format!(
                ",\"step\":{},\"email_no\":{},\"timestamp\":",
                json(json!(ctx.email_step)),
                json(json!(format!("#{}", ctx.email_no)))
            ),
            tail: format!(",\"firm_id\":{}}}", json(json!(ctx.account_id))),
            zone: ctx.timezone.parse().ok(),
        }
    }

    /// The element for one click: byte for byte `link_clicked(ctx, click_url, clicked_at)`.
    pub fn render(&self, click_url: &str, clicked_at: Millis) -> String {
        let url = Value::from(click_url).to_string();
        let time = format_in(self.zone, clicked_at);
        let mut out =
            String::with_capacity(self.head.len() + url.len() + self.middle.len() + time.len() + 2 + self.tail.len());
        out.push_str(&self.head);
        out.push_str(&url);
        out.push_str(&self.middle);
        out.push('"');
        out.push_str(&time);
        out.push('"');
        out.push_str(&self.tail);
        out
    }
}

fn prospect(ctx: &EventContext) -> Map<String, Value> {
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
    put("status", json!(p.status.as_str()));
    put("in_campaign", json!(p.in_campaign));
    put("emails_sent", json!(p.emails_sent));
    put("imported", json!(p.imported));
    put("interested", json!(p.interested.map(|i| i.as_str()).unwrap_or_default()));
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
    prospect
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

    #[test]
    fn fast_time_format_is_chronos() {
        let zones =
            ["UTC", "Europe/Warsaw", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham", "Africa/Monrovia"];
        let chrono_format = |at: Millis, zone: &str| {
            let utc = Utc.timestamp_millis_opt(at).single().unwrap();
            utc.with_timezone(&zone.parse::<chrono_tz::Tz>().unwrap()).format(TIME_FORMAT).to_string()
        };
        // 1900 to 2100 in uneven steps, and the edges of years 0 and 9999.
        let mut at = -2_208_988_800_000i64;
        while at < 4_102_444_800_000 {
            for zone in zones {
                assert_eq!(format_time(at, zone), chrono_format(at, zone), "{at} in {zone}");
            }
            at += 86_400_000 * 37 + 3_600_000 * 5 + 61_001;
        }
        for at in [-62_167_219_200_001, -62_167_219_200_000, 253_402_300_799_999, 253_402_300_800_000] {
            assert_eq!(format_time(at, "Europe/Warsaw"), chrono_format(at, "Europe/Warsaw"), "{at}");
            assert_eq!(format_time(at, "UTC"), chrono_format(at, "UTC"), "{at}");
        }
    }

    fn context(timezone: &str, followup_after: Option<Millis>) -> EventContext {
        let prospect = crate::domain::Prospect {
            id: 1234567890,
            account_id: 7,
            email: "erlich@bachmanity.com".into(),
            first_name: "Erl\"ich \\ \u{1F600} \u{7}".into(),
            snippets: std::array::from_fn(|i| ["one", "", "</script>"].get(i).unwrap_or(&"").to_string()),
            last_contacted: Some(1_742_477_554_000),
            in_campaign: 2,
            emails_sent: 3,
            ..crate::domain::Prospect::blank(7)
        };
        EventContext {
            account_id: 7,
            timezone: timezone.into(),
            snippet_labels: std::collections::BTreeMap::from([(1, "my label".into()), (3, "x\"y".into())]),
            prospect,
            campaign_id: 123456,
            campaign_name: "SaaS \"in\" America".into(),
            campaign_mailboxes: vec!["a@x.example".into(), "b@x.example".into()],
            enrollment: crate::domain::Enrollment {
                campaign_id: 123456,
                prospect_id: 1234567890,
                step: Some(2),
                step_type: Some(crate::domain::StepType::Email),
                emails_sent: 2,
                followup_after,
                mailbox: None,
                stopped: false,
            },
            email_step: 1,
            email_no: 12,
        }
    }

    #[test]
    fn spliced_element_is_the_reference_byte_for_byte() {
        for (tz, followup) in [("Europe/Warsaw", Some(1_742_600_000_000)), ("Not/AZone", None), ("UTC", None)] {
            let ctx = context(tz, followup);
            let template = LinkClicked::new(&ctx);
            for url in ["https://google.com", "https://x.example/a?b=\"c\"&d=\u{e9}\\", ""] {
                for at in [0, 1_742_586_467_000, 1_751_371_200_999] {
                    assert_eq!(template.render(url, at), link_clicked(&ctx, url, at).to_string());
                }
            }
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever the stored text (quotes, backslashes, control characters, any script),
            /// the element spliced per click is the reference serialization, byte for byte, and JSON.
            #[test]
            fn spliced_elements_are_the_reference(
                name in any::<String>(),
                campaign in any::<String>(),
                label in any::<String>(),
                snippet in any::<String>(),
                url in any::<String>(),
                at in -2_208_988_800_000i64..4_102_444_800_000,
                zone in prop::sample::select(vec!["UTC", "Europe/Warsaw", "Asia/Kathmandu", "Not/AZone"]),
                followup in prop::option::of(0i64..4_102_444_800_000),
            ) {
                let mut ctx = context(zone, followup);
                ctx.prospect.first_name = name;
                ctx.prospect.snippets[0] = snippet;
                ctx.campaign_name = campaign;
                ctx.snippet_labels.insert(1, label);
                let spliced = LinkClicked::new(&ctx).render(&url, at);
                prop_assert_eq!(&spliced, &link_clicked(&ctx, &url, at).to_string());
                let parsed: serde_json::Value = serde_json::from_str(&spliced).unwrap();
                prop_assert_eq!(parsed["click_url"].as_str(), Some(url.as_str()));
            }
        }
    }
}
