//! Receipts over HTTP: issue on approval, JWKS, one-time redemption, rotation, the offline
//! verifier CLI, and independent verifiers in Python and Node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

/// The README's Rust snippet, compiled and run here.
#[path = "../examples/verify_receipt.rs"]
#[allow(dead_code)]
mod snippet;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::webauthn::Person;
use common::{payment, problem, TestApp};
use countersign::domain::Rights;
use countersign::receipt::{decode_unverified, verify_evidence, Expect, Verifier};
use countersign::signing::Sealer;
use serde_json::{json, Value};

both!(
    approval_issues_a_verifiable_receipt,
    redeem_once,
    redeem_refusals_change_nothing,
    concurrent_redeems,
    revocation,
    expiry,
    forged_receipts,
    rotation_and_retirement,
    verify_cli,
    independent_verifiers,
);

const TX: &str = r#"{"amount":"1250.00","currency":"EUR","payee":{"name":"ACME GmbH","iban":"DE89370400440532013000"}}"#;

/// An approved payment (quorum 1) and its receipt.
async fn approved(app: &TestApp, bob: &mut Person) -> (String, String) {
    let mut body = payment("1250.00");
    body["initiator"] = json!("carol");
    body["risk"] = json!({ "score": 35, "reasons": ["new payee"] });
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    assert_eq!(app.decide(bob, &id, "approve").await.status(), 200);
    let v: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "approved");
    (
        id,
        v["receipt"]
            .as_str()
            .expect("an approved request carries its receipt")
            .to_string(),
    )
}

async fn jwks(app: &TestApp) -> Value {
    app.http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn redeem(app: &TestApp, key: &str, receipt: &str, tx: Value) -> reqwest::Response {
    app.post_json(
        "/v1/receipts/redeem",
        key,
        &json!({ "receipt": receipt, "transaction": tx }),
    )
    .await
}

fn tx() -> Value {
    serde_json::from_str(TX).unwrap()
}

async fn approval_issues_a_verifiable_receipt(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (id, receipt) = approved(&app, &mut bob).await;
    // Header exactly as specified.
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(receipt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "countersign-receipt+jwt");
    assert_eq!(header.as_object().unwrap().len(), 3);
    let claims = decode_unverified(&receipt).unwrap();
    assert_eq!(claims.iss, "http://localhost:8080");
    assert_eq!(claims.aud, "payments-service");
    assert_eq!(claims.sub, id);
    assert_eq!(claims.act, "payment.transfer");
    assert_eq!(
        claims.ini,
        countersign::receipt::Initiated::Person("carol".into())
    );
    assert_eq!(
        claims.exp - claims.iat,
        300,
        "payment.transfer receipts live 5m"
    );
    assert_eq!(claims.pol.id, "payment.transfer");
    assert_eq!(claims.pol.rule, "default");
    assert_eq!(
        claims.risk,
        Some(json!({ "score": 35, "reasons": ["new payee"] }))
    );
    assert_eq!(claims.apv.len(), 1);
    assert_eq!(claims.apv[0].name, "bob (test)");
    assert!(claims.apv[0].uv);
    // Verified with nothing but the public JWKS.
    let jwks_res = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks_res.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks_res.json().await.unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "no private members");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["use"], "sig");
    }
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    let verifier = Verifier::from_jwks(&jwks).unwrap();
    let txh = countersign::tx_hash::TxHash::of_json(TX.as_bytes())
        .unwrap()
        .0
        .to_string();
    let expect = Expect {
        issuer: Some("http://localhost:8080"),
        audience: Some("payments-service"),
        tx_hash: Some(&txh),
        now: app.clock_now(),
        leeway: 30,
    };
    let verified = verifier.verify(&receipt, &expect).unwrap();
    assert_eq!(verify_evidence(&verified).unwrap(), 1);
    assert!(app
        .audit_events("receipt_issued")
        .await
        .iter()
        .any(|e| e["approval_id"] == id.as_str()));
    // Quorum 2: the receipt carries both approvers' evidence.
    let mut erin = app.person("erin", &["finance-senior"], None).await;
    let mut finn = app.person("finn", &["finance-senior"], None).await;
    let mut big = payment("25000.00");
    big["initiator"] = json!("carol");
    let id = app.create(&big).await["id"].as_str().unwrap().to_string();
    app.decide(&mut erin, &id, "approve").await;
    let v: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert!(v.get("receipt").is_none(), "no receipt before the quorum");
    app.decide(&mut finn, &id, "approve").await;
    let v: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    let claims = decode_unverified(v["receipt"].as_str().unwrap()).unwrap();
    assert_eq!(claims.apv.len(), 2);
    assert_eq!(claims.pol.rule, "large-payment");
    assert_eq!(verify_evidence(&claims).unwrap(), 2);
}

