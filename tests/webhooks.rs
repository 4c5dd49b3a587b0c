//! Webhooks to the requesting service (API.md "Webhooks…", Standard Webhooks v1): signed so that
//! the reference library verifies them, retried with the same id after `Retry-After`, an
//! endpoint that answers 410 disabled, the delivery log and a manual retry; exactly once each
//! with two replicas delivering; the sweeper expiring requests on its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::receivers::{standardwebhooks_available, verify_independently, Receiver};
use common::{fresh_database, payment, problem, spawn_configured, temp_dir, Backend, TestApp};
use countersign::domain::Rights;
use countersign::master_key::MasterKey;
use countersign::policy::Policy;
use countersign::signing::Sealer;
use serde_json::{json, Value};

/// A server that may send to loopback (the test's receivers), with the standby approver.
async fn spawn_reaching(backend: Backend) -> Option<TestApp> {
    let dir = temp_dir();
    let url = fresh_database(backend, &dir).await?;
    let policy = Policy::builtin().unwrap();
    let groups: Vec<String> = policy.groups().into_iter().collect();
    let app = spawn_configured(&url, dir, policy, |c| c.webhook_allow_private = true).await;
    app.standby(&groups).await;
    Some(app)
}

both!(spawn = crate::spawn_reaching;
    webhooks_are_signed_retried_disabled_and_retried_by_hand,
    the_sweeper_expires_requests_and_tells_their_clients_once,
);

/// A client `name` with every right and a webhook to `url`: its key and the secret.
async fn client_with_webhook(app: &TestApp, name: &str, url: &str) -> (String, String) {
    let (_, key) = app
        .operator()
        .create_client(name, Rights::everything())
        .await
        .unwrap();
    let secret = set_webhook(app, name, url).await;
    (key, secret)
}

async fn set_webhook(app: &TestApp, name: &str, url: &str) -> String {
    let master = MasterKey::load(&app.dir.join("master.key")).unwrap();
    app.operator()
        .set_webhook(&Sealer::new(&master), name, url, &[], true)
        .await
        .unwrap()
        .secret
}

