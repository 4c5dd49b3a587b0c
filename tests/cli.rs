//! The binary as an operator uses it: first start, the admin commands, configuration errors,
//! and `audit verify` catching a tampered database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{fresh_database, temp_dir, Backend};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_countersign");

fn countersign(dir: &std::path::Path, db: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COUNTERSIGN_DATABASE_URL", db)
        .output()
        .expect("run countersign")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's first command on an empty directory: the server starts on SQLite, creates its
/// master key (0600), prints a demo API key and a curl line, and that curl line works.
#[tokio::test]
async fn first_start_prints_a_working_curl_line() {
    let dir = temp_dir();
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .env("COUNTERSIGN_PUBLIC_ORIGIN", &origin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let text = common::read_until(child.stdout.as_mut().unwrap(), "More API clients").await;
    assert!(
        dir.join("countersign.db").exists(),
        "SQLite is the default store"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("countersign.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = common::printed_key(&text);
    // The newcomer enrols admin's passkey through the printed link first: until someone could
    // approve it, a request is refused as unsatisfiable.
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/enroll/"))
        .expect("an enrolment link");
    let token = link.rsplit('/').next().unwrap();
    let http = reqwest::Client::new();
    let opts: Value = http
        .post(format!("{origin}/v1/enroll/{token}/options"))
        .header("Origin", &origin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = common::webauthn::Device::soft_at(&origin)
        .register(&opts["publicKey"])
        .unwrap();
    let res = http
        .post(format!("{origin}/v1/enroll/{token}/finish"))
        .header("Origin", &origin)
        .json(&serde_json::json!({ "ceremony": opts["ceremony"], "credential": credential, "label": "first" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // Run the printed curl command exactly as a newcomer would paste it.
    let curl: String = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("curl -sS"))
        .take(2)
        .map(|l| l.trim().trim_end_matches('\\'))
        .collect::<Vec<_>>()
        .join(" ");
    let res = Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .output()
        .expect("curl");
    let created: Value = serde_json::from_slice(&res.stdout)
        .unwrap_or_else(|_| panic!("curl printed {}", stdout(&res)));
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap();
    let read: Value = reqwest::Client::new()
        .get(format!("{origin}/v1/approvals/{id}?wait=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "pending");
    let res = reqwest::Client::new()
        .post(format!("{origin}/v1/approvals/{id}/cancel"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    child.kill().await.unwrap();

    // A second start on the same database prints no new key.
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(&dir)
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = String::new();
    {
        use tokio::io::AsyncBufReadExt;
        let mut reader = tokio::io::BufReader::new(&mut out);
        tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(line.starts_with("countersign listening on"), "{line}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    let rest = child.wait_with_output().await.unwrap();
    assert!(!stdout(&rest).contains("cs_"), "no second demo key");
}

#[test]
fn unknown_configuration_is_refused_by_name() {
    let dir = temp_dir();
    std::fs::write(
        dir.join("c.toml"),
        "listen = \"127.0.0.1:0\"\ndatabse_url = \"x\"\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["--config", "c.toml", "migrate"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("databse_url"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(BIN)
        .arg("migrate")
        .current_dir(&dir)
        .env("COUNTERSIGN_LISTN", "x")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("COUNTERSIGN_LISTN"));
}

async fn clients_commands(backend: Backend) {
    let dir = temp_dir();
    let Some(db) = fresh_database(backend, &dir).await else {
        return;
    };
    let o = countersign(
        &dir,
        &db,
        &[
            "clients",
            "create",
            "payments",
            "--create",
            "payment.*",
            "--redeem",
            "payments-service",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let created: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(created["name"], "payments");
    let key = created["api_key"].as_str().unwrap();
    assert!(key.starts_with("cs_"));
    // The key is stored only as a hash.
    let store = countersign::store::open(&db).await.unwrap();
    let hash = countersign::domain::client::key_hash(key);
    let found = store.client_by_key_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.rights.create, vec!["payment.*"]);
    let o = countersign(&dir, &db, &["clients", "create", "payments", "--json"]);
    assert!(!o.status.success(), "duplicate names are refused");
    let o = countersign(&dir, &db, &["clients", "list", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!stdout(&o).contains(key));
    let o = countersign(&dir, &db, &["clients", "revoke", "payments", "--json"]);
    assert!(o.status.success());
    // This store learns of the other process's revocation by notice (PostgreSQL keeps API keys
    // in memory until told): within moments, never immediately.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store
        .client_by_key_hash(&hash)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation never reached this store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let o = countersign(&dir, &db, &["audit", "verify", "--json"]);
    assert!(o.status.success());
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["entries"],
        2
    );
}

async fn audit_verify_catches_tampering(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    for i in 0..4 {
        app.create(&common::payment(&format!("{i}.00"))).await;
    }
    let verify = || countersign(&app.dir, &app.database_url, &["audit", "verify"]);
    let o = verify();
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    // The key, the client, the standby approver's invitation and passkey, four requests.
    assert!(stdout(&o).contains("8 entries"), "{}", stdout(&o));
    let export = countersign(
        &app.dir,
        &app.database_url,
        &["audit", "export", "--after", "3"],
    );
    assert_eq!(stdout(&export).lines().count(), 5);

    // Edited data.
    app.sql("UPDATE audit_events SET data = '{\"action\":\"payment.transfer\"}' WHERE seq = 3")
        .await;
    let o = verify();
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("entry 3"), "{}", stdout(&o));
}

async fn audit_verify_catches_deletion_and_reordering(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    for i in 0..4 {
        app.create(&common::payment(&format!("{i}.00"))).await;
    }
    let verify = || countersign(&app.dir, &app.database_url, &["audit", "verify"]);
    // Verified whole first: on PostgreSQL this also chains what is still pending.
    assert_eq!(verify().status.code(), Some(0));
    // The tail removed: only the head row knows.
    app.sql("DELETE FROM audit_events WHERE seq = 8").await;
    let o = verify();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("removed from the end"),
        "{}",
        stdout(&o)
    );
    // A middle entry removed.
    app.sql("DELETE FROM audit_events WHERE seq = 2").await;
    let o = verify();
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("entry 3"), "{}", stdout(&o));
}

async fn audit_verify_catches_swapped_entries(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    for i in 0..3 {
        app.create(&common::payment(&format!("{i}.00"))).await;
    }
    let verify = || countersign(&app.dir, &app.database_url, &["audit", "verify"]);
    // Verified whole first: on PostgreSQL this also chains what is still pending.
    assert_eq!(verify().status.code(), Some(0));
    // Swap the contents of entries 2 and 3 (keeping their sequence numbers).
    app.sql("UPDATE audit_events SET seq = 100 WHERE seq = 2")
        .await;
    app.sql("UPDATE audit_events SET seq = 2 WHERE seq = 3")
        .await;
    app.sql("UPDATE audit_events SET seq = 3 WHERE seq = 100")
        .await;
    let o = verify();
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("entry 2"), "{}", stdout(&o));
}

async fn users_commands(backend: Backend) {
    let dir = temp_dir();
    let Some(db) = fresh_database(backend, &dir).await else {
        return;
    };
    let o = countersign(
        &dir,
        &db,
        &[
            "users",
            "invite",
            "bob",
            "--name",
            "Bob Builder",
            "--groups",
            "finance,finance-senior",
            "--ttl",
            "2h",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["user"], "bob");
    assert!(v["enroll_url"]
        .as_str()
        .unwrap()
        .starts_with("http://localhost:8080/enroll/"));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    let o = countersign(&dir, &db, &["users", "list", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v[0]["groups"],
        serde_json::json!(["finance", "finance-senior"])
    );
    assert_eq!(v[0]["name"], "Bob Builder");
    let o = countersign(&dir, &db, &["users", "groups", "bob", "finance", "--json"]);
    assert!(o.status.success());
    let o = countersign(&dir, &db, &["users", "credentials", "bob", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        serde_json::json!([])
    );
    let o = countersign(&dir, &db, &["users", "revoke-credential", "bob", "nope"]);
    assert!(!o.status.success());
    let o = countersign(&dir, &db, &["users", "disable", "bob", "--json"]);
    assert!(o.status.success());
    let o = countersign(&dir, &db, &["users", "disable", "bob"]);
    assert!(!o.status.success(), "already disabled");
    let o = countersign(&dir, &db, &["users", "invite", "bad name", "--groups", "x"]);
    assert!(!o.status.success());
    let o = countersign(&dir, &db, &["audit", "verify", "--json"]);
    assert!(o.status.success());
}

macro_rules! on_both {
    ($($name:ident),*) => {
        // Several threads: the server under test keeps running while a command runs beside it.
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}
on_both!(
    users_commands,
    clients_commands,
    audit_verify_catches_tampering,
    audit_verify_catches_deletion_and_reordering,
    audit_verify_catches_swapped_entries
);
