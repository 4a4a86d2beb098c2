//! The `clickhook` command: `serve`, `migrate`, `account`, `import`, `keys`, `backup`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use clickhook::cli::{AccountCmd, Cli, Command, KeysCmd, LogFormat};
use clickhook::config::Settings;
use clickhook::domain::account::parse_account_id;
use clickhook::domain::{parse_timezone, NewAccount};
use clickhook::store;
use clickhook::{api::auth, click::token, startup::Application};

/// glibc's malloc took a tenth of the click path's CPU (perf); mimalloc's thread-local free lists
/// take a fraction of that for the same small, short-lived allocations. Without transparent huge
/// pages (`no_thp`): with them its arenas counted 2 MB pages in RSS and peaked near 250 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed pages before giving them back to the system. Its own second let
/// the memory of a catch-up after a burst stay resident (peak 158 MB, the click benchmark's
/// limit is 150); 10 ms gave it back (122 MB) but made every settling round fault its buffers
/// in again, 4-5% of the process's CPU under sustained load; 250 ms: peak 134 MB, faults 1.7%
/// (bench/RESULTS.md). `MIMALLOC_PURGE_DELAY` still overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 250;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v3, libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
}

fn tune_allocator() {
    // SAFETY: sets a plain option value; mimalloc reads options at any time, from any thread.
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(colour).init()
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clickhook: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => {
            let durability = a.durability;
            let settings = Settings::from_args(cli.db, *a)?;
            let st = store::open_for_serving(&settings.db, durability).await?;
            let app = Application::build_with_store(settings, st).await?;
            println!("clickhook listening on http://{}", app.local_addr());
            app.run_until_stopped(clickhook::startup::shutdown_signal()).await
        }
        Command::Migrate => {
            let st = store::open(&cli.db).await?;
            st.close().await;
            println!("migrations applied to {}", cli.db);
            Ok(())
        }
        Command::Account(cmd) => account(&cli.db, cmd).await,
        Command::Import { file, account, campaign, delimiter } => {
            import(&cli.db, file, account, campaign, delimiter).await
        }
        Command::Keys(cmd) => keys(&cli.db, cmd).await,
        Command::Backup { file } => {
            let (db, to) = (cli.db.clone(), file.clone());
            let bytes = tokio::task::spawn_blocking(move || store::backup(&db, &to)).await??;
            println!("backed up {} to {} ({bytes} bytes)", cli.db, file.display());
            Ok(())
        }
        Command::Receive { listen, secret, status } => clickhook::receive::run(&listen, secret, status).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "clickhook", &mut std::io::stdout());
            Ok(())
        }
    }
}

