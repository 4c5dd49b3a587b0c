//! Races at scale, bounded for CI: two replicas on one PostgreSQL database. 2,000 receipts,
//! each redeemed by 8 clients at once across both replicas, are redeemed exactly once each; 200
//! requests whose last approvals come from 4 people at once get exactly one receipt each; and
//! the audit chain verifies afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::webauthn::{enrol_crafted, sign_in_crafted, Crafted, Tweak, ORIGIN};
use common::{Backend, TestApp};
use countersign::domain::Rights;
use countersign::policy::Policy;
use serde_json::{json, Value};
use tokio::sync::Mutex;

const POLICY: &str = r#"
[[action]]
id = "payment.transfer"
title = "Payment"
audiences = ["payments"]
approvers = ["finance"]
quorum = 1

[[action]]
id = "vendor.change"
title = "Vendor change"
audiences = ["erp"]
approvers = ["finance"]
quorum = 3
"#;

const RECEIPTS: usize = 2000;
const REDEEMERS: usize = 8;
const CONTESTED: usize = 200;
/// Requests in flight at once while the receipts are made.
const WORKERS: usize = 8;

/// A person with a crafted passkey that keeps no counter (so that assertions made together may
/// arrive in any order) and a session on the first replica.
struct Approver {
    device: Crafted,
    cookie: String,
}

fn no_counter() -> Tweak {
    Tweak {
        counter: Some(0),
        ..Tweak::default()
    }
}

async fn approver(app: &TestApp, name: &str) -> Approver {
    let (_, mut device) = enrol_crafted(app.store.as_ref(), name, &["finance"]).await;
    let cookie = sign_in_crafted(&app.http, &app.base, name, &mut device, &no_counter()).await;
    Approver { device, cookie }
}

