//! The `clickhook` command line: its commands, arguments and help. `main.rs` runs them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;

#[derive(Parser)]
#[command(name = "clickhook", version, about = "Tracked links and Woodpecker-compatible link_clicked webhooks")]
pub struct Cli {
    /// SQLite file, or a postgres:// URL.
    #[arg(long, global = true, env = "CLICKHOOK_DB", default_value = "clickhook.db")]
    pub db: String,
    /// How log lines are written to stderr: text (coloured only on a terminal, never with
    /// NO_COLOR) or json (one object per line).
    #[arg(long, global = true, env = "CLICKHOOK_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A CSV field delimiter: `,`, `;` or `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\t" | "tab" => Ok(b'\t'),
        _ => Err(format!("the delimiter is , ; or tab, not {s:?}")),
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service (API, tracked links, background workers).
    Serve(Box<ServeArgs>),
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Manage accounts and their API keys.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Import prospects from a CSV file whose header row names prospect fields.
    Import {
        /// The CSV file (UTF-8; its first row names the columns: email, first_name, snippet1, …).
        file: PathBuf,
        /// The account the prospects go to.
        #[arg(long)]
        account: i64,
        /// Also enroll every prospect in this campaign of the account.
        #[arg(long)]
        campaign: Option<i64>,
        /// The field delimiter: , ; or tab (default: whichever the header row holds most of).
        #[arg(long, value_parser = parse_delimiter)]
        delimiter: Option<u8>,
    },
    /// Manage the keys that sign tracked links.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Copy a (running) server's SQLite store to FILE, consistently, without stopping clicks.
    /// Restore by serving the copy: clickhook --db FILE serve.
    Backup {
        /// Where the copy goes; it must not exist.
        file: PathBuf,
    },
    /// Receive webhooks for trying clickhook out: print them, check signatures.
    Receive {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// The subscription's whsec_ secret, to verify signatures.
        #[arg(long)]
        secret: Option<String>,
        /// The status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
    /// Print shell completions: clickhook completions bash > /etc/bash_completion.d/clickhook
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Create an account and print its id and first API key.
    Create {
        /// The account's name.
        #[arg(long)]
        name: String,
        /// Its IANA time zone (Europe/Warsaw): webhook and list times are shown in it.
        #[arg(long)]
        timezone: String,
        /// Use this id (for example the firm_id an integration already knows), 1 to 2^53 - 1.
        #[arg(long)]
        id: Option<i64>,
        /// Print {"id", "api_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue another API key for an account.
    Key {
        /// The account's id.
        id: i64,
        /// Print {"id", "api_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by the prefix shown in listings.
    Revoke {
        /// The account's id.
        id: i64,
        /// The key's prefix, as listings show it.
        prefix: String,
    },
    /// Print a one-time link that signs in to the dashboard (/app) as the account; it works
    /// once, within 15 minutes.
    LoginLink {
        /// The account's id.
        id: i64,
        /// The service's base URL as the person reaches it (serve's --public-url).
        #[arg(long, env = "CLICKHOOK_PUBLIC_URL")]
        public_url: Option<String>,
        /// serve's --listen, which gives the base URL when --public-url is not given.
        #[arg(long, env = "CLICKHOOK_LISTEN", default_value = crate::config::DEFAULT_LISTEN)]
        listen: String,
    },
    /// List accounts.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// List link-signing keys (the newest signs new links).
    List,
    /// Add a new signing key; older keys keep verifying.
    Rotate,
    /// Remove a key: links it signed stop working.
    Remove {
        /// The key's id, as `keys list` shows it.
        id: i64,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every argument of every command says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "clickhook", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter("|").is_err());
    }
}
