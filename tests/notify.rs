//! Telling approvers (API.md "Telling approvers"): each person who may decide a new request and
//! has an address gets one mail, each group with a chat webhook one message; both say what the
//! page says first and link to it, never a redacted value, never a way to decide; a mail server
//! that is down when the request arrives loses nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::receivers::{Receiver, SmtpSink};
use common::{fresh_database, spawn_configured, temp_dir, Backend};
use countersign::policy::Policy;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_told_by_mail_and_chat_sqlite() {
    approvers_are_told_by_mail_and_chat(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_told_by_mail_and_chat_postgres() {
    approvers_are_told_by_mail_and_chat(Backend::Postgres).await;
}

async fn approvers_are_told_by_mail_and_chat(backend: Backend) {
    let dir = temp_dir();
    let Some(url) = fresh_database(backend, &dir).await else {
        return;
    };
    // The mail server is down at first: its port is taken from the system, then let go.
    let mail_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chat = Receiver::start().await;
    let chat_url = chat.url("/chat/finance");
    let app = spawn_configured(&url, dir, Policy::builtin().unwrap(), |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{mail_port}"));
        c.smtp_from = Some("countersign <approvals@example.com>".into());
        c.chat_webhooks.insert("finance".into(), chat_url);
        c.webhook_allow_private = true;
    })
    .await;
    let with_mail = |name: &'static str, groups: &'static [&'static str]| {
        let app = &app;
        async move {
            let p = app.person(name, groups, None).await;
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            app.operator()
                .invite(
                    name,
                    None,
                    &groups,
                    Some(&format!("{name}@example.com")),
                    3600,
                )
                .await
                .unwrap();
            p
        }
    };
    with_mail("bob", &["finance"]).await;
    with_mail("alice", &["finance"]).await; // the initiator: never told of her own request
    with_mail("carol", &["security"]).await; // not an approver of payments
    with_mail("frank", &["security"]).await;
    with_mail("dave", &["finance"]).await;
    app.operator().disable("dave").await.unwrap();
    assert!(app
        .operator()
        .invite(
            "erin",
            None,
            &["finance".into()],
            Some("not an address"),
            60
        )
        .await
        .is_err());

    let created = app
        .create(&json!({
            "action": "payment.transfer",
            "transaction": { "amount": "1250.00", "currency": "EUR",
                             "payee": { "name": "ACME <b>GmbH</b>", "iban": "DE89370400440532013000" } },
            "initiator": "alice",
            "audience": "payments-service"
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    let link = format!("http://localhost:8080/approvals/{id}");

    // Chat is told at once.
    let said = chat.wait_for(1).await.remove(0);
    let text = said.json()["text"].as_str().unwrap().to_string();
    assert!(text.contains(&link), "{text}");
    assert!(
        text.contains("1,250.00") || text.contains("1250.00"),
        "{text}"
    );
    assert!(text.contains("ACME &lt;b&gt;GmbH&lt;/b&gt;"), "{text}");
    assert!(!text.contains("/decision"), "{text}");

    // The mail waits for the server: retried once it is up, nothing lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sink = SmtpSink::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", mail_port))
            .await
            .unwrap(),
    );
    app.clock.advance(Duration::from_secs(10));
    let mails = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails_after = sink.mails.lock().unwrap().clone();
    assert_eq!(
        mails_after.len(),
        mails.len(),
        "one mail each: {mails_after:?}"
    );
    assert_eq!(mails.len(), 1, "only bob may decide it: {mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["<bob@example.com>".to_string()]);
    assert!(mail.from.contains("approvals@example.com"));
    let data = mail.data.replace("=\r\n", "");
    assert!(data.contains("Subject: Approval requested"), "{data}");
    assert!(data.contains(&link), "{data}");
    assert!(data.contains("ACME"), "{data}");
    assert!(data.contains("Amount: 1,250.00 EUR"), "{data}");
    let fingerprint = {
        let hash =
            countersign::tx_hash::TxHash::parse(created["tx_hash"].as_str().unwrap()).unwrap();
        hash.fingerprint()
    };
    assert!(data.contains(&fingerprint), "{data}");
    assert!(data.contains("cannot approve or reject"), "{data}");

    // A redacted value is in no message: carol and frank (security) are told of the export
    // without it.
    let secret = app
        .create(&json!({
            "action": "secret.export",
            "transaction": { "secret": "db-root", "value": "s3cr3t-VALUE-42", "destination": "vault-2" },
            "initiator": "alice",
            "audience": "secrets-service"
        }))
        .await;
    let mails = sink.wait_for(3).await;
    assert_eq!(mails.len(), 3, "carol and frank: {mails:?}");
    let mail = mails
        .iter()
        .find(|m| m.to == vec!["<carol@example.com>".to_string()])
        .unwrap();
    assert!(mail.data.contains(secret["id"].as_str().unwrap()));
    assert!(!mail.data.contains("s3cr3t"), "{}", mail.data);
    assert_eq!(chat.count(), 1, "security has no chat webhook");
}
