//! The OpenAPI document against the server that serves it: `GET /openapi.json`, then
//! schemathesis (Python, `tests/requirements.txt`) calling every operation of the service,
//! approver and admin APIs with what it generates from the document — valid and invalid
//! bodies, parameters and headers, and, following the document's links, a request's life
//! (create, read, cancel, revoke, decide) — with an API key and a signed-in admin's session.
//! It fails on any 5xx and on any response the document does not describe: a status, a
//! content type, a header, a body or an error `code` not listed for that operation.
//!
//! Without schemathesis the test says SKIPPED, unless `CS_TEST_REQUIRE_INTEROP=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::receivers::Receiver;
use common::{payment, spawn_app, Backend};
use countersign::domain::Rights;
use countersign::master_key::MasterKey;
use countersign::signing::Sealer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_for_this_server() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], app.origin.as_str());
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["name"],
        "countersign-session"
    );
    let create = &doc["paths"]["/v1/approvals"]["post"];
    assert_eq!(create["security"][0]["api_key"], serde_json::json!([]));
    let codes = &create["responses"]["404"]["content"]["application/problem+json"]["schema"]
        ["allOf"][1]["properties"]["code"]["enum"];
    assert_eq!(codes, &serde_json::json!(["unknown_action"]));
}

fn schemathesis_available() -> bool {
    let ok = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CS_TEST_REQUIRE_INTEROP").map_or(true, |v| v != "1"),
            "CS_TEST_REQUIRE_INTEROP=1 but schemathesis is missing (pip install -r tests/requirements.txt)"
        );
        eprintln!("SKIPPED schemathesis: pip install -r tests/requirements.txt");
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_the_document_does_not_say() {
    if !schemathesis_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    // Someone to sign in as, who may decide payments and propose console changes, and who is
    // not the initiator of what schemathesis creates from the document's example.
    let admin = app.person("erin", &["finance", "admins"], None).await;
    let cookie = admin.cookie.clone().unwrap();
    // A client with a webhook, whose key schemathesis uses; something to find from the start:
    // a pending request, a cancelled one (whose message is in the delivery log), and an
    // invitation to enrol with.
    let (_, key) = app
        .operator()
        .create_client("shop", Rights::everything())
        .await
        .unwrap();
    let master = MasterKey::load(&app.dir.join("master.key")).unwrap();
    let hooks = Receiver::start().await;
    app.operator()
        .set_webhook(
            &Sealer::new(&master),
            "shop",
            &hooks.url("/hooks"),
            &[],
            true,
        )
        .await
        .unwrap();
    app.create_with(&key, &payment("10.00")).await;
    let cancelled = app.create_with(&key, &payment("11.00")).await;
    let cancel = format!("/v1/approvals/{}/cancel", cancelled["id"].as_str().unwrap());
    assert_eq!(app.post_json(&cancel, &key, &json!({})).await.status(), 200);
    let invitation = app.invite("frank", &["finance"]).await;
    let session = cookie.split_once('=').unwrap().1;
    let out = tokio::process::Command::new("schemathesis")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--config-file", "tests/schemathesis.toml"])
        .args(["run", &app.url("/openapi.json"), "--url", &app.base])
        .args(["--header", &format!("Origin: {}", app.origin)])
        .arg("--no-color")
        .args(["--report", "junit", "--report-dir"])
        .arg(app.dir.join("schemathesis"))
        .env("CS_API_KEY", &key)
        .env("CS_SESSION", session)
        .env("CS_INVITATION", &invitation)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}