async fn redeem_once(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (id, receipt) = approved(&app, &mut bob).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    // Reordered keys and whitespace are the same transaction.
    let reordered: Value = serde_json::from_str(r#"{ "payee": {"iban":"DE89370400440532013000","name":"ACME GmbH"}, "currency":"EUR", "amount":"1250.00" }"#).unwrap();
    let res = redeem(&app, &payments, &receipt, reordered).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "redeemed");
    assert_eq!(body["approval_id"], id.as_str());
    assert_eq!(body["action"], "payment.transfer");
    let first_at = body["redeemed_at"].as_str().unwrap().to_string();
    app.clock.advance(Duration::from_secs(5));
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &payments,
            &json!({ "receipt": receipt, "tx_hash": decode_unverified(&receipt).unwrap().txh }),
        )
        .await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "already_redeemed");
    assert_eq!(body["redeemed_at"], first_at.as_str());
    // Both or neither of transaction and tx_hash.
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            &payments,
            &json!({ "receipt": receipt }),
        )
        .await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
}

async fn redeem_refusals_change_nothing(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    let admin = app
        .client(Rights {
            redeem: vec!["admin-console".into()],
            ..Rights::default()
        })
        .await;
    let res = redeem(&app, &admin, &receipt, tx()).await;
    assert_eq!(problem(res).await, (403, "wrong_audience".into()));
    let mut one_cent = tx();
    one_cent["amount"] = json!("1250.01");
    assert_eq!(
        problem(redeem(&app, &payments, &receipt, one_cent).await).await,
        (422, "transaction_mismatch".into())
    );
    let mut extra = tx();
    extra["memo"] = json!("x");
    assert_eq!(
        problem(redeem(&app, &payments, &receipt, extra).await).await,
        (422, "transaction_mismatch".into())
    );
    let res = app
        .post_json(
            "/v1/receipts/redeem",
            "cs_nope",
            &json!({ "receipt": receipt, "transaction": tx() }),
        )
        .await;
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    // Nothing was consumed by the refusals.
    assert_eq!(redeem(&app, &payments, &receipt, tx()).await.status(), 200);
    let refused = app.audit_events("redemption_refused").await.len();
    assert_eq!(refused, 3);
}

