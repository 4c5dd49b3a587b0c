//! Redacted fields over HTTP, on both databases: a secret being exported is hashed into the
//! transaction as submitted, but stored, shown, audited and returned only as a salted
//! commitment whose salt goes to the creating client alone; the executing service redeems with
//! the real value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Backend, TestApp};
use countersign::policy::{commitment, Policy};
use serde_json::{json, Value};

const SECRET: &str = "pa55-Wr0d-7f3a9c2e-NEVER-STORED";

both!(
    spawn = super::spawn;
    the_secret_appears_nowhere_but_is_bound_by_hash,
);

async fn spawn(backend: Backend) -> Option<TestApp> {
    common::spawn_app_with_policy(backend, Policy::parse(common::REDACTION_POLICY).unwrap()).await
}

/// Everything the database holds, as text (SQLite: the file and its write-ahead log).
async fn database_text(app: &TestApp) -> String {
    if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut all = String::new();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{t}\" t"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        all.push_str(&rows.join("\n"));
    }
    all
}

async fn the_secret_appears_nowhere_but_is_bound_by_hash(app: TestApp) {
    let mut bob = app.person("bob", &["security"], None).await;
    let tx = json!({ "name": "prod/db/password", "value": SECRET });
    let created = app
        .create(&json!({ "action": "secret.export", "transaction": tx, "initiator": "carol" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // Hashed as submitted.
    let submitted = countersign::tx_hash::TxHash::of_json(tx.to_string().as_bytes())
        .unwrap()
        .0;
    assert_eq!(created["tx_hash"], submitted.to_string());
    // Stored and returned as a commitment, whose salt only this response carries.
    let sealed = created["transaction"]["value"]["redacted"]
        .as_str()
        .expect("a commitment in the secret's place")
        .to_owned();
    assert_eq!(created["redactions"][0]["pointer"], "/value");
    let salt: [u8; 32] = URL_SAFE_NO_PAD
        .decode(created["redactions"][0]["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        commitment(&salt, &countersign::jcs::Value::String(SECRET.to_owned())),
        sealed,
        "the client can show which value was approved"
    );
    assert!(!created.to_string().contains(SECRET));
    // Read back: the commitment, no salt.
    let read: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["transaction"]["value"]["redacted"], sealed.as_str());
    assert!(read.get("redactions").is_none());
    // The approver sees that it is hidden, and decides over the hash of the real value.
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    assert!(page.contains("hidden — bound by hash"), "{page}");
    assert!(page.contains("prod/db/password"));
    let inbox = app
        .approver_get("/v1/me/approvals", bob.cookie.as_deref())
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("hidden — bound by hash"), "{inbox}");
    assert!(
        !inbox.contains("/value/redacted"),
        "the commitment is the field, not another one: {inbox}"
    );
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    let approved: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    let receipt = approved["receipt"].as_str().unwrap();
    // The executing service redeems with the transaction it will execute, secret included.
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &app.key,
            &json!({ "receipt": receipt, "transaction": tx }),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Nowhere in clear: API answers, pages, the audit export, the database.
    let audit = app
        .get("/v1/audit?limit=1000", &app.key)
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("request_created"));
    for (what, text) in [
        ("the read", read.to_string()),
        ("the approved read", approved.to_string()),
        ("the page", page),
        ("the inbox", inbox),
        ("the audit export", audit),
        ("the database", database_text(&app).await),
    ] {
        assert!(!text.contains(SECRET), "the secret is in {what}");
    }
}
