//! The baseline of the click benchmark: a bare 302 server on the same HTTP stack
//! (axum on tokio, the same runtime set-up and allocator as `clickhook serve`), doing no work per request.
//!
//! `cargo run --release --example bare302 -- 127.0.0.1:8090`

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;

/// The same allocator as `clickhook`, so that the comparison is of the work per request only.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn redirect() -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::FOUND;
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_static("https://example.com/landing"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route("/c/{token}", get(redirect));
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("bare302 listening on http://{addr}");
        axum::serve(listener, app).await.unwrap();
    });
}
