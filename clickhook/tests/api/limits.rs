//! Connections are bounded in time and number: idle and slow clients cannot hold the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{shared, spawn_app};

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Whether the server closed `s` within `within` (a read returns end of stream or an error).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response, then the close
            Err(e) => return !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let app = spawn_app(|s| {
        s.header_read_timeout = Duration::from_secs(1);
        s.idle_timeout = Duration::from_secs(1);
    });
    let at = addr(&app.base);
    let slow = tokio::task::spawn_blocking({
        let at = at.clone();
        move || {
            // A header line every 300 ms never finishes the request.
            let mut s = TcpStream::connect(&at).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            let started = Instant::now();
            for i in 0..20 {
                std::thread::sleep(Duration::from_millis(300));
                if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).is_err() {
                    break;
                }
            }
            (closed_within(&mut s, Duration::from_secs(3)), started.elapsed())
        }
    });
    let idle = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&at).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        closed_within(&mut s, Duration::from_secs(4))
    });
    let (slow_closed, took) = slow.await.unwrap();
    assert!(slow_closed && took < Duration::from_secs(4), "a slow header sender is dropped ({took:?})");
    assert!(idle.await.unwrap(), "an idle keep-alive connection is closed");
}

/// Thousands of idle and slow connections leave the tracked links as fast as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_is_answered_under_many_idle_and_slow_connections() {
    clickhook::http::raise_open_files_limit();
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    let email = crate::helpers::unique_email("idle");
    app.enroll(&key, c, &email).await;
    let sent = app.send_html(&key, c, &email, "<a href=\"https://example.com/i\">i</a>").await;
    let url = sent["links"][0]["tracked_url"].as_str().unwrap().to_string();
    let at = addr(&app.base);
    let mut held = Vec::new();
    for i in 0..2_500 {
        let Ok(mut s) = TcpStream::connect(&at) else { break };
        if i >= 2_000 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        }
        held.push(s);
    }
    assert!(held.len() >= 2_000, "only {} connections opened", held.len());
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let r = app.client.get(&url).header("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15").send().await.unwrap();
        assert_eq!(r.status(), 302);
        times.push(t.elapsed());
    }
    times.sort();
    assert!(times[4] < Duration::from_millis(50), "median click {:?} with {} connections held", times[4], held.len());
}

/// Out of file descriptors (`ulimit -n 512`), with more idle connections than that: the idle
/// ones are shed and the server answers again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_descriptor_limit_the_server_sheds_idle_connections() {
    if crate::helpers::on_postgres() {
        return; // the listener is the same on both stores
    }
    clickhook::http::raise_open_files_limit();
    let node = crate::crash::Node::new();
    let at = addr(&node.base);
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 512 && exec {} --db {} serve --listen {at} --public-url {}",
            env!("CARGO_BIN_EXE_clickhook"),
            node.db.0,
            node.base
        ))
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let up = Instant::now();
    while node.client.get(format!("{}/healthz", node.base)).send().await.is_err() {
        assert!(up.elapsed() < Duration::from_secs(10), "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held: Vec<TcpStream> = (0..600).filter_map(|_| TcpStream::connect(&at).ok()).collect();
    assert!(held.len() >= 550, "{} connections", held.len());
    let t = Instant::now();
    let ok = loop {
        let r = node.client.get(format!("{}/healthz", node.base)).timeout(Duration::from_secs(2)).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break true;
        }
        if t.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "no answer {:?} after 600 idle connections at ulimit -n 512", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5), "answered only after {:?}", t.elapsed());
}
