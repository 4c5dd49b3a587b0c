//! Approvers over HTTP: enrolment, sign-in, and transaction-bound decisions, with a software
//! passkey and a crafted authenticator, against SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use common::webauthn::{challenge_of, Device, Person, Tweak, ORIGIN};
use common::{payment, problem, TestApp};
use countersign::challenge::{decision_challenge, Decision};
use serde_json::{json, Value};

both!(
    enrolment_tokens,
    enrolment_requires_user_verification,
    sign_in_and_sessions,
    sign_in_failures_look_alike,
    approve_with_the_derived_challenge,
    quorum_counts_people_not_passkeys,
    one_rejection_rejects,
    separation_of_duties,
    ceremonies_are_bound_and_single_use,
    concurrent_finishes_of_one_assertion,
    ceremony_lifetime,
    hostile_assertions,
    counter_regression_flags_the_credential,
    credential_rules,
    changes_between_options_and_finish,
    origin_is_checked,
    inbox_lists_what_i_may_decide,
    nothing_is_hidden_from_the_approver,
    the_page_names_who_may_approve,
    agents_act_for_people_who_then_may_not_decide,
    concurrent_last_approvals_flip_once,
    floods_are_rate_limited,
    discoverable_sign_in,
);

async fn pending(app: &TestApp, amount: &str, initiator: &str) -> String {
    let mut body = payment(amount);
    body["initiator"] = json!(initiator);
    app.create(&body).await["id"].as_str().unwrap().to_string()
}

async fn status(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap()
}

/// What `page` holds between the first `start` and the next `end` (`start` must be there).
fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let rest = page.split_once(start).map(|(_, rest)| rest);
    let rest = rest.unwrap_or_else(|| panic!("{start} not in the page"));
    rest.split(end).next().unwrap_or(rest)
}

