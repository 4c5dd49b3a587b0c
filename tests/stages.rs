//! Stages over HTTP: AND across stages, OR within one, one person one stage; who may still
//! approve in each; requests nobody could approve refused at creation, and one that became so
//! said so on its page; stages in receipts. Both databases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::webauthn::Person;
use common::{problem, Backend, TestApp};
use countersign::policy::Policy;
use countersign::receipt::decode_unverified;
use serde_json::{json, Value};

/// A vendor's bank account change: finance and security must both approve; a change to a
/// large vendor also needs the CFO (a stage a rule adds); agents need a second security person.
const POLICY: &str = r#"
[[action]]
id = "vendor.bank_change"
title = "Vendor bank account change"
audiences = ["erp"]

[[action.stage]]
name = "finance"
approvers = ["finance", "finance-senior"]
quorum = 1

[[action.stage]]
name = "security"
approvers = ["security"]
quorum = 1

[[action.display]]
label = "Vendor"
pointer = "/vendor"

[[action.rule]]
name = "large-vendor"
when = { pointer = "/volume", at_least = "1000000" }
add_stage = { name = "cfo", approvers = ["cfo"], quorum = 1 }

[[action.rule]]
name = "agent"
when = { initiator_type = "agent" }
stage = "security"
add_quorum = 1
"#;

both!(
    spawn = super::spawn;
    every_stage_needs_its_own_person,
    a_person_asks_for_a_stage,
    requests_nobody_can_approve_are_refused,
    a_request_that_became_unsatisfiable_says_why,
    the_last_approvals_of_two_stages_together_issue_one_receipt,
);

/// A server with the staged policy and nobody enrolled.
async fn spawn(backend: Backend) -> Option<TestApp> {
    common::spawn_bare(backend, Policy::parse(POLICY).unwrap()).await
}

fn change(volume: &str) -> Value {
    json!({
        "action": "vendor.bank_change",
        "transaction": { "vendor": "ACME GmbH", "iban": "DE89370400440532013000", "volume": volume },
        "initiator": "alice",
    })
}

async fn create(app: &TestApp, body: &Value) -> (u16, Value) {
    let res = app.post_json("/v1/approvals", &app.key, body).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn read(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap()
}

/// `(name, approved, remaining, eligible)` of each stage.
fn stages(v: &Value) -> Vec<(String, u64, u64, Option<u64>)> {
    v["required"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["approved"].as_u64().unwrap(),
                s["remaining"].as_u64().unwrap(),
                s["eligible"].as_u64(),
            )
        })
        .collect()
}

fn st(name: &str, approved: u64, remaining: u64, eligible: u64) -> (String, u64, u64, Option<u64>) {
    (name.to_owned(), approved, remaining, Some(eligible))
}

