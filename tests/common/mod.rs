//! Test harness: each test gets its own server on port 0 and its own database (a temporary
//! SQLite file, or a throwaway PostgreSQL database), and talks to it over HTTP.
//!
//! PostgreSQL comes from `CS_TEST_PG_URL` (default: the local trust-auth server). When it is
//! unreachable the PostgreSQL half of a test is skipped with a message, unless
//! `CS_TEST_REQUIRE_PG=1` (set by CI), which turns that into a failure.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use countersign::clock::ManualClock;
use countersign::config::Config;
use countersign::domain::{Actor, Rights};
use countersign::policy::Policy;
use countersign::service::provision::Provisioner;
use countersign::startup::Application;
use countersign::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;

pub mod receivers;
pub mod webauthn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const START: i64 = 1_795_000_000;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    /// Key of a client with every right.
    pub key: String,
    pub database_url: String,
    pub dir: PathBuf,
    /// The server's public origin, which approver calls and software passkeys use.
    pub origin: String,
}

fn pg_admin_url() -> String {
    std::env::var("CS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_required() -> bool {
    std::env::var("CS_TEST_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// A fresh, empty database URL for `backend`, or `None` (skip) when PostgreSQL is absent and
/// not required.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("countersign.db").display())),
        Backend::Postgres => {
            let admin = pg_admin_url();
            let mut conn = match sqlx::PgConnection::connect(&admin).await {
                Ok(c) => c,
                Err(e) if !pg_required() => {
                    eprintln!("SKIPPED the PostgreSQL half: cannot reach {admin} ({e}); set CS_TEST_REQUIRE_PG=1 to make this a failure");
                    return None;
                }
                Err(e) => panic!(
                    "PostgreSQL is required (CS_TEST_REQUIRE_PG=1) but {admin} is unreachable: {e}"
                ),
            };
            // `.ci/test` gives each run its own prefix and drops the run's databases at the end.
            let prefix = std::env::var("CS_TEST_DB_PREFIX").unwrap_or_else(|_| "cs_test_".into());
            assert!(
                prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "CS_TEST_DB_PREFIX is part of a database name: lower-case letters, digits and _"
            );
            let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin.clone());
            Some(format!("{base}/{name}"))
        }
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cs-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn test_config(database_url: &str, dir: &std::path::Path) -> Config {
    let mut c = Config::load(None, Vec::new()).expect("default config");
    c.listen = "127.0.0.1:0".into();
    c.public_origin = "http://localhost:8080".into();
    c.database_url = database_url.to_string();
    c.master_key_file = dir.join("master.key");
    // Generous limits so that ordinary tests never meet them; the rate-limit tests lower them.
    c.client_requests_per_minute = 1_000_000;
    c.ceremonies_per_minute = 100_000;
    c
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with_policy(backend, Policy::builtin().expect("builtin policy")).await
}

/// A server on a fresh database with a standby approver, `standby`, in every group of the
/// policy: requests nobody could approve are refused (422 `unsatisfiable`), and most tests are
/// about something else. The standby never decides anything.
pub async fn spawn_app_with_policy(backend: Backend, policy: Policy) -> Option<TestApp> {
    let groups: Vec<String> = policy.groups().into_iter().collect();
    let app = spawn_bare(backend, policy).await?;
    app.standby(&groups).await;
    Some(app)
}

/// An action with a redacted field (a secret being exported), for the redaction tests.
#[allow(dead_code)]
pub const REDACTION_POLICY: &str = r#"
[[action]]
id = "secret.export"
title = "Secret export"
audiences = ["secrets-service"]
approvers = ["security"]
quorum = 1

[[action.display]]
label = "Secret"
pointer = "/name"

[[action.display]]
label = "Value"
pointer = "/value"
redact = true
"#;

/// The username of the standby approver.
pub const STANDBY: &str = "standby";

/// A server on a fresh database with nobody enrolled.
pub async fn spawn_bare(backend: Backend, policy: Policy) -> Option<TestApp> {
    let dir = temp_dir();
    let database_url = fresh_database(backend, &dir).await?;
    Some(spawn_on(&database_url, dir, policy).await)
}

/// A server on an existing database (a second replica, or a restart).
pub async fn spawn_on(database_url: &str, dir: PathBuf, policy: Policy) -> TestApp {
    spawn_configured(database_url, dir, policy, |_| {}).await
}

/// A second server on `app`'s database where it can be shared (PostgreSQL), for races
/// between replicas; none on SQLite.
#[allow(dead_code)]
pub async fn second_replica(app: &TestApp, policy: Policy) -> Option<TestApp> {
    if !app.database_url.starts_with("postgres") {
        return None;
    }
    Some(spawn_on(&app.database_url, app.dir.clone(), policy).await)
}

/// Like [`spawn_on`], with changes to the test configuration.
pub async fn spawn_configured(
    database_url: &str,
    dir: PathBuf,
    policy: Policy,
    change: impl FnOnce(&mut Config),
) -> TestApp {
    if std::env::var_os("RUST_LOG").is_some() {
        countersign::telemetry::init(countersign::config::LogFormat::Text);
    }
    let clock = Arc::new(ManualClock::new(START));
    let store = countersign::store::open(database_url)
        .await
        .expect("open store");
    let mut config = test_config(database_url, &dir);
    change(&mut config);
    let origin = config.public_origin.clone();
    let app = Application::build_with(config, store.clone(), policy, clock.clone())
        .await
        .expect("build app");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let mut app = TestApp {
        base,
        http: reqwest::Client::new(),
        store,
        clock,
        key: String::new(),
        database_url: database_url.to_string(),
        dir,
        origin,
    };
    app.key = app.client(Rights::everything()).await;
    app
}

pub fn payment(amount: &str) -> Value {
    json!({
        "action": "payment.transfer",
        "transaction": { "amount": amount, "currency": "EUR", "payee": { "name": "ACME GmbH", "iban": "DE89370400440532013000" } },
        "initiator": "alice",
        "audience": "payments-service"
    })
}

impl TestApp {
    /// Enrols the standby approver (see [`spawn_app_with_policy`]) in `groups`.
    pub async fn standby(&self, groups: &[String]) {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        self.person(STANDBY, &groups, None).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The operator's commands on this server's store.
    pub fn operator(&self) -> Provisioner<'_> {
        Provisioner {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            origin: "http://localhost:8080",
            actor: Actor::Operator,
            console: None,
        }
    }

    /// A client with the given rights; returns its key.
    pub async fn client(&self, rights: Rights) -> String {
        let name = format!("c-{}", uuid::Uuid::new_v4().simple());
        self.operator()
            .create_client(&name, rights)
            .await
            .expect("client")
            .1
    }

    pub fn clock_now(&self) -> i64 {
        use countersign::clock::Clock;
        self.clock.now()
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// Creates an approval with the all-rights key and returns its JSON (asserting 201).
    pub async fn create(&self, body: &Value) -> Value {
        self.create_with(&self.key, body).await
    }

    /// Creates a request as the client with `key`.
    pub async fn create_with(&self, key: &str, body: &Value) -> Value {
        let res = self.post_json("/v1/approvals", key, body).await;
        assert_eq!(
            res.status(),
            201,
            "create: {}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("json")
    }

    /// The audit log's events of one kind, in order, read through the API.
    pub async fn audit_events(&self, kind: &str) -> Vec<Value> {
        let log: Value = self
            .get("/v1/audit?limit=1000", &self.key)
            .await
            .json()
            .await
            .expect("json");
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }

    /// The decisions recorded on a request, straight from the store.
    pub async fn decisions(&self, id: &str) -> Vec<countersign::domain::DecisionRecord> {
        self.store.decisions(id.parse().unwrap()).await.unwrap()
    }

    /// Raw SQL on the test database, for tampering tests.
    pub async fn sql(&self, statement: &str) {
        raw_sql(&self.database_url, statement).await;
    }
}

/// Status and problem `code` of an error response.
pub async fn problem(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(
        ct, "application/problem+json",
        "problem content type; body {body}"
    );
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "problem status member: {body}"
    );
    let code = body["code"].as_str().unwrap_or("").to_string();
    // One list of codes: every problem carries one of them, with its status.
    let refusal = countersign::domain::Refusal::from_code(&code)
        .unwrap_or_else(|| panic!("problem code {code:?} is not a Refusal: {body}"));
    assert_eq!(refusal.status(), status, "{code} answered with {status}");
    (status, code)
}

/// Runs an async test body against SQLite and PostgreSQL: `both!(name);` expects
/// `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        both!(spawn = $crate::common::spawn_app; $($name),*);
    };
    // Each test on a fresh server of every kind that `spawn` (async fn(Backend) -> Option<TestApp>)
    // makes.
    (spawn = $spawn:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $spawn($crate::common::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $spawn($crate::common::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// The API key a first start printed (the demo client's).
pub fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("cs_"))
        .expect("an API key")
        .to_string()
}

/// What a server process printed on stdout up to and including `marker` (30 s at most).
pub async fn read_until(out: &mut tokio::process::ChildStdout, marker: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    while !text.contains(marker) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), out.read(&mut buf))
            .await
            .expect("server output in time")
            .unwrap();
        assert!(n > 0, "server exited early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// The name a server that a test kills gives its PostgreSQL connections (`PGAPPNAME`), so that
/// the test can tell when they are gone.
const KILLED_APP: &str = "countersign-killed";

/// The real binary serving `database_url` from `dir` on a free port (returned), its stdout piped
/// for `read_until`, ready for a test to add settings, spawn, and end with [`kill`].
pub fn killable_server(
    dir: &std::path::Path,
    database_url: &str,
) -> (tokio::process::Command, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    command
        .current_dir(dir)
        .env("COUNTERSIGN_DATABASE_URL", database_url)
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .env("PGAPPNAME", KILLED_APP)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    (command, port)
}

/// Kills a server started by [`killable_server`] and waits until the database has
/// stopped changing on its behalf: a PostgreSQL backend carries out what it had received (a
/// COMMIT included) after its client is gone, so until the killed server's connections have
/// ended a commit may still land. SQLite has nothing to wait for: the process was the writer.
pub async fn kill(child: &mut tokio::process::Child, database_url: &str) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    if database_url.starts_with("sqlite://") {
        return;
    }
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect");
    for _ in 0..200 {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(KILLED_APP)
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if left == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the killed server's PostgreSQL connections were still open after 10 s");
}

/// Raw SQL on a database, behind the store's back (tampering tests, fault injection).
pub async fn raw_sql(database_url: &str, statement: &str) {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            conn.execute_batch(statement).expect("sql");
        }
        None => {
            let mut conn = sqlx::PgConnection::connect(database_url)
                .await
                .expect("connect");
            sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .expect("sql");
        }
    }
}

/// How many rows a table holds, read behind the store's back.
pub async fn count(database_url: &str, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.query_row(&sql, [], |r| r.get(0)).expect("count")
        }
        None => {
            let mut conn = sqlx::PgConnection::connect(database_url)
                .await
                .expect("connect");
            sqlx::query_scalar(&sql)
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
    }
}