async fn audit_kinds(app: &TestApp) -> Vec<String> {
    let v: Value = app
        .get("/v1/audit?limit=1000", &app.key)
        .await
        .json()
        .await
        .unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn enrolment_tokens(app: TestApp) {
    let token = app.invite("alice", &["finance"]).await;
    let mut device = Device::soft();
    let res = app.enrol_device(&token, &mut device, "YubiKey 5C").await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"], "alice");
    let cred_id = body["credential_id"].as_str().unwrap().to_string();
    // Spent.
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    assert_eq!(problem(res).await, (410, "invitation_used".into()));
    // Unknown.
    let res = app
        .approver_post("/v1/enroll/nope/options", None, &json!({}))
        .await;
    assert_eq!(problem(res).await, (404, "not_found".into()));
    // Expired.
    let token = app.invite("erin", &["finance"]).await;
    app.clock.advance(Duration::from_secs(3601));
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    assert_eq!(problem(res).await, (410, "invitation_expired".into()));
    // A second passkey for the same person through a new invitation, with its own label.
    let token = app.invite("alice", &["finance"]).await;
    let res = app
        .enrol_device(
            &token,
            &mut Device::Crafted(common::webauthn::Crafted::new()),
            "Laptop",
        )
        .await;
    assert_eq!(res.status(), 201);
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    let creds = app.store.credentials_of(user.id).await.unwrap();
    assert_eq!(creds.len(), 2);
    assert!(creds
        .iter()
        .any(|c| c.id.as_str() == cred_id && c.label == "YubiKey 5C"));
    // The same finish twice: the ceremony is spent.
    let token = app.invite("frank", &["finance"]).await;
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    assert_eq!(
        opts["publicKey"]["pubKeyCredParams"],
        json!([{"type": "public-key", "alg": -7}]),
        "ES256 only"
    );
    assert_eq!(
        opts["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let credential = Device::soft().register(&opts["publicKey"]).unwrap();
    let body = json!({ "ceremony": opts["ceremony"], "credential": credential, "label": "k" });
    assert_eq!(
        app.approver_post(&format!("/v1/enroll/{token}/finish"), None, &body)
            .await
            .status(),
        201
    );
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/finish"), None, &body)
        .await;
    assert_eq!(problem(res).await, (410, "invitation_used".into()));
    assert!(
        audit_kinds(&app)
            .await
            .iter()
            .filter(|k| *k == "credential_enrolled")
            .count()
            == 4,
        "three here, and the standby approver's"
    );
}

async fn enrolment_requires_user_verification(app: TestApp) {
    let token = app.invite("uvless", &["finance"]).await;
    let res = app
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    // A soft passkey that cannot verify the user refuses a UV-required creation outright.
    let mut weak = Device::Soft(
        Box::new(webauthn_authenticator_rs::softpasskey::SoftPasskey::new(
            false,
        )),
        ORIGIN.to_owned(),
    );
    assert!(weak.register(&opts["publicKey"]).is_err());
    // And a registration whose authenticator data lacks UV is refused by the server.
    let mut crafted = common::webauthn::Crafted::new();
    let mut credential = crafted.register(&opts["publicKey"]);
    let att = credential["response"]["attestationObject"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(att)
        .unwrap();
    // The flags byte follows "authData" (text) + byte-string header (2 bytes) + rpIdHash.
    let pos = bytes.windows(8).position(|w| w == b"authData").unwrap() + 8 + 2 + 32;
    bytes[pos] &= !0x04;
    credential["response"]["attestationObject"] =
        json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let res = app
        .approver_post(
            &format!("/v1/enroll/{token}/finish"),
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": credential }),
        )
        .await;
    assert_eq!(problem(res).await, (400, "registration_invalid".into()));
}

async fn sign_in_and_sessions(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let cookie = bob.cookie.clone().unwrap();
    assert!(cookie.starts_with("countersign-session="));
    // Attributes as the contract says (plain name over http).
    let res = app
        .approver_post("/v1/session/options", None, &json!({ "username": "bob" }))
        .await;
    let opts: Value = res.json().await.unwrap();
    let cred = bob.devices[0].assert(&opts["publicKey"]);
    let planted = "countersign-session=planted-by-attacker";
    let res = app
        .approver_post(
            "/v1/session/finish",
            Some(planted),
            &json!({ "ceremony": opts["ceremony"], "credential": cred }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("planted-by-attacker"), "a fresh session id");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "user": "bob", "name": "bob (test)" }));
    let res = app.approver_get("/v1/me/approvals", Some(planted)).await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    assert_eq!(
        app.approver_get("/v1/me/approvals", Some(&cookie))
            .await
            .status(),
        200
    );
    // Idle timeout.
    app.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        app.approver_get("/v1/me/approvals", Some(&cookie))
            .await
            .status(),
        401
    );
    app.sign_in(&mut bob).await;
    let cookie = bob.cookie.clone().unwrap();
    // Kept alive by use, but never beyond the absolute limit.
    for _ in 0..24 {
        app.clock.advance(Duration::from_secs(29 * 60));
        assert_eq!(
            app.approver_get("/v1/me/approvals", Some(&cookie))
                .await
                .status(),
            200
        );
    }
    app.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        app.approver_get("/v1/me/approvals", Some(&cookie))
            .await
            .status(),
        401
    );
    // Logout ends it.
    app.sign_in(&mut bob).await;
    let cookie = bob.cookie.clone().unwrap();
    let res = app
        .approver_post("/v1/session/logout", Some(&cookie), &json!({}))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.approver_get("/v1/me/approvals", Some(&cookie))
            .await
            .status(),
        401
    );
    // Discoverable sign-in: options without a username have no allowCredentials.
    let res = app
        .approver_post("/v1/session/options", None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    assert_eq!(opts["publicKey"]["allowCredentials"], json!([]));
    assert_eq!(opts["publicKey"]["userVerification"], "required");
}