async fn concurrent_redeems(app: TestApp) {
    let second =
        common::second_replica(&app, countersign::policy::Policy::builtin().unwrap()).await;
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let base = if i % 2 == 1 {
                second.as_ref().map_or(app.base.clone(), |s| s.base.clone())
            } else {
                app.base.clone()
            };
            let req = app
                .http
                .post(format!("{base}/v1/receipts/redeem"))
                .bearer_auth(&payments)
                .json(&json!({ "receipt": receipt, "transaction": tx() }));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                (
                    res.status().as_u16(),
                    res.json::<Value>().await.unwrap()["code"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
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
    assert_eq!(
        results
            .iter()
            .filter(|r| *r == &(409, "already_redeemed".to_string()))
            .count(),
        63,
        "{results:?}"
    );
    assert_eq!(app.audit_events("receipt_redeemed").await.len(), 1);
    assert_eq!(
        app.audit_events("redemption_refused").await.len(),
        63,
        "each refusal audited"
    );
}

async fn revocation(app: TestApp) {
    let second =
        common::second_replica(&app, countersign::policy::Policy::builtin().unwrap()).await;
    let mut bob = app.person("bob", &["finance"], None).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    let other = app.client(Rights::everything()).await;
    let revoke = |id: &str, key: &str| {
        let (app, path, key) = (&app, format!("/v1/approvals/{id}/revoke"), key.to_owned());
        async move { app.post_json(&path, &key, &json!({})).await }
    };
    // Pending: not revocable (the request is cancelled instead), and it says where it stands.
    let pending = app.create(&payment("10.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = revoke(&pending, &app.key).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["approval_status"].as_str()),
        (Some("not_revocable"), Some("pending"))
    );
    // Approved: only the creating client may revoke it; afterwards it reads as revoked, with
    // no receipt, and its receipt is refused.
    let (id, receipt) = approved(&app, &mut bob).await;
    assert_eq!(
        problem(revoke(&id, &other).await).await,
        (404, "not_found".into())
    );
    let res = revoke(&id, &app.key).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "revoked");
    assert!(body.get("receipt").is_none(), "{body}");
    let read: Value = app
        .get(&format!("/v1/approvals/{id}"), &app.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "revoked");
    assert!(read.get("receipt").is_none());
    assert_eq!(
        problem(redeem(&app, &payments, &receipt, tx()).await).await,
        (409, "receipt_revoked".into())
    );
    assert_eq!(
        problem(revoke(&id, &app.key).await).await,
        (409, "not_revocable".into())
    );
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    assert!(page.contains("pill-revoked"), "the status pill says so");
    assert!(page.contains("<strong>Revoked.</strong>"), "{page}");
    let revoked = app.audit_events("request_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["approval_id"], id.as_str());
    let refused = app.audit_events("redemption_refused").await;
    assert_eq!(refused[0]["data"]["reason"], "receipt_revoked");
    // Redeemed: too late to revoke.
    let (id, receipt) = approved(&app, &mut bob).await;
    assert_eq!(redeem(&app, &payments, &receipt, tx()).await.status(), 200);
    let res = revoke(&id, &app.key).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["approval_status"].as_str()),
        (Some("not_revocable"), Some("approved"))
    );
    // Sent together (through two replicas on PostgreSQL), exactly one of a redemption and a
    // revocation happens, and the other is told why.
    for _ in 0..6 {
        let (id, receipt) = approved(&app, &mut bob).await;
        let base = second.as_ref().map_or(app.base.clone(), |s| s.base.clone());
        let redeeming = app
            .http
            .post(format!("{base}/v1/receipts/redeem"))
            .bearer_auth(&payments)
            .json(&json!({ "receipt": receipt, "transaction": tx() }))
            .send();
        let (redeemed, revoked) = tokio::join!(redeeming, revoke(&id, &app.key));
        let (redeemed, revoked) = (redeemed.unwrap().status(), revoked.status());
        assert!(
            (redeemed == 200 && revoked == 409) || (redeemed == 409 && revoked == 200),
            "redeem {redeemed}, revoke {revoked}"
        );
    }
}

async fn expiry(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    app.clock.advance(Duration::from_secs(300 + 31));
    assert_eq!(
        problem(redeem(&app, &payments, &receipt, tx()).await).await,
        (401, "receipt_expired".into())
    );
}

fn forge(receipt: &str, header: Value, sig: Option<&[u8]>) -> String {
    let mut parts = receipt.split('.');
    let _ = parts.next();
    let payload = parts.next().unwrap();
    let sig_b64 = match sig {
        Some(s) => URL_SAFE_NO_PAD.encode(s),
        None => parts.next().unwrap().to_string(),
    };
    format!(
        "{}.{payload}.{sig_b64}",
        URL_SAFE_NO_PAD.encode(header.to_string())
    )
}

async fn forged_receipts(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(receipt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].clone();
    let forged = [
        forge(
            &receipt,
            json!({"alg": "none", "typ": "countersign-receipt+jwt", "kid": kid}),
            Some(b""),
        ),
        forge(
            &receipt,
            json!({"alg": "HS256", "typ": "countersign-receipt+jwt", "kid": kid}),
            Some(&[7; 32]),
        ),
        forge(
            &receipt,
            json!({"alg": "ES384", "typ": "countersign-receipt+jwt", "kid": kid}),
            None,
        ),
        forge(
            &receipt,
            json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
            None,
        ),
        forge(
            &receipt,
            json!({"alg": "ES256", "typ": "countersign-receipt+jwt", "kid": kid, "jku": "http://127.0.0.1:9/jwks"}),
            None,
        ),
        forge(
            &receipt,
            json!({"alg": "ES256", "typ": "countersign-receipt+jwt", "kid": "../../etc/passwd"}),
            None,
        ),
        forge(
            &receipt,
            json!({"alg": "ES256", "typ": "countersign-receipt+jwt", "kid": kid}),
            Some(&[0; 64]),
        ),
        format!("{}x", receipt),
        "not.a.jws".to_string(),
    ];
    for (i, f) in forged.iter().enumerate() {
        assert_eq!(
            problem(redeem(&app, &payments, f, tx()).await).await,
            (401, "invalid_receipt".into()),
            "forgery {i}"
        );
    }
    assert_eq!(redeem(&app, &payments, &receipt, tx()).await.status(), 200);
}

async fn rotation_and_retirement(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, old_a) = approved(&app, &mut bob).await;
    let (_, old_b) = approved(&app, &mut bob).await;
    let old_kid = jwks(&app).await["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let master = countersign::master_key::MasterKey::load(&app.dir.join("master.key")).unwrap();
    let new_kid = app
        .operator()
        .rotate(&Sealer::new(&master), false)
        .await
        .unwrap()
        .unwrap();
    let (_, fresh) = approved(&app, &mut bob).await;
    let kid_of = |r: &str| -> String {
        let h: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(r.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    assert_eq!(kid_of(&fresh), new_kid, "new receipts use the new key");
    assert_eq!(jwks(&app).await["keys"].as_array().unwrap().len(), 2);
    let payments = app
        .client(Rights {
            redeem: vec!["payments-service".into()],
            ..Rights::default()
        })
        .await;
    assert_eq!(
        redeem(&app, &payments, &old_a, tx()).await.status(),
        200,
        "receipts before the rotation still verify"
    );
    let in_use = app.operator().retire(&new_kid).await.unwrap_err();
    assert!(in_use.to_string().contains("rotate first"), "{in_use}");
    app.operator().retire(&old_kid).await.unwrap();
    let keys = jwks(&app).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        problem(redeem(&app, &payments, &old_b, tx()).await).await,
        (401, "invalid_receipt".into()),
        "a retired key's receipts are refused"
    );
    assert_eq!(redeem(&app, &payments, &fresh, tx()).await.status(), 200);
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn verify_cli(app: TestApp) {
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let jwks_file = write(&app.dir, "jwks.json", &jwks(&app).await.to_string());
    let receipt_file = write(&app.dir, "receipt.txt", &receipt);
    let tx_file = write(&app.dir, "tx.json", TX);
    let bad_tx = write(&app.dir, "bad.json", &TX.replace("1250.00", "1250.01"));
    let now = app.clock_now().to_string();
    let run = |jwks: &str, tx: &std::path::Path, aud: &str, extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
        cmd.args([
            "verify",
            "--jwks",
            jwks,
            "--receipt",
            receipt_file.to_str().unwrap(),
            "--tx",
            tx.to_str().unwrap(),
            "--aud",
            aud,
            "--json",
            "--now",
            &now,
        ])
        .args(extra)
        .env_clear();
        let o = cmd.output().unwrap();
        (
            o.status.code(),
            serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null),
        )
    };
    // The README's Rust snippet accepts it, and refuses another transaction.
    let jwks_text = jwks(&app).await.to_string();
    let claims = snippet::verify_receipt(
        &jwks_text,
        &receipt,
        TX.as_bytes(),
        "payments-service",
        app.clock_now(),
    )
    .unwrap();
    assert_eq!(claims.act, "payment.transfer");
    let other = TX.replace("1250.00", "1250.01");
    assert!(snippet::verify_receipt(
        &jwks_text,
        &receipt,
        other.as_bytes(),
        "payments-service",
        app.clock_now()
    )
    .is_err());
    let jwks_path = jwks_file.to_str().unwrap();
    let (code, out) = run(
        jwks_path,
        &tx_file,
        "payments-service",
        &["--evidence", "--iss", "http://localhost:8080"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["evidence_checked"], 1);
    let (code, out) = run(
        &format!("{}/.well-known/jwks.json", app.base),
        &tx_file,
        "payments-service",
        &[],
    );
    assert_eq!(code, Some(0), "from a JWKS URL: {out}");
    let (code, out) = run(jwks_path, &bad_tx, "payments-service", &[]);
    assert_eq!(code, Some(1));
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .starts_with("transaction_mismatch"),
        "{out}"
    );
    let (code, out) = run(jwks_path, &tx_file, "admin-console", &[]);
    assert_eq!(code, Some(1));
    assert!(
        out["error"].as_str().unwrap().starts_with("wrong_audience"),
        "{out}"
    );
}

/// The receipt and its evidence checked by stock libraries in other languages: Python
/// (`cryptography`, `rfc8785`) and Node (`jose`, `canonicalize`), the README's snippets.
async fn independent_verifiers(app: TestApp) {
    let required = std::env::var("CS_TEST_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/verify");
    let python_ok = std::process::Command::new("python3")
        .args(["-c", "import cryptography, rfc8785"])
        .status()
        .is_ok_and(|s| s.success());
    let node_ok =
        dir.join("node_modules/jose").exists() && dir.join("node_modules/canonicalize").exists();
    if !(python_ok && node_ok) {
        assert!(
            !required,
            "CS_TEST_REQUIRE_INTEROP=1 but the Python or Node verifier dependencies are missing"
        );
        eprintln!("SKIPPED independent verifiers: run `pip install -r examples/verify/requirements.txt` and `npm ci --prefix examples/verify`");
        return;
    }
    let mut bob = app.person("bob", &["finance"], None).await;
    let (_, receipt) = approved(&app, &mut bob).await;
    let jwks_file = write(&app.dir, "jwks.json", &jwks(&app).await.to_string());
    let receipt_file = write(&app.dir, "receipt.txt", &receipt);
    let tx_file = write(&app.dir, "tx.json", TX);
    let bad_tx = write(&app.dir, "bad.json", &TX.replace("1250.00", "1250.01"));
    let now = app.clock_now().to_string();
    for (program, script) in [
        ("python3", "verify_receipt.py"),
        ("node", "verify_receipt.mjs"),
    ] {
        let run = |tx: &std::path::Path| {
            std::process::Command::new(program)
                .arg(dir.join(script))
                .args([
                    "--jwks",
                    jwks_file.to_str().unwrap(),
                    "--receipt",
                    receipt_file.to_str().unwrap(),
                    "--tx",
                    tx.to_str().unwrap(),
                ])
                .args([
                    "--aud",
                    "payments-service",
                    "--iss",
                    "http://localhost:8080",
                    "--now",
                    &now,
                ])
                .output()
                .unwrap()
        };
        let ok = run(&tx_file);
        assert!(
            ok.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        let out: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(out["ok"], true);
        assert_eq!(out["approvers"], 1);
        let bad = run(&bad_tx);
        assert!(
            !bad.status.success(),
            "{script} refuses another transaction"
        );
    }
}

/// The documentation points downstream developers at the very files the tests run, and the
/// README leads to that documentation.
#[test]
fn docs_link_the_tested_verifiers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("(docs/receipts.md)"));
    let doc = std::fs::read_to_string(root.join("docs/receipts.md")).unwrap();
    for file in [
        "examples/verify_receipt.rs",
        "examples/verify/verify_receipt.py",
        "examples/verify/verify_receipt.mjs",
    ] {
        assert!(root.join(file).is_file(), "{file} exists");
        assert!(
            doc.contains(&format!("(../{file})")),
            "docs/receipts.md links {file}"
        );
    }
}
