//! Live pages over HTTP: `GET /v1/me/events` tells a signed-in approver about arrivals,
//! decisions and status changes of the requests they may see, with ids a reconnect resumes
//! from, on SQLite and PostgreSQL (and across two replicas on PostgreSQL).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::webauthn::Person;
use common::{payment, problem, second_replica, TestApp};
use countersign::policy::Policy;
use serde_json::{json, Value};

both!(
    events_reach_those_who_may_see_them,
    a_reconnect_resumes_or_resyncs,
    signed_out_means_no_stream,
    arrivals_from_another_replica,
    the_store_finds_arrivals_and_live_sessions,
);

/// How long an event may take (the cross-replica look runs every 2 s).
const WITHIN: Duration = Duration::from_secs(5);

/// An open event stream, read frame by frame.
struct Events {
    res: reqwest::Response,
    buf: String,
}

/// One event: its id and its JSON data.
#[derive(Debug, Clone)]
struct Event {
    id: String,
    data: Value,
}

impl Events {
    async fn open(app: &TestApp, p: &Person, last_event_id: Option<&str>) -> Events {
        let mut req = app
            .http
            .get(app.url("/v1/me/events"))
            .header("Cookie", p.cookie.as_deref().unwrap());
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-store");
        Events {
            res,
            buf: String::new(),
        }
    }

    /// The next frame (event or comment) as text, or `None` when the stream ended or nothing
    /// came within `within`.
    async fn frame(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let frame = self.buf[..at].to_string();
                self.buf.drain(..at + 2);
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next event within `within`, skipping comments and the retry line.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.frame(left).await?;
            let mut id = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                }
            }
            if let Some(data) = data {
                let id = id.unwrap_or_else(|| panic!("an event without id: {frame:?}"));
                assert!(!id.is_empty());
                return Some(Event { id, data });
            }
        }
    }

    /// Events up to the first that `want` accepts (within [`WITHIN`]), which is last.
    async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let Some(event) = self.next(WITHIN).await else {
                panic!("no event {what} within {WITHIN:?}; saw {seen:?}");
            };
            let done = want(&event.data);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn about(id: &str, change: &str) -> impl Fn(&Value) -> bool {
    let (id, change) = (id.to_string(), change.to_string());
    move |d: &Value| d["approval_id"] == id.as_str() && d["change"] == change.as_str()
}

/// A payment that needs two approvals (the "risky" rule adds one).
fn risky_payment() -> Value {
    let mut body = payment("250.00");
    body["risk"] = json!({ "score": 80, "reasons": ["new payee"] });
    body
}

/// A request only the security group may see.
fn secret_export() -> Value {
    json!({
        "action": "secret.export",
        "transaction": { "secret": "db-password", "destination": "vault" },
        "initiator": "alice",
        "audience": "secrets-service"
    })
}

fn mentions(events: &[Event], id: &str) -> bool {
    events.iter().any(|e| e.data["approval_id"] == id)
}

