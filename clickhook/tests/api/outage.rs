//! PostgreSQL stopped under load and started again, on a throwaway server of the test's own
//! (initdb into a temporary folder, a free port on 127.0.0.1), so nothing else is disturbed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crash::Node;
use crate::helpers::{on_postgres, Db};

/// A PostgreSQL server in a temporary folder; stopped and removed when dropped.
struct TempPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// PostgreSQL refuses to run as root: as root, its tools run as the `postgres` user.
fn pg_command(bin: &Path, tool: &str) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut c: Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TempPostgres {
    fn new() -> TempPostgres {
        let bin = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.join("initdb").exists())
            .or_else(|| {
                let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|e| Some(e.ok()?.path().join("bin")))
                    .filter(|p| p.join("initdb").exists())
                    .collect();
                found.sort();
                found.pop()
            })
            .expect("PostgreSQL's initdb (pg_config --bindir or /usr/lib/postgresql/*/bin)");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            run({
                let mut c = Command::new("chown");
                c.args(["-R", "postgres"]).arg(dir.path());
                c
            });
        }
        run({
            let mut c = pg_command(&bin, "initdb");
            c.args(["-A", "trust", "-U", "root", "--no-sync", "-D"]).arg(&data);
            c
        });
        let port = crate::helpers::free_port();
        let pg = TempPostgres { bin, data, port, _dir: dir };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.data.display()
        );
        run({
            let mut c = pg_command(&self.bin, "pg_ctl");
            c.arg("-D").arg(&self.data).args(["-o", &opts, "-l"]).arg(self.data.join("log")).args(["-w", "start"]);
            c
        });
    }

    /// Stops at once, as a crash would: connections are cut, nothing is flushed politely.
    fn stop(&self) {
        run({
            let mut c = pg_command(&self.bin, "pg_ctl");
            c.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
            c
        });
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        let _ = c.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_during_a_database_outage_get_503_and_service_resumes_by_itself() {
    if !on_postgres() {
        println!("a PostgreSQL outage: this test runs in the PostgreSQL half");
        return;
    }
    let pg = TempPostgres::new();
    let node = Node::with_account(Db(pg.url()), tempfile::tempdir().unwrap());
    let _server = node.start(&[]).await;
    let links = node.links(5, 4).await;

    // Clients click all along; each click's status and time are kept under its user agent.
    type Seen = Arc<Mutex<HashMap<String, (u16, Instant)>>>;
    let seen: Seen = Arc::default();
    let until = Instant::now() + Duration::from_secs(9);
    let clients: Vec<_> = (0..8)
        .map(|w| {
            let (client, links, seen) = (node.client.clone(), links.clone(), seen.clone());
            tokio::spawn(async move {
                let mut k = 0;
                while Instant::now() < until {
                    k += 1;
                    let ua = format!("Mozilla/5.0 outage-{w}-{k}");
                    let r = client.get(&links[(w + k) % links.len()]).header("user-agent", &ua).send().await;
                    let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
                    seen.lock().unwrap().insert(ua, (status, Instant::now()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starting = Instant::now();
    pg.start();
    let restarted = Instant::now();
    for c in clients {
        c.await.unwrap();
    }

    let seen = seen.lock().unwrap().clone();
    let mut count: HashMap<u16, usize> = HashMap::new();
    for (s, _) in seen.values() {
        *count.entry(*s).or_default() += 1;
    }
    assert!(count.keys().all(|s| *s == 302 || *s == 503), "only 302 or 503: {count:?}");
    let in_outage = |at: &Instant| *at > stopped && *at < starting;
    assert!(seen.values().any(|(s, at)| *s == 503 && in_outage(at)), "the outage gave 503s: {count:?}");
    // (Clicks answered in the first moments may have been committed just before the stop.)
    let redirected =
        seen.values().filter(|(s, at)| *s == 302 && in_outage(at) && *at > stopped + Duration::from_millis(200));
    assert_eq!(redirected.count(), 0, "no redirects while the database is down");
    assert!(seen.values().any(|(s, at)| *s == 302 && *at > restarted), "service resumed by itself: {count:?}");

    // Never a 302 without a stored click. (A 503 may still have been stored: its commit can
    // succeed just as the connection breaks; the client retries, and a duplicate is harmless.)
    let stored: HashSet<String> = node.db.stored_click_agents().await.into_iter().collect();
    let lost: Vec<_> = seen.iter().filter(|(ua, (s, _))| *s == 302 && !stored.contains(*ua)).collect();
    assert!(lost.is_empty(), "answered 302 but not stored: {lost:?}");
}