async fn approve(app: &TestApp, p: &mut Person, id: &str) -> Value {
    let res = app.decide(p, id, "approve").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// One person in both groups fills one stage only: the other stage still needs someone else.
async fn every_stage_needs_its_own_person(app: TestApp) {
    let mut both = app.person("bea", &["finance", "security"], None).await;
    let mut sam = app.person("sam", &["security"], None).await;
    let _fin = app.person("fin", &["finance-senior"], None).await;
    let (code, created) = create(&app, &change("10")).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["required"]["approvals"], 2);
    assert_eq!(
        created["required"]["groups"],
        json!(["finance", "finance-senior", "security"])
    );
    assert_eq!(
        stages(&created),
        vec![st("finance", 0, 1, 2), st("security", 0, 1, 2)]
    );
    let id = created["id"].as_str().unwrap().to_owned();
    approve(&app, &mut both, &id).await;
    let now = read(&app, &id).await;
    assert_eq!(
        now["status"], "pending",
        "one person never meets two stages"
    );
    assert_eq!(
        stages(&now),
        vec![st("finance", 1, 0, 1), st("security", 0, 1, 1)],
        "placed in the first stage still open; bea no longer counts as eligible"
    );
    assert_eq!(now["approvals"][0]["stage"], "finance");
    let page = app
        .approver_page(&format!("/approvals/{id}"), sam.cookie.as_deref())
        .await;
    assert!(page.contains("id=\"stage-finance\""), "{page}");
    assert!(page.contains("1 of 1"), "the finance stage is met");
    assert!(
        page.contains("Sam (sam)") || page.contains("(sam)"),
        "{page}"
    );
    approve(&app, &mut sam, &id).await;
    let done = read(&app, &id).await;
    assert_eq!(done["status"], "approved");
    assert_eq!(
        stages(&done),
        vec![st("finance", 1, 0, 0), st("security", 1, 0, 0)]
    );
    let claims = decode_unverified(done["receipt"].as_str().unwrap()).unwrap();
    assert_eq!(claims.pol.stages, ["finance", "security"]);
    let mut placed: Vec<&str> = claims.apv.iter().map(|a| a.stage.as_str()).collect();
    placed.sort_unstable();
    assert_eq!(placed, ["finance", "security"]);
    let by_user: Vec<(&str, &str)> = done["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["user"].as_str().unwrap(), a["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(by_user, [("bea", "finance"), ("sam", "security")]);
    // A rule adds a stage; another raises one stage for agents.
    let (code, large) = create(&app, &change("5000000")).await;
    assert_eq!(code, 422, "nobody is in cfo: {large}");
    let _cfo = app.person("cora", &["cfo"], None).await;
    let (_, large) = create(&app, &change("5000000")).await;
    assert_eq!(large["required"]["rule"], "large-vendor");
    assert_eq!(
        stages(&large),
        vec![
            st("finance", 0, 1, 2),
            st("security", 0, 1, 2),
            st("cfo", 0, 1, 1)
        ]
    );
    let mut by_agent = change("10");
    by_agent["initiator"] = json!({"type": "agent", "id": "vendor-bot", "on_behalf_of": "alice"});
    let (_, agent) = create(&app, &by_agent).await;
    assert_eq!(
        stages(&agent),
        vec![st("finance", 0, 1, 2), st("security", 0, 2, 2)]
    );
}

/// A person in several stages may name the one they decide in; not one they are not in.
async fn a_person_asks_for_a_stage(app: TestApp) {
    let mut both = app.person("bea", &["finance", "security"], None).await;
    let mut fin = app.person("fin", &["finance"], None).await;
    let (_, created) = create(&app, &change("10")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ask = |stage: &str| json!({ "decision": "approve", "stage": stage });
    let res = app
        .approver_post(
            &format!("/v1/approvals/{id}/decision/options"),
            fin.cookie.as_deref(),
            &ask("security"),
        )
        .await;
    assert_eq!(problem(res).await, (403, "not_eligible".into()));
    let res = app
        .approver_post(
            &format!("/v1/approvals/{id}/decision/options"),
            both.cookie.as_deref(),
            &ask("security"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let opts: Value = res.json().await.unwrap();
    let credential = both.devices[0].assert(&opts["publicKey"]);
    let res = app
        .decision_finish(&both, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(res.status(), 200);
    let now = read(&app, &id).await;
    assert_eq!(now["approvals"][0]["stage"], "security", "as asked");
    approve(&app, &mut fin, &id).await;
    assert_eq!(read(&app, &id).await["status"], "approved");
}

/// A request no stage of which could ever be met is refused, naming the stage: too few people,
/// the requester aside, and people shared between stages counted once.
async fn requests_nobody_can_approve_are_refused(app: TestApp) {
    let (code, body) = create(&app, &change("10")).await;
    assert_eq!((code, body["code"].as_str()), (422, Some("unsatisfiable")));
    assert_eq!(body["stage"], "finance");
    let _bea = app.person("bea", &["finance", "security"], None).await;
    let (code, body) = create(&app, &change("10")).await;
    assert_eq!(code, 422, "one person cannot fill both stages");
    assert_eq!(body["stage"], "security");
    assert!(
        body["detail"].as_str().unwrap().contains("security"),
        "{body}"
    );
    let _sam = app.person("sam", &["security"], None).await;
    assert_eq!(create(&app, &change("10")).await.0, 201);
    // The requester does not count: with sam as the initiator, only bea is left.
    let mut by_sam = change("10");
    by_sam["initiator"] = json!("Sam");
    assert_eq!(create(&app, &by_sam).await.0, 422);
    let mut agent_for_sam = change("10");
    agent_for_sam["initiator"] = json!({"type": "agent", "id": "bot", "on_behalf_of": "sam"});
    assert_eq!(create(&app, &agent_for_sam).await.0, 422);
    // Nothing was stored for the refusals.
    let created = app.audit_events("request_created").await.len();
    assert_eq!(created, 1);
}

/// A person disabled after the request was made: the request stays, and its page says why it
/// cannot be met now.
async fn a_request_that_became_unsatisfiable_says_why(app: TestApp) {
    let bea = app.person("bea", &["finance"], None).await;
    let _sam = app.person("sam", &["security"], None).await;
    let keyed = || {
        app.http
            .post(app.url("/v1/approvals"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "change-1")
            .json(&change("10"))
            .send()
    };
    let first = keyed().await.unwrap();
    assert_eq!(first.status(), 201);
    let first = first.text().await.unwrap();
    let created: Value = serde_json::from_str(&first).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    app.operator().disable("sam").await.unwrap();
    // A repeat gets its first answer; a new request is refused.
    let again = keyed().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.text().await.unwrap(), first);
    assert_eq!(create(&app, &change("10")).await.0, 422);
    let now = read(&app, &id).await;
    assert_eq!(now["status"], "pending", "the request stays");
    assert_eq!(
        stages(&now),
        vec![st("finance", 0, 1, 1), st("security", 0, 1, 0)]
    );
    let page = app
        .approver_page(&format!("/approvals/{id}"), bea.cookie.as_deref())
        .await;
    assert!(page.contains("Cannot be met now:"), "{page}");
    assert!(page.contains("this stage needs 1 more approval"), "{page}");
}

/// Two people, one in each stage, finish at the same moment (through two servers when the
/// database is shared): the request is approved once, with one receipt naming both stages.
async fn the_last_approvals_of_two_stages_together_issue_one_receipt(app: TestApp) {
    let second = common::second_replica(&app, Policy::parse(POLICY).unwrap()).await;
    let mut people = Vec::new();
    for (name, groups) in [
        ("fin", &["finance"][..]),
        ("sam", &["security"][..]),
        ("bea", &["finance", "security"][..]),
        ("bo", &["finance", "security"][..]),
    ] {
        people.push(app.person(name, groups, None).await);
    }
    // Once with one person in each stage, once with two people each in both groups (the store
    // places the second in the stage the first left open).
    for (a, b) in [(0, 1), (2, 3), (0, 1), (2, 3)] {
        let (_, created) = create(&app, &change("10")).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let mut finishes = Vec::new();
        for i in [a, b] {
            let p = &mut people[i];
            let (code, opts) = app.decision_options(p, &id, "approve").await;
            assert_eq!(code, 200, "{opts}");
            let credential = p.devices[0].assert(&opts["publicKey"]);
            finishes.push((opts["ceremony"].clone(), credential, p.cookie.clone()));
        }
        let sends: Vec<_> = finishes
            .into_iter()
            .enumerate()
            .map(|(n, (ceremony, credential, cookie))| {
                let base = match (&second, n) {
                    (Some(s), 1) => s.base.clone(),
                    _ => app.base.clone(),
                };
                let req = app
                    .http
                    .post(format!("{base}/v1/approvals/{id}/decision/finish"))
                    .header("Origin", common::webauthn::ORIGIN)
                    .header("Cookie", cookie.unwrap())
                    .json(&json!({ "ceremony": ceremony, "credential": credential }));
                tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
            })
            .collect();
        for s in sends {
            assert_eq!(s.await.unwrap(), 200);
        }
        let done = read(&app, &id).await;
        assert_eq!(done["status"], "approved", "{done}");
        let claims = decode_unverified(done["receipt"].as_str().unwrap()).unwrap();
        let mut placed: Vec<&str> = claims.apv.iter().map(|a| a.stage.as_str()).collect();
        placed.sort_unstable();
        assert_eq!(placed, ["finance", "security"]);
    }
    let issued = app.audit_events("receipt_issued").await.len();
    assert_eq!(issued, 4, "one receipt per request");
}
