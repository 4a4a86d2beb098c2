//! Turns the links of an email into tracked links.
//!
//! HTML goes through lol_html, a streaming rewriter: only `href` of `<a>`/`<area>` changes,
//! every other byte stays as it was. Plain text is scanned for bare URLs by hand, keeping
//! trailing punctuation outside the link. Both run in two passes: `collect_*` finds the
//! links (the store numbers them), `rewrite_*` puts the tracked URLs in, in the same order.

use std::cell::RefCell;

use lol_html::{element, rewrite_str, RewriteStrSettings};

/// A link worth tracking: http(s) and not marked `data-clickhook="ignore"`.
fn trackable(href: &str) -> bool {
    let h = href.trim();
    let lower = h.get(..8).unwrap_or(h).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && h.len() > "http://".len()
}

/// Decodes the character references an `href` value may hold (`&amp;` above all).
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ if name.starts_with("#x") || name.starts_with("#X") => {
                    u32::from_str_radix(&name[2..], 16).ok().and_then(char::from_u32)
                }
                _ if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const SELECTOR: &str = "a[href], area[href]";

/// Lenient parsing (email HTML is often malformed) and no ESI handling: bytes pass through.
fn settings<'h>() -> RewriteStrSettings<'h, 'static> {
    RewriteStrSettings::new().with_strict(false).with_enable_esi_tags(false)
}

fn eligible(el: &lol_html::html_content::Element) -> Option<String> {
    if el.get_attribute("data-clickhook").is_some_and(|v| v.eq_ignore_ascii_case("ignore")) {
        return None;
    }
    let href = decode_entities(&el.get_attribute("href")?);
    trackable(&href).then(|| href.trim().to_string())
}

/// The trackable links of an HTML body, in document order.
pub fn collect_html(html: &str) -> Result<Vec<String>, String> {
    let found = RefCell::new(Vec::new());
    rewrite_str(
        html,
        settings().append_element_content_handler(element!(SELECTOR, |el| {
            if let Some(url) = eligible(el) {
                found.borrow_mut().push(url);
            }
            Ok(())
        })),
    )
    .map_err(|e| e.to_string())?;
    Ok(found.into_inner())
}

/// Replaces the links `collect_html` found, in order, with `tracked` (`None` leaves one as it
/// is); appends `extra` (the honeypot) at the end of `<body>`, or of the document when it has none.
pub fn rewrite_html(html: &str, tracked: &[Option<String>], extra: Option<&str>) -> Result<String, String> {
    let next = RefCell::new(tracked.iter());
    let saw_body = RefCell::new(false);
    let mut s = settings().append_element_content_handler(element!(SELECTOR, |el| {
        if eligible(el).is_some() {
            if let Some(Some(url)) = next.borrow_mut().next() {
                el.set_attribute("href", url)?;
            }
        }
        Ok(())
    }));
    if let Some(extra) = extra {
        s = s.append_element_content_handler(element!("body", |el| {
            *saw_body.borrow_mut() = true;
            el.append(extra, lol_html::html_content::ContentType::Html);
            Ok(())
        }));
    }
    let mut out = rewrite_str(html, s).map_err(|e| e.to_string())?;
    if let Some(extra) = extra {
        if !*saw_body.borrow() {
            out.push_str(extra);
        }
    }
    Ok(out)
}

/// Byte ranges of bare http(s) URLs in plain text, trailing punctuation excluded.
fn text_urls(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &lower[i..];
        let scheme = if rest.starts_with("https://") {
            8
        } else if rest.starts_with("http://") {
            7
        } else {
            i += 1;
            continue;
        };
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'/') {
            i += scheme;
            continue;
        }
        let mut end = i + scheme;
        while end < bytes.len() {
            let c = bytes[end];
            if c.is_ascii_whitespace() || matches!(c, b'<' | b'>' | b'"' | b'`') || c < 0x20 {
                break;
            }
            end += 1;
        }
        // Trailing punctuation belongs to the sentence; a ')' only when unbalanced.
        while end > i + scheme {
            let c = bytes[end - 1];
            let strip = match c {
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b']' | b'}' => true,
                b')' => {
                    let s = &text[i..end];
                    s.matches(')').count() > s.matches('(').count()
                }
                _ => false,
            };
            if !strip {
                break;
            }
            end -= 1;
        }
        // Multi-byte characters may end a URL: keep the range on a char boundary.
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if end > i + scheme {
            out.push((i, end));
        }
        i = end.max(i + 1);
    }
    out
}