async fn sign_in_failures_look_alike(app: TestApp) {
    let mut bob = app
        .person(
            "bob",
            &["finance"],
            Some(Device::Crafted(common::webauthn::Crafted::new())),
        )
        .await;
    // A bad signature from a known credential…
    let res = app
        .approver_post("/v1/session/options", None, &json!({ "username": "bob" }))
        .await;
    let opts: Value = res.json().await.unwrap();
    let bad = bob.devices[0].crafted().assert(
        &opts["publicKey"],
        &Tweak {
            garbage_signature: true,
            ..Tweak::default()
        },
    );
    let a = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": bad }),
        )
        .await;
    // …and a credential nobody enrolled.
    let res = app
        .approver_post("/v1/session/options", None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    let stranger = common::webauthn::Crafted::new().assert(&opts["publicKey"], &Tweak::default());
    let b = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": stranger }),
        )
        .await;
    let (sa, sb) = (a.status(), b.status());
    let (ba, bb) = (a.text().await.unwrap(), b.text().await.unwrap());
    assert_eq!(sa, 401);
    assert_eq!((sa, &ba), (sb, &bb), "indistinguishable");
    assert!(ba.contains("authentication_failed"));
    // Options for an unknown username look like a known one's.
    let res = app
        .approver_post(
            "/v1/session/options",
            None,
            &json!({ "username": "nobody" }),
        )
        .await;
    let opts: Value = res.json().await.unwrap();
    assert_eq!(
        opts["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn approve_with_the_derived_challenge(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "1250.00", "carol").await;
    let (code, opts) = app.decision_options(&bob, &id, "approve").await;
    assert_eq!(code, 200, "{opts}");
    // The challenge is SHA-256 over the request id, the decision, the tx hash and the nonce.
    let created = status(&app, &id).await;
    let tx_hash =
        countersign::tx_hash::TxHash::parse(created["tx_hash"].as_str().unwrap()).unwrap();
    use base64::Engine;
    let nonce: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(opts["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let expect = decision_challenge(
        uuid.as_bytes(),
        Decision::Approve,
        tx_hash.as_bytes(),
        &nonce,
    );
    assert_eq!(challenge_of(&opts), expect.to_vec());
    let credential = bob.devices[0].assert(&opts["publicKey"]);
    let res = app
        .decision_finish(&bob, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["your_decision"], "approve");
    let s = status(&app, &id).await;
    assert_eq!(s["status"], "approved");
    assert_eq!(s["approvals"][0]["user"], "bob");
    assert_eq!(s["approvals"][0]["name"], "bob (test)");
    let kinds = audit_kinds(&app).await;
    for k in ["ceremony_started", "approval_recorded", "request_approved"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // The evidence is stored with the decision.
    let d = &app.decisions(&id).await[0];
    assert_eq!(d.nonce.to_vec(), nonce.to_vec());
    assert!(d.user_verified);
    assert_eq!(d.public_jwk["crv"], "P-256");
    // And the approved request takes no more decisions.
    let mut dave = app.person("dave", &["finance"], None).await;
    assert_eq!(app.decision_options(&dave, &id, "approve").await.0, 409);
    let _ = &mut dave;
    let _ = &mut bob;
}

async fn quorum_counts_people_not_passkeys(app: TestApp) {
    // 10 000.00 escalates to two approvers from finance-senior.
    let mut bob = app.person("bob", &["finance-senior"], None).await;
    let token = app.invite("bob", &["finance-senior"]).await;
    let mut second = Device::soft();
    assert_eq!(
        app.enrol_device(&token, &mut second, "backup")
            .await
            .status(),
        201
    );
    bob.devices.push(second);
    let id = pending(&app, "10000.00", "carol").await;
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    assert_eq!(status(&app, &id).await["status"], "pending");
    // Again, even with the other passkey: refused before any ceremony starts.
    let (code, body) = app.decision_options(&bob, &id, "approve").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (409, "already_decided")
    );
    let mut dave = app.person("dave", &["finance"], None).await;
    let (code, body) = app.decision_options(&dave, &id, "approve").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (403, "not_eligible"),
        "finance is not enough here"
    );
    let mut erin = app.person("erin", &["finance-senior"], None).await;
    assert_eq!(app.decide(&mut erin, &id, "approve").await.status(), 200);
    let s = status(&app, &id).await;
    assert_eq!(s["status"], "approved");
    assert_eq!(s["approvals"].as_array().unwrap().len(), 2);
    let _ = &mut dave;
}

async fn one_rejection_rejects(app: TestApp) {
    let mut bob = app.person("bob", &["finance-senior"], None).await;
    let mut erin = app.person("erin", &["finance-senior"], None).await;
    let id = pending(&app, "20000.00", "carol").await;
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    let res = app.decide(&mut erin, &id, "reject").await;
    assert_eq!(res.status(), 200);
    let s = status(&app, &id).await;
    assert_eq!(s["status"], "rejected");
    assert_eq!(s["rejections"][0]["user"], "erin");
    let mut finn = app.person("finn", &["finance-senior"], None).await;
    let (code, body) = app.decision_options(&finn, &id, "approve").await;
    assert_eq!((code, body["code"].as_str().unwrap()), (409, "not_pending"));
    assert!(audit_kinds(&app)
        .await
        .iter()
        .any(|k| k == "request_rejected"));
    let _ = &mut finn;
}

async fn separation_of_duties(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "100.00", "bob").await;
    let (code, body) = app.decision_options(&bob, &id, "approve").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (403, "self_approval_forbidden")
    );
    let (code, body) = app.decision_options(&bob, &id, "reject").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (403, "self_approval_forbidden")
    );
    let refused = app.audit_events("decision_refused").await;
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["data"]["reason"], "self_approval_forbidden");
    assert_eq!(refused[0]["actor"], "user:bob");
    let admin = app.person("root", &["admins"], None).await;
    let (code, body) = app.decision_options(&admin, &id, "approve").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (403, "not_eligible")
    );
    assert!(app.decisions(&id).await.is_empty());
}

