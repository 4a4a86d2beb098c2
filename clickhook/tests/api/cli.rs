//! The `clickhook` command line.

use std::process::Command;

use crate::helpers::{fresh_db, on_postgres, Db};

fn clickhook(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clickhook")).arg("--db").arg(db).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn accounts_keys_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let (ok, out, err) = clickhook(
        &db,
        &["account", "create", "--name", "Bachmanity", "--timezone", "Europe/Warsaw", "--id", "456789", "--json"],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], 456789);
    assert!(v["api_key"].as_str().unwrap().starts_with("ck_"));
    let (ok, _, err) = clickhook(&db, &["account", "create", "--name", "X", "--timezone", "Nowhere/City"]);
    assert!(!ok && err.contains("Unknown time zone"), "{err}");
    let (ok, _, err) = clickhook(&db, &["account", "create", "--name", "X", "--timezone", "UTC", "--id", "456789"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, out, _) = clickhook(&db, &["account", "key", "456789"]);
    assert!(ok && out.contains("api key: ck_"));
    let (ok, out, _) = clickhook(&db, &["account", "list"]);
    assert!(ok && out.contains("456789\tBachmanity\tEurope/Warsaw"), "{out}");

    let csv = dir.path().join("leads.csv");
    std::fs::write(
        &csv,
        "email,first_name,snippet1\na@example.com,A,s\nbroken,B,\nb@example.com,B,\na@example.com,A2,\n",
    )
    .unwrap();
    let (ok, out, err) = clickhook(&db, &["import", csv.to_str().unwrap(), "--account", "456789"]);
    assert!(ok, "{err}");
    assert!(out.contains("created 2, updated 1, rejected 1"), "{out}");
    assert!(out.contains("line 3: Invalid email address"), "{out}");
    let (ok, _, err) = clickhook(&db, &["import", csv.to_str().unwrap(), "--account", "1"]);
    assert!(!ok && err.contains("account not found"), "{err}");

    let (ok, out, _) = clickhook(&db, &["keys", "rotate"]);
    assert!(ok && out.contains("key 2 now signs"), "{out}");
    let (ok, out, _) = clickhook(&db, &["keys", "list"]);
    assert!(ok && out.lines().count() == 2);
}

#[tokio::test]
async fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    assert!(clickhook(&db, &["migrate"]).0);
    if on_postgres() {
        Db(db.clone()).exec("UPDATE schema_version SET version = 99").await;
    } else {
        rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    }
    let (ok, _, err) = clickhook(&db, &["account", "list"]);
    assert!(!ok);
    assert!(err.contains("schema is version 99, newer than this clickhook"), "{err}");
}

/// A million-row file (85 MB) streams: memory stays far below the file's size.
#[test]
fn a_million_rows_import_in_bounded_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    clickhook(&db, &["account", "create", "--name", "Big", "--timezone", "UTC", "--id", "1"]);
    let csv = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(f, "email,first_name,last_name,company,snippet1").unwrap();
    for i in 0..1_000_000 {
        writeln!(f, "p{i}@example.com,First{i},Last{i},Company {i},A snippet of some length for row {i}").unwrap();
    }
    drop(f);
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&db)
        .args(["import", csv.to_str().unwrap(), "--account", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("created 1000000, updated 0, rejected 0"), "{stdout}{stderr}");
    let kb: u64 = stderr.split("maxrss_kb=").nth(1).unwrap().trim().parse().unwrap();
    eprintln!("imported 1,000,000 rows, peak RSS {kb} kB");
    assert!(kb < 100_000, "peak RSS {kb} kB");
}

#[tokio::test]
async fn receive_prints_and_verifies_what_it_gets() {
    use std::io::{BufRead, BufReader};
    let port = crate::helpers::free_port();
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let mut child = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .args(["receive", "--listen", &format!("127.0.0.1:{port}"), "--secret", secret, "--status", "202"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    let client = crate::helpers::client();
    let send = |sig: &'static str| {
        client
            .post(format!("http://127.0.0.1:{port}/hook"))
            .header("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk")
            .header("webhook-timestamp", "1649367553")
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(send("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=").await.unwrap().status(), 202);
    assert_eq!(send("v1,AAAA").await.unwrap().status(), 202);
    child.kill().unwrap();
    child.wait().unwrap();
    let out: Vec<String> = lines.map_while(Result::ok).collect();
    let verdicts: Vec<&String> = out.iter().filter(|l| l.starts_with("signature:")).collect();
    assert_eq!(verdicts, ["signature: valid", "signature: INVALID"]);
    assert!(out.iter().any(|l| l.contains("\"username\": \"test_user\"")));
}

/// One SQLite file, one server: a second `serve` would clear the first one's delivery leases
/// and send its batches again. It is refused, naming the file and the server's pid, while
/// commands keep working beside the server. (PostgreSQL is served by several nodes by design.)
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    if on_postgres() {
        return;
    }
    let node = crate::crash::Node::new();
    let server = node.start(&[]).await;
    let second = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&node.db.0)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server must not start: {err}");
    assert!(err.contains(&node.db.0) && err.contains(&format!("pid {}", server.id())), "{err}");
    let (ok, out, err) = clickhook(&node.db.0, &["account", "create", "--name", "Beside", "--timezone", "UTC"]);
    assert!(ok && out.contains("created"), "{err}");
    let (ok, out, _) = clickhook(&node.db.0, &["account", "list"]);
    assert!(ok && out.contains("Beside"), "{out}");
    drop(server);
    // Once it is gone, the file can be served again.
    let _again = node.start(&[]).await;
}

