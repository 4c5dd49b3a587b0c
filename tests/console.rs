//! The admin console's changes over HTTP, on both databases: proposed by one admin, decided by
//! another with a passkey, carried out once by the server (whoever tries, however many at
//! once), their secret shown once to the proposer; lockouts refused when proposed and when
//! carried out; everyone outside the admin group refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::webauthn::Person;
use common::{count, problem, Backend, TestApp};
use countersign::policy::Policy;
use serde_json::{json, Value};

/// Payments need one of finance; console changes one admin besides the proposer.
const POLICY: &str = r#"
[[action]]
id = "payment.transfer"
title = "Payment"
audiences = ["payments"]
approvers = ["finance"]
quorum = 1
"#;

both!(
    spawn = super::spawn;
    a_change_is_carried_out_once_another_admin_approves_it,
    what_a_change_produces_works_and_its_secret_is_shown_once,
    lockouts_are_refused_when_proposed_and_when_carried_out,
    everyone_outside_the_admin_group_is_refused,
    the_only_admin_is_told_how_to_invite_a_second,
    attempts_at_once_carry_a_change_out_once,
    the_console_pages_are_for_admins,
);

async fn spawn(backend: Backend) -> Option<TestApp> {
    common::spawn_bare(backend, Policy::parse(POLICY).unwrap()).await
}

