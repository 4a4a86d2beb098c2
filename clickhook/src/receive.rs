//! `clickhook receive`: a webhook receiver for trying clickhook out. Prints each request,
//! checks its Standard Webhooks signature when given the secret, answers a chosen status.

use std::io::Write;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

use crate::delivery::sign;

pub async fn run(listen: &str, secret: Option<String>, status: u16) -> anyhow::Result<()> {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if (100..=599).contains(&status) => s,
        _ => anyhow::bail!("--status {status} is not an HTTP status (100 to 599)"),
    };
    if let Some(s) = &secret {
        if !sign::is_secret(s) {
            anyhow::bail!("--secret must be a subscription's whsec_ secret (whsec_ and base64), as GET /rest/v2/subscriptions shows it");
        }
    }
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let secret = secret.clone();
        async move {
            print!("{}", describe(&method, &uri, &headers, &body, secret.as_deref()));
            let _ = std::io::stdout().flush();
            status.into_response()
        }
    });
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    println!("clickhook receive: listening on http://{}, answering {}", listener.local_addr()?, status.as_u16());
    axum::serve(listener, app).with_graceful_shutdown(crate::startup::shutdown_signal()).await?;
    Ok(())
}

/// What `receive` prints for one request.
pub fn describe(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], secret: Option<&str>) -> String {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut out = format!("--- {method} {uri}\n");
    for name in ["content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"] {
        out.push_str(&format!("{name}: {}\n", h(name)));
    }
    if let Some(secret) = secret {
        let ts = h("webhook-timestamp").parse::<i64>().unwrap_or(0);
        let ok = sign::verify(secret, &h("webhook-id"), ts, body, &h("webhook-signature"));
        out.push_str(if ok { "signature: valid\n" } else { "signature: INVALID\n" });
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            if let Some(n) = v.as_array().map(Vec::len) {
                out.push_str(&format!("events: {n}\n"));
            }
            out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Err(_) => out.push_str(&String::from_utf8_lossy(body)),
    }
    out.push('\n');
    out
}