pub fn collect_text(text: &str) -> Vec<String> {
    text_urls(text).into_iter().map(|(a, b)| text[a..b].to_string()).collect()
}

/// Replaces the URLs `collect_text` found, in order, with `tracked` (`None` leaves one as it is).
pub fn rewrite_text(text: &str, tracked: &[Option<String>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for ((a, b), url) in text_urls(text).into_iter().zip(tracked) {
        if let Some(url) = url {
            out.push_str(&text[last..a]);
            out.push_str(url);
            last = b;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Where a tracked link sends its clicks: the href as a URI that can stand in a `Location`
/// header as it is. An href that already is one is kept byte for byte (it is the payload's
/// `click_url`); otherwise the host becomes punycode and what URIs do not allow is
/// percent-encoded. An href that is not an http(s) URL with a host cannot be tracked: the error
/// says why.
pub fn destination(href: &str) -> Result<String, String> {
    let url = url::Url::parse(href).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("not an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if is_uri(href) {
        return Ok(href.to_string());
    }
    Ok(uri_escape(url.as_str()))
}

/// RFC 3986's characters, besides `%` (which must start an escape).
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
}

fn escape_at(s: &[u8], i: usize) -> bool {
    s[i] == b'%' && s.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
}

fn is_uri(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).all(|i| uri_char(b[i]) || escape_at(b, i))
}

fn uri_escape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for i in 0..b.len() {
        if uri_char(b[i]) || escape_at(b, i) {
            out.push(char::from(b[i]));
        } else {
            out.push_str(&format!("%{:02X}", b[i]));
        }
    }
    out
}

/// An anchor no person sees or reaches by keyboard, for the honeypot signal.
pub fn honeypot_anchor(url: &str) -> String {
    format!(
        "<a href=\"{url}\" style=\"display:none!important;mso-hide:all\" tabindex=\"-1\" aria-hidden=\"true\">&#8203;</a>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_every_other_byte() {
        let html = "<!doctype html><p class=x>Hi <a href=\"https://a.example/x?y=1&amp;z=2\" title=t>one</a> \
                    <a href='mailto:a@b.c'>m</a><a href=\"#top\">f</a><a href=\"tel:1\">t</a>\
                    <a data-clickhook=\"ignore\" href=\"https://skip.example\">s</a>\
                    <map><area href=\"http://b.example\"></map><A HREF=\"HTTPS://C.example\">c</A></p>";
        let links = collect_html(html).unwrap();
        assert_eq!(links, ["https://a.example/x?y=1&z=2", "http://b.example", "HTTPS://C.example"]);
        let tracked: Vec<Option<String>> = (1..=3).map(|i| Some(format!("https://t.example/c/{i}"))).collect();
        let out = rewrite_html(html, &tracked, None).unwrap();
        let expected = html
            .replace("https://a.example/x?y=1&amp;z=2", "https://t.example/c/1")
            .replace("http://b.example", "https://t.example/c/2")
            .replace("HTTPS://C.example", "https://t.example/c/3");
        assert_eq!(out, expected);
        // A link that cannot be tracked stays as it was.
        let out = rewrite_html(html, &[tracked[0].clone(), None, tracked[2].clone()], None).unwrap();
        assert!(out.contains("<area href=\"http://b.example\">") && out.contains("https://t.example/c/3"), "{out}");
    }

    #[test]
    fn honeypot_goes_into_body() {
        let out = rewrite_html("<html><body><p>x</p></body></html>", &[], Some("<a href=\"h\"></a>")).unwrap();
        assert_eq!(out, "<html><body><p>x</p><a href=\"h\"></a></body></html>");
        assert_eq!(rewrite_html("<p>x</p>", &[], Some("<i></i>")).unwrap(), "<p>x</p><i></i>");
    }

    #[test]
    fn text_urls_leave_punctuation_outside() {
        let t =
            "See https://a.example/x. Or (http://b.example/y), and https://en.wikipedia.org/wiki/Foo_(bar)! mailto:x";
        assert_eq!(
            collect_text(t),
            ["https://a.example/x", "http://b.example/y", "https://en.wikipedia.org/wiki/Foo_(bar)"]
        );
        let out = rewrite_text(t, &[Some("T1".into()), Some("T2".into()), Some("T3".into())]);
        assert_eq!(out, "See T1. Or (T2), and T3! mailto:x");
        let out = rewrite_text(t, &[Some("T1".into()), None, Some("T3".into())]);
        assert_eq!(out, "See T1. Or (http://b.example/y), and T3! mailto:x");
        assert!(collect_text("xhttps://no.example and https:// alone").is_empty());
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#38;c&#x26;d&bogus;e"), "a&b&c&d&bogus;e");
    }

    #[test]
    fn destinations_are_uris() {
        assert_eq!(destination("https://piedpiper.com").unwrap(), "https://piedpiper.com", "kept as written");
        assert_eq!(destination("https://x.example/a%20b?q=1#f").unwrap(), "https://x.example/a%20b?q=1#f");
        assert_eq!(
            destination("https://bücher.example/straße?q=ä b").unwrap(),
            "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%A4%20b"
        );
        assert_eq!(destination("https://x.example/{a}|^").unwrap(), "https://x.example/%7Ba%7D%7C%5E");
        assert_eq!(destination("https://x.example/100%").unwrap(), "https://x.example/100%25");
        assert_eq!(destination("https://x.example/a\0b").unwrap(), "https://x.example/a%00b");
        for bad in ["https://exa mple.com/\x7f", "mailto:a@b.co", "https://", "http://[::1", "javascript:alert(1)"] {
            assert!(destination(bad).is_err(), "{bad}");
        }
        for href in ["https://x.example/ü", "https://ÉXAMPLE.com/a b", "https://x.example/%zz"] {
            let d = destination(href).unwrap();
            assert!(axum::http::HeaderValue::from_str(&d).is_ok() && is_uri(&d), "{href} -> {d}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A piece of an email: text, a tracked link, or a link that is not tracked.
        #[derive(Debug, Clone)]
        enum Piece {
            Text(String),
            Link { url: String, title: String, text: String },
            Other(String),
        }

        fn piece() -> impl Strategy<Value = Piece> {
            prop_oneof![
                "[^<&]{0,30}".prop_map(Piece::Text),
                (
                    "https?://[a-z]{1,8}\\.example(/[A-Za-z0-9._~-]{0,8}){0,3}(\\?[a-z]=[a-z0-9]{0,4})?",
                    "[^\"<&]{0,10}",
                    "[^<&]{0,10}"
                )
                    .prop_map(|(url, title, text)| Piece::Link { url, title, text }),
                "(mailto:[a-z]{1,5}@x\\.co|#[a-z]{0,5}|tel:[0-9]{1,5})".prop_map(Piece::Other),
            ]
        }

        /// The document with each tracked link's href as `href` gives it.
        fn render(pieces: &[Piece], mut href: impl FnMut(&str) -> String) -> String {
            let mut out = String::from("<html><body>");
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Link { url, title, text } => {
                        out.push_str(&format!("<a title=\"{title}\" href=\"{}\">{text}</a>", href(url)))
                    }
                    Piece::Other(h) => out.push_str(&format!("<a href=\"{h}\">o</a>")),
                }
            }
            out.push_str("</body></html>");
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Every byte outside a rewritten href survives the rewrite.
            #[test]
            fn only_tracked_hrefs_change(pieces in prop::collection::vec(piece(), 0..12)) {
                let html = render(&pieces, str::to_string);
                let urls: Vec<String> = pieces
                    .iter()
                    .filter_map(|p| match p { Piece::Link { url, .. } => Some(url.clone()), _ => None })
                    .collect();
                prop_assert_eq!(collect_html(&html).unwrap(), urls.clone());
                let tracked: Vec<Option<String>> = (0..urls.len()).map(|i| Some(format!("https://t.example/c/{i}"))).collect();
                let mut n = 0;
                let expected = render(&pieces, |_| {
                    n += 1;
                    format!("https://t.example/c/{}", n - 1)
                });
                prop_assert_eq!(rewrite_html(&html, &tracked, None).unwrap(), expected);
                // With nothing to track, nothing changes at all.
                prop_assert_eq!(rewrite_html(&html, &vec![None; urls.len()], None).unwrap(), html);
            }

            /// Any href either becomes a URI a Location header can carry, or is refused.
            #[test]
            fn destinations_are_uris_or_refused(href in "https?://.{0,40}") {
                if let Ok(d) = destination(&href) {
                    prop_assert!(is_uri(&d) && axum::http::HeaderValue::from_str(&d).is_ok(), "{} -> {}", href, d);
                }
            }
        }
    }
}