async fn propose(app: &TestApp, p: &Person, change: Value) -> (u16, Value) {
    let res = app
        .approver_post("/v1/admin/changes", p.cookie.as_deref(), &change)
        .await;
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Proposes a change that must be accepted; its id.
async fn proposed(app: &TestApp, p: &Person, change: Value) -> String {
    let (status, body) = propose(app, p, change).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn read(app: &TestApp, p: &Person, id: &str) -> Value {
    let res = app
        .approver_get(&format!("/v1/admin/changes/{id}"), p.cookie.as_deref())
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn approve(app: &TestApp, p: &mut Person, id: &str) -> Value {
    let res = app.decide(p, id, "approve").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The audit events of `kind` about request `id`.
async fn events_about(app: &TestApp, kind: &str, id: &str) -> Vec<Value> {
    app.audit_events(kind)
        .await
        .into_iter()
        .filter(|e| e["approval_id"] == id)
        .collect()
}

/// Two admins and a finance approver.
async fn team(app: &TestApp) -> (Person, Person, Person) {
    (
        app.person("ann", &["admins"], None).await,
        app.person("bob", &["admins"], None).await,
        app.person("fin", &["finance"], None).await,
    )
}

async fn a_change_is_carried_out_once_another_admin_approves_it(app: TestApp) {
    let (ann, mut bob, _fin) = team(&app).await;
    let (status, created) = propose(
        &app,
        &ann,
        json!({"op": "users.invite", "username": "Carol", "name": "Carol", "groups": ["finance"],
               "email": "carol@example.com"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["proposed_by"], "ann");
    assert_eq!(
        created["change"],
        json!({"op": "users.invite", "username": "carol", "name": "Carol",
               "groups": ["finance"], "email": "carol@example.com"}),
        "the change in its one spelling"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["approval_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/approvals/{id}")));
    // The proposer never approves their own change; it waits in the other admin's inbox, on
    // the ordinary approval page, every field shown.
    let (status, body) = app.decision_options(&ann, &id, "approve").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "self_approval_forbidden");
    let inbox: Value = app
        .approver_get("/v1/me/approvals", bob.cookie.as_deref())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["approvals"][0]["id"], id.as_str());
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    for shown in ["users.invite", "carol@example.com", "finance"] {
        assert!(page.contains(shown), "the page shows {shown}");
    }
    assert!(app.store.user_by_username("carol").await.unwrap().is_none());

    let decided = approve(&app, &mut bob, &id).await;
    assert_eq!(decided["status"], "approved");
    // Carried out on approval, once, as the proposer's change, recorded against the request.
    let invited = events_about(&app, "user_invited", &id).await;
    assert_eq!(invited.len(), 1, "{invited:?}");
    assert_eq!(invited[0]["actor"], "user:ann");
    assert!(app.store.user_by_username("carol").await.unwrap().is_some());

    // Someone else reads it without the secret; the proposer gets the link once.
    let seen_by_bob = read(&app, &bob, &id).await;
    assert_eq!(seen_by_bob["status"], "approved");
    assert!(seen_by_bob["carried_out_at"].is_string());
    assert_eq!(seen_by_bob["result"]["user"], "carol");
    assert!(seen_by_bob["result"].get("enroll_url").is_none());
    let first = read(&app, &ann, &id).await;
    let link = first["result"]["enroll_url"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/enroll/", app.origin)),
        "{link}"
    );
    let again = read(&app, &ann, &id).await;
    assert!(again["result"].get("enroll_url").is_none(), "{again}");
    assert!(again["secret_shown_at"].is_string());
    // The link enrols carol.
    let token = link.rsplit('/').next().unwrap();
    let mut device = common::webauthn::Device::soft_at(&app.origin);
    let res = app.enrol_device(token, &mut device, "carol's key").await;
    assert_eq!(res.status(), 201);
    // The change's receipt was spent by the server itself.
    let receipt = app
        .store
        .receipt_of(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.redeemed_by.as_deref(), Some("countersign"));
    assert_eq!(events_about(&app, "user_invited", &id).await.len(), 1);
}

async fn what_a_change_produces_works_and_its_secret_is_shown_once(app: TestApp) {
    let (ann, mut bob, mut fin) = team(&app).await;
    // An API client: its key, shown once to ann, creates requests.
    let id = proposed(
        &app,
        &ann,
        json!({"op": "clients.create", "name": "payments-svc", "create": ["payment.*"],
               "redeem": ["payments"]}),
    )
    .await;
    approve(&app, &mut bob, &id).await;
    let made = read(&app, &ann, &id).await;
    let key = made["result"]["api_key"].as_str().unwrap().to_owned();
    assert!(read(&app, &ann, &id).await["result"]
        .get("api_key")
        .is_none());
    let payment = json!({"action": "payment.transfer", "initiator": "carol",
        "transaction": {"amount": "10.00", "currency": "EUR", "payee": {"name": "x", "iban": "y"}}});
    let request = app.create_with(&key, &payment).await;
    // A new signing key, published.
    let id = proposed(&app, &bob, json!({"op": "keys.rotate"})).await;
    let mut ann = ann;
    approve(&app, &mut ann, &id).await;
    let kid = read(&app, &bob, &id).await["result"]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid.as_str()));
    // An approved payment, revoked from the console: its receipt no longer redeems.
    let payment_id = request["id"].as_str().unwrap().to_owned();
    approve(&app, &mut fin, &payment_id).await;
    let id = proposed(
        &app,
        &ann,
        json!({"op": "approvals.revoke", "approval_id": payment_id}),
    )
    .await;
    approve(&app, &mut bob, &id).await;
    let revoked: Value = app
        .get(&format!("/v1/approvals/{payment_id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["status"], "revoked");
    let events = events_about(&app, "request_revoked", &payment_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"], "user:ann");
    assert_eq!(events[0]["data"]["change"], id.as_str());
    // Revoking it again is approved but cannot be carried out: recorded as failed, once.
    let again = proposed(
        &app,
        &ann,
        json!({"op": "approvals.revoke", "approval_id": payment_id}),
    )
    .await;
    approve(&app, &mut bob, &again).await;
    let failed = read(&app, &ann, &again).await;
    assert!(
        failed["failure"].as_str().unwrap().contains("revoked"),
        "{failed}"
    );
    assert_eq!(failed["result"], Value::Null);
    assert_eq!(
        events_about(&app, "admin_change_failed", &again)
            .await
            .len(),
        1
    );
    // The client's revocation takes its key away.
    let id = proposed(
        &app,
        &ann,
        json!({"op": "clients.revoke", "name": "payments-svc"}),
    )
    .await;
    approve(&app, &mut bob, &id).await;
    let res = app.post_json("/v1/approvals", &key, &payment).await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
}

async fn lockouts_are_refused_when_proposed_and_when_carried_out(app: TestApp) {
    let (ann, mut bob, fin) = team(&app).await;
    let gil = app.person("gil", &["finance"], None).await;
    // Leaving nobody besides the proposer to approve console changes.
    let (status, body) = propose(
        &app,
        &ann,
        json!({"op": "users.groups", "username": "bob", "groups": ["finance"]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lockout")),
        "{body}"
    );
    assert_eq!(body["action"], "countersign.admin");
    let (status, _) = propose(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "bob"}),
    )
    .await;
    assert_eq!(status, 409);
    // Each of these leaves finance one person; together they would leave it none. Both are
    // accepted when proposed; the second is refused when carried out.
    let first = proposed(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "fin"}),
    )
    .await;
    let second = proposed(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "gil"}),
    )
    .await;
    approve(&app, &mut bob, &first).await;
    assert!(read(&app, &ann, &first).await["failure"].is_null());
    approve(&app, &mut bob, &second).await;
    let refused = read(&app, &ann, &second).await;
    assert!(
        refused["failure"]
            .as_str()
            .unwrap()
            .contains("payment.transfer"),
        "{refused}"
    );
    let gil_now = app.store.user_by_username("gil").await.unwrap().unwrap();
    assert!(
        gil_now.disabled_at.is_none(),
        "gil stays: finance needs someone"
    );
    // Revoking the only passkey of the last finance approver is a lockout too.
    let creds = app.store.credentials_of(gil_now.id).await.unwrap();
    let (status, _) = propose(
        &app,
        &ann,
        json!({"op": "credentials.revoke", "username": "gil",
               "credential_id": creds[0].id.to_string()}),
    )
    .await;
    assert_eq!(status, 409);
    drop((fin, gil));
}