/// Errors name what failed: the file, the folder, the address, the key.
#[test]
fn errors_name_what_failed() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/folder/c.db");
    let (ok, _, err) = clickhook(missing.to_str().unwrap(), &["migrate"]);
    assert!(!ok && err.contains("does not exist") && err.contains("no/such/folder"), "{err}");

    let db = fresh_db(dir.path());
    let (ok, out, _) = clickhook(&db, &["account", "create", "--name", "A", "--timezone", "UTC", "--json"]);
    assert!(ok);
    let id = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"].to_string();
    let (ok, _, err) = clickhook(&db, &["import", "/no/such/file.csv", "--account", &id]);
    assert!(!ok && err.contains("/no/such/file.csv"), "{err}");
    let (ok, _, err) = clickhook(&db, &["keys", "remove", "99"]);
    assert!(!ok && err.contains("no link-signing key 99"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = clickhook(&db, &["receive", "--listen", &at]);
    assert!(!ok && err.contains(&format!("cannot listen on {at}")), "{err}");
    let (ok, _, err) = clickhook(&db, &["receive", "--listen", "127.0.0.1:0", "--secret", "hunter2"]);
    assert!(!ok && err.contains("whsec_"), "{err}");
    let (ok, _, err) = clickhook(&db, &["receive", "--listen", "127.0.0.1:0", "--status", "1000"]);
    assert!(!ok && err.contains("--status 1000"), "{err}");
}

/// Spreadsheets save with `;` or tabs: the delimiter is found from the header, or given.
#[test]
fn imports_find_their_delimiter() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let (_, out, _) = clickhook(&db, &["account", "create", "--name", "A", "--timezone", "UTC", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"].to_string();
    for (name, text, extra) in [
        ("semi.csv", "email;company\na@x.co;A, Inc\n", vec![]),
        ("tab.csv", "email\tcompany\nb@x.co\tB\n", vec![]),
        ("given.csv", "email;company\nc@x.co;C\n", vec!["--delimiter", ";"]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["import", path.to_str().unwrap(), "--account", &id];
        args.extend(extra);
        let (ok, out, err) = clickhook(&db, &args);
        assert!(ok && out.contains("created 1, updated 0, rejected 0"), "{name}: {out}{err}");
    }
}

/// Completions for the usual shells; logs as JSON lines on request, and never coloured when
/// stderr is not a terminal.
#[test]
fn completions_and_log_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, _) = clickhook(&db, &["completions", shell]);
        assert!(ok && out.contains("clickhook") && out.contains("serve"), "{shell}");
    }
    let (ok, _, err) = clickhook(&db, &["migrate"]);
    assert!(ok && err.contains("migration") && !err.contains('\u{1b}'), "no colours into a pipe: {err:?}");
    let other = tempfile::tempdir().unwrap();
    let (ok, _, err) = clickhook(&fresh_db(other.path()), &["--log-format", "json", "migrate"]);
    assert!(ok && err.lines().count() > 0, "{err}");
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// The access log: a line per API request with its route, status and account, never the key;
/// tracked links are not logged one by one.
#[tokio::test]
async fn access_log_lines_name_route_status_and_account_only() {
    if on_postgres() {
        return;
    }
    let node = crate::crash::Node::new();
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = node.base.rsplit(':').next().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&node.db.0)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &node.base])
        .env("RUST_LOG", "info")
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    while node.client.get(format!("{}/healthz", node.base)).send().await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let links = node.links(1, 1).await;
    let key = node.key();
    assert_eq!(node.client.get(&links[0]).send().await.unwrap().status(), 302);
    let r = node.client.get(format!("{}/rest/v2/campaigns/999", node.base)).header("x-api-key", &key).send().await;
    assert_eq!(r.unwrap().status(), 404);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let access: Vec<&str> = text.lines().filter(|l| l.contains("clickhook::access")).collect();
    assert!(
        access.iter().any(|l| l.contains("route=\"/rest/v2/campaigns/{id}\"")
            && l.contains("status=404")
            && !l.contains("account=0")),
        "{access:#?}"
    );
    assert!(
        access.iter().any(|l| l.contains("route=\"/rest/v2/campaigns\"") && l.contains("method=POST")),
        "{access:#?}"
    );
    assert!(!text.contains(&key), "the API key is never logged");
    assert!(!text.contains("/c/"), "tracked links are counted, not logged: {text}");
}

