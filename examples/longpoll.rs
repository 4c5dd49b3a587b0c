//! Long-polls at scale: how much memory a server needs to hold N concurrent
//! `GET /v1/approvals/{id}?wait=30` on one request, and how soon all of them are answered once
//! the request changes (it is cancelled).
//!
//! `cargo build --release --bin countersign && cargo run --release --example longpoll -- \
//!    [--polls 10000] [--bin target/release/countersign] [--database-url postgres://…/DB]`
//!
//! The server is the real binary in its own process (so its resident memory is its own), on a
//! fresh SQLite file unless a database URL is given, with the connection cap and the client's
//! rate raised to let one client hold that many polls. Prints one JSON line: resident memory
//! before and while the polls are held (and per poll), and the time from the cancel to the last
//! answer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    polls: usize,
    bin: String,
    database_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        polls: 10_000,
        bin: "target/release/countersign".into(),
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--polls" => a.polls = v.parse().unwrap(),
            "--bin" => a.bin = v,
            "--database-url" => a.database_url = Some(v),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// `VmRSS` (resident now) or `VmHWM` (the most it has been) of the process, in KiB.
fn memory_kib(pid: u32, which: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(which))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One HTTP/1.1 exchange on its own connection (`Connection: close`): status and body.
async fn exchange(port: u16, request: String) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::with_capacity(2048);
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

fn request(method: &str, path: &str, key: &str, body: Option<&Value>) -> String {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::main]
async fn main() {
    let mut a = args();
    a.bin = std::fs::canonicalize(&a.bin).unwrap().display().to_string();
    let dir = std::env::temp_dir().join(format!("cs-longpoll-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policy = std::env::current_dir().unwrap().join("policy.example.toml");
    let db = a
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/cs.db", dir.display()));
    let env = [
        ("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}")),
        (
            "COUNTERSIGN_PUBLIC_ORIGIN",
            format!("http://localhost:{port}"),
        ),
        ("COUNTERSIGN_DATABASE_URL", db),
        (
            "COUNTERSIGN_MASTER_KEY_FILE",
            dir.join("master.key").display().to_string(),
        ),
        ("COUNTERSIGN_POLICY", policy.display().to_string()),
        ("COUNTERSIGN_CLIENT_REQUESTS_PER_MINUTE", "100000000".into()),
        ("COUNTERSIGN_MAX_CONNECTIONS", (a.polls * 2).to_string()),
        ("RUST_LOG", "warn".into()),
    ];
    let cli = |args: &[&str]| -> Value {
        let out = Command::new(&a.bin)
            .args(args)
            .arg("--json")
            .envs(env.iter().cloned())
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let key = cli(&[
        "clients",
        "create",
        "longpoll",
        "--create",
        "payment.*",
        "--redeem",
        "payments-service",
    ])["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    // An approver, so that the request can be satisfied.
    cli(&["users", "invite", "ann", "--groups", "finance"]);
    let mut server = Command::new(&a.bin)
        .arg("serve")
        .envs(env.iter().cloned())
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = server.id();
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tx = json!({"amount": "1250.00", "currency": "EUR",
                    "payee": {"name": "ACME GmbH", "iban": "DE89370400440532013000"}});
    let (status, body) = exchange(
        port,
        request(
            "POST",
            "/v1/approvals",
            &key,
            Some(&json!({"action": "payment.transfer", "transaction": tx, "initiator": "lp"})),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Warm the server's paths once, then measure where it rests.
    exchange(
        port,
        request("GET", &format!("/v1/approvals/{id}"), &key, None),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = memory_kib(pid, "VmRSS:");

    let sent = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let poll = request("GET", &format!("/v1/approvals/{id}?wait=30"), &key, None);
    let mut tasks = Vec::with_capacity(a.polls);
    for _ in 0..a.polls {
        let (sent, gate, poll) = (sent.clone(), gate.clone(), poll.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(poll.as_bytes()).await.unwrap();
            drop(permit);
            sent.fetch_add(1, Ordering::Relaxed);
            let mut out = Vec::with_capacity(2048);
            s.read_to_end(&mut out).await.unwrap();
            let done = Instant::now();
            let text = String::from_utf8_lossy(&out);
            let ok = text.starts_with("HTTP/1.1 200") && text.contains("\"cancelled\"");
            (ok, done)
        }));
    }
    let started = Instant::now();
    while sent.load(Ordering::Relaxed) < a.polls {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sending = started.elapsed();
    // Every poll has been written. Held memory is what stays once the server has read and
    // parked them all and its allocator has returned what the arrival needed only briefly
    // (jemalloc hands freed pages back within about ten seconds).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let rss_held = memory_kib(pid, "VmRSS:");
    let rss_peak = memory_kib(pid, "VmHWM:");
    let early = tasks.iter().filter(|t| t.is_finished()).count();

    let cancelled_at = Instant::now();
    let (status, body) = exchange(
        port,
        request("POST", &format!("/v1/approvals/{id}/cancel"), &key, None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut ok = 0;
    let mut last = Duration::ZERO;
    for t in tasks {
        let (good, done) = t.await.unwrap();
        ok += usize::from(good);
        last = last.max(done.saturating_duration_since(cancelled_at));
    }
    let rss_after = memory_kib(pid, "VmRSS:");
    // SIGTERM, so that a wrapper (valgrind's massif, say) writes its report.
    Command::new("kill").arg(pid.to_string()).status().ok();
    server.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "{}",
        json!({
            "polls": a.polls,
            "answered_cancelled": ok,
            "answered_before_change": early,
            "seconds_to_send": (sending.as_secs_f64() * 100.0).round() / 100.0,
            "rss_idle_mib": rss_idle / 1024,
            "rss_held_mib": rss_held / 1024,
            "rss_peak_mib": rss_peak / 1024,
            "rss_after_mib": rss_after / 1024,
            "kib_per_poll": (rss_held.saturating_sub(rss_idle)) as f64 / a.polls as f64,
            "seconds_from_change_to_last_answer": (last.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    );
}