async fn post(
    app: &TestApp,
    base: &str,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{base}{path}"))
        .header("Origin", ORIGIN)
        .json(&body);
    if let Some(c) = cookie {
        req = req.header("Cookie", c.to_owned());
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// Decision options for `id`, and the finish body an approver's passkey signs for it.
async fn prepared(app: &TestApp, who: &Mutex<Approver>, id: &str) -> (String, Value) {
    let cookie = who.lock().await.cookie.clone();
    let (status, opts) = post(
        app,
        &app.base,
        &format!("/v1/approvals/{id}/decision/options"),
        Some(&cookie),
        json!({ "decision": "approve" }),
    )
    .await;
    assert_eq!(status, 200, "{opts}");
    let credential = who
        .lock()
        .await
        .device
        .assert(&opts["publicKey"], &no_counter());
    (
        cookie,
        json!({ "ceremony": opts["ceremony"], "credential": credential }),
    )
}

fn transaction(i: usize) -> Value {
    json!({ "amount": format!("{}.00", 100 + i), "currency": "EUR",
            "payee": { "name": format!("Payee {i}"), "iban": "DE89370400440532013000" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_across_two_replicas_at_scale() {
    let Some(app) = common::spawn_bare(Backend::Postgres, Policy::parse(POLICY).unwrap()).await
    else {
        return;
    };
    let app = Arc::new(app);
    let second = common::second_replica(&app, Policy::parse(POLICY).unwrap())
        .await
        .expect("a second replica on PostgreSQL");
    let bases = [app.base.clone(), second.base.clone()];
    let mut people = Vec::new();
    for name in ["ana", "ben", "cai", "dev"] {
        people.push(Arc::new(Mutex::new(approver(&app, name).await)));
    }
    let people = Arc::new(people);

    // ---- 2,000 approved payments, each with its receipt ----------------------------------------
    let mut made = Vec::new();
    for w in 0..WORKERS {
        let (app, people) = (app.clone(), people.clone());
        made.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..RECEIPTS).step_by(WORKERS) {
                let body = json!({ "action": "payment.transfer", "transaction": transaction(i),
                                   "initiator": "carol" });
                let id = app.create(&body).await["id"].as_str().unwrap().to_owned();
                let (cookie, finish) = prepared(&app, &people[i % people.len()], &id).await;
                let (status, v) = post(
                    &app,
                    &app.base,
                    &format!("/v1/approvals/{id}/decision/finish"),
                    Some(&cookie),
                    finish,
                )
                .await;
                assert_eq!(
                    (status, v["status"].as_str()),
                    (200, Some("approved")),
                    "{v}"
                );
                let read: Value = app
                    .get(&format!("/v1/approvals/{id}"), &app.key)
                    .await
                    .json()
                    .await
                    .unwrap();
                out.push((i, read["receipt"].as_str().unwrap().to_owned()));
            }
            out
        }));
    }
    let mut receipts = Vec::new();
    for t in made {
        receipts.extend(t.await.unwrap());
    }
    assert_eq!(receipts.len(), RECEIPTS);
    let receipts = Arc::new(receipts);

    // ---- each redeemed by 8 clients at once, across both replicas ------------------------------
    let mut redeemers = Vec::new();
    for r in 0..REDEEMERS {
        let key = app
            .client(Rights {
                redeem: vec!["payments".into()],
                ..Rights::default()
            })
            .await;
        let (http, receipts, bases) = (app.http.clone(), receipts.clone(), bases.clone());
        redeemers.push(tokio::spawn(async move {
            let mut seen: HashMap<(u16, String), usize> = HashMap::new();
            let mut won = Vec::new();
            // Each client starts at another point of the list, so every receipt is contested.
            for k in 0..receipts.len() {
                let (i, receipt) = &receipts[(k + r * receipts.len() / REDEEMERS) % receipts.len()];
                let res = http
                    .post(format!("{}/v1/receipts/redeem", bases[(k + r) % 2]))
                    .bearer_auth(&key)
                    .json(&json!({ "receipt": receipt, "transaction": transaction(*i) }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let code = res.json::<Value>().await.unwrap()["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                if status == 200 {
                    won.push(*i);
                }
                *seen.entry((status, code)).or_default() += 1;
            }
            (won, seen)
        }));
    }
    let mut won = Vec::new();
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    for t in redeemers {
        let (w, seen) = t.await.unwrap();
        won.extend(w);
        for (k, n) in seen {
            *outcomes.entry(k).or_default() += n;
        }
    }
    won.sort_unstable();
    won.dedup();
    assert_eq!(
        won.len(),
        RECEIPTS,
        "every receipt redeemed once: {outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&(200, String::new())).copied(),
        Some(RECEIPTS),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&(409, "already_redeemed".to_owned())).copied(),
        Some(RECEIPTS * (REDEEMERS - 1)),
        "the rest are 409: {outcomes:?}"
    );

    // ---- 200 requests whose last approvals come from 4 people at once --------------------------
    let mut contested = Vec::new();
    for w in 0..WORKERS {
        let (app, people, bases) = (app.clone(), people.clone(), bases.clone());
        contested.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..CONTESTED).step_by(WORKERS) {
                let body = json!({ "action": "vendor.change", "initiator": "carol",
                                   "transaction": { "vendor": format!("V{i}"), "iban": "DE89370400440532013000" } });
                let id = app.create(&body).await["id"].as_str().unwrap().to_owned();
                let mut finishes = Vec::new();
                for who in people.iter() {
                    finishes.push(prepared(&app, who, &id).await);
                }
                let sent: Vec<_> = finishes
                    .into_iter()
                    .enumerate()
                    .map(|(n, (cookie, body))| {
                        let req = app
                            .http
                            .post(format!("{}/v1/approvals/{id}/decision/finish", bases[n % 2]))
                            .header("Origin", ORIGIN)
                            .header("Cookie", cookie)
                            .json(&body);
                        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
                    })
                    .collect();
                let mut statuses = Vec::new();
                for s in sent {
                    statuses.push(s.await.unwrap());
                }
                out.push((id, statuses));
            }
            out
        }));
    }
    let mut requests = Vec::new();
    for t in contested {
        requests.extend(t.await.unwrap());
    }
    assert_eq!(requests.len(), CONTESTED);
    for (id, statuses) in &requests {
        let approvals = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(
            approvals, 3,
            "three of four recorded, the fourth too late: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let snap = app
            .store
            .snapshot(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snap.request.status.as_str(), "approved");
        assert!(snap.receipt.is_some());
        assert_eq!(snap.votes.len(), 3);
    }

    // ---- one receipt per approved request, and the chain verifies ------------------------------
    let events = app.store.audit_page(0, 1_000_000).await.unwrap();
    let mut verifier = countersign::audit::ChainVerifier::default();
    let mut issued: HashMap<String, usize> = HashMap::new();
    for e in &events {
        verifier.push(e).unwrap();
        if e.kind == "receipt_issued" {
            *issued.entry(e.approval_id.clone().unwrap()).or_default() += 1;
        }
    }
    let (seq, hash) = app.store.audit_head().await.unwrap();
    verifier.finish(seq, &hash).unwrap();
    assert_eq!(issued.len(), RECEIPTS + CONTESTED);
    assert!(issued.values().all(|n| *n == 1), "one receipt per request");
    let redeemed = events
        .iter()
        .filter(|e| e.kind == "receipt_redeemed")
        .count();
    assert_eq!(redeemed, RECEIPTS);
}
