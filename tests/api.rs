//! The service API over HTTP, against SQLite and PostgreSQL alike.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{payment, problem, TestApp};
use countersign::domain::Rights;
use serde_json::{json, Value};

both!(
    create_read_and_shape,
    authentication_and_rights,
    transaction_refusals,
    hash_is_canonical,
    escalation_thresholds,
    audience_rules,
    request_validation,
    idempotency_key,
    concurrent_idempotent_creates,
    wait_is_woken_by_a_change,
    wait_times_out_while_pending,
    waits_on_one_request_share_its_change,
    waits_see_an_expiry,
    expiry_follows_the_clock,
    cancel_rules,
    audit_export_and_chain,
    health_ready_metrics,
    many_concurrent_writers,
);

async fn create_read_and_shape(app: TestApp) {
    let created = app.create(&payment("1250.00")).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["action"], "payment.transfer");
    assert_eq!(created["initiator"], "alice");
    assert_eq!(created["audience"], "payments-service");
    assert_eq!(
        created["required"],
        json!({"approvals": 1, "groups": ["finance"], "rule": "default", "stages": [
            {"name": "default", "groups": ["finance"], "quorum": 1, "approved": 0,
             "remaining": 1, "eligible": 1}
        ]}),
        "the standby approver is the one eligible person"
    );
    assert_eq!(created["approvals"], json!([]));
    assert_eq!(created["rejections"], json!([]));
    let id = created["id"].as_str().unwrap();
    // Time-ordered ids keep a batch of decisions on shared B-tree pages; still 74 random bits.
    let later = app.create(&payment("1.00")).await;
    let later = later["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert!(later > id, "ids sort in creation order");
    assert_eq!(
        created["approval_url"],
        format!("http://localhost:8080/approvals/{id}")
    );
    assert_eq!(created["created_at"], "2026-11-18T11:06:40Z");
    assert_eq!(
        created["expires_at"], "2026-11-18T11:36:40Z",
        "payment.transfer requests live 30m"
    );
    // The hash is SHA-256 over the RFC 8785 form, recomputable by anyone.
    let canonical = r#"{"amount":"1250.00","currency":"EUR","payee":{"iban":"DE89370400440532013000","name":"ACME GmbH"}}"#;
    use base64::Engine;
    use sha2::Digest;
    let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(canonical.as_bytes()));
    assert_eq!(created["tx_hash"], expect);

    let read: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);
    assert!(read.get("receipt").is_none());
}

async fn authentication_and_rights(app: TestApp) {
    let body = payment("10.00");
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    let res = app.post_json("/v1/approvals", "cs_not-a-key", &body).await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .header("Authorization", "Basic abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (401, "unauthorized".into()));

    // A key without the right to this action.
    let admin_only = app
        .client(Rights {
            create: vec!["admin.*".into()],
            ..Rights::default()
        })
        .await;
    let res = app.post_json("/v1/approvals", &admin_only, &body).await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));
    let res = app.get("/v1/audit", &admin_only).await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));

    // Another client's request is indistinguishable from a missing one.
    let created = app.create(&body).await;
    let id = created["id"].as_str().unwrap();
    let res = app.get(&format!("/v1/approvals/{id}"), &admin_only).await;
    assert_eq!(problem(res).await, (404, "not_found".into()));
    let res = app
        .post_json(
            &format!("/v1/approvals/{id}/cancel"),
            &admin_only,
            &json!({}),
        )
        .await;
    assert_eq!(problem(res).await, (404, "not_found".into()));
    let res = app
        .get(&format!("/v1/approvals/{}", uuid::Uuid::new_v4()), &app.key)
        .await;
    assert_eq!(problem(res).await, (404, "not_found".into()));
    let res = app.get("/v1/approvals/not-a-uuid", &app.key).await;
    assert_eq!(problem(res).await, (404, "not_found".into()));

    // Revocation takes effect at once.
    let payer = app
        .client(Rights {
            create: vec!["payment.*".into()],
            ..Rights::default()
        })
        .await;
    assert_eq!(
        app.post_json("/v1/approvals", &payer, &body).await.status(),
        201
    );
    let name = app
        .store
        .clients()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.rights.create == vec!["payment.*".to_string()])
        .unwrap()
        .name;
    app.operator().revoke_client(&name).await.unwrap();
    let res = app.post_json("/v1/approvals", &payer, &body).await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
}