async fn deliveries(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let res = app
        .get(&format!("/v1/webhooks/deliveries{query}"), key)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

/// Waits (15 s at most) until the client's log has a message that `is` what is waited for.
async fn wait_delivery(app: &TestApp, key: &str, what: &str, is: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        if let Some(d) = deliveries(app, key, "").await.into_iter().find(|d| is(d)) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {what}: {:?}", deliveries(app, key, "").await);
}

/// Waits until the client's log has a message in `status` for `event`.
async fn wait_status(app: &TestApp, key: &str, event: &str, status: &str) -> Value {
    let what = format!("{status} {event}");
    wait_delivery(app, key, &what, |d| {
        d["event"] == event && d["status"] == status
    })
    .await
}

async fn webhooks_are_signed_retried_disabled_and_retried_by_hand(app: TestApp) {
    let independent = standardwebhooks_available();
    let hook = Receiver::start().await;
    let (key, secret) = client_with_webhook(&app, "shop", &hook.url("/hooks/cs")).await;
    let mut bob = app.person("bob", &["finance"], None).await;
    app.sign_in(&mut bob).await;

    // Approved: the first attempt is answered 503 with Retry-After.
    hook.then(503, &[("retry-after", "30")]);
    let created = app.create_with(&key, &payment("100.00")).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    let first = hook.wait_for(1).await.remove(0);
    assert_eq!(first.path, "/hooks/cs");
    assert!(first.header("webhook-id").starts_with("msg_"));
    assert_eq!(first.header("content-type"), "application/json");
    let body = first.json();
    assert_eq!(body["type"], "approval.approved");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["status"], "approved");
    assert!(body["data"]["receipt"].as_str().unwrap().contains('.'));
    if independent {
        verify_independently(&secret, &first).unwrap();
        // A signature made with another secret is refused by the same check.
        assert!(verify_independently("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &first).is_err());
    }
    let pending = wait_status(&app, &key, "approval.approved", "pending").await;
    assert_eq!(pending["attempts"], 1);
    assert_eq!(pending["last_status"], 503);
    assert_eq!(pending["id"], first.header("webhook-id"));

    // Retry-After is honoured: not before 30 s have passed.
    app.clock.advance(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.count(), 1, "retried before Retry-After");
    app.clock.advance(Duration::from_secs(25));
    let second = hook.wait_for(2).await.remove(1);
    assert_eq!(second.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(second.body, first.body, "every attempt sends the same body");
    if independent {
        verify_independently(&secret, &second).unwrap();
    }
    let delivered = wait_status(&app, &key, "approval.approved", "delivered").await;
    assert_eq!(delivered["attempts"], 2);

    // 410 disables the endpoint: the redemption's message fails and later changes write none.
    hook.then(410, &[]);
    let receipt = body["data"]["receipt"].as_str().unwrap();
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &key,
            &json!({ "receipt": receipt, "transaction": payment("100.00")["transaction"] }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let gone = wait_status(&app, &key, "receipt.redeemed", "failed").await;
    assert_eq!(gone["last_status"], 410);
    assert_eq!(app.audit_events("webhook_disabled").await.len(), 1);
    let other = app.create_with(&key, &payment("5.00")).await;
    let cancel = format!("/v1/approvals/{}/cancel", other["id"].as_str().unwrap());
    assert_eq!(app.post_json(&cancel, &key, &json!({})).await.status(), 200);
    assert_eq!(
        deliveries(&app, &key, "").await.len(),
        2,
        "nothing written for a disabled endpoint"
    );
    assert_eq!(deliveries(&app, &key, "?status=failed").await.len(), 1);
    assert_eq!(deliveries(&app, &key, "?status=delivered").await.len(), 1);

    // Setting the endpoint again enables it and rotates the secret (both sign for a day);
    // a manual retry sends the failed message again, with the same id.
    let rotated = set_webhook(&app, "shop", &hook.url("/hooks/cs")).await;
    assert_ne!(rotated, secret);
    let retry = format!(
        "/v1/webhooks/deliveries/{}/retry",
        gone["id"].as_str().unwrap()
    );
    let res = app.post_json(&retry, &key, &json!({})).await;
    assert_eq!(res.status(), 202);
    let again = hook.wait_for(4).await.remove(3);
    assert_eq!(again.header("webhook-id"), gone["id"].as_str().unwrap());
    assert_eq!(again.json()["type"], "receipt.redeemed");
    assert_eq!(again.header("webhook-signature").split(' ').count(), 2);
    if independent {
        verify_independently(&rotated, &again).unwrap();
        verify_independently(&secret, &again).unwrap();
    }
    wait_status(&app, &key, "receipt.redeemed", "delivered").await;

    // A redirect is not followed: the attempt failed, and nothing went to where it pointed.
    hook.then(307, &[("location", "/elsewhere")]);
    let moved = app.create_with(&key, &payment("7.00")).await;
    let cancel = format!("/v1/approvals/{}/cancel", moved["id"].as_str().unwrap());
    assert_eq!(app.post_json(&cancel, &key, &json!({})).await.status(), 200);
    let redirected =
        wait_delivery(&app, &key, "an answered 307", |d| d["last_status"] == 307).await;
    assert_eq!(redirected["approval_id"], moved["id"], "{redirected}");
    assert_eq!(redirected["event"], "approval.cancelled", "{redirected}");
    assert_eq!(redirected["status"], "pending", "{redirected}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hook.all().iter().all(|r| r.path == "/hooks/cs"),
        "a redirect was followed"
    );

    // Another client sees none of this; the log's query is checked.
    let stranger = app.client(Rights::everything()).await;
    assert!(deliveries(&app, &stranger, "").await.is_empty());
    assert_eq!(
        problem(app.post_json(&retry, &stranger, &json!({})).await).await,
        (404, "not_found".into())
    );
    let bad = app.get("/v1/webhooks/deliveries?status=lost", &key).await;
    assert_eq!(problem(bad).await, (400, "invalid_request".into()));
    assert_eq!(
        problem(app.get("/v1/webhooks/deliveries", "cs_nope").await)
            .await
            .0,
        401
    );

    // Loopback targets are refused where the configuration does not allow them.
    let master = MasterKey::load(&app.dir.join("master.key")).unwrap();
    for url in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "ftp://example.com/",
    ] {
        assert!(app
            .operator()
            .set_webhook(&Sealer::new(&master), "shop", url, &[], false)
            .await
            .is_err());
    }
    assert!(app
        .operator()
        .set_webhook(
            &Sealer::new(&master),
            "shop",
            "https://hooks.example.com/x",
            &["approval.nope".into()],
            false
        )
        .await
        .is_err());
}

async fn the_sweeper_expires_requests_and_tells_their_clients_once(app: TestApp) {
    // A second replica on PostgreSQL, configured as the first (any replica may deliver).
    let second = match app.database_url.starts_with("postgres") {
        true => Some(
            spawn_configured(
                &app.database_url,
                app.dir.clone(),
                Policy::builtin().unwrap(),
                |c| c.webhook_allow_private = true,
            )
            .await,
        ),
        false => None,
    };
    let hook = Receiver::start().await;
    let (key, _) = client_with_webhook(&app, "shop", &hook.url("/h")).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let created = app.create_with(&key, &payment(&format!("{i}.50"))).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    // Nobody reads them: both replicas' sweepers find them due once their time is up.
    let day = Duration::from_secs(8 * 24 * 3600);
    app.clock.advance(day);
    if let Some(b) = &second {
        b.clock.advance(day);
    }
    let got = hook.wait_for(ids.len()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let got_after = hook.all();
    assert_eq!(
        got_after.len(),
        got.len(),
        "each expiry told once: {got_after:?}"
    );
    let mut told: Vec<String> = got_after
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["type"], "approval.expired");
            assert_eq!(b["data"]["status"], "expired");
            b["data"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    told.sort();
    ids.sort();
    assert_eq!(told, ids);
    assert_eq!(app.audit_events("request_expired").await.len(), ids.len());
}

/// Two replicas delivering 100 messages to a receiver that always accepts: each arrives
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_message_exactly_once() {
    let Some(a) = spawn_reaching(Backend::Postgres).await else {
        return;
    };
    let dir = a.dir.clone();
    let b = spawn_configured(&a.database_url, dir, Policy::builtin().unwrap(), |c| {
        c.webhook_allow_private = true
    })
    .await;
    let hook = Receiver::start().await;
    let (key, _) = client_with_webhook(&a, "shop", &hook.url("/h")).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (http, key) = (a.http.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(format!("{app}/v1/approvals"))
                .bearer_auth(&key)
                .json(&payment(&format!("{i}.25")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            let res = http
                .post(format!("{app}/v1/approvals/{id}/cancel"))
                .bearer_auth(&key)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    hook.wait_for(100).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in hook.all() {
        *seen.entry(r.header("webhook-id").to_string()).or_default() += 1;
        assert_eq!(r.json()["type"], "approval.cancelled");
    }
    assert_eq!(seen.len(), 100);
    assert!(
        seen.values().all(|n| *n == 1),
        "a message arrived twice: {seen:?}"
    );
}

/// SIGKILL after a change committed and before its webhook was delivered: after the restart
/// the message goes out, with the id the log gave it.
async fn a_message_outlives_a_kill(backend: Backend) {
    let dir = temp_dir();
    let Some(url) = fresh_database(backend, &dir).await else {
        return;
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, hook_port) = (free_port(), free_port());
    let bin = env!("CARGO_BIN_EXE_countersign");
    let command = || {
        let mut c = tokio::process::Command::new(bin);
        c.current_dir(&dir)
            .env("COUNTERSIGN_DATABASE_URL", &url)
            .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
            .env("COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE", "true")
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    };
    let mut server = command()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = common::read_until(server.stdout.as_mut().unwrap(), "More API clients").await;
    let key = common::printed_key(&text);
    // The operator sets the demo client's endpoint with the CLI; the receiver is not up yet.
    let out = command()
        .args([
            "clients",
            "webhook",
            "demo",
            &format!("http://127.0.0.1:{hook_port}/h"),
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = set["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // Somebody who could approve, so that a request can be made.
    let store = countersign::store::open(&url).await.unwrap();
    common::webauthn::enrol_crafted(store.as_ref(), "bob", &["finance"]).await;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let created: Value = http
        .post(format!("{base}/v1/approvals"))
        .bearer_auth(&key)
        .json(&payment("42.00"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let res = http
        .post(format!("{base}/v1/approvals/{id}/cancel"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Its first attempt found nobody listening; killed before the retry.
    let mut message = Value::Null;
    for _ in 0..200 {
        let log: Value = http
            .get(format!("{base}/v1/webhooks/deliveries"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        message = log["deliveries"][0].clone();
        if message["attempts"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(message["status"], "pending", "{message}");
    assert_eq!(message["attempts"], 1, "{message}");
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let hook = Receiver::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", hook_port))
            .await
            .unwrap(),
    );
    let mut restarted = command()
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = hook.wait_for(1).await.remove(0);
    assert_eq!(got.header("webhook-id"), message["id"].as_str().unwrap());
    assert_eq!(got.json()["type"], "approval.cancelled");
    assert_eq!(got.json()["data"]["id"], id.as_str());
    if standardwebhooks_available() {
        verify_independently(&secret, &got).unwrap();
    }
    restarted.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_outlives_a_kill_sqlite() {
    a_message_outlives_a_kill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_outlives_a_kill_postgres() {
    a_message_outlives_a_kill(Backend::Postgres).await;
}
