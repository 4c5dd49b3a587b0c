//! Faults: the database going away and coming back, replicas sharing PostgreSQL, and the
//! process killed in the middle of writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fresh_database, payment, problem, spawn_on, temp_dir, Backend};
use countersign::policy::Policy;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy in front of PostgreSQL that can be cut (connections dropped, new ones refused)
/// and restored on the same port: the database "goes away" without touching the real server.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let proxy = Proxy { addr, up };
        proxy.serve(listener, target);
        proxy
    }

    fn serve(&self, listener: TcpListener, target: SocketAddr) {
        let mut up = self.up.subscribe();
        let conns = self.up.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let mut cut = conns.subscribe();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = cut.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                    _ = up.wait_for(|up| !*up) => break, // drops the listener: connections refused
                }
            }
        });
    }

    async fn cut(&self) {
        self.up.send_replace(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn restore(&self, target: SocketAddr) {
        self.up.send_replace(true);
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener, target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503_and_recovers_without_restart() {
    let dir = temp_dir();
    let Some(url) = fresh_database(Backend::Postgres, &dir).await else {
        return;
    };
    let target: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(target).await;
    let via_proxy = url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        via_proxy, url,
        "the test database URL points at 127.0.0.1:5432"
    );
    let app = spawn_on(&via_proxy, dir, Policy::builtin().unwrap()).await;
    app.standby(&["finance".to_owned()]).await;
    let id = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    proxy.cut().await;
    let res = app
        .post_json("/v1/approvals", &app.key, &payment("11.00"))
        .await;
    assert_eq!(problem(res).await, (503, "store_unavailable".into()));
    let res = app.get(&format!("/v1/approvals/{id}"), &app.key).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.restore(target).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = app
            .post_json("/v1/approvals", &app.key, &payment("12.00"))
            .await;
        if res.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Nothing half-written: two requests, each with its audit event, and the chain intact.
    let created = app.audit_events("request_created").await.len();
    assert_eq!(created, 2);
}

/// Two server instances on one PostgreSQL database: a waiter on one is woken by a change made
/// through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_one_replica_is_woken_by_another() {
    let dir = temp_dir();
    let Some(url) = fresh_database(Backend::Postgres, &dir).await else {
        return;
    };
    let a = spawn_on(&url, dir.clone(), Policy::builtin().unwrap()).await;
    let b = spawn_on(&url, dir, Policy::builtin().unwrap()).await;
    a.standby(&["finance".to_owned()]).await;
    let id = a.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiter = {
        let req = a
            .http
            .get(a.url(&format!("/v1/approvals/{id}?wait=25")))
            .bearer_auth(&a.key);
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            (started.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // b's key belongs to another client, so cancel with a's key through b.
    let res = b
        .post_json(&format!("/v1/approvals/{id}/cancel"), &a.key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let (elapsed, body) = waiter.await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert!(
        elapsed < Duration::from_secs(20),
        "woken by the other replica's notification, took {elapsed:?}"
    );
}

/// SIGKILL during a storm of writes: after a restart every stored request has its audit event
/// and the chain verifies.
async fn killed_mid_write(backend: Backend) {
    let dir = temp_dir();
    let Some(url) = fresh_database(backend, &dir).await else {
        return;
    };
    let (mut server, port) = common::killable_server(&dir, &url);
    let mut child = server.spawn().unwrap();
    let text = common::read_until(child.stdout.as_mut().unwrap(), "More API clients").await;
    let key = Arc::new(common::printed_key(&text));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let storm: Vec<_> = (0..300)
        .map(|i| {
            let req = http
                .post(format!("{base}/v1/approvals"))
                .bearer_auth(key.as_str())
                .json(&payment(&format!("{i}.00")));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    common::kill(&mut child, &url).await;
    let mut acknowledged = 0;
    for t in storm {
        if t.await.unwrap() == 201 {
            acknowledged += 1;
        }
    }
    let store = countersign::store::open(&url).await.unwrap();
    let mut verifier = countersign::audit::ChainVerifier::default();
    let mut created = 0;
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            verifier.push(e).unwrap();
            if e.kind == "request_created" {
                created += 1;
                let id = e.approval_id.as_deref().unwrap();
                assert!(
                    store.request(id.parse().unwrap()).await.unwrap().is_some(),
                    "audited request {id} is stored"
                );
            }
        }
    }
    let (head_seq, head_hash) = store.audit_head().await.unwrap();
    verifier.finish(head_seq, &head_hash).unwrap();
    assert!(
        created >= acknowledged,
        "every acknowledged request survived: {created} stored, {acknowledged} acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_write_sqlite() {
    killed_mid_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_write_postgres() {
    killed_mid_write(Backend::Postgres).await;
}

/// SIGKILL in the middle of decisions and redemptions: after a restart no receipt exists
/// without its quorum of recorded approvals, every acknowledged decision and redemption is
/// stored, a consumed ceremony stays consumed, and the audit chain verifies.
async fn killed_mid_decision(backend: Backend) {
    use common::webauthn::{Tweak, ORIGIN};
    let dir = temp_dir();
    let Some(url) = fresh_database(backend, &dir).await else {
        return;
    };
    let (mut server, port) = common::killable_server(&dir, &url);
    let mut child = server
        .env("COUNTERSIGN_PUBLIC_ORIGIN", ORIGIN)
        .env("COUNTERSIGN_CEREMONIES_PER_MINUTE", "100000")
        .spawn()
        .unwrap();
    let text = common::read_until(child.stdout.as_mut().unwrap(), "More API clients").await;
    let key = common::printed_key(&text);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let store = countersign::store::open(&url).await.unwrap();
    // Two approvers with crafted passkeys, enrolled straight into the store, signed in over HTTP.
    let mut people = Vec::new();
    for name in ["bob", "erin"] {
        let (_, mut device) =
            common::webauthn::enrol_crafted(store.as_ref(), name, &["finance", "finance-senior"])
                .await;
        let cookie =
            common::webauthn::sign_in_crafted(&http, &base, name, &mut device, &Tweak::default())
                .await;
        people.push((device, cookie));
    }
    // Forty requests needing both approvers (quorum 2), every finish prepared in advance.
    let mut finishes = Vec::new();
    for i in 0..40 {
        let mut body = payment(&format!("{}.00", 10_000 + i));
        body["initiator"] = json!("carol");
        let created: Value = http
            .post(format!("{base}/v1/approvals"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        for (device, cookie) in people.iter_mut() {
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
            let credential = device.assert(&opts["publicKey"], &Tweak::default());
            finishes.push((
                id.clone(),
                cookie.clone(),
                json!({ "ceremony": opts["ceremony"], "credential": credential }),
            ));
        }
    }
    let storm: Vec<_> = finishes
        .into_iter()
        .map(|(id, cookie, body)| {
            let req = http
                .post(format!("{base}/v1/approvals/{id}/decision/finish"))
                .header("Origin", ORIGIN)
                .header("Cookie", cookie)
                .json(&body);
            tokio::spawn(async move {
                (
                    id,
                    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::kill(&mut child, &url).await;
    let mut acknowledged = Vec::new();
    for t in storm {
        let (id, status) = t.await.unwrap();
        if status == 200 {
            acknowledged.push(id);
        }
    }
    // After the crash, straight from the database.
    for id in &acknowledged {
        assert!(
            !store
                .decisions(id.parse().unwrap())
                .await
                .unwrap()
                .is_empty(),
            "an acknowledged decision on {id} survived"
        );
    }
    let mut approved = 0;
    let mut after = 0;
    let mut verifier = countersign::audit::ChainVerifier::default();
    let mut receipts_issued = 0;
    loop {
        let page = store.audit_page(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            verifier.push(e).unwrap();
            receipts_issued += usize::from(e.kind == "receipt_issued");
        }
    }
    let (head_seq, head_hash) = store.audit_head().await.unwrap();
    verifier.finish(head_seq, &head_hash).unwrap();
    // The crashed database starts again.
    let restarted = common::spawn_on(
        &url,
        dir.clone(),
        countersign::policy::Policy::builtin().unwrap(),
    )
    .await;
    assert_eq!(
        restarted
            .http
            .get(restarted.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let approvals: Value = {
        let mut out = Vec::new();
        let all = store.audit_page(0, 10_000).await.unwrap();
        for e in all.iter().filter(|e| e.kind == "request_created") {
            let id = e.approval_id.as_deref().unwrap().parse().unwrap();
            let rec = store.request(id).await.unwrap().unwrap();
            let decisions = store.decisions(id).await.unwrap();
            let receipt = store.receipt_of(id).await.unwrap();
            if rec.status == countersign::domain::Status::Approved {
                approved += 1;
                assert!(receipt.is_some(), "an approved request has its receipt");
                assert!(
                    decisions.len() as u32 >= rec.required.approvals(),
                    "a receipt never exists without its quorum"
                );
            } else {
                assert!(receipt.is_none(), "no receipt without approval");
            }
            out.push(json!({ "id": id, "status": rec.status.as_str() }));
        }
        json!(out)
    };
    eprintln!(
        "killed with {} of 80 finishes acknowledged; {approved} of 40 requests approved",
        acknowledged.len()
    );
    assert_eq!(approvals.as_array().unwrap().len(), 40);
    assert_eq!(
        receipts_issued, approved,
        "one receipt per approved request, each stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_decision_sqlite() {
    killed_mid_decision(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_decision_postgres() {
    killed_mid_decision(Backend::Postgres).await;
}

fn system_now() -> i64 {
    use countersign::clock::Clock;
    countersign::clock::SystemClock.now()
}

/// SIGKILL in the middle of redemptions: every acknowledged redemption stays redeemed, no
/// receipt is redeemed twice, and the audit chain records exactly the redemptions stored.
async fn killed_mid_redemption(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    // The binary below runs on the real clock: issue receipts that are valid now.
    app.clock.set(system_now());
    let mut bob = app.person("bob", &["finance"], None).await;
    let mut receipts = Vec::new();
    for i in 0..30 {
        let mut body = payment(&format!("{i}.00"));
        body["initiator"] = json!("carol");
        let id = app.create(&body).await["id"].as_str().unwrap().to_string();
        assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
        let v: Value = app
            .get(&format!("/v1/approvals/{id}"), &app.key)
            .await
            .json()
            .await
            .unwrap();
        receipts.push((
            id,
            v["receipt"].as_str().unwrap().to_string(),
            body["transaction"].clone(),
        ));
    }
    // The same database served by the real binary, which is then killed mid-storm.
    let (mut server, port) = common::killable_server(&app.dir, &app.database_url);
    let mut child = server
        .env("COUNTERSIGN_MASTER_KEY_FILE", app.dir.join("master.key"))
        .spawn()
        .unwrap();
    common::read_until(child.stdout.as_mut().unwrap(), "listening").await;
    let base = format!("http://127.0.0.1:{port}");
    let mut storm = Vec::new();
    for (id, receipt, tx) in &receipts {
        for _ in 0..3 {
            let req = app
                .http
                .post(format!("{base}/v1/receipts/redeem"))
                .bearer_auth(&app.key)
                .json(&json!({ "receipt": receipt, "transaction": tx }));
            let id = id.clone();
            storm.push(tokio::spawn(async move {
                (
                    id,
                    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0),
                )
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    common::kill(&mut child, &app.database_url).await;
    let mut acknowledged = std::collections::BTreeMap::<String, usize>::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in storm {
        let (id, status) = t.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        if status == 200 {
            *acknowledged.entry(id).or_default() += 1;
        }
    }
    assert!(
        acknowledged.values().all(|n| *n == 1),
        "never two successes for one receipt: {acknowledged:?}"
    );
    let mut redeemed = 0;
    for (id, _, _) in &receipts {
        let r = app
            .store
            .receipt_of(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        if acknowledged.contains_key(id) {
            assert!(
                r.redeemed_at.is_some(),
                "an acknowledged redemption of {id} stays redeemed"
            );
        }
        redeemed += usize::from(r.redeemed_at.is_some());
    }
    let events = app.store.audit_page(0, 100_000).await.unwrap();
    let mut verifier = countersign::audit::ChainVerifier::default();
    events.iter().for_each(|e| verifier.push(e).unwrap());
    let (head_seq, head_hash) = app.store.audit_head().await.unwrap();
    verifier.finish(head_seq, &head_hash).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "receipt_redeemed")
            .count(),
        redeemed
    );
    eprintln!(
        "killed with {} of 30 receipts acknowledged as redeemed, {redeemed} stored; statuses {statuses:?}",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_redemption_sqlite() {
    killed_mid_redemption(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_redemption_postgres() {
    killed_mid_redemption(Backend::Postgres).await;
}