async fn ceremonies_are_bound_and_single_use(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    // Byte-identical transactions still get different challenges.
    let a = pending(&app, "500.00", "carol").await;
    let b = pending(&app, "500.00", "carol").await;
    let (_, oa) = app.decision_options(&bob, &a, "approve").await;
    let (_, ob) = app.decision_options(&bob, &b, "approve").await;
    assert_ne!(challenge_of(&oa), challenge_of(&ob));
    // A's assertion posted to B.
    let credential = bob.devices[0].assert(&oa["publicKey"]);
    let res = app
        .decision_finish(&bob, &b, &oa["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (400, "ceremony_mismatch".into()));
    assert!(app.decisions(&b).await.is_empty());
    // Still usable where it belongs, once.
    let res = app
        .decision_finish(&bob, &a, &oa["ceremony"], &credential)
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .decision_finish(&bob, &a, &oa["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (409, "ceremony_consumed".into()));
    // A sign-in ceremony at the decision endpoint, and a decision ceremony at sign-in.
    let res = app
        .approver_post("/v1/session/options", None, &json!({ "username": "bob" }))
        .await;
    let so: Value = res.json().await.unwrap();
    let sc = bob.devices[0].assert(&so["publicKey"]);
    let res = app.decision_finish(&bob, &b, &so["ceremony"], &sc).await;
    assert_eq!(problem(res).await, (400, "ceremony_mismatch".into()));
    let dc = bob.devices[0].assert(&ob["publicKey"]);
    let res = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": ob["ceremony"], "credential": dc }),
        )
        .await;
    assert_eq!(problem(res).await, (401, "authentication_failed".into()));
    // A sign-in assertion (other challenge) with B's decision ceremony.
    let res = app.decision_finish(&bob, &b, &ob["ceremony"], &sc).await;
    assert_eq!(problem(res).await, (401, "assertion_invalid".into()));
    // An approve ceremony cannot be finished as anything but an approval: the decision comes
    // from the ceremony, and a reject challenge would differ.
    let (_, reject) = app.decision_options(&bob, &b, "reject").await;
    assert_ne!(challenge_of(&reject), challenge_of(&ob));
    assert!(app.decisions(&b).await.is_empty());
}

async fn concurrent_finishes_of_one_assertion(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "70.00", "carol").await;
    let (_, opts) = app.decision_options(&bob, &id, "approve").await;
    let credential = bob.devices[0].assert(&opts["publicKey"]);
    let body = json!({ "ceremony": opts["ceremony"], "credential": credential });
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let req = app
                .http
                .post(app.url(&format!("/v1/approvals/{id}/decision/finish")))
                .header("Origin", ORIGIN)
                .header("Cookie", bob.cookie.clone().unwrap())
                .json(&body);
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, body["code"].as_str().unwrap_or("").to_string())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(
        results.iter().filter(|r| r.0 == 200).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.0 != 200)
            .all(|r| *r == (409, "ceremony_consumed".to_string())),
        "{results:?}"
    );
    assert_eq!(app.decisions(&id).await.len(), 1);
}

async fn ceremony_lifetime(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "70.00", "carol").await;
    let (_, opts) = app.decision_options(&bob, &id, "approve").await;
    assert!(opts["publicKey"]["timeout"].as_i64().unwrap() <= 300_000);
    let credential = bob.devices[0].assert(&opts["publicKey"]);
    app.clock.advance(Duration::from_secs(301));
    app.sign_in(&mut bob).await;
    let res = app
        .decision_finish(&bob, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (401, "ceremony_expired".into()));
    assert!(app.decisions(&id).await.is_empty());
}

