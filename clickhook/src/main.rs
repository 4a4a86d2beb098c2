//! The `clickhook` command: `serve`, `migrate`, `account`, `import`, `keys`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use clickhook::config::{ServeArgs, Settings};
use clickhook::domain::account::parse_account_id;
use clickhook::domain::{parse_timezone, NewAccount};
use clickhook::store;
use clickhook::{api::auth, click::token, startup::Application};

/// glibc's malloc took a tenth of the click path's CPU (perf); mimalloc's thread-local free lists
/// take a fraction of that for the same small, short-lived allocations. Without transparent huge
/// pages (`no_thp`): with them its arenas counted 2 MB pages in RSS and peaked near 250 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "clickhook", version, about = "Tracked links and Woodpecker-compatible link_clicked webhooks")]
struct Cli {
    /// SQLite file, or a postgres:// URL.
    #[arg(long, global = true, env = "CLICKHOOK_DB", default_value = "clickhook.db")]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (API, tracked links, background workers).
    Serve(ServeArgs),
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Manage accounts and their API keys.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Import prospects from a CSV file whose header row names prospect fields.
    Import {
        file: PathBuf,
        #[arg(long)]
        account: i64,
        #[arg(long)]
        campaign: Option<i64>,
    },
    /// Manage the keys that sign tracked links.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Receive webhooks for trying clickhook out: print them, check signatures.
    Receive {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// The subscription's whsec_ secret, to verify signatures.
        #[arg(long)]
        secret: Option<String>,
        /// The status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account and print its id and first API key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        timezone: String,
        /// Use this id (for example the firm_id an integration already knows).
        #[arg(long)]
        id: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Issue another API key for an account.
    Key {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by the prefix shown in listings.
    Revoke { id: i64, prefix: String },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// List link-signing keys (the newest signs new links).
    List,
    /// Add a new signing key; older keys keep verifying.
    Rotate,
    /// Remove a key: links it signed stop working.
    Remove { id: i64 },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
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
            let settings = Settings::from_args(cli.db, a)?;
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
        Command::Import { file, account, campaign } => import(&cli.db, file, account, campaign).await,
        Command::Keys(cmd) => keys(&cli.db, cmd).await,
        Command::Receive { listen, secret, status } => clickhook::receive::run(&listen, secret, status).await,
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

async fn import(db: &str, file: PathBuf, account: i64, campaign: Option<i64>) -> anyhow::Result<()> {
    let st = store::open(db).await?;
    st.account(account).await?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let f = std::fs::File::open(&file)?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let input = std::io::BufReader::with_capacity(1 << 20, Counting { inner: f, read: read.clone() });
    let tty = std::io::stderr().is_terminal();
    let report = clickhook::import::import_csv(&st, account, campaign, &name, input, |rows| {
        if tty {
            let done = read.load(std::sync::atomic::Ordering::Relaxed).min(total);
            let filled = (done * 30 / total) as usize;
            eprint!("\r[{}{}] {:>3}%  {rows} rows", "#".repeat(filled), " ".repeat(30 - filled), done * 100 / total);
        }
    })
    .await;
    if tty {
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
                if st.link_keys().await?.len() <= 1 {
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
