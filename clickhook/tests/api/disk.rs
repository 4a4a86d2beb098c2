//! A full disk under SQLite: writes answer 503 with the reason, /healthz says so while it
//! lasts, and service resumes by itself once there is room again. Needs root (a small tmpfs);
//! PostgreSQL's full disk is its own server's to handle, so this runs on SQLite only.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::Node;
use crate::helpers::{on_postgres, Db};

/// A tmpfs of its own, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.0.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_service_resumes_by_itself() {
    if on_postgres() {
        return;
    }
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let node =
        Node::with_account(Db(disk.0.path().join("c.db").to_string_lossy().into_owned()), tempfile::tempdir().unwrap());
    let _server = node.start(&[]).await;
    let write = |n: u32| {
        let body = json!({"prospects": [{"email": format!("p{n}@x.co"), "company": "x".repeat(2_000)}]});
        node.call_full(reqwest::Method::POST, "/rest/v1/add_prospects_list", body)
    };
    assert_eq!(write(0).await.0, 200);
    let filler = disk.fill();
    let mut refused = None;
    for n in 1..200 {
        let (status, headers, body) = write(n).await;
        if status != 200 {
            refused = Some((status, headers, body));
            break;
        }
    }
    let (status, headers, body) = refused.expect("writes on a full disk must fail");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"]["code"], "E_STORE_CANNOT_WRITE", "{body}");
    assert!(body["status"]["msg"].as_str().unwrap().contains("cannot write"), "{body}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, health) = node.call_full(reqwest::Method::GET, "/healthz", Value::Null).await;
    assert_eq!(status, 503, "/healthz reports the full disk: {health}");
    assert!(health["status"]["msg"].as_str().unwrap().contains("disk is full"), "{health}");

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    loop {
        let (w, _, _) = write(1_000).await;
        let (h, _, _) = node.call_full(reqwest::Method::GET, "/healthz", Value::Null).await;
        if w == 200 && h == 200 {
            break;
        }
        assert!(freed.elapsed() < Duration::from_secs(10), "still failing once there is room: write {w}, health {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(node.db.integrity().await, "ok");
}