/// Decision options with a crafted device, a tweaked assertion, and the finish's (status, code).
async fn tweaked(app: &TestApp, p: &mut Person, id: &str, t: Tweak) -> (u16, String) {
    let (code, opts) = app.decision_options(p, id, "approve").await;
    assert_eq!(code, 200, "{opts}");
    let credential = p.devices[0].crafted().assert(&opts["publicKey"], &t);
    let res = app
        .decision_finish(p, id, &opts["ceremony"], &credential)
        .await;
    if res.status() == 200 {
        return (200, String::new());
    }
    problem(res).await
}

async fn hostile_assertions(app: TestApp) {
    let mut bob = app
        .person(
            "bob",
            &["finance"],
            Some(Device::Crafted(common::webauthn::Crafted::new())),
        )
        .await;
    let id = pending(&app, "80.00", "carol").await;
    let invalid = (401, "assertion_invalid".to_string());
    let cases = [
        (
            Tweak {
                flags: 0x01,
                ..Tweak::default()
            },
            (401, "user_verification_required".to_string()),
        ),
        (
            Tweak {
                flags: 0x04,
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                rp_id: "evil.example".into(),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                origin: "https://localhost:8080".into(),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                origin: "http://localhost:8081".into(),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                origin: "http://localhost.evil.example:8080".into(),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                type_: "webauthn.create".into(),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                challenge: Some("AAAA".into()),
                ..Tweak::default()
            },
            invalid.clone(),
        ),
        (
            Tweak {
                garbage_signature: true,
                ..Tweak::default()
            },
            invalid.clone(),
        ),
    ];
    let user = app.store.user_by_username("bob").await.unwrap().unwrap();
    let counter_before = app.store.credentials_of(user.id).await.unwrap()[0].counter;
    for (i, (tweak, expected)) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {tweak:?}");
        assert_eq!(
            tweaked(&app, &mut bob, &id, tweak).await,
            expected,
            "{what}"
        );
    }
    assert_eq!(
        app.store.credentials_of(user.id).await.unwrap()[0].counter,
        counter_before,
        "no counter update"
    );
    assert!(app.decisions(&id).await.is_empty(), "∅");
    assert_eq!(status(&app, &id).await["status"], "pending");
    // The untampered assertion still works.
    assert_eq!(tweaked(&app, &mut bob, &id, Tweak::default()).await.0, 200);
}

async fn counter_regression_flags_the_credential(app: TestApp) {
    let mut bob = app
        .person(
            "bob",
            &["finance"],
            Some(Device::Crafted(common::webauthn::Crafted::new())),
        )
        .await;
    let id = pending(&app, "80.00", "carol").await;
    let current = bob.devices[0].crafted().counter;
    assert!(current > 0);
    assert_eq!(
        tweaked(
            &app,
            &mut bob,
            &id,
            Tweak {
                counter: Some(current),
                ..Tweak::default()
            }
        )
        .await,
        (401, "possible_clone".into())
    );
    let user = app.store.user_by_username("bob").await.unwrap().unwrap();
    assert!(app.store.credentials_of(user.id).await.unwrap()[0]
        .flagged_at
        .is_some());
    assert!(audit_kinds(&app)
        .await
        .iter()
        .any(|k| k == "clone_suspected"));
    // Flagged: the session it opened has ended, and it no longer signs in.
    let (code, body) = app.decision_options(&bob, &id, "approve").await;
    assert_eq!(
        (code, body["code"].as_str().unwrap()),
        (401, "unauthorized")
    );
    let res = app
        .approver_post("/v1/session/options", None, &json!({ "username": "bob" }))
        .await;
    let opts: Value = res.json().await.unwrap();
    let credential = bob.devices[0].assert(&opts["publicKey"]);
    let res = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": credential }),
        )
        .await;
    assert_eq!(problem(res).await, (401, "authentication_failed".into()));
    assert!(app.decisions(&id).await.is_empty());
}

async fn credential_rules(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let mut dave = app.person("dave", &["finance"], None).await;
    let id = pending(&app, "90.00", "carol").await;
    // Dave's passkey on Bob's ceremony.
    let (_, opts) = app.decision_options(&bob, &id, "approve").await;
    let mut foreign_opts = opts["publicKey"].clone();
    let dave_user = app.store.user_by_username("dave").await.unwrap().unwrap();
    let dave_cred = app.store.credentials_of(dave_user.id).await.unwrap()[0]
        .id
        .clone();
    foreign_opts["allowCredentials"] = json!([{ "type": "public-key", "id": dave_cred }]);
    let credential = dave.devices[0].assert(&foreign_opts);
    let res = app
        .decision_finish(&bob, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (403, "credential_not_allowed".into()));
    assert!(app.decisions(&id).await.is_empty());
    let _ = &mut bob;
}