async fn events_reach_those_who_may_see_them(app: TestApp) {
    let ann = app.person("ann", &["finance"], None).await;
    let mut bob = app.person("bob", &["finance"], None).await;
    let olga = app.person("olga", &["security"], None).await;
    let _sam = app.person("sam", &["security"], None).await;
    let mut stream = Events::open(&app, &ann, None).await;
    let mut outsider = Events::open(&app, &olga, None).await;

    // A request arrives that ann may decide.
    let id = app.create(&risky_payment()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = stream.until("of the arrival", about(&id, "arrived")).await;
    let arrival = seen.last().unwrap();
    assert_eq!(arrival.data["status"], "pending");
    // Nothing secret: no transaction values.
    let text = arrival.data.to_string();
    assert!(!text.contains("250") && !text.contains("ACME") && !text.contains("DE89"));

    // Someone else decides it: still pending, one approval in.
    assert_eq!(app.decide(&mut bob, &id, "approve").await.status(), 200);
    let seen = stream
        .until("of bob's decision", about(&id, "decision"))
        .await;
    assert_eq!(seen.last().unwrap().data["status"], "pending");

    // Withdrawn by its service.
    let res = app
        .post_json(&format!("/v1/approvals/{id}/cancel"), &app.key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let seen = stream
        .until("of the cancellation", about(&id, "status"))
        .await;
    assert_eq!(seen.last().unwrap().data["status"], "cancelled");

    // Approved: a status event too.
    let id2 = app.create(&payment("12.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    stream
        .until("of the second arrival", about(&id2, "arrived"))
        .await;
    assert_eq!(app.decide(&mut bob, &id2, "approve").await.status(), 200);
    let seen = stream.until("of the approval", about(&id2, "status")).await;
    assert_eq!(seen.last().unwrap().data["status"], "approved");

    // The outsider heard of none of these: the first event they get is their own group's.
    let secret = app.create(&secret_export()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = outsider
        .until("of the security request", about(&secret, "arrived"))
        .await;
    assert!(
        !mentions(&theirs, &id) && !mentions(&theirs, &id2),
        "an outsider heard of a finance request: {theirs:?}"
    );
    // And ann does not hear of the security request.
    let marker = app.create(&payment("13.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hers = stream
        .until("of the marker", about(&marker, "arrived"))
        .await;
    assert!(!mentions(&hers, &secret), "{hers:?}");

    // The initiator is not told of their own request's arrival.
    let mut own = payment("14.00");
    own["initiator"] = json!("ann");
    let own_id = app.create(&own).await["id"].as_str().unwrap().to_string();
    let marker = app.create(&payment("15.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hers = stream
        .until("of the marker", about(&marker, "arrived"))
        .await;
    assert!(!mentions(&hers, &own_id), "{hers:?}");
}

async fn a_reconnect_resumes_or_resyncs(app: TestApp) {
    let ann = app.person("ann", &["finance"], None).await;
    let bob = app.person("bob", &["finance"], None).await;
    // Bob's stream stays open throughout (so the hub does not go idle).
    let mut bobs = Events::open(&app, &bob, None).await;
    let mut stream = Events::open(&app, &ann, None).await;
    let id = app.create(&payment("20.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let last = stream
        .until("of the arrival", about(&id, "arrived"))
        .await
        .pop()
        .unwrap();
    bobs.until("of the arrival", about(&id, "arrived")).await;
    drop(stream);

    // While ann is away: a request arrives (bob's stream proves it has been sent).
    let missed = app.create(&payment("21.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = bobs
        .until("of the missed arrival", about(&missed, "arrived"))
        .await
        .pop()
        .unwrap();

    // Back with the last id she saw: she gets what she missed, under the same id.
    let mut stream = Events::open(&app, &ann, Some(&last.id)).await;
    let replayed = stream
        .until("replayed", about(&missed, "arrived"))
        .await
        .pop()
        .unwrap();
    assert_eq!(replayed.id, sent.id);
    assert_ne!(replayed.id, last.id);

    // An id this server cannot resume from (another replica's, a restarted one's, garbage):
    // one event that tells the page to re-read everything, with an id to resume from.
    for foreign in ["0123456789abcdef-3", "nonsense"] {
        let mut stream = Events::open(&app, &ann, Some(foreign)).await;
        let first = stream.next(WITHIN).await.expect("a resync event");
        assert_eq!(first.data["change"], "resync", "{first:?}");
        assert!(first.id.contains('-'));
        // That id resumes.
        let next = app.create(&payment("22.00")).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        stream
            .until("after the resync", about(&next, "arrived"))
            .await;
    }
}

async fn signed_out_means_no_stream(app: TestApp) {
    let res = app.http.get(app.url("/v1/me/events")).send().await.unwrap();
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    let res = app
        .http
        .get(app.url("/v1/me/events"))
        .header("Cookie", "countersign-session=not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (401, "unauthorized".into()));

    // Signing out ends an open stream by its next heartbeat, and a new one is refused.
    let ann = app.person("ann", &["finance"], None).await;
    let mut stream = Events::open(&app, &ann, None).await;
    let res = app
        .approver_post("/v1/session/logout", ann.cookie.as_deref(), &json!({}))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .http
        .get(app.url("/v1/me/events"))
        .header("Cookie", ann.cookie.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (401, "unauthorized".into()));
    let limit = countersign::service::live::HEARTBEAT + Duration::from_secs(5);
    let ended = tokio::time::timeout(limit, async {
        while stream.frame(limit).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its session");
}

/// PostgreSQL: a request created on another replica reaches a stream on this one (no notice is
/// sent on create: the hub looks for new requests while a stream is open), and so do decisions
/// made there; an id from one replica makes the other send a resync.
async fn arrivals_from_another_replica(app: TestApp) {
    let Some(other) = second_replica(&app, Policy::builtin().unwrap()).await else {
        return;
    };
    let ann = app.person("ann", &["finance"], None).await;
    let mut bob = app.person("bob", &["finance"], None).await;
    let mut stream = Events::open(&app, &ann, None).await;
    let id = other.create(&risky_payment()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let arrival = stream
        .until(
            "of the arrival made on the other replica",
            about(&id, "arrived"),
        )
        .await
        .pop()
        .unwrap();
    assert_eq!(other.decide(&mut bob, &id, "approve").await.status(), 200);
    stream
        .until(
            "of the decision made on the other replica",
            about(&id, "decision"),
        )
        .await;

    // This replica's id means nothing to the other: it says to re-read.
    let mut elsewhere = Events::open(&other, &ann, Some(&arrival.id)).await;
    let first = elsewhere.next(WITHIN).await.expect("a resync event");
    assert_eq!(first.data["change"], "resync");
}

/// The two store calls the hub and the streams use, on both stores: recent pending requests
/// (newest first, bounded), and a session check that does not keep the session alive.
async fn the_store_finds_arrivals_and_live_sessions(app: TestApp) {
    use countersign::service::sign_in::{session_hash, IDLE_SECS};
    let now = app.clock_now();
    let first: countersign::domain::ApprovalId = app.create(&payment("1.00")).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.clock.advance(Duration::from_secs(5));
    let second: countersign::domain::ApprovalId = app.create(&payment("2.00")).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let found = app.store.pending_since(now - 10, 500).await.unwrap();
    assert_eq!(found, [second, first], "newest first");
    assert_eq!(
        app.store.pending_since(now - 10, 1).await.unwrap(),
        [second]
    );
    assert_eq!(
        app.store.pending_since(now + 1, 500).await.unwrap(),
        [second]
    );
    let res = app
        .post_json(
            &format!("/v1/approvals/{first}/cancel"),
            &app.key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.store.pending_since(now - 10, 500).await.unwrap(),
        [second],
        "pending only"
    );

    let ann = app.person("ann", &["finance"], None).await;
    let value = ann.cookie.as_deref().unwrap().split_once('=').unwrap().1;
    let hash = session_hash(value);
    let signed_in = app.clock_now();
    let alive = app
        .store
        .session_alive(&hash, signed_in + IDLE_SECS - 60, IDLE_SECS)
        .await
        .unwrap();
    assert_eq!(alive.map(|u| u.username), Some("ann".to_string()));
    // That check did not count as use: the session idles out from its last real use.
    let later = app
        .store
        .session_alive(&hash, signed_in + IDLE_SECS + 1, IDLE_SECS)
        .await
        .unwrap();
    assert!(later.is_none());
}