async fn raw_create(app: &TestApp, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/approvals"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn with_tx(tx: &str) -> String {
    format!(r#"{{"action":"payment.transfer","transaction":{tx},"initiator":"alice"}}"#)
}

const GOOD_TX_TAIL: &str =
    r#""currency":"EUR","payee":{"name":"ACME","iban":"DE89370400440532013000"}"#;

async fn transaction_refusals(app: TestApp) {
    let cases = [
        (
            "duplicate key",
            format!(r#"{{"amount":"1","amount":"1000000",{GOOD_TX_TAIL}}}"#),
        ),
        (
            "duplicate key after unescaping",
            format!(r#"{{"amount":"1","\u0061mount":"1",{GOOD_TX_TAIL}}}"#),
        ),
        (
            // serde_json reads memo as the string "x", not as the object that is hashed.
            "serde_json's private key",
            format!(
                r#"{{"amount":"1.00","memo":{{"$serde_json::private::RawValue":"\"x\""}},{GOOD_TX_TAIL}}}"#
            ),
        ),
        (
            "lone surrogate",
            format!(r#"{{"amount":"1.00","memo":"\ud800",{GOOD_TX_TAIL}}}"#),
        ),
        (
            "beyond 2^53-1",
            format!(r#"{{"amount":"1.00","n":9007199254740992,{GOOD_TX_TAIL}}}"#),
        ),
        (
            "negative beyond",
            format!(r#"{{"amount":"1.00","n":-9007199254740992,{GOOD_TX_TAIL}}}"#),
        ),
        (
            "fraction",
            format!(r#"{{"amount":"1.00","n":1.5,{GOOD_TX_TAIL}}}"#),
        ),
        (
            "exponent",
            format!(r#"{{"amount":"1.00","n":1e3,{GOOD_TX_TAIL}}}"#),
        ),
        ("not an object", "[1,2]".to_string()),
        ("string", r#""pay""#.to_string()),
        (
            "too deep",
            format!(
                r#"{{"amount":"1.00","deep":{}{},{GOOD_TX_TAIL}}}"#,
                "[".repeat(40),
                "]".repeat(40)
            ),
        ),
        (
            "missing required field",
            r#"{"currency":"EUR","payee":{"name":"ACME","iban":"DE89370400440532013000"}}"#
                .to_string(),
        ),
        (
            "money not decimal string",
            format!(r#"{{"amount":1250,{GOOD_TX_TAIL}}}"#),
        ),
        (
            "money with sign",
            format!(r#"{{"amount":"-5.00",{GOOD_TX_TAIL}}}"#),
        ),
        (
            "money with grouping",
            format!(r#"{{"amount":"1,000.00",{GOOD_TX_TAIL}}}"#),
        ),
    ];
    for (what, tx) in cases {
        let res = raw_create(&app, &with_tx(&tx)).await;
        assert_eq!(
            problem(res).await,
            (400, "invalid_transaction".into()),
            "{what}"
        );
    }
    // The boundary itself is fine.
    let ok =
        format!(r#"{{"amount":"1.00","n":9007199254740991,"m":-9007199254740991,{GOOD_TX_TAIL}}}"#);
    assert_eq!(raw_create(&app, &with_tx(&ok)).await.status(), 201);
    // Nothing was stored for any refusal: exactly one request exists in the audit log.
    let created = app.audit_events("request_created").await.len();
    assert_eq!(created, 1);
}

async fn hash_is_canonical(app: TestApp) {
    let a = raw_create(
        &app,
        &with_tx(&format!(r#"{{"amount":"1250.00",{GOOD_TX_TAIL}}}"#)),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    let b = raw_create(
        &app,
        &with_tx(
            r#"{ "payee" : { "iban":"DE89370400440532013000", "name":"ACME" },
        "currency":"EUR",   "amount":"1250.00" }"#,
        ),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(
        a["tx_hash"], b["tx_hash"],
        "key order and whitespace never change the hash"
    );
    assert_ne!(a["id"], b["id"]);
    let c = raw_create(
        &app,
        &with_tx(&format!(r#"{{"amount":"1250.01",{GOOD_TX_TAIL}}}"#)),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_ne!(a["tx_hash"], c["tx_hash"], "one minor unit changes it");
    let d = raw_create(
        &app,
        &with_tx(&format!(r#"{{"amount":"1250.00",{GOOD_TX_TAIL},"x":1}}"#)),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_ne!(a["tx_hash"], d["tx_hash"], "one extra field changes it");
}

async fn escalation_thresholds(app: TestApp) {
    // With the standby approver, enough people for every escalation below.
    let _fay = app
        .person("fay", &["finance", "finance-senior"], None)
        .await;
    let _gus = app.person("gus", &["finance-senior"], None).await;
    for (amount, quorum, groups, rule) in [
        ("9999.99", 1, vec!["finance"], "default"),
        ("10000.00", 2, vec!["finance-senior"], "large-payment"),
        ("10000", 2, vec!["finance-senior"], "large-payment"),
        ("10000.01", 2, vec!["finance-senior"], "large-payment"),
    ] {
        let created = app.create(&payment(amount)).await;
        assert_eq!(
            required(&created),
            json!({"approvals": quorum, "groups": groups, "rule": rule}),
            "amount {amount}"
        );
        assert_eq!(created["required"]["stages"][0]["quorum"], quorum);
    }
    let mut risky = payment("10.00");
    risky["risk"] = json!({"score": 69, "reasons": ["new payee"]});
    assert_eq!(app.create(&risky).await["required"]["approvals"], 1);
    risky["risk"]["score"] = json!(70);
    let created = app.create(&risky).await;
    assert_eq!(
        required(&created),
        json!({"approvals": 2, "groups": ["finance"], "rule": "risky"})
    );
    assert_eq!(
        created["risk"],
        json!({"score": 70, "reasons": ["new payee"]})
    );
    let mut both = payment("25000.00");
    both["risk"] = json!({"score": 90});
    let created = app.create(&both).await;
    assert_eq!(
        required(&created),
        json!({"approvals": 3, "groups": ["finance-senior"], "rule": "large-payment+risky"})
    );
}

/// `required` without its stages.
fn required(created: &Value) -> Value {
    let mut r = created["required"].clone();
    r.as_object_mut().unwrap().remove("stages");
    r
}

async fn audience_rules(app: TestApp) {
    let mut body = payment("10.00");
    body.as_object_mut().unwrap().remove("audience");
    assert_eq!(
        app.create(&body).await["audience"],
        "payments-service",
        "the policy names exactly one"
    );
    body["audience"] = json!("admin-console");
    let res = app.post_json("/v1/approvals", &app.key, &body).await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));
    let mut unknown = payment("10.00");
    unknown["action"] = json!("payment.teleport");
    let res = app.post_json("/v1/approvals", &app.key, &unknown).await;
    assert_eq!(problem(res).await, (404, "unknown_action".into()));
}

async fn request_validation(app: TestApp) {
    // A client cannot set what only the policy decides.
    for (field, value) in [
        ("status", json!("approved")),
        ("quorum", json!(0)),
        ("approvers", json!(["me"])),
        ("required", json!({})),
    ] {
        let mut body = payment("10.00");
        body[field] = value;
        let res = app.post_json("/v1/approvals", &app.key, &body).await;
        assert_eq!(
            problem(res).await,
            (400, "invalid_request".into()),
            "{field}"
        );
    }
    let mut body = payment("10.00");
    body["risk"] = json!({"score": 101});
    assert_eq!(
        problem(app.post_json("/v1/approvals", &app.key, &body).await).await,
        (400, "invalid_request".into())
    );
    body["risk"] = json!({"score": 50.5});
    assert_eq!(
        problem(app.post_json("/v1/approvals", &app.key, &body).await).await,
        (400, "invalid_request".into())
    );
    let mut body = payment("10.00");
    body["initiator"] = json!("");
    assert_eq!(
        problem(app.post_json("/v1/approvals", &app.key, &body).await).await,
        (400, "invalid_request".into())
    );
    body["initiator"] = json!("bob\u{0007}");
    assert_eq!(
        problem(app.post_json("/v1/approvals", &app.key, &body).await).await,
        (400, "invalid_request".into())
    );

    // Content type, size, malformed and hostile JSON.
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .bearer_auth(&app.key)
        .header("content-type", "text/plain")
        .body(payment("1.00").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (415, "unsupported_media_type".into()));
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .bearer_auth(&app.key)
        .body(payment("1.00").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res).await,
        (415, "unsupported_media_type".into()),
        "no content type"
    );
    let big = with_tx(&format!(
        r#"{{"amount":"1.00","pad":"{}",{GOOD_TX_TAIL}}}"#,
        "x".repeat(70 * 1024)
    ));
    assert_eq!(
        problem(raw_create(&app, &big).await).await,
        (413, "payload_too_large".into())
    );
    // Chunked (no Content-Length) bodies are cut off at the limit as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (413, "payload_too_large".into()));
    assert_eq!(
        problem(raw_create(&app, "{not json").await).await,
        (400, "invalid_request".into())
    );
    let deep = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
    assert_eq!(problem(raw_create(&app, &deep).await).await.0, 400);
    let deep_tx = with_tx(&format!(
        r#"{{"amount":"1.00","d":{}{},{GOOD_TX_TAIL}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    ));
    assert_eq!(problem(raw_create(&app, &deep_tx).await).await.0, 400);
    // Still serving.
    assert_eq!(app.create(&payment("1.00")).await["status"], "pending");
    // Unknown query parameters and out-of-range waits.
    let id = app.create(&payment("1.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        problem(
            app.get(&format!("/v1/approvals/{id}?wait=31"), &app.key)
                .await
        )
        .await,
        (400, "invalid_request".into())
    );
    assert_eq!(
        problem(
            app.get(&format!("/v1/approvals/{id}?status=approved"), &app.key)
                .await
        )
        .await,
        (400, "invalid_request".into())
    );
    assert_eq!(
        problem(app.get("/v1/nothing-here", &app.key).await).await,
        (404, "not_found".into())
    );
}

async fn idempotency_key(app: TestApp) {
    let send = |body: Value, key: &'static str| {
        let req = app
            .http
            .post(app.url("/v1/approvals"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", key)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let first = send(payment("10.00"), "order-1").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Replayed later, even after the request changed state: the original response.
    app.post_json(
        &format!("/v1/approvals/{}/cancel", first["id"].as_str().unwrap()),
        &app.key,
        &json!({}),
    )
    .await;
    let again = send(payment("10.00"), "order-1").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = send(payment("10.01"), "order-1").await;
    assert_eq!(problem(other).await, (409, "idempotency_conflict".into()));
    // Keys are per client: another client may use the same key.
    let other_client = app.client(Rights::everything()).await;
    let res = app
        .http
        .post(app.url("/v1/approvals"))
        .bearer_auth(&other_client)
        .header("Idempotency-Key", "order-1")
        .json(&payment("10.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_ne!(res.json::<Value>().await.unwrap()["id"], first["id"]);
}

async fn concurrent_idempotent_creates(app: TestApp) {
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let req = app
                .http
                .post(app.url("/v1/approvals"))
                .bearer_auth(&app.key)
                .header("Idempotency-Key", "same")
                .json(&payment("77.00"));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one request, however many concurrent retries");
}

/// `GET /v1/approvals/{id}?wait=25` in a task of its own: how long it took, and the answer.
fn timed_wait(app: &TestApp, id: &str) -> tokio::task::JoinHandle<(Duration, Value)> {
    let req = app
        .http
        .get(app.url(&format!("/v1/approvals/{id}?wait=25")))
        .bearer_auth(&app.key);
    tokio::spawn(async move {
        let started = Instant::now();
        let body: Value = req.send().await.unwrap().json().await.unwrap();
        (started.elapsed(), body)
    })
}

async fn wait_is_woken_by_a_change(app: TestApp) {
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiter = timed_wait(&app, &id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "a pending request holds the response"
    );
    let res = app
        .post_json(&format!("/v1/approvals/{id}/cancel"), &app.key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let (elapsed, body) = waiter.await.unwrap();
    assert_eq!(body["status"], "cancelled");
    // Woken by the notification, not by the 25 s deadline.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // A finished request answers at once.
    let started = Instant::now();
    let body: Value = app
        .get(&format!("/v1/approvals/{id}?wait=25"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "cancelled");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A crowd of polls on one request is answered by one change, polls on another request are not
/// woken by it, and a poll by a client that did not create the request is refused whatever
/// the others have shared.
async fn waits_on_one_request_share_its_change(app: TestApp) {
    let id_of = |v: Value| v["id"].as_str().unwrap().to_string();
    let (x, y) = (
        id_of(app.create(&payment("10.00")).await),
        id_of(app.create(&payment("20.00")).await),
    );
    let poll = |id: &str, key: &str| {
        let req = app
            .http
            .get(app.url(&format!("/v1/approvals/{id}?wait=25")))
            .bearer_auth(key);
        tokio::spawn(async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    let on_x: Vec<_> = (0..200).map(|_| poll(&x, &app.key)).collect();
    let on_y: Vec<_> = (0..20).map(|_| poll(&y, &app.key)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = app.client(Rights::everything()).await;
    let (status, code) =
        problem(app.get(&format!("/v1/approvals/{x}?wait=25"), &other).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    let cancelled = Instant::now();
    let res = app
        .post_json(&format!("/v1/approvals/{x}/cancel"), &app.key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    for t in on_x {
        let (status, body) = t.await.unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    }
    assert!(
        cancelled.elapsed() < Duration::from_secs(5),
        "every poll answered soon after the change, took {:?}",
        cancelled.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        on_y.iter().all(|t| !t.is_finished()),
        "a change to one request leaves the polls on another waiting"
    );
    let res = app
        .post_json(&format!("/v1/approvals/{y}/cancel"), &app.key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    for t in on_y {
        assert_eq!(t.await.unwrap().1["status"], "cancelled");
    }
}

/// A request that expires while polls wait on it is expired (once, by one of them) and every
/// poll is answered with that.
async fn waits_see_an_expiry(app: TestApp) {
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let soon = app.clock_now() + 1;
    app.sql(&format!(
        "UPDATE approvals SET expires_at = {soon} WHERE id = '{id}'"
    ))
    .await;
    let polls: Vec<_> = (0..20).map(|_| timed_wait(&app, &id)).collect();
    // The polls wake a second from now (by the request's time left); the server's clock has
    // passed the expiry by then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.clock.advance(Duration::from_secs(2));
    for t in polls {
        let (elapsed, body) = t.await.unwrap();
        assert_eq!(body["status"], "expired");
        assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    }
    let expiries = app.audit_events("request_expired").await;
    assert_eq!(expiries.len(), 1, "{expiries:?}");
}

async fn wait_times_out_while_pending(app: TestApp) {
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let body: Value = app
        .get(&format!("/v1/approvals/{id}?wait=1"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "pending");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the wait"
    );
}

async fn expiry_follows_the_clock(app: TestApp) {
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.advance(Duration::from_secs(29 * 60 + 59));
    let body: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "pending");
    app.clock.advance(Duration::from_secs(1));
    let body: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "expired");
    let res = app
        .post_json(&format!("/v1/approvals/{id}/cancel"), &app.key, &json!({}))
        .await;
    assert_eq!(problem(res).await, (409, "not_pending".into()));
    let expired = app.audit_events("request_expired").await;
    assert_eq!(expired.len(), 1, "recorded once");
    assert_eq!(expired[0]["approval_id"], id.as_str());
}

async fn cancel_rules(app: TestApp) {
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/approvals/{id}/cancel");
    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&app.key)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (415, "unsupported_media_type".into()));
    let res = app
        .post_json(&path, &app.key, &json!({"status": "approved"}))
        .await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
    // Found by schemathesis: serde fills a struct from an array of its fields, so `[]` passed
    // for `{}`, and a request could be created from an array. Bodies are objects.
    let res = app.post_json(&path, &app.key, &json!([])).await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
    let p = payment("1.00");
    let as_array = json!([
        p["action"],
        p["transaction"],
        p["initiator"],
        p["audience"],
        null
    ]);
    let res = app.post_json("/v1/approvals", &app.key, &as_array).await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
    // No body at all is fine too.
    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    let res = app.post_json(&path, &app.key, &json!({})).await;
    assert_eq!(problem(res).await, (409, "not_pending".into()));
    // Twenty concurrent cancels of a fresh request: exactly one succeeds.
    let id = app.create(&payment("11.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let req = app
                .http
                .post(app.url(&format!("/v1/approvals/{id}/cancel")))
                .bearer_auth(&app.key);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
}

async fn audit_export_and_chain(app: TestApp) {
    for i in 0..5 {
        app.create(&payment(&format!("{i}.00"))).await;
    }
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let page: Value = app
            .get(&format!("/v1/audit?after={after}&limit=2"), &app.key)
            .await
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        all.extend(events.iter().cloned());
        match page["next"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    // The first signing key, the test client, the standby approver (invited, enrolled) and
    // five requests.
    assert_eq!(all.len(), 9);
    let mut verifier = countersign::audit::ChainVerifier::default();
    for e in &all {
        let event: countersign::audit::AuditEvent = serde_json::from_value(e.clone()).unwrap();
        verifier.push(&event).unwrap();
    }
    let (head_seq, head_hash) = app.store.audit_head().await.unwrap();
    assert_eq!(verifier.finish(head_seq, &head_hash).unwrap(), 9);
    assert_eq!(all[0]["kind"], "key_rotated");
    assert_eq!(all[4]["kind"], "request_created");
    assert!(all[4]["actor"].as_str().unwrap().starts_with("client:"));
    assert_eq!(
        problem(app.get("/v1/audit?limit=0", &app.key).await).await,
        (400, "invalid_request".into())
    );
}

async fn health_ready_metrics(app: TestApp) {
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let created = app.create(&payment("1.00")).await;
    let id = created["id"].as_str().unwrap();
    app.get(&format!("/v1/approvals/{id}"), &app.key).await;
    app.get("/v1/approvals/not-an-id", &app.key).await;
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    for line in [
        "countersign_approvals_created_total 1",
        "# TYPE countersign_http_responses counter",
        "# TYPE countersign_http_request_duration_seconds histogram",
        // By the route's pattern, never the path: an id is not a label.
        "countersign_http_request_duration_seconds_count{route=\"/v1/approvals/{id}\",class=\"2xx\"} 1",
        "countersign_http_request_duration_seconds_count{route=\"/v1/approvals/{id}\",class=\"4xx\"} 1",
        "countersign_http_request_duration_seconds_count{route=\"/v1/approvals\",class=\"2xx\"} 1",
        "# TYPE countersign_db_commit_duration_seconds histogram",
        "countersign_outbox_backlog 0",
        "countersign_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains(id), "no request id in a label");
}

async fn many_concurrent_writers(app: TestApp) {
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let req = app
                .http
                .post(app.url("/v1/approvals"))
                .bearer_auth(&app.key)
                .json(&payment(&format!("{i}.00")));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            201,
            "no 'database is locked' surfaces as a 500"
        );
    }
    let (seq, _) = app.store.audit_head().await.unwrap();
    assert_eq!(
        seq, 64,
        "the first key, the test client, the standby approver's two, 60 requests"
    );
}

/// With `metrics_token` set, `/metrics` answers only its bearer; decisions, redemptions,
/// ceremonies and sessions are counted by outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_their_token_and_count_outcomes() {
    let dir = common::temp_dir();
    let db = common::fresh_database(common::Backend::Sqlite, &dir)
        .await
        .unwrap();
    let app = common::spawn_configured(
        &db,
        dir,
        countersign::policy::Policy::builtin().unwrap(),
        |c| c.metrics_token = Some("s3cret-metrics".into()),
    )
    .await;
    let scrape = |token: Option<&'static str>| {
        let mut req = app.http.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        problem(scrape(None).await.unwrap()).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        problem(scrape(Some("guess")).await.unwrap()).await,
        (401, "unauthorized".into())
    );
    let mut bob = app.person("bob", &["finance"], None).await;
    let created = app.create(&payment("1.00")).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.decide(&mut bob, id, "approve").await.status(), 200);
    let read: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    let receipt = read["receipt"].as_str().unwrap();
    let tx = read["transaction"].clone();
    let mut other = tx.clone();
    other["amount"] = json!("2.00");
    for body in [
        json!({ "receipt": receipt, "transaction": other }),
        json!({ "receipt": receipt, "transaction": tx }),
    ] {
        app.post_json("/v1/receipts/redeem", &app.key, &body).await;
    }
    let res = scrape(Some("s3cret-metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for line in [
        "countersign_decisions_total{outcome=\"approve\"} 1",
        "countersign_redemptions_total{outcome=\"redeemed\"} 1",
        "countersign_redemptions_total{outcome=\"transaction_mismatch\"} 1",
        "countersign_ceremonies_started_total{kind=\"decision\"} 1",
        "countersign_ceremonies_started_total{kind=\"sign_in\"} 1",
        "countersign_ceremonies_started_total{kind=\"enrolment\"} 1",
        "countersign_sessions_started_total 1",
        // Two refused scrapes and the mismatched redemption.
        "countersign_http_responses_total{class=\"4xx\"} 3",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
