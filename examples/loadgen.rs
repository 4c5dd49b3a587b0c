//! Load generator for the decision path: how many `decision/finish` calls a second the server
//! completes (each verifies a passkey assertion, commits the decision, and — quorum 1 — signs
//! and stores a receipt), next to what its signatures and commits allow, measured in the same
//! run on the same machine and database, and the server's CPU time per finish.
//!
//! `cargo run --release --example loadgen -- [--decisions N] [--concurrency C] [--database-url URL]`
//! (`CS_THREADS=1` prints CPU per finish by thread name too.)
//!
//! The server runs in this process on 127.0.0.1 (port 0) with a fresh SQLite file unless a
//! database URL is given; approvers are software P-256 authenticators whose keys we hold. Only
//! the finishes are timed: requests, ceremonies and assertions are made beforehand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign::clock::SystemClock;
use countersign::config::Config;
use countersign::domain::{Actor, CredentialId, EventKind, NewCredential, NewEvent, Rights};
use countersign::es256::{self, KeyPair};
use countersign::policy::Policy;
use countersign::startup::Application;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "http://localhost:8080";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Authenticator {
    key: SigningKey,
    cred_id: Vec<u8>,
    counter: u32,
}

impl Authenticator {
    fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let cd =
            json!({ "type": "webauthn.get", "challenge": options["challenge"], "origin": ORIGIN })
                .to_string();
        let mut ad = Sha256::digest(b"localhost").to_vec();
        ad.push(0x05);
        ad.extend_from_slice(&self.counter.to_be_bytes());
        let msg = [ad.as_slice(), &Sha256::digest(cd.as_bytes())].concat();
        let sig: DerSignature = self.key.sign(&msg);
        json!({ "id": b64(&self.cred_id), "rawId": b64(&self.cred_id), "type": "public-key",
                "response": { "authenticatorData": b64(&ad), "clientDataJSON": b64(cd.as_bytes()), "signature": b64(sig.as_bytes()) } })
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let decisions: usize = arg("--decisions").map_or(400, |v| v.parse().unwrap());
    let concurrency: usize = arg("--concurrency").map_or(8, |v| v.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("cs-loadgen-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = arg("--database-url")
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("load.db").display()));
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.listen = "127.0.0.1:0".into();
    config.public_origin = ORIGIN.into();
    config.database_url = url.clone();
    config.master_key_file = dir.join("master.key");
    config.client_requests_per_minute = u32::MAX;
    config.ceremonies_per_minute = u32::MAX;
    let store = countersign::store::open(&url).await.unwrap();
    let app = Application::build_with(
        config,
        store.clone(),
        Policy::builtin().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let app_port = app.port();
    let base = format!("http://127.0.0.1:{app_port}");
    tokio::spawn(app.run_until_stopped());
    let now = countersign::clock::Clock::now(&SystemClock);
    let operator = countersign::service::provision::Provisioner {
        store: store.as_ref(),
        clock: &SystemClock,
        origin: ORIGIN,
        actor: Actor::Operator,
        console: None,
    };
    let (_, api_key) = operator
        .create_client("loadgen", Rights::everything())
        .await
        .unwrap();

    // One approver per worker, so that counters and sessions do not contend.
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let name = format!("approver{w}");
        let invitation = operator
            .invite(&name, None, &["finance".to_string()], None, 3600)
            .await
            .unwrap();
        let token = invitation.url.rsplit('/').next().unwrap();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let cred_id: Vec<u8> = (0..16).map(|_| rand::random()).collect();
        let cred = NewCredential {
            id: CredentialId::from_raw(&cred_id).unwrap(),
            label: "load".into(),
            public_x: point.x().unwrap().to_vec(),
            public_y: point.y().unwrap().to_vec(),
            counter: 0,
            passkey: "{}".into(),
        };
        let event = NewEvent::new(EventKind::CredentialEnrolled, Actor::Operator, json!({}));
        store
            .enrol(
                &countersign::domain::client::key_hash(token),
                &invitation.user,
                &cred,
                event,
                now,
            )
            .await
            .unwrap();
        let mut auth = Authenticator {
            key,
            cred_id,
            counter: 0,
        };
        let opts: Value = http
            .post(format!("{base}/v1/session/options"))
            .header("Origin", ORIGIN)
            .json(&json!({ "username": name }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let res = http.post(format!("{base}/v1/session/finish")).header("Origin", ORIGIN)
            .json(&json!({ "ceremony": opts["ceremony"], "credential": auth.assert(&opts["publicKey"]) })).send().await.unwrap();
        assert_eq!(res.status(), 200, "sign-in");
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        workers.push((auth, cookie));
    }

    // Prepare every decision up to the finish: requests, ceremonies and signed assertions.
    eprintln!("preparing {decisions} decisions…");
    let per = decisions.div_ceil(concurrency);
    // Requests arrive interleaved, as from many initiators over time, and each approver takes
    // them in order.
    let mut prepared: Vec<Vec<(String, Value)>> = vec![Vec::new(); workers.len()];
    for i in 0..per {
        for ((auth, cookie), mine) in workers.iter_mut().zip(prepared.iter_mut()) {
            let body = json!({ "action": "payment.transfer", "initiator": "requester",
                "transaction": { "amount": format!("{i}.00"), "currency": "EUR", "payee": { "name": "ACME GmbH", "iban": "DE89370400440532013000" } } });
            let created: Value = http
                .post(format!("{base}/v1/approvals"))
                .bearer_auth(&api_key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = created["id"].as_str().unwrap().to_string();
            let opts: Value = http
                .post(format!("{base}/v1/approvals/{id}/decision/options"))
                .header("Origin", ORIGIN)
                .header("Cookie", cookie.as_str())
                .json(&json!({ "decision": "approve" }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let credential = auth.assert(&opts["publicKey"]);
            mine.push((
                id,
                json!({ "ceremony": opts["ceremony"], "credential": credential }),
            ));
        }
    }

    // The measured part: every finish, C at a time, each worker on its own keep-alive
    // connection with its requests written out beforehand, so that the client (which shares
    // this machine's cores with the server) costs as little as it can.
    let port = app_port;
    let requests: Vec<Vec<Vec<u8>>> = prepared
        .into_iter()
        .zip(workers.iter().map(|(_, c)| c.clone()))
        .map(|(mine, cookie)| {
            mine.into_iter()
                .map(|(id, body)| {
                    let body = body.to_string();
                    format!(
                        "POST /v1/approvals/{id}/decision/finish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                         Origin: {ORIGIN}\r\nCookie: {cookie}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                })
                .collect()
        })
        .collect();
    // The machine is shared and its speed drifts within seconds, so what the signatures allow
    // is measured in slices between slices of load (a second of finishes, then a fifth of a
    // second of sign-and-verify pairs on every core while no finish is in flight): both see
    // the same machine.
    eprintln!("measuring…");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|mine| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let mut conn = tokio::io::BufReader::new(stream);
                let mut ok = 0;
                for request in mine {
                    let _load = gate.read().await;
                    conn.get_mut().write_all(&request).await.unwrap();
                    if read_response(&mut conn).await == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let (mut pairs, mut paired) = (0u64, std::time::Duration::ZERO);
    let done = |tasks: &[tokio::task::JoinHandle<usize>]| tasks.iter().all(|t| t.is_finished());
    // Time under load: until the last finish, less the slices before it.
    let mut loaded = None;
    while loaded.is_none() {
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if done(&tasks) {
                loaded = Some(started.elapsed().saturating_sub(paired));
                break;
            }
        }
        let _pause = gate.write().await;
        let t = Instant::now();
        pairs += tokio::task::spawn_blocking(move || count_pairs(cores, 0.2))
            .await
            .unwrap();
        paired += t.elapsed();
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let elapsed = loaded.unwrap_or_default();
    let cpu_after = thread_cpu();
    // CPU time of the server's threads (HTTP workers, SQLite writer, sqlx workers) and of the
    // load generator's own, per finish.
    let (mut server_cpu, mut client_cpu) = (0.0, 0.0);
    let mut by_thread: std::collections::BTreeMap<String, f64> = Default::default();
    for (tid, (name, t)) in &cpu_after {
        let spent = t - cpu_before.get(tid).map_or(0.0, |(_, b)| *b);
        *by_thread.entry(name.clone()).or_default() += spent;
        if ["actix-server", "countersign-sql", "sqlx-sqlite"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            server_cpu += spent;
        } else if name != "baseline" {
            client_cpu += spent;
        }
    }
    if std::env::var_os("CS_THREADS").is_some() {
        for (name, t) in by_thread {
            eprintln!("{name:>28} {:>8.1} us/finish", t * 1e6 / ok as f64);
        }
    }
    let measured = ok as f64 / elapsed.as_secs_f64();

    // Single-thread signature costs for the record, and bare commits, right after; with the
    // arithmetic the server signs and verifies with (`countersign::es256`).
    let key = KeyPair::from(SigningKey::random(&mut rand::rngs::OsRng));
    let msg = [0x42u8; 300];
    let sig = key.sign(&msg).unwrap();
    let reps = 300;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(key.sign(&msg).unwrap());
    }
    let sign = t.elapsed() / reps;
    let t = Instant::now();
    for _ in 0..reps {
        assert!(es256::verify(key.signing_key().verifying_key(), &msg, &sig));
    }
    let verify = t.elapsed() / reps;
    let commit = bench_commit(&url, 200).await;
    // A finish verifies one assertion and signs one receipt, which the server does on every
    // core at once: sign-and-verify pairs on one thread per core (counted between the slices
    // of load above). And it commits one write transaction (ceremony, counter, decision and
    // receipt together; one at a time on SQLite): at most one bare commit after another.
    let by_crypto = pairs as f64 / paired.as_secs_f64();
    let by_commits = 1.0 / commit.as_secs_f64();
    let allowed = by_crypto.min(by_commits);
    println!(
        "{}",
        json!({
            "decisions": ok,
            "concurrency": concurrency,
            "database": if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
            "finish_per_second": (measured * 10.0).round() / 10.0,
            "es256_sign_us": sign.as_micros(),
            "es256_verify_us": verify.as_micros(),
            "write_commit_us": commit.as_micros(),
            "cores": cores,
            "baseline_slices_seconds": (paired.as_secs_f64() * 100.0).round() / 100.0,
            "allowed_by_signatures_per_second": by_crypto.round(),
            "allowed_by_commits_per_second": by_commits.round(),
            "ratio_to_allowed": (measured / allowed * 100.0).round() / 100.0,
            "server_cpu_us_per_finish": (server_cpu * 1e6 / ok as f64).round(),
            "client_cpu_us_per_finish": (client_cpu * 1e6 / ok as f64).round(),
            // What the server's own CPU time allows on these cores, against the signatures.
            "server_ratio_to_signatures": ((sign + verify).as_secs_f64() * ok as f64 / server_cpu * 100.0).round() / 100.0,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU seconds of each thread of this process, by thread id: (name, seconds).
fn thread_cpu() -> std::collections::HashMap<String, (String, f64)> {
    let tick = 100.0; // USER_HZ
    let mut out = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = entry.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let t = (rest[11].parse::<f64>().unwrap() + rest[12].parse::<f64>().unwrap()) / tick;
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        out.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            (name, t),
        );
    }
    out
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(conn: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> u16 {
    let mut status = 0;
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest[..3].parse().unwrap();
        } else if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    status
}

/// Sign-and-verify pairs done in `seconds` on `threads` threads at once.
fn count_pairs(threads: usize, seconds: f64) -> u64 {
    let msg = [0x42u8; 300];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .name("baseline".into())
                    .spawn_scoped(scope, || {
                        let key = KeyPair::from(SigningKey::random(&mut rand::rngs::OsRng));
                        let t = Instant::now();
                        let mut n = 0;
                        while t.elapsed().as_secs_f64() < seconds {
                            let s = key.sign(&msg).unwrap();
                            assert!(es256::verify(key.signing_key().verifying_key(), &msg, &s));
                            n += 1;
                        }
                        n
                    })
                    .unwrap()
            })
            .collect();
        workers.into_iter().map(|t| t.join().unwrap()).sum()
    })
}

/// Mean time of a minimal write transaction (one row updated, committed durably), one after
/// another, on a connection of its own: the baseline for what commits allow.
async fn bench_commit(url: &str, n: u32) -> std::time::Duration {
    const TOUCH: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";
    let started = Instant::now();
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
                .unwrap();
            for _ in 0..n {
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {TOUCH}; COMMIT;"))
                    .unwrap();
            }
        }
        None => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for _ in 0..n {
                let mut tx = conn.begin().await.unwrap();
                sqlx::query(TOUCH).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }
    started.elapsed() / n.max(1)
}
