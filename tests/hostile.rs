//! Hostile inputs found by a security review, each answered as SECURITY.md asks: idle bodies,
//! ceremony floods before sign-in, invisible characters, inbox floods, enrolment lockouts,
//! spellings of the initiator, sessions outliving their passkey, authentication racing the
//! body, and user enumeration through sign-in options.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::webauthn::{Device, ORIGIN};
use common::{payment, problem, TestApp};
use countersign::domain::Rights;
use countersign::policy::Policy;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both!(
    idle_and_slow_clients_are_cut_off,
    sign_in_options_are_limited_per_address,
    expired_ceremonies_are_swept,
    invisible_characters_are_shown_everywhere,
    a_flood_cannot_push_a_request_out_of_the_inbox,
    invalid_enrolment_tokens_do_not_lock_out_the_invitee,
    the_initiator_is_compared_in_one_form,
    revocation_ends_the_sessions_it_opened,
    authentication_comes_before_the_body,
    sign_in_options_do_not_tell_who_exists,
);

/// A second server on the same database, with a changed configuration.
async fn configured(
    app: &TestApp,
    change: impl FnOnce(&mut countersign::config::Config),
) -> TestApp {
    common::spawn_configured(
        &app.database_url,
        app.dir.clone(),
        Policy::builtin().unwrap(),
        change,
    )
    .await
}

/// Writes `request` on a raw connection, then reads until the server closes it; returns what
/// it sent and how long the close took (at most `limit`, then it panics).
async fn sent_then_closed(addr: &str, request: &[u8], limit: Duration) -> (String, Duration) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
        let head = String::from_utf8_lossy(request);
        let head = head.lines().next().unwrap_or_default();
        panic!("the server held the connection past {limit:?}: {head}")
    });
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