async fn everyone_outside_the_admin_group_is_refused(app: TestApp) {
    let (ann, mut bob, fin) = team(&app).await;
    let id = proposed(&app, &ann, json!({"op": "keys.rotate"})).await;
    // Not an admin: refused everywhere under /v1/admin, and cannot decide console changes.
    let res = app
        .approver_post(
            "/v1/admin/changes",
            fin.cookie.as_deref(),
            &json!({"op": "keys.rotate"}),
        )
        .await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));
    let res = app
        .approver_get(&format!("/v1/admin/changes/{id}"), fin.cookie.as_deref())
        .await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));
    let (status, body) = app.decision_options(&fin, &id, "approve").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_eligible")));
    // Not signed in, or from another origin.
    let res = app
        .approver_post("/v1/admin/changes", None, &json!({"op": "keys.rotate"}))
        .await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    let res = app
        .http
        .post(app.url("/v1/admin/changes"))
        .header("Origin", "https://evil.example")
        .header("Cookie", ann.cookie.as_deref().unwrap())
        .json(&json!({"op": "keys.rotate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (403, "bad_origin".into()));
    // Malformed changes.
    for bad in [
        json!({"op": "users.delete", "username": "bob"}),
        json!({"op": "users.invite", "username": "x", "groups": [], "email": "nobody"}),
        json!({"op": "clients.create", "name": "countersign", "audit": true}),
    ] {
        let res = app
            .approver_post("/v1/admin/changes", ann.cookie.as_deref(), &bad)
            .await;
        assert_eq!(problem(res).await, (400, "invalid_request".into()), "{bad}");
    }
    // No API client may request a console change, or spend a change's receipt.
    let res = app
        .post_json(
            "/v1/approvals",
            &app.key,
            &json!({"action": "countersign.admin", "transaction": {"op": "keys.rotate"},
                    "initiator": "ann"}),
        )
        .await;
    assert_eq!(problem(res).await, (403, "forbidden".into()));
    approve(&app, &mut bob, &id).await;
    let receipt = app
        .store
        .snapshot(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .receipt
        .expect("an approved change has its receipt");
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &app.key,
            &json!({"receipt": receipt, "transaction": {"op": "keys.rotate"}}),
        )
        .await;
    assert_eq!(problem(res).await, (403, "wrong_audience".into()));
}

async fn the_only_admin_is_told_how_to_invite_a_second(app: TestApp) {
    let ann = app.person("ann", &["admins"], None).await;
    let res = app
        .approver_post(
            "/v1/admin/changes",
            ann.cookie.as_deref(),
            &json!({"op": "keys.rotate"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unsatisfiable", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("countersign users invite") && detail.contains("--groups admins"),
        "{detail}"
    );
    // A second admin invited but without a passkey yet does not count.
    app.invite("bob", &["admins"]).await;
    let res = app
        .approver_post(
            "/v1/admin/changes",
            ann.cookie.as_deref(),
            &json!({"op": "keys.rotate"}),
        )
        .await;
    assert_eq!(problem(res).await, (422, "unsatisfiable".into()));
}

/// An approved change nobody carried out (its server stopped first), asked for by many at
/// once, on both replicas where there are two: carried out once.
async fn attempts_at_once_carry_a_change_out_once(app: TestApp) {
    let (ann, bob, _fin) = team(&app).await;
    let replica = common::second_replica(&app, Policy::parse(POLICY).unwrap()).await;
    let keys = count(&app.database_url, "signing_keys").await;
    let id = proposed(&app, &ann, json!({"op": "keys.rotate"})).await;
    app.sql(&format!(
        "UPDATE approvals SET status = 'approved', decided_at = {} WHERE id = '{id}'",
        app.clock_now()
    ))
    .await;
    let mut reads = Vec::new();
    for i in 0..12 {
        let server = match (&replica, i % 2) {
            (Some(r), 1) => r.base.clone(),
            _ => app.base.clone(),
        };
        let cookie = if i % 3 == 0 { &ann } else { &bob }.cookie.clone().unwrap();
        let http = app.http.clone();
        let url = format!("{server}/v1/admin/changes/{id}");
        reads.push(tokio::spawn(async move {
            let res = http.get(url).header("Cookie", cookie).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let mut kids = std::collections::BTreeSet::new();
    for r in reads {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200, "{body}");
        kids.insert(body["result"]["kid"].as_str().unwrap().to_owned());
    }
    assert_eq!(kids.len(), 1, "every reader sees the one change: {kids:?}");
    assert_eq!(count(&app.database_url, "signing_keys").await, keys + 1);
    assert_eq!(count(&app.database_url, "admin_changes").await, 1);
    assert_eq!(events_about(&app, "key_rotated", &id).await.len(), 1);
}

/// A server killed between approving changes and carrying them out: a fault (a trigger that
/// refuses their records) keeps it from carrying out any of thirty approved changes, then it is
/// SIGKILLed. After a restart without the fault, its sweeper carries out every one exactly
/// once, and the audit chain verifies.
async fn killed_between_approval_and_change(backend: Backend) {
    use common::webauthn::{Tweak, ORIGIN};
    let dir = common::temp_dir();
    let Some(url) = common::fresh_database(backend, &dir).await else {
        return;
    };
    let (mut server, port) = common::killable_server(&dir, &url);
    let mut child = server
        .env("COUNTERSIGN_PUBLIC_ORIGIN", ORIGIN)
        .env("COUNTERSIGN_MASTER_KEY_FILE", dir.join("master.key"))
        .env("COUNTERSIGN_CEREMONIES_PER_MINUTE", "100000")
        .spawn()
        .unwrap();
    common::read_until(child.stdout.as_mut().unwrap(), "More API clients").await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let store = countersign::store::open(&url).await.unwrap();
    let post = |path: &str, cookie: Option<&str>, body: Value| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("Origin", ORIGIN)
            .json(&body);
        if let Some(c) = cookie {
            req = req.header("Cookie", c.to_owned());
        }
        req
    };
    // Passkeys without a counter (as many are), so that finishes sent at once in any order are
    // all valid.
    let no_counter = Tweak {
        counter: Some(0),
        ..Tweak::default()
    };
    let mut admins = Vec::new();
    for name in ["ann", "bob"] {
        let (_, mut device) =
            common::webauthn::enrol_crafted(store.as_ref(), name, &["admins"]).await;
        let cookie =
            common::webauthn::sign_in_crafted(&http, &base, name, &mut device, &no_counter).await;
        admins.push((device, cookie));
    }
    // Ann proposes thirty invitations; Bob's approvals are prepared, then sent at once.
    let mut finishes = Vec::new();
    let mut changes = Vec::new();
    for i in 0..30 {
        let change =
            json!({"op": "users.invite", "username": format!("u{i}"), "groups": ["finance"]});
        let res = post("/v1/admin/changes", Some(&admins[0].1), change)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (device, cookie) = &mut admins[1];
        let opts: Value = post(
            &format!("/v1/approvals/{id}/decision/options"),
            Some(cookie),
            json!({ "decision": "approve" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let credential = device.assert(&opts["publicKey"], &no_counter);
        finishes.push(post(
            &format!("/v1/approvals/{id}/decision/finish"),
            Some(cookie),
            json!({ "ceremony": opts["ceremony"], "credential": credential }),
        ));
        changes.push(id);
    }
    let (block, unblock) = match backend {
        Backend::Sqlite => (
            "CREATE TRIGGER block BEFORE INSERT ON admin_changes BEGIN SELECT RAISE(ABORT, 'fault'); END;",
            "DROP TRIGGER block;",
        ),
        Backend::Postgres => (
            "CREATE FUNCTION block() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'fault'; END $$; \
             CREATE TRIGGER block BEFORE INSERT ON admin_changes FOR EACH ROW EXECUTE FUNCTION block();",
            "DROP TRIGGER block ON admin_changes; DROP FUNCTION block();",
        ),
    };
    common::raw_sql(&url, block).await;
    let storm: Vec<_> = finishes
        .into_iter()
        .map(|req| tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }))
        .collect();
    for t in storm {
        assert_eq!(
            t.await.unwrap(),
            200,
            "the approval stands whatever the change does"
        );
    }
    common::kill(&mut child, &url).await;
    common::raw_sql(&url, unblock).await;
    let ids: Vec<countersign::domain::ApprovalId> =
        changes.iter().map(|c| c.parse().unwrap()).collect();
    let mut approved = Vec::new();
    let mut caught = 0;
    for id in &ids {
        let request = store.request(*id).await.unwrap().unwrap();
        if request.status == countersign::domain::Status::Approved {
            approved.push(*id);
            caught += usize::from(store.change_record(*id).await.unwrap().is_none());
        }
    }
    // The database starts again; its sweeper carries out what the crash left.
    let _restarted = common::spawn_on(&url, dir.clone(), Policy::builtin().unwrap()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !store.uncarried_changes(100).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper carries them out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let events = store.audit_page(0, 100_000).await.unwrap();
    let mut verifier = countersign::audit::ChainVerifier::default();
    for e in &events {
        verifier.push(e).unwrap();
    }
    let (head_seq, head_hash) = store.audit_head().await.unwrap();
    verifier.finish(head_seq, &head_hash).unwrap();
    for id in &ids {
        let text = id.to_string();
        let invited = events
            .iter()
            .filter(|e| e.kind == "user_invited" && e.approval_id.as_deref() == Some(&text))
            .count();
        let record = store.change_record(*id).await.unwrap();
        if approved.contains(id) {
            assert_eq!(invited, 1, "{id} approved: carried out once");
            assert!(record.unwrap().failure.is_none());
        } else {
            assert_eq!(invited, 0, "{id} not approved: not carried out");
            assert!(record.is_none());
        }
    }
    assert_eq!((approved.len(), caught), (30, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_approval_and_change_sqlite() {
    killed_between_approval_and_change(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_approval_and_change_postgres() {
    killed_between_approval_and_change(Backend::Postgres).await;
}

/// The console's pages: every one for admins, refused to anyone else, sign-in first without a
/// session; what they show comes from the store.
async fn the_console_pages_are_for_admins(app: TestApp) {
    let (ann, mut bob, fin) = team(&app).await;
    let invite = proposed(
        &app,
        &ann,
        json!({"op": "users.invite", "username": "dee", "groups": ["finance"]}),
    )
    .await;
    approve(&app, &mut bob, &invite).await;
    let payment = json!({"action": "payment.transfer", "initiator": "carol",
        "transaction": {"amount": "10.00", "currency": "EUR", "payee": {"name": "x", "iban": "y"}}});
    app.create(&payment).await;
    let change_page = format!("/admin/changes/{invite}");
    let pages = [
        ("/admin", "dee"),
        ("/admin/clients", "countersign"),
        ("/admin/keys", "Signs new receipts"),
        ("/admin/requests", "countersign.admin"),
        ("/admin/audit", "user_invited"),
        ("/admin/audit.jsonl", "\"kind\":\"user_invited\""),
        (change_page.as_str(), "users.invite"),
    ];
    for (path, shows) in pages {
        let res = app.approver_get(path, fin.cookie.as_deref()).await;
        assert_eq!(res.status(), 403, "{path} for a non-admin");
        // Without a session: to the sign-in page (reqwest follows the redirect).
        let res = app.approver_get(path, None).await;
        assert_eq!(res.url().path(), "/", "{path} without a session");
        assert!(res.text().await.unwrap().contains("signin-form"));
        let res = app.approver_get(path, bob.cookie.as_deref()).await;
        assert_eq!(res.status(), 200, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains(shows), "{path} shows {shows}");
    }
    // The proposer's page shows the invitation link once, with its QR code.
    let first = app.approver_page(&change_page, ann.cookie.as_deref()).await;
    assert!(
        first.contains("id=\"change-secret\"") && first.contains("<svg"),
        "{first}"
    );
    assert!(first.contains(&format!("{}/enroll/", app.origin)));
    let again = app.approver_page(&change_page, ann.cookie.as_deref()).await;
    assert!(!again.contains("id=\"change-secret\"") && !again.contains("/enroll/"));
    // Filters and verification.
    let pending = app
        .approver_page("/admin/requests?status=pending", bob.cookie.as_deref())
        .await;
    assert!(pending.contains("payment.transfer") && !pending.contains("countersign.admin"));
    let verified = app
        .approver_page("/admin/audit?verify=1", bob.cookie.as_deref())
        .await;
    assert!(verified.contains("id=\"chain-ok\""), "the chain verifies");
    let only = app
        .approver_page(
            "/admin/audit?kind=user_invited&actor=user:ann",
            bob.cookie.as_deref(),
        )
        .await;
    assert!(only.contains("user_invited") && !only.contains(">request_created<"));
    // The log opens on its last stretch (all of it, this short), with a way back to the start
    // once a page begins later.
    let opened = app
        .approver_page("/admin/audit", bob.cookie.as_deref())
        .await;
    assert!(opened.contains("<td>1</td>") && !opened.contains("id=\"earliest\""));
    let later = app
        .approver_page("/admin/audit?after=3", bob.cookie.as_deref())
        .await;
    assert!(later.contains("id=\"earliest\"") && !later.contains("<td>1</td>"));
    // The CLI's changes are in the console's audit log, by the operator.
    let operator = app
        .approver_page("/admin/audit?actor=operator", bob.cookie.as_deref())
        .await;
    assert!(operator.contains("user_invited") && operator.contains(">operator<"));
    // Admins get the console link; others do not.
    assert!(app
        .approver_page("/", bob.cookie.as_deref())
        .await
        .contains("href=\"/admin\""));
    assert!(!app
        .approver_page("/", fin.cookie.as_deref())
        .await
        .contains("href=\"/admin\""));
}

/// Console changes need `[admin] quorum` admins besides the proposer; several admins approving
/// at once carry the change out once; the lockout counts the quorum.
async fn the_admin_quorum_is_the_policys(backend: Backend) {
    let policy = Policy::parse(&format!("{POLICY}\n[admin]\nquorum = 2\n")).unwrap();
    let Some(app) = common::spawn_bare(backend, policy).await else {
        return;
    };
    let ann = app.person("ann", &["admins"], None).await;
    let mut bob = app.person("bob", &["admins"], None).await;
    let mut cid = app.person("cid", &["admins"], None).await;
    let mut dee = app.person("dee", &["admins"], None).await;
    let _fin = app.person("fin", &["finance"], None).await;
    let (status, created) = propose(&app, &ann, json!({"op": "keys.rotate"})).await;
    assert_eq!(status, 201);
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(approve(&app, &mut bob, &id).await["status"], "pending");
    assert!(read(&app, &ann, &id).await["carried_out_at"].is_null());
    // The last two approve at once: one of them approves it, and it is carried out once.
    let (c, d) = tokio::join!(
        app.decide(&mut cid, &id, "approve"),
        app.decide(&mut dee, &id, "approve")
    );
    let statuses = [c.status().as_u16(), d.status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    let done = read(&app, &ann, &id).await;
    assert_eq!(done["status"], "approved");
    assert!(done["carried_out_at"].is_string());
    assert_eq!(events_about(&app, "key_rotated", &id).await.len(), 1);
    assert_eq!(
        app.decisions(&id).await.len(),
        3 - usize::from(!statuses.iter().all(|s| *s == 200))
    );
    // With a quorum of two, taking two of the four admins out would leave the proposer one.
    let first = proposed(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "bob"}),
    )
    .await;
    let (status, body) = propose(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "cid"}),
    )
    .await;
    assert_eq!(
        status, 201,
        "still two besides ann while the first waits: {body}"
    );
    approve(&app, &mut cid, &first).await;
    approve(&app, &mut dee, &first).await;
    let (status, body) = propose(
        &app,
        &ann,
        json!({"op": "users.disable", "username": "dee"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lockout")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_quorum_is_the_policys_sqlite() {
    the_admin_quorum_is_the_policys(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_quorum_is_the_policys_postgres() {
    the_admin_quorum_is_the_policys(Backend::Postgres).await;
}