async fn changes_between_options_and_finish(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "90.00", "carol").await;
    // Revoked in between: a second passkey, not the one the session was opened with (revoking
    // that one ends the session, see `revocation_ends_sessions`).
    let token = app.invite("bob", &["finance"]).await;
    let mut second = common::webauthn::Device::soft();
    let res = app.enrol_device(&token, &mut second, "Laptop").await;
    let body: Value = res.json().await.unwrap();
    let cred_id = body["credential_id"].as_str().unwrap().to_string();
    bob.devices.push(second);
    let (_, opts) = app.decision_options(&bob, &id, "approve").await;
    let credential = bob.devices[1].assert(&opts["publicKey"]);
    app.operator()
        .revoke_credential("bob", &cred_id)
        .await
        .unwrap();
    let res = app
        .decision_finish(&bob, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (403, "credential_not_allowed".into()));
    // Removed from the group in between.
    let mut dave = app.person("dave", &["finance"], None).await;
    let (_, opts) = app.decision_options(&dave, &id, "approve").await;
    let credential = dave.devices[0].assert(&opts["publicKey"]);
    app.operator()
        .set_groups("dave", &["admins".to_string()])
        .await
        .unwrap();
    let res = app
        .decision_finish(&dave, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (403, "not_eligible".into()));
    assert!(app.decisions(&id).await.is_empty());
    // Disabled in between: the session itself is gone.
    let mut erin = app.person("erin", &["finance"], None).await;
    let (_, opts) = app.decision_options(&erin, &id, "approve").await;
    let credential = erin.devices[0].assert(&opts["publicKey"]);
    app.operator().disable("erin").await.unwrap();
    let res = app
        .decision_finish(&erin, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(res.status(), 401);
    // The request was cancelled in between.
    let mut finn = app.person("finn", &["finance"], None).await;
    let (_, opts) = app.decision_options(&finn, &id, "approve").await;
    let credential = finn.devices[0].assert(&opts["publicKey"]);
    app.post_json(&format!("/v1/approvals/{id}/cancel"), &app.key, &json!({}))
        .await;
    let res = app
        .decision_finish(&finn, &id, &opts["ceremony"], &credential)
        .await;
    assert_eq!(problem(res).await, (409, "not_pending".into()));
    assert!(app.decisions(&id).await.is_empty());
    let _ = (&mut bob, &mut dave, &mut erin);
}

async fn origin_is_checked(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let id = pending(&app, "90.00", "carol").await;
    let cookie = bob.cookie.clone().unwrap();
    for origin in [
        None,
        Some("https://localhost:8080"),
        Some("http://evil.example"),
        Some("null"),
    ] {
        let mut req = app
            .http
            .post(app.url(&format!("/v1/approvals/{id}/decision/options")))
            .header("Cookie", &cookie)
            .json(&json!({ "decision": "approve" }));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        assert_eq!(
            problem(req.send().await.unwrap()).await,
            (403, "bad_origin".into()),
            "{origin:?}"
        );
    }
    for path in [
        "/v1/session/options",
        "/v1/session/logout",
        "/v1/enroll/x/options",
    ] {
        let res = app
            .http
            .post(app.url(path))
            .header("Origin", "http://evil.example")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem(res).await, (403, "bad_origin".into()), "{path}");
    }
}