async fn idle_and_slow_clients_are_cut_off(app: TestApp) {
    let cut = configured(&app, |c| c.client_timeout_secs = 1).await;
    let addr = cut.base.trim_start_matches("http://").to_string();
    let key = &cut.key;
    // Each of these stops sending and idles; each connection must be ended by the server.
    let partial_body = format!(
        "POST /v1/approvals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"action\""
    );
    let (answer, _) =
        sent_then_closed(&addr, partial_body.as_bytes(), Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let cases = [
        "POST /v1/approvals HTTP/1.1\r\nHost: x\r\nContent-Ty".to_string(),
        "POST /v1/approvals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a"
            .to_string(),
        "POST /v1/session/options HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:8080\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            .to_string(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab".to_string(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
    ];
    for request in &cases {
        sent_then_closed(&addr, request.as_bytes(), Duration::from_secs(8)).await;
    }
    // Many at once, and the server still answers.
    let idle: Vec<_> = (0..200)
        .map(|_| {
            let (addr, req) = (addr.clone(), partial_body.clone());
            tokio::spawn(async move {
                sent_then_closed(&addr, req.as_bytes(), Duration::from_secs(15)).await
            })
        })
        .collect();
    let res = cut.http.get(cut.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for t in idle {
        t.await.unwrap();
    }
}

async fn sign_in_options_are_limited_per_address(app: TestApp) {
    let limited = configured(&app, |c| c.ceremonies_per_minute = 30).await;
    let mut codes = Vec::new();
    for _ in 0..60 {
        let res = limited
            .approver_post("/v1/session/options", None, &json!({}))
            .await;
        codes.push(res.status().as_u16());
    }
    assert!(codes[..30].iter().all(|c| *c == 200), "{codes:?}");
    assert!(codes[30..].iter().all(|c| *c == 429), "{codes:?}");
    assert!(
        common::count(&app.database_url, "ceremonies").await <= 31,
        "a refused call writes nothing"
    );
}

async fn expired_ceremonies_are_swept(app: TestApp) {
    for _ in 0..5 {
        app.approver_post("/v1/session/options", None, &json!({}))
            .await;
    }
    assert_eq!(common::count(&app.database_url, "ceremonies").await, 5);
    // Ten minutes on: past their five-minute life and the five minutes a late finish is told
    // `ceremony_expired` in, they go with the next start.
    app.clock.advance(Duration::from_secs(601));
    app.approver_post("/v1/session/options", None, &json!({}))
        .await;
    assert_eq!(common::count(&app.database_url, "ceremonies").await, 1);
}

async fn invisible_characters_are_shown_everywhere(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let mut body = payment("10.00");
    body["transaction"]["payee"]["name"] = json!("ACME Gmb\u{E0041}\u{E0042}H");
    body["initiator"] = json!("carol");
    body["risk"] = json!({ "score": 80, "reasons": ["new payee"] });
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let page = app
        .approver_page(&format!("/approvals/{id}"), bob.cookie.as_deref())
        .await;
    assert!(page.contains("ACME Gmb⟨U+E0041⟩⟨U+E0042⟩H"), "{page}");
    assert!(page.contains("Look closely"));
    let inbox = app.approver_page("/", bob.cookie.as_deref()).await;
    assert!(inbox.contains("⟨U+E0041⟩"), "{inbox}");
    // Where the text is the service's own claim about a person or a reason, it is refused.
    for (field, value) in [
        ("initiator", json!("carol\u{2028}")),
        ("initiator", json!("car\u{180B}ol")),
        ("risk", json!({ "score": 10, "reasons": ["fine\u{FE0F}"] })),
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
    let err = app
        .operator()
        .invite("zed", Some("Zed\u{2800}"), &["finance".into()], None, 60)
        .await;
    assert!(
        err.is_err(),
        "a display name that hides something is refused"
    );
}

async fn a_flood_cannot_push_a_request_out_of_the_inbox(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let admin_only = app
        .client(Rights {
            create: vec!["admin.*".into()],
            ..Rights::default()
        })
        .await;
    let role = json!({ "action": "admin.role_change", "transaction": { "user": "ann", "role": "viewer" }, "initiator": "mallory" });
    for _ in 0..600 {
        assert_eq!(
            app.post_json("/v1/approvals", &admin_only, &role)
                .await
                .status(),
            201
        );
    }
    let mut body = payment("42.00");
    body["initiator"] = json!("carol");
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        assert_eq!(
            app.post_json("/v1/approvals", &admin_only, &role)
                .await
                .status(),
            201
        );
    }
    let mine: Value = app
        .approver_get("/v1/me/approvals", bob.cookie.as_deref())
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = mine["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    assert!(mine["next"].is_null());
    let inbox = app.approver_page("/", bob.cookie.as_deref()).await;
    assert!(inbox.contains(&id));
    // An admin sees the flood a page at a time, newest first, each request once.
    let ann = app.person("ann", &["admins"], None).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(c) => format!("/v1/me/approvals?limit=200&before={c}"),
            None => "/v1/me/approvals?limit=200".to_string(),
        };
        let page: Value = app
            .approver_get(&path, ann.cookie.as_deref())
            .await
            .json()
            .await
            .unwrap();
        for a in page["approvals"].as_array().unwrap() {
            assert!(
                seen.insert(a["id"].as_str().unwrap().to_string()),
                "listed twice"
            );
        }
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1200);
    let res = app
        .approver_get("/v1/me/approvals?limit=0", ann.cookie.as_deref())
        .await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
}

async fn invalid_enrolment_tokens_do_not_lock_out_the_invitee(app: TestApp) {
    let limited = configured(&app, |c| c.ceremonies_per_minute = 30).await;
    let token = app.invite("erin", &["finance"]).await;
    for i in 0..40 {
        let res = limited
            .approver_post(
                &format!("/v1/enroll/not-a-token-{i}/options"),
                None,
                &json!({}),
            )
            .await;
        assert!([404, 429].contains(&res.status().as_u16()));
    }
    // The refused ones are limited …
    let res = limited
        .approver_post("/v1/enroll/not-a-token/options", None, &json!({}))
        .await;
    assert_eq!(problem(res).await, (429, "rate_limited".into()));
    // … and the real invitee, from the same address, is not.
    let res = limited
        .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let mut device = Device::soft();
    assert_eq!(
        limited
            .enrol_device(&token, &mut device, "Key")
            .await
            .status(),
        201
    );
}

async fn the_initiator_is_compared_in_one_form(app: TestApp) {
    let dave = app.person("dave", &["finance"], None).await;
    for spelling in ["Dave", " dave", "DAVE ", "ｄａｖｅ"] {
        let mut body = payment("10.00");
        body["initiator"] = json!(spelling);
        let id = app.create(&body).await["id"].as_str().unwrap().to_string();
        let (code, body) = app.decision_options(&dave, &id, "approve").await;
        assert_eq!(
            (code, body["code"].as_str().unwrap()),
            (403, "self_approval_forbidden"),
            "{spelling:?}"
        );
        let mine: Value = app
            .approver_get("/v1/me/approvals", dave.cookie.as_deref())
            .await
            .json()
            .await
            .unwrap();
        assert!(
            mine["approvals"].as_array().unwrap().is_empty(),
            "not in dave's inbox"
        );
    }
    let mut body = payment("10.00");
    body["initiator"] = json!("dave\u{200B}");
    let res = app.post_json("/v1/approvals", &app.key, &body).await;
    assert_eq!(problem(res).await, (400, "invalid_request".into()));
}

async fn revocation_ends_the_sessions_it_opened(app: TestApp) {
    let bob = app.person("bob", &["finance"], None).await;
    let me = |p: &common::webauthn::Person| {
        let (app, cookie) = (&app, p.cookie.clone());
        async move {
            app.approver_get("/v1/me/approvals", cookie.as_deref())
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(&bob).await, 200);
    let creds = app.operator().credentials("bob").await.unwrap();
    app.operator()
        .revoke_credential("bob", creds[0].id.as_str())
        .await
        .unwrap();
    assert_eq!(
        me(&bob).await,
        401,
        "the session its passkey opened has ended"
    );
    let page = app.approver_get("/history", bob.cookie.as_deref()).await;
    assert!(
        page.url().as_str().ends_with("/?next=/history"),
        "the pages send it to sign in again: {}",
        page.url()
    );
}

async fn authentication_comes_before_the_body(app: TestApp) {
    let bodies: [(&str, &[u8]); 4] = [
        ("application/json", b"{not json"),
        ("application/json", b"{\"unknown\": 1}"),
        ("text/plain", b"hello"),
        ("application/json", &[b'['; 70_000]),
    ];
    for _ in 0..10 {
        for (ct, body) in &bodies {
            for path in [
                "/v1/approvals",
                "/v1/receipts/redeem",
                "/v1/approvals/01930000-0000-7000-8000-000000000000/cancel",
            ] {
                let res = app
                    .http
                    .post(app.url(path))
                    .bearer_auth("cs_not-a-key")
                    .header("content-type", *ct)
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    problem(res).await,
                    (401, "unauthorized".into()),
                    "{path} {ct}"
                );
            }
        }
    }
    let bob = app.person("bob", &["finance"], None).await;
    let id = "01930000-0000-7000-8000-000000000000";
    for (ct, body) in &bodies {
        let path = format!("/v1/approvals/{id}/decision/options");
        // No session: 401, whatever the body.
        let res = app
            .http
            .post(app.url(&path))
            .header("origin", ORIGIN)
            .header("content-type", *ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(problem(res).await, (401, "unauthorized".into()));
        // A session from another origin: 403, whatever the body.
        let res = app
            .http
            .post(app.url(&path))
            .header("origin", "http://evil.example")
            .header("cookie", bob.cookie.clone().unwrap())
            .header("content-type", *ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(problem(res).await, (403, "bad_origin".into()));
        let res = app
            .http
            .post(app.url("/v1/session/options"))
            .header("origin", "http://evil.example")
            .header("content-type", *ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(problem(res).await, (403, "bad_origin".into()));
    }
}

async fn sign_in_options_do_not_tell_who_exists(app: TestApp) {
    let allowed = |opts: &Value| -> Vec<String> {
        opts["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let options = |name: &'static str| {
        let app = &app;
        async move {
            app.approver_post("/v1/session/options", None, &json!({ "username": name }))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    for name in ["bob", "erin", "finn"] {
        app.person(name, &["finance"], None).await;
    }
    let real_len = allowed(&options("bob").await)[0].len();
    let bob_creds = app.operator().credentials("bob").await.unwrap();
    assert_eq!(
        allowed(&options("bob").await),
        vec![bob_creds[0].id.as_str().to_string()]
    );
    // Nobody: as many ids, as long, as real people have, the same every time.
    for name in ["nobody", "zara", "root"] {
        let decoy = allowed(&options(name).await);
        assert_eq!(decoy.len(), 1, "{name}");
        assert_eq!(decoy[0].len(), real_len, "{name}");
        assert_eq!(decoy, allowed(&options(name).await), "{name}: stable");
    }
    assert_ne!(
        allowed(&options("nobody").await),
        allowed(&options("zara").await)
    );
}
