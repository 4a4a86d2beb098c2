//! The README's walk-through, run as written: its shell blocks in order, in one shell, in a
//! scratch folder, and every output it shows found in what they print. Only the machine
//! differs: the binary is this build's, and the two ports are free ones.

use std::time::Duration;

use crate::helpers::{free_port, on_postgres};

const README: &str = include_str!("../../../README.md");
const SECTION: &str = "## Walk-through with curl";

/// The shell blocks of the README's section `title`, in order.
fn shell_blocks(readme: &str, title: &str) -> Vec<String> {
    let section = readme.split_once(title).expect("the section").1;
    let section = section.split("\n## ").next().unwrap();
    section.split("```sh\n").skip(1).map(|b| b.split("\n```").next().unwrap().to_string()).collect()
}

/// What the README says a step prints: `# → …` lines, and the lines under `# the receiver
/// has printed:`. `…` and `...` stand for text left out.
fn shown_outputs(blocks: &[String]) -> Vec<String> {
    let mut shown = Vec::new();
    for block in blocks {
        let mut receiver = false;
        let mut last: Option<String> = None;
        for line in block.lines().map(str::trim) {
            if let Some(out) = line.strip_prefix("# → ") {
                shown.extend(last.take());
                last = Some(out.to_string());
            } else if let (Some(more), Some(open)) = (line.strip_prefix("#    "), last.as_mut()) {
                open.push_str(more);
            } else if line == "# the receiver has printed:" {
                shown.extend(last.take());
                receiver = true;
            } else if let (true, Some(out)) = (receiver, line.strip_prefix("# ")) {
                shown.push(out.to_string());
            } else {
                shown.extend(last.take());
                receiver = false;
            }
        }
        shown.extend(last);
    }
    shown
}

/// Whether `text` holds `shown`'s parts in order, `…`/`...` standing for anything.
fn holds(text: &str, shown: &str) -> bool {
    let mut rest = text;
    for part in shown.split(['…']).flat_map(|p| p.split("...")).filter(|p| !p.trim().is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[tokio::test]
async fn the_walk_through_runs_as_written() {
    if on_postgres() {
        return; // It runs `serve` on its own SQLite file, as a newcomer does.
    }
    let blocks = shell_blocks(README, SECTION);
    assert!(blocks.len() >= 6, "{blocks:?}");
    let (port, hook) = (free_port(), free_port());
    let at = |s: &str| s.replace(":8080", &format!(":{port}")).replace(":9000", &format!(":{hook}"));
    let script = at(&blocks.join("\n"))
        .replace("cargo build --release", ": built by the test")
        .replace("./target/release/clickhook", env!("CARGO_BIN_EXE_clickhook"));
    let dir = tempfile::tempdir().unwrap();
    let mut shell = tokio::process::Command::new("bash");
    shell
        .args(["-c", &format!("set -e\n{script}\nwait")])
        .current_dir(dir.path())
        .env("CLICKHOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .process_group(0)
        .kill_on_drop(true);
    let run = shell.output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("within two minutes").unwrap();
    let mut printed = String::from_utf8_lossy(&out.stdout).to_string();
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
    for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if file.path().extension().is_some_and(|e| e == "json") {
            printed.push_str(&std::fs::read_to_string(file.path()).unwrap());
        }
    }
    assert!(out.status.success(), "the walk-through failed:\n{printed}");
    let shown = shown_outputs(&blocks);
    assert!(shown.len() >= 10, "{shown:#?}");
    for expected in shown {
        assert!(holds(&printed, &at(&expected)), "the README shows\n  {expected}\nbut the run printed\n{printed}");
    }
}

#[test]
fn outputs_are_read_from_the_readme() {
    let blocks = vec![
        "cmd\n# → {\"a\":1,\n#    \"b\":2}\nnext".to_string(),
        "x\n# the receiver has printed:\n# --- POST /hook\n# events: 1\ncurl y".to_string(),
    ];
    assert_eq!(shown_outputs(&blocks), ["{\"a\":1,\"b\":2}", "--- POST /hook", "events: 1"]);
    assert!(holds("{\"id\":1,\"x\":[2]}", "{\"id\":1,…]}"));
    assert!(!holds("{\"id\":2}", "{\"id\":1…"));
}