async fn inbox_lists_what_i_may_decide(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    // A second senior approver besides the standby, so that large payments can be made.
    let _sue = app.person("sue", &["finance-senior"], None).await;
    let mine = pending(&app, "1.00", "carol").await;
    let older = pending(&app, "2.00", "carol").await;
    let _own = pending(&app, "3.00", "bob").await;
    let _senior = pending(&app, "50000.00", "carol").await;
    app.clock.advance(Duration::from_secs(1));
    let newest = pending(&app, "4.00", "carol").await;
    assert_eq!(app.decide(&mut bob, &older, "approve").await.status(), 200);
    let res = app
        .approver_get("/v1/me/approvals?status=pending", bob.cookie.as_deref())
        .await;
    let list: Value = res.json().await.unwrap();
    let ids: Vec<&str> = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![newest.as_str(), mine.as_str()],
        "eligible, undecided, not my own, newest first"
    );
    let first = &list["approvals"][0];
    assert_eq!(first["title"], "Payment transfer");
    assert_eq!(first["display"][0]["label"], "Amount");
    assert_eq!(first["display"][0]["formatted"], "4.00");
    assert!(first["fingerprint"].as_str().unwrap().len() == 19);
    let res = app
        .approver_get("/v1/me/approvals?status=decided", bob.cookie.as_deref())
        .await;
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["approvals"][0]["id"], older.as_str());
    assert_eq!(list["approvals"][0]["your_decision"], "approve");
}

/// With quorum 2 and two approvers finishing at the same moment (on two server instances when
/// the database is shared), the request flips to approved exactly once, in every trial.
async fn concurrent_last_approvals_flip_once(app: TestApp) {
    let second =
        common::second_replica(&app, countersign::policy::Policy::builtin().unwrap()).await;
    let other = second.as_ref().unwrap_or(&app);
    let mut bob = app.person("bob", &["finance-senior"], None).await;
    let mut erin = app.person("erin", &["finance-senior"], None).await;
    for trial in 0..8 {
        let id = pending(&app, "12000.00", "carol").await;
        let (_, ob) = app.decision_options(&bob, &id, "approve").await;
        let (_, oe) = app.decision_options(&erin, &id, "approve").await;
        let cb = bob.devices[0].assert(&ob["publicKey"]);
        let ce = erin.devices[0].assert(&oe["publicKey"]);
        let (rb, re) = tokio::join!(
            app.decision_finish(&bob, &id, &ob["ceremony"], &cb),
            other.decision_finish(&erin, &id, &oe["ceremony"], &ce)
        );
        assert_eq!(
            (rb.status().as_u16(), re.status().as_u16()),
            (200, 200),
            "trial {trial}"
        );
        assert_eq!(
            status(&app, &id).await["status"],
            "approved",
            "trial {trial}"
        );
        let flips = app
            .audit_events("request_approved")
            .await
            .iter()
            .filter(|e| e["approval_id"] == id.as_str())
            .count();
        assert_eq!(flips, 1, "trial {trial}");
    }
}

async fn floods_are_rate_limited(app: TestApp) {
    let limited = common::spawn_configured(
        &app.database_url,
        app.dir.clone(),
        countersign::policy::Policy::builtin().unwrap(),
        |c| {
            c.client_requests_per_minute = 20;
            c.ceremonies_per_minute = 5;
        },
    )
    .await;
    // API calls per client.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(
            limited
                .get("/v1/audit?limit=1", &limited.key)
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses[..19].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 4,
        "{statuses:?}"
    );
    let res = limited.get("/v1/audit?limit=1", &limited.key).await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(problem(res).await, (429, "rate_limited".into()));
    // Another client is not affected.
    assert_eq!(
        limited.get("/v1/audit?limit=1", &app.key).await.status(),
        200
    );
    // Ceremony starts per approver.
    let bob = app.person("bob", &["finance"], None).await;
    let mut body = payment("1.00");
    body["initiator"] = json!("carol");
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(limited.decision_options(&bob, &id, "approve").await.0);
    }
    assert_eq!(codes[..5], [200; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|c| *c == 429), "{codes:?}");
}

/// A discoverable passkey signs in without a username: the credential names the person.
async fn discoverable_sign_in(app: TestApp) {
    let mut bob = app
        .person(
            "bob",
            &["finance"],
            Some(Device::Crafted(common::webauthn::Crafted::new())),
        )
        .await;
    let res = app
        .approver_post("/v1/session/options", None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    let credential = bob.devices[0]
        .crafted()
        .assert(&opts["publicKey"], &Tweak::default());
    let res = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": credential }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"], "bob");
    // A userHandle that names someone else is refused.
    let res = app
        .approver_post("/v1/session/options", None, &json!({}))
        .await;
    let opts: Value = res.json().await.unwrap();
    let mut credential = bob.devices[0]
        .crafted()
        .assert(&opts["publicKey"], &Tweak::default());
    credential["response"]["userHandle"] =
        json!(URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()));
    let res = app
        .approver_post(
            "/v1/session/finish",
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": credential }),
        )
        .await;
    assert_eq!(problem(res).await, (401, "authentication_failed".into()));
}

