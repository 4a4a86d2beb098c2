//! Micro-benchmarks of the work on and next to the click path.
//!
//! `cargo bench -p clickhook --bench hot_path`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use clickhook::click::classify::{classify, ScannerLists};
use clickhook::click::recent::{Around, RecentClicks, Seen};
use clickhook::click::rewrite;
use clickhook::click::token::{LinkKeys, LinkRef};
use clickhook::domain::{ClickFilter, Enrollment, Prospect, ProspectStatus, StepType};
use clickhook::store::{self, EventContext, PendingClick};

fn keys() -> Arc<LinkKeys> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let keys = rt.block_on(async {
        let st = store::open(path.to_str().unwrap()).await.unwrap();
        LinkKeys::load(st).await.unwrap()
    });
    std::mem::forget(dir);
    keys
}

fn context() -> EventContext {
    let prospect = Prospect {
        id: 1234567890,
        account_id: 456789,
        email: "erlich@bachmanity.com".into(),
        first_name: "Erlich".into(),
        last_name: "Bachman".into(),
        company: "Bachmanity".into(),
        website: "https://bachmanity.com".into(),
        linkedin_url: "https://linkedin.com/erlich-bachman".into(),
        tags: "#VISIONARY".into(),
        title: "CEO".into(),
        phone: "+1 987-654-321".into(),
        address: "700 Welch Road".into(),
        city: "Palo Alto".into(),
        country: "United States".into(),
        industry: "IT".into(),
        state: "California".into(),
        snippets: Default::default(),
        status: ProspectStatus::Active,
        interested: None,
        imported: "saasinamerica.csv".into(),
        last_contacted: Some(1_742_477_554_000),
        in_campaign: 2,
        emails_sent: 3,
        updated_at: 0,
    };
    EventContext {
        account_id: 456789,
        timezone: "Europe/Warsaw".into(),
        snippet_labels: BTreeMap::from([(1, "my snippet label".into())]),
        prospect,
        campaign_id: 123456,
        campaign_name: "SaaS in America".into(),
        campaign_mailboxes: vec!["jared.dunn@piedpiper.com".into(), "richard.hendricks@piedpiper.com".into()],
        enrollment: Enrollment {
            campaign_id: 123456,
            prospect_id: 1234567890,
            step: Some(2),
            step_type: Some(StepType::Email),
            emails_sent: 2,
            followup_after: None,
            mailbox: Some("jared.dunn@piedpiper.com".into()),
            stopped: false,
        },
        email_step: 1,
        email_no: 2,
    }
}

fn benches(c: &mut Criterion) {
    let keys = keys();
    let token = keys.sign(LinkRef { email_id: 123_456, link_no: 7 });
    c.bench_function("token_sign", |b| b.iter(|| keys.sign(black_box(LinkRef { email_id: 123_456, link_no: 7 }))));
    c.bench_function("token_verify", |b| b.iter(|| keys.verify(black_box(&token)).unwrap()));

    let ctx = context();
    c.bench_function("event_build_and_serialize", |b| {
        b.iter(|| clickhook::event::link_clicked(black_box(&ctx), "https://google.com", 1_742_586_467_000).to_string())
    });
    // What settling does per click: the email's part serialized once, the click's spliced in.
    let element = clickhook::event::LinkClicked::new(&ctx);
    c.bench_function("event_spliced", |b| {
        b.iter(|| element.render(black_box("https://google.com"), 1_742_586_467_000))
    });

    let lists = ScannerLists::built_in();
    let click = PendingClick {
        id: 1,
        account_id: 1,
        email_id: 1,
        link_no: 1,
        at: 3_600_000,
        head: false,
        ip: Some("203.0.113.0".into()),
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36".into(),
        email_sent_at: 0,
        honeypot: false,
        url: "https://x.example".into(),
        filter: ClickFilter::default().into(),
        placed: None,
    };
    c.bench_function("classify", |b| b.iter(|| classify(black_box(&click), Around::default(), &lists)));
    // A crawler caught by a pattern written with lookaround: the set matches, then the whole
    // pattern confirms.
    let bot = PendingClick {
        user_agent: "Mozilla/5.0 (compatible; Google-InspectionTool/1.0; +http://www.google.com/bot.html)".into(),
        ..click.clone()
    };
    c.bench_function("classify_crawler", |b| b.iter(|| classify(black_box(&bot), Around::default(), &lists)));

    // The settler's view of busy emails, as in bench/click.sh: 100 emails of 100 links clicked
    // 40,000 times a second, so each email holds ~2,400 clicks within ±3 s and every click is a
    // burst. Per click: what is around it, what it pins, remembering it; rounds of 256.
    c.bench_function("recent_clicks_busy_email", |b| {
        let window = 3_000;
        let mut recent = RecentClicks::default();
        let mut id = 0i64;
        let mut next = move |recent: &mut RecentClicks| {
            id += 1;
            let at = id / 40;
            let (email, link_no) = (id % 100, (id * 7919) % 100);
            let around = recent.around(email, at, window, link_no);
            let pinned = recent.pin(email, at, window, link_no, around.other_link, false);
            let seen = Seen { id, link_no, at, honeypot: false, open_burst: !around.other_link, open_honeypot: true };
            recent.push(email, window, seen);
            if id % 256 == 0 {
                recent.end_round(0..100, at - 256 / 40);
            }
            pinned.len()
        };
        for _ in 0..400_000 {
            next(&mut recent);
        }
        b.iter(|| next(black_box(&mut recent)))
    });

    let html: String = (0..20)
        .map(|i| {
            format!("<p>Paragraph {i} with <a href=\"https://example.com/page/{i}?utm=x&amp;y=1\">a link</a>.</p>")
        })
        .collect();
    let html = format!("<html><body>{html}</body></html>");
    let tracked: Vec<Option<String>> = (0..20).map(|i| Some(format!("https://t.example/c/{i:020}"))).collect();
    c.bench_function("rewrite_html_20_links", |b| {
        b.iter(|| {
            let links = rewrite::collect_html(black_box(&html)).unwrap();
            rewrite::rewrite_html(&html, &tracked[..links.len()], None).unwrap()
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
