//! The HTTP listener: every connection is bounded in time and in number.
//!
//! axum's own `serve` keeps a connection as long as its client likes, so idle or slow clients
//! could hold every file descriptor and starve the tracked links. Here each connection is
//! served by hyper with a header-read timeout (a client that does not send a request's headers
//! in time is dropped; for HTTP/1 that also ends a connection idle between requests), connections
//! with no byte either way and no request in flight for `--idle-timeout` are closed, and at
//! `--max-connections` the longest-idle connection makes room for a new one. Running out of file
//! descriptors sheds idle connections too: the listener never stops accepting for good.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::domain::{now_millis, Millis};

/// How long and how many connections may live.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// File descriptors kept for the store, the delivery worker and the rest, beyond connections.
const RESERVED_FDS: usize = 128;

/// Raises the soft limit on open files to the hard one and returns how many connections fit in
/// it. A server that runs out of descriptors can accept nothing, not even a tracked link.
pub fn raise_open_files_limit() -> usize {
    // SAFETY: getrlimit and setrlimit read and write the struct passed; nothing else is touched.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return usize::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX).saturating_sub(RESERVED_FDS).max(16)
    }
}

/// A live connection, as the listener watches it.
struct Watched {
    /// When a byte last went either way (ms).
    last_active: Arc<AtomicI64>,
    /// Requests being answered on it.
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Connections {
    live: Mutex<HashMap<u64, Watched>>,
    next_id: AtomicU64,
}

impl Connections {
    fn len(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Closes the connection idle longest (none in flight); false when every one is busy.
    fn shed_one(&self) -> bool {
        let live = self.live.lock().unwrap();
        let idlest = live
            .values()
            .filter(|c| c.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        match idlest {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes every connection idle since before `cutoff`.
    fn reap(&self, cutoff: Millis) {
        for c in self.live.lock().unwrap().values() {
            if c.in_flight.load(Ordering::Relaxed) == 0 && c.last_active.load(Ordering::Relaxed) < cutoff {
                c.close.notify_one();
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection finish
/// the requests it has (graceful) and returns once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let conns = Arc::new(Connections::default());
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    let reaper = tokio::spawn(reap(conns.clone(), limits.idle_timeout, signal_rx.clone()));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it was taken): make room
                    // and go on; the listener never gives up.
                    tracing::warn!("accepting a connection failed: {e}");
                    conns.shed_one();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if conns.len() >= limits.max_connections && !conns.shed_one() {
            continue; // every connection is busy: this one is refused (dropped) rather than queued
        }
        let _ = stream.set_nodelay(true);
        spawn_connection(stream, peer, app.clone(), limits, &conns, signal_rx.clone(), close_rx.clone());
    }
    drop(listener);
    drop(signal_rx);
    let _ = signal_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
    reaper.abort();
    Ok(())
}

async fn reap(conns: Arc<Connections>, idle: Duration, mut stop: watch::Receiver<()>) {
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => conns.reap(now_millis() - idle.as_millis() as Millis),
            _ = stop.changed() => return,
        }
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    conns: &Arc<Connections>,
    mut signal: watch::Receiver<()>,
    close_rx: watch::Receiver<()>,
) {
    let id = conns.next_id.fetch_add(1, Ordering::Relaxed);
    let last_active = Arc::new(AtomicI64::new(now_millis()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let close = Arc::new(Notify::new());
    let watched = Watched { last_active: last_active.clone(), in_flight: in_flight.clone(), close: close.clone() };
    conns.live.lock().unwrap().insert(id, watched);
    let conns = conns.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = InFlight::new(in_flight.clone());
        let app = app.clone();
        async move {
            let res = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(busy);
            res
        }
    });
    tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let io = TokioIo::new(Activity::new(stream, last_active));
        let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!("connection from {peer} ended: {e}");
                    }
                    break;
                }
                _ = close.notified() => break,
                _ = signal.changed() => conn.as_mut().graceful_shutdown(),
            }
        }
        conns.live.lock().unwrap().remove(&id);
        drop(close_rx);
    });
}

/// Counts a request in flight on its connection while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that notes when a byte last went either way, and gives the answers hyper makes
/// itself (to a URI or headers too long to parse) the API's envelope instead of an empty body.
struct Activity {
    inner: TcpStream,
    last_active: Arc<AtomicI64>,
    /// An envelope answer being written in place of hyper's own, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl Activity {
    fn new(inner: TcpStream, last_active: Arc<AtomicI64>) -> Self {
        Activity { inner, last_active, replacing: None }
    }

    fn touch(&self) {
        self.last_active.store(now_millis(), Ordering::Relaxed);
    }

    /// hyper answers a request it cannot parse before any handler sees it; the application
    /// itself never answers 414 or 431, so such a head is hyper's.
    fn envelope_for(head: &[u8]) -> Option<Vec<u8>> {
        let (status, code, msg) = if head.starts_with(b"HTTP/1.1 414 ") {
            (414, "E_URI_TOO_LONG", "The request's URI is too long.")
        } else if head.starts_with(b"HTTP/1.1 431 ") {
            (431, "E_HEADERS_TOO_LARGE", "The request's headers are too large.")
        } else {
            return None;
        };
        let reason = if status == 414 { "URI Too Long" } else { "Request Header Fields Too Large" };
        let body = serde_json::json!({"status": {"status": "ERROR", "code": code, "msg": msg}}).to_string();
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        Some(answer.into_bytes())
    }

    /// Writes the envelope answer in place of hyper's bytes (`taken` of them), all or pending.
    fn poll_replace(&mut self, cx: &mut Context<'_>, taken: usize) -> Poll<io::Result<usize>> {
        let Some((answer, sent)) = &mut self.replacing else { return Poll::Ready(Ok(taken)) };
        while *sent < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                other => return other,
            }
        }
        self.replacing = None;
        Poll::Ready(Ok(taken))
    }
}

impl AsyncRead for Activity {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Activity {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            self.replacing = Self::envelope_for(data).map(|a| (a, 0));
        }
        if self.replacing.is_some() {
            return self.poll_replace(cx, data.len());
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            self.replacing = bufs.first().and_then(|b| Self::envelope_for(b)).map(|a| (a, 0));
        }
        if self.replacing.is_some() {
            return self.poll_replace(cx, bufs.iter().map(|b| b.len()).sum());
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