async fn account(db: &str, cmd: AccountCmd) -> anyhow::Result<()> {
    let st = store::open(db).await?;
    let result = async {
        match cmd {
            AccountCmd::Create { name, timezone, id, json } => {
                let tz = parse_timezone(&timezone)?;
                if name.trim().is_empty() {
                    anyhow::bail!("--name must not be empty");
                }
                let a = st
                    .create_account(NewAccount {
                        id: id.map(parse_account_id).transpose()?,
                        name: name.trim().into(),
                        timezone: tz.name().into(),
                    })
                    .await?;
                let key = auth::issue_key(&st, a.id).await?;
                if json {
                    println!("{}", serde_json::json!({"id": a.id, "api_key": key}));
                } else {
                    println!(
                        "account {} created ({}, {})\napi key: {key}\n(shown once: store it now)",
                        a.id, a.name, a.timezone
                    );
                }
            }
            AccountCmd::Key { id, json } => {
                let key = auth::issue_key(&st, id).await?;
                if json {
                    println!("{}", serde_json::json!({"id": id, "api_key": key}));
                } else {
                    println!("api key: {key}\n(shown once: store it now)");
                }
            }
            AccountCmd::Revoke { id, prefix } => {
                st.revoke_api_key(id, &prefix).await?;
                println!("revoked the key {prefix}… of account {id}");
            }
            AccountCmd::LoginLink { id, public_url, listen } => {
                let base = public_url.unwrap_or_else(|| clickhook::config::default_public_url(&listen));
                println!("{}", clickhook::app::session::login_link(&st, id, &base).await?);
            }
            AccountCmd::List { json } => {
                for a in st.list_accounts().await? {
                    if json {
                        println!("{}", serde_json::json!({"id": a.id, "name": a.name, "timezone": a.timezone}));
                    } else {
                        println!("{}\t{}\t{}", a.id, a.name, a.timezone);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    st.close().await;
    result
}

async fn import(
    db: &str,
    file: PathBuf,
    account: i64,
    campaign: Option<i64>,
    delimiter: Option<u8>,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let f = std::fs::File::open(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let st = store::open(db).await?;
    st.account(account).await?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let total = f.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut input = std::io::BufReader::with_capacity(1 << 20, Counting { inner: f, read: read.clone() });
    let delimiter = match delimiter {
        Some(d) => d,
        None => clickhook::import::detect_delimiter(input.fill_buf()?),
    };
    let tty = std::io::stderr().is_terminal();
    let bar = |done: u64, rows: u64| {
        let filled = (done * 30 / total) as usize;
        eprint!("\r[{}{}] {:>3}%  {rows} rows", "#".repeat(filled), " ".repeat(30 - filled), done * 100 / total);
    };
    let mut last_rows = 0;
    let report = clickhook::import::import_csv(&st, account, campaign, &name, input, delimiter, |rows| {
        last_rows = rows;
        if tty {
            bar(read.load(std::sync::atomic::Ordering::Relaxed).min(total), rows);
        }
    })
    .await;
    if tty {
        if report.is_ok() {
            bar(total, last_rows);
        }
        eprintln!();
    }
    st.close().await;
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created {}, updated {}, rejected {}", report.created, report.updated, report.rejected);
    for e in &report.errors {
        println!("line {}: {}", e.line, e.error);
    }
    if report.rejected as usize > report.errors.len() {
        println!("(and {} more rejected rows)", report.rejected as usize - report.errors.len());
    }
    Ok(())
}

/// Counts the bytes read, for the import's progress bar.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

async fn keys(db: &str, cmd: KeysCmd) -> anyhow::Result<()> {
    let st = store::open(db).await?;
    let result = async {
        // As on a server's first start: a database always has a signing key.
        token::LinkKeys::load(st.clone()).await?;
        match cmd {
            KeysCmd::List => {
                for k in st.link_keys().await? {
                    println!("{}\tcreated {}", k.id, clickhook::event::format_time(k.created_at, "UTC"));
                }
            }
            KeysCmd::Rotate => {
                let k = st.add_link_key(token::new_secret()).await?;
                println!("key {} now signs new links; running nodes pick it up within a minute", k.id);
            }
            KeysCmd::Remove { id } => {
                let keys = st.link_keys().await?;
                if !keys.iter().any(|k| k.id == id) {
                    let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                    anyhow::bail!("there is no link-signing key {id}; the keys are {}", ids.join(", "));
                }
                if keys.len() <= 1 {
                    anyhow::bail!("cannot remove the last key; rotate first");
                }
                st.remove_link_key(id).await?;
                println!("key {id} removed: links it signed no longer resolve");
            }
        }
        Ok(())
    }
    .await;
    st.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident memory of this process, in bytes.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
        let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
        pages * 4096
    }

    /// Memory a thread freed goes back to the system while that thread waits, as a reader's
    /// does between settling rounds. With purging off (`MIMALLOC_PURGE_DELAY=-1`) or put off
    /// for 5 s, all of it was still resident after 3 s.
    #[test]
    #[cfg(target_os = "linux")]
    fn memory_freed_by_a_waiting_thread_leaves_the_process() {
        tune_allocator();
        let (freed_tx, freed_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let start = rss();
        let worker = std::thread::spawn(move || {
            // Rows of a big read: many small allocations, 64 MB in all.
            let rows: Vec<Vec<u8>> = (0..400_000).map(|i| vec![(i % 251) as u8; 160]).collect();
            let held = rss();
            drop(rows);
            freed_tx.send(held).unwrap();
            done_rx.recv().ok(); // waits, allocating nothing, like an idle reader
        });
        let held = freed_rx.recv().unwrap();
        assert!(held > start + (48 << 20), "the rows were resident: {start} then {held}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut now = rss();
        while now > start + (16 << 20) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // The waiting thread does nothing; this one allocates, as other threads do.
            let churn: Vec<Vec<u8>> = (0..1_000).map(|_| vec![1u8; 1024]).collect();
            drop(std::hint::black_box(churn));
            now = rss();
        }
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(now <= start + (16 << 20), "still resident after 3 s: {start} before, {held} held, {now} after");
    }
}