/// `--admin-listen` moves /metrics, /healthz, /docs and /tls/ask off the address tracked links use.
#[tokio::test]
async fn admin_routes_move_to_their_own_address() {
    if on_postgres() {
        return;
    }
    let node = crate::crash::Node::new();
    let admin = format!("127.0.0.1:{}", crate::helpers::free_port());
    let _server = node.start_watching(&["--admin-listen", &admin], &format!("http://{admin}/healthz")).await;
    let status = |url: String| {
        let client = node.client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("http://{admin}/healthz")).await, 200);
    assert_eq!(status(format!("http://{admin}/metrics")).await, 200);
    assert_eq!(status(format!("{}/metrics", node.base)).await, 404, "not on the public address");
    assert_eq!(status(format!("{}/healthz", node.base)).await, 404, "not on the public address");
    assert_eq!(status(format!("http://{admin}/docs")).await, 200);
    assert_eq!(status(format!("http://{admin}/docs/openapi.json")).await, 200);
    assert_eq!(status(format!("{}/docs", node.base)).await, 404, "not on the public address");
    let code = |url: String| {
        let client = node.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let asked = code(format!("http://{admin}/tls/ask?domain=t.example.com")).await;
    assert!(asked.contains("E_RECORD_NOT_FOUND"), "asked there, and not verified: {asked}");
    let public = code(format!("{}/tls/ask?domain=t.example.com", node.base)).await;
    assert!(public.contains("E_URL_NOT_FOUND"), "not on the public address: {public}");
    assert_eq!(status(format!("http://{admin}/rest/v2/campaigns")).await, 404, "the API stays public");
    let links = node.links(1, 1).await;
    assert_eq!(status(links[0].clone()).await, 302, "tracked links stay public");
}

/// `clickhook backup` copies a served store while clicks keep coming: the copy opens, and holds
/// every click answered before the backup started. It never overwrites a file, and names
/// pg_dump for a PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_click_load_holds_every_click_answered_before_it() {
    if on_postgres() {
        let db = fresh_db(std::path::Path::new("."));
        let (ok, _, err) = clickhook(&db, &["backup", "/tmp/never-written.db"]);
        assert!(!ok && err.contains("pg_dump"), "{err}");
        assert!(!std::path::Path::new("/tmp/never-written.db").exists());
        return;
    }
    let node = crate::crash::Node::new();
    let _server = node.start(&[]).await;
    let links = node.links(400, 1).await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // One client clicking link after link: when n clicks were answered, the first n are stored.
    let clicker = tokio::spawn({
        let (client, answered) = (node.client.clone(), answered.clone());
        async move {
            for (i, l) in links.iter().cycle().enumerate() {
                if *stop_rx.borrow() || i >= 20_000 {
                    break;
                }
                let r = client.get(l).header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120").send().await;
                assert_eq!(r.unwrap().status(), 302);
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let before = answered.load(std::sync::atomic::Ordering::SeqCst);
    let (ok, out, err) = clickhook(&node.db.0, &["backup", copy.to_str().unwrap()]);
    let after = answered.load(std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    clicker.await.unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("backed up") && out.contains("bytes"), "{out}");
    assert!(after > before, "clicks were answered while the backup ran ({before} → {after})");
    let stored = Db(copy.to_string_lossy().into_owned()).i64("SELECT count(*) FROM clicks").await;
    assert!(stored as usize >= before, "the copy holds {stored} clicks; {before} were answered before the backup");
    let (ok, _, err) = clickhook(copy.to_str().unwrap(), &["account", "list"]);
    assert!(ok, "the copy serves as a store: {err}");
    let size = std::fs::metadata(&copy).unwrap().len();
    let (ok, _, err) = clickhook(&node.db.0, &["backup", copy.to_str().unwrap()]);
    assert!(!ok && err.contains("exists already"), "{err}");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size, "the earlier copy is untouched");
}