/// A field the policy does not display (a note, a second payee) is shown without a click, on
/// the page and in the approver API, with its JSON pointer and unseen characters made visible.
async fn nothing_is_hidden_from_the_approver(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let mut body = payment("12.00");
    body["initiator"] = json!("carol");
    body["transaction"]["note"] = json!("refund \u{202E}exe.pdf");
    body["transaction"]["extra"] = json!({"payee/2": ["ACME Ltd", true]});
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();

    let res = app
        .approver_get("/v1/me/approvals?status=pending", bob.cookie.as_deref())
        .await;
    let list: Value = res.json().await.unwrap();
    let mine = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        mine["other_fields"],
        // In the order of the canonical transaction, the one the passkey signs.
        json!([
            {"pointer": "/extra/payee~12/0", "value": "ACME Ltd"},
            {"pointer": "/extra/payee~12/1", "value": "true"},
            {"pointer": "/note", "value": "refund ⟨U+202E⟩exe.pdf"},
        ])
    );

    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    let others = between(&page, "id=\"other-fields\"", "</dl>");
    for shown in [
        "/note",
        "refund ⟨U+202E⟩exe.pdf",
        "/extra/payee~12/0",
        "ACME Ltd",
    ] {
        assert!(others.contains(shown), "{shown} not in {others}");
    }
    assert!(
        page.contains("Look closely:"),
        "the invisible character is called out"
    );
    assert!(
        !others.contains("DE89370400440532013000"),
        "displayed fields are not repeated"
    );
}

/// The approval page names everyone who could decide the request now: in an eligible group,
/// enabled, with a usable passkey, and not its initiator.
async fn the_page_names_who_may_approve(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let _carol = app.person("carol", &["finance"], None).await;
    let _dave = app.person("dave", &["finance-senior"], None).await;
    let id = pending(&app, "12.00", "Carol").await;
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    let named = between(&page, "id=\"may-decide\">", "</dd>");
    assert!(named.contains("(bob)"), "{named}");
    assert!(
        !named.contains("(carol)"),
        "the initiator, however spelled: {named}"
    );
    assert!(
        !named.contains("(dave)"),
        "not in an eligible group: {named}"
    );
}

/// An agent acting for a person: the person may not decide it (however spelled), the policy asks
/// for one more approval, pages say who it is, and the receipt carries the party object.
async fn agents_act_for_people_who_then_may_not_decide(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let mut carol = app.person("carol", &["finance"], None).await;
    let dave = app.person("dave", &["finance"], None).await;
    let agent = json!({"type": "agent", "id": "invoice-bot", "on_behalf_of": "Dave"});
    let mut body = payment("100.00");
    body["initiator"] = agent.clone();
    let created = app.create(&body).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["initiator"], agent, "echoed as sent");
    assert_eq!(created["required"]["approvals"], 2, "{created}");
    assert_eq!(created["required"]["rule"], "agent");
    let (code, refused) = app.decision_options(&dave, &id, "approve").await;
    assert_eq!(
        (code, refused["code"].as_str()),
        (403, Some("self_approval_forbidden")),
        "the person the agent acted for"
    );
    let inbox: Value = app
        .approver_get("/v1/me/approvals", dave.cookie.as_deref())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !inbox.to_string().contains(&id),
        "not in the inbox of the person it acted for"
    );
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    assert!(
        page.contains("invoice-bot (agent) on behalf of Dave"),
        "{page}"
    );
    let named = between(&page, "id=\"may-decide\">", "</dd>");
    assert!(!named.contains("(dave)"), "{named}");
    assert!(
        named.contains("(bob)") && named.contains("(carol)"),
        "{named}"
    );
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    assert_eq!(app.decide(&mut carol, &id, "approve").await.status(), 200);
    let done = status(&app, &id).await;
    assert_eq!(done["status"], "approved");
    let claims =
        countersign::receipt::decode_unverified(done["receipt"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&claims.ini).unwrap(), agent);
    // A person's request still signs the plain username; a malformed party is refused.
    let mut bad = payment("100.00");
    bad["initiator"] = json!({"type": "robot", "id": "x"});
    let res = app.post_json("/v1/approvals", &app.key, &bad).await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
    let created = app.create(&payment("100.00")).await;
    assert!(created["initiator"].is_string());
}
