//! Secrets never reach the logs: an enrolment link's token travels in the path, and every log
//! line about the request shows it redacted. (A test binary of its own: it installs the
//! process-wide log subscriber.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::Write;
use std::sync::Mutex;

use countersign::signing::Sealer;
use serde_json::json;

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_tokens_are_not_logged() {
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(|| Capture)
        .init();
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let token = app.invite("erin", &["finance"]).await;
    assert_eq!(
        app.approver_get(&format!("/enroll/{token}"), None)
            .await
            .status(),
        200
    );
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .approver_post(
            &format!("/v1/enroll/{token}/finish"),
            None,
            &json!({ "ceremony": "x", "credential": {} }),
        )
        .await;
    assert_eq!(res.status(), 409);
    app.approver_get(&format!("/?next=/enroll/{token}"), None)
        .await;
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/v1/enroll/…/options"),
        "requests are logged: {log}"
    );
    assert!(
        !log.contains(&token),
        "the token appears in the log:\n{log}"
    );

    // A redacted field's value is never logged, from its request to its redemption.
    let policy = countersign::policy::Policy::parse(common::REDACTION_POLICY).unwrap();
    let app = common::spawn_app_with_policy(common::Backend::Sqlite, policy)
        .await
        .unwrap();
    let secret = "log-canary-5ecret-9d1f";
    let tx = json!({ "name": "prod/api-key", "value": secret });
    let mut bob = app.person("bob", &["security"], None).await;
    let created = app
        .create(&json!({ "action": "secret.export", "transaction": tx, "initiator": "carol" }))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.decide(&mut bob, id, "approve").await.status(), 200);
    let read: serde_json::Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &app.key,
            &json!({ "receipt": read["receipt"], "transaction": tx }),
        )
        .await;
    assert_eq!(res.status(), 200);

    // A webhook secret is shown once, to the operator: never logged, never audited.
    let (_, key) = app
        .operator()
        .create_client("hooked", countersign::domain::Rights::everything())
        .await
        .unwrap();
    let master = countersign::master_key::MasterKey::load(&app.dir.join("master.key")).unwrap();
    let hook = app
        .operator()
        .set_webhook(
            &Sealer::new(&master),
            "hooked",
            "http://127.0.0.1:9/hook",
            &[],
            true,
        )
        .await
        .unwrap()
        .secret;
    let other = app
        .create_with(
            &key,
            &json!({ "action": "secret.export", "transaction": tx, "initiator": "carol" }),
        )
        .await;
    let cancel = format!("/v1/approvals/{}/cancel", other["id"].as_str().unwrap());
    assert_eq!(app.post_json(&cancel, &key, &json!({})).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let audit = serde_json::to_string(&app.audit_events("webhook_set").await).unwrap();
    assert!(audit.contains("127.0.0.1"), "{audit}");
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    assert!(log.contains("not delivered"), "the attempt was logged");
    for text in [&audit, &log] {
        assert!(!text.contains(&hook), "the webhook secret leaked:\n{text}");
        assert!(
            !text.contains(&hook[6..]),
            "the webhook secret leaked:\n{text}"
        );
    }
    assert!(
        log.contains("/v1/receipts/redeem"),
        "the requests were logged"
    );
    assert!(
        !log.contains(secret),
        "the secret appears in the log:\n{log}"
    );
}
