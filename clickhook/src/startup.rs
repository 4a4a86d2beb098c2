//! Builds the application: store, keys, router, background workers, listener.
//!
//! `Application::build_with_store` binds the listener (port 0 works, for tests) before it
//! returns, so callers know the address; `run_until_stopped` serves until the shutdown future
//! resolves, then drains: no new connections, in-flight clicks finish and commit,
//! workers stop, the store commits what is queued and closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, auth::AuthCache, AppState, Shared};
use crate::app;
use crate::click::hosts::{TrackingHosts, HOSTS_POLL};
use crate::click::token::LinkKeys;
use crate::click::{settle, ClickShared, ClickState, LinkCache, LINKS_REMOVED_POLL};
use crate::config::Settings;
use crate::domain::Millis;
use crate::http;
use crate::store::DynStore;
use crate::tracking_domains::DomainChecker;

pub struct Application {
    listener: TcpListener,
    /// `--admin-listen`: /metrics and /healthz there, not on `listener`.
    admin: Option<TcpListener>,
    state: AppState,
    /// Tells long answers that the server is stopping (`Shared::stopping`).
    stopping: watch::Sender<bool>,
}

impl Application {
    /// An empty `public_url` means "this listener's address" (tests bind port 0).
    pub async fn build_with_store(mut settings: Settings, store: DynStore) -> anyhow::Result<Self> {
        let link_keys = LinkKeys::load(store.clone()).await?;
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let admin = match &settings.admin_listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on --admin-listen {at}: {e}"))?,
            ),
            None => None,
        };
        if settings.public_url.is_empty() {
            settings.public_url = format!("http://{}", listener.local_addr()?);
        }
        let click = ClickState::new(ClickShared {
            links_removed: store.links_removed().await?.into(),
            store: store.clone(),
            link_keys: link_keys.clone(),
            links: LinkCache::new(200_000),
            trust_proxy: settings.trust_proxy,
            full_ip: settings.full_ip,
            hosts: TrackingHosts::new(&settings.public_url),
        });
        click.hosts.refresh(&store).await?;
        let domains = Arc::new(DomainChecker::new(store.clone(), &settings.public_url, settings.resolver));
        let settings_body_permits = (settings.max_body_memory / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let (stopping, stopping_rx) = watch::channel(false);
        let state = AppState::new(Shared {
            store,
            settings: Arc::new(settings),
            link_keys,
            auth: Arc::new(AuthCache::default()),
            bodies: Arc::new(tokio::sync::Semaphore::new(settings_body_permits)),
            click,
            domains,
            stopping: stopping_rx,
            held_clicks: Default::default(),
        });
        Ok(Application { listener, admin, state, stopping })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where /metrics and /healthz are served, when `--admin-listen` moved them.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let st = self.state.clone();
        let settler = background_thread("settler", {
            let (store, lists, stop) = (st.store.clone(), st.settings.scanners.clone(), stop_rx.clone());
            let max_lag = st.settings.max_settle_lag.as_millis() as Millis;
            let held = st.held_clicks.clone();
            move || settle::run(store, lists, max_lag, held, stop)
        })?;
        let workers = vec![
            tokio::spawn(refresh_keys(st.link_keys.clone(), stop_rx.clone())),
            tokio::spawn(forget_removed_links(st.click.clone(), stop_rx.clone())),
            tokio::spawn(refresh_hosts(st.click.clone(), stop_rx.clone())),
            tokio::spawn(until_stopped(st.domains.clone().recheck(st.settings.recheck_domains), stop_rx.clone())),
            tokio::spawn(crate::delivery::worker::run(st.store.clone(), st.settings.clone(), stop_rx.clone())),
            tokio::spawn(crate::import::janitor(st.store.clone(), stop_rx.clone())),
            tokio::spawn(crate::retention::run(st.store.clone(), st.settings.retention, stop_rx.clone())),
        ];
        let limits = http::Limits {
            header_read_timeout: st.settings.header_read_timeout,
            idle_timeout: st.settings.idle_timeout,
            max_connections: st.settings.max_connections.min(http::raise_open_files_limit()),
        };
        tracing::info!(addr = %self.local_addr(), store = st.store.backend(), "clickhook serving");
        // One shutdown for both listeners.
        let (down_tx, down_rx) = watch::channel(false);
        let stopping = self.stopping;
        tokio::spawn(async move {
            shutdown.await;
            let _ = stopping.send(true);
            let _ = down_tx.send(true);
        });
        let down = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|d| *d).await;
        };
        let admin = self.admin.map(|l| {
            tracing::info!(addr = ?l.local_addr().ok(), "operators' routes served here");
            tokio::spawn(http::serve(l, api::admin_router(st.clone()), limits, down(down_rx.clone())))
        });
        let with_admin = admin.is_none();
        let served = http::serve(
            self.listener,
            api::router(st.clone(), with_admin).merge(app::router(st.clone())),
            limits,
            down(down_rx),
        )
        .await;
        if let Some(a) = admin {
            let _ = a.await;
        }
        let _ = stop_tx.send(true);
        for w in workers {
            let _ = w.await;
        }
        let _ = tokio::task::spawn_blocking(move || settler.join()).await;
        st.store.close().await;
        tracing::info!("clickhook stopped");
        served.map_err(Into::into)
    }
}

/// Runs `task` on a thread of its own, with a runtime of its own: a busy round of settling
/// never holds up the redirects' runtime. It runs at normal priority: it yields to clicks by
/// itself, and must be able to take its share of the CPU when it falls behind (a thread
/// lowered to nice 19 cannot be raised again without privileges).
fn background_thread<F, Fut>(name: &str, task: F) -> anyhow::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let name = name.to_string();
    Ok(std::thread::Builder::new().name(name.clone()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("{name}-io"))
            .build()
            .expect("a runtime for a background worker");
        rt.block_on(task());
    })?)
}

/// Keys rotated on another node reach this one within a minute even without traffic.
async fn refresh_keys(keys: Arc<LinkKeys>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => { let _ = keys.refresh().await; }
            _ = stop.changed() => return,
        }
    }
}

/// Links deleted on any node stop resolving here within [`LINKS_REMOVED_POLL`].
async fn forget_removed_links(click: ClickState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LINKS_REMOVED_POLL) => {
                if let Err(e) = click.forget_removed_links().await {
                    tracing::debug!("cannot tell whether links were deleted: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Domains verified or deleted on any node are followed or refused here within [`HOSTS_POLL`].
async fn refresh_hosts(click: ClickState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HOSTS_POLL) => {
                if let Err(e) = click.hosts.refresh(&click.store).await {
                    tracing::debug!("cannot read the verified tracking domains: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Runs `work` until the workers are told to stop.
async fn until_stopped(work: impl Future<Output = ()>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = work => {}
        _ = stop.changed() => {}
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}
