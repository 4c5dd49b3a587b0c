//! Delivering the outbox: signed webhooks to the client that created a request (Standard
//! Webhooks v1), and announcements of new requests to approvers by mail and chat. Messages are
//! written with the change they tell of (`store::OutboxStore`); here every server takes due
//! ones a few at a time under a lease (so one server at a time attempts a message), attempts
//! them, and records how each went: at least once, retried on the schedule, given up on after
//! the last retry or when the endpoint answers 410 Gone.

pub mod announce;
pub mod endpoints;
pub mod mail;
pub mod schedule;
pub mod signature;
pub mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use tokio::sync::Semaphore;

use super::Services;
use crate::clock::{rfc3339, UnixTime};
use crate::domain::{Actor, AttemptOutcome, Attempted, Channel, Delivery, EventKind, NewEvent};
use crate::signing::Sealer;

/// How long a server holds a message it attempts: past every timeout of an attempt, so that
/// another server takes it over only from one that died.
const LEASE_SECS: i64 = 45;
/// Attempts in flight at once, per server.
const IN_FLIGHT: usize = 32;
/// How often a server looks for due messages when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// How long a change waits for others before the courier looks.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// What the server sends out with, from the configuration.
pub struct Reach {
    pub mail: Option<mail::Mailer>,
    /// Group → Slack-compatible incoming-webhook URL.
    pub chat: BTreeMap<String, String>,
    pub allow_private: bool,
    http: reqwest::Client,
    /// Opens the webhook secrets (sealed by the master key).
    sealer: Sealer,
}

impl Reach {
    pub fn new(config: &crate::config::Config, sealer: Sealer) -> anyhow::Result<Reach> {
        let mail = match (&config.smtp_url, &config.smtp_from) {
            (Some(url), Some(from)) => Some(mail::Mailer::new(url, from)?),
            _ => None,
        };
        Ok(Reach {
            mail,
            chat: config.chat_webhooks.clone(),
            allow_private: config.webhook_allow_private,
            http: target::client(config.webhook_allow_private)?,
            sealer,
        })
    }

    /// Whether new requests are announced (mail or chat is configured).
    pub fn announces(&self) -> bool {
        self.mail.is_some() || !self.chat.is_empty()
    }

    /// The label a client's webhook secret is sealed under: a sealed secret moved to another
    /// client does not open.
    fn seal_label(client: crate::domain::ClientId) -> String {
        format!("webhook:{client}")
    }
}

/// Delivers the outbox until the process ends.
pub async fn run(svc: Arc<Services>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut changes = svc.store.subscribe();
    loop {
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let now = svc.clock.now();
            let limit = i64::try_from(free).unwrap_or(1);
            match svc
                .store
                .claim_deliveries(now, now + LEASE_SECS, limit)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the outbox");
                    Vec::new()
                }
            }
        };
        let full = !claimed.is_empty() && claimed.len() == free;
        for delivery in claimed {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                attempt(&svc, delivery).await;
                drop(slot);
            });
        }
        if full {
            // More may be due: go on once a slot frees.
            let _ = slots.acquire().await;
            continue;
        }
        // Changes that write webhooks wake the courier at once; announcements and other
        // servers' messages are found by the next look.
        tokio::select! {
            changed = changes.recv() => {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                if matches!(changed, Err(RecvError::Closed)) {
                    tokio::time::sleep(POLL).await;
                }
                // A burst of changes (a busy server decides hundreds a second) is one look.
                tokio::time::sleep(DEBOUNCE).await;
                while !matches!(changes.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One attempt on a message held until `delivery.lease_until`.
#[tracing::instrument(skip_all, fields(id = %delivery.id, channel = delivery.channel.as_str(), event = %delivery.event))]
async fn attempt(svc: &Services, delivery: Delivery) {
    let Some(lease) = delivery.lease_until else {
        return;
    };
    let now = svc.clock.now();
    if delivery.channel == Channel::Announce {
        let done = match announce::expand(svc, &delivery).await {
            Ok(messages) => svc
                .store
                .expand_announcement(&delivery.id, lease, &messages, now)
                .await
                .map_err(super::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            // Left to the lease's end: the next server to take it tries again.
            tracing::warn!(error = %e, "announcing a request");
        }
        return;
    }
    let attempted = match delivery.channel {
        Channel::Webhook => webhook(svc, &delivery, now).await,
        Channel::Email => email(svc, &delivery, now).await,
        _ => chat(svc, &delivery, now).await,
    };
    crate::metrics::Metrics::count(
        &svc.metrics.deliveries,
        match attempted.outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryAt(_) => "retry",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::EndpointGone => "endpoint_gone",
        },
    );
    match &attempted.outcome {
        AttemptOutcome::Delivered => tracing::info!(code = attempted.code, "delivered"),
        outcome => tracing::warn!(
            code = attempted.code,
            error = attempted.error.as_deref(),
            ?outcome,
            "not delivered"
        ),
    }
    // A client's endpoint that is gone is disabled (a chat message has no client).
    let gone = delivery
        .client_id
        .filter(|_| attempted.outcome == AttemptOutcome::EndpointGone)
        .map(|client| {
            NewEvent::new(
                EventKind::WebhookDisabled,
                Actor::System,
                json!({ "client_id": client.to_string(), "why": "the endpoint answered 410 Gone" }),
            )
        });
    if let Err(e) = svc
        .store
        .finish_delivery(&delivery.id, lease, &attempted, gone, svc.clock.now())
        .await
    {
        tracing::warn!(error = %e, "recording a delivery attempt");
    }
}

/// When a message is tried again after the attempt that just failed.
fn next_try(delivery: &Delivery, now: UnixTime, retry_after: Option<i64>) -> AttemptOutcome {
    schedule::after_failure(delivery.attempts + 1, now, retry_after)
}

/// What an attempt that did not reach its receiver leads to.
fn failed(delivery: &Delivery, payload: String, now: UnixTime, error: String) -> Attempted {
    Attempted {
        payload,
        code: None,
        error: Some(error),
        outcome: next_try(delivery, now, None),
    }
}

fn given_up(payload: String, error: &str) -> Attempted {
    Attempted {
        payload,
        code: None,
        error: Some(error.to_owned()),
        outcome: AttemptOutcome::Failed,
    }
}

/// The body of a webhook: the event and the request as `GET /v1/approvals/{id}` returns it
/// when the message is first sent (kept for every retry).
async fn webhook_body(svc: &Services, delivery: &Delivery) -> super::Result<String> {
    if let Some(body) = &delivery.payload {
        return Ok(body.clone());
    }
    let Some(snap) = svc.store.snapshot(delivery.approval_id).await? else {
        return Err(crate::domain::Refusal::NotFound.into());
    };
    let view = super::views::ServiceView::new(
        &snap.request,
        &snap.votes,
        snap.receipt.as_deref(),
        Some(&svc.origin),
        None,
    );
    Ok(
        json!({ "type": delivery.event, "timestamp": rfc3339(delivery.at), "data": view })
            .to_string(),
    )
}

async fn webhook(svc: &Services, delivery: &Delivery, now: UnixTime) -> Attempted {
    let body = match webhook_body(svc, delivery).await {
        Ok(body) => body,
        Err(e) => {
            return failed(
                delivery,
                String::new(),
                now,
                format!("reading the request: {e}"),
            )
        }
    };
    let endpoint = match delivery.client_id {
        Some(client) => svc.store.webhook(client).await,
        None => Ok(None),
    };
    let endpoint = match endpoint {
        Ok(Some(w)) if w.disabled_at.is_none() => w,
        Ok(_) => return given_up(body, "the client has no webhook endpoint now"),
        Err(e) => return failed(delivery, body, now, format!("reading the endpoint: {e}")),
    };
    let label = Reach::seal_label(endpoint.client_id);
    let keys: Vec<Vec<u8>> = endpoint
        .secrets
        .iter()
        .filter(|s| s.until.is_none_or(|until| until > now))
        .filter_map(|s| URL_SAFE_NO_PAD.decode(&s.sealed).ok())
        .filter_map(|sealed| svc.reach.sealer.open(&label, &sealed).ok())
        .collect();
    if keys.is_empty() {
        return given_up(
            body,
            "the endpoint's secret cannot be opened (another master key?)",
        );
    }
    if let Err(e) = target::check(&endpoint.url, svc.reach.allow_private) {
        return given_up(body, &format!("the endpoint is refused: {e}"));
    }
    // The receiver holds this against its own clock (the standard's replay window): the wall
    // clock's time, whatever clock schedules the outbox.
    let timestamp = crate::clock::Clock::now(&crate::clock::SystemClock);
    let signature = signature::header(
        keys.iter().map(Vec::as_slice),
        &delivery.id,
        timestamp,
        &body,
    );
    let sent = svc
        .reach
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.clone())
        .send()
        .await;
    answered(delivery, body, now, sent)
}

/// How an HTTP answer ends an attempt: 2xx delivered, 410 gone, anything else retried (after
/// `Retry-After`, if the receiver asked for more time).
fn answered(
    delivery: &Delivery,
    payload: String,
    now: UnixTime,
    sent: reqwest::Result<reqwest::Response>,
) -> Attempted {
    let res = match sent {
        Ok(res) => res,
        // Without the URL: it may carry a token in its path.
        Err(e) => return failed(delivery, payload, now, describe(&e)),
    };
    let status = res.status();
    let code = Some(i64::from(status.as_u16()));
    if status.is_success() {
        return Attempted {
            payload,
            code,
            error: None,
            outcome: AttemptOutcome::Delivered,
        };
    }
    if status == reqwest::StatusCode::GONE {
        return Attempted {
            payload,
            code,
            error: Some("the endpoint answered 410 Gone: disabled".into()),
            outcome: AttemptOutcome::EndpointGone,
        };
    }
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| schedule::retry_after(v, now));
    Attempted {
        payload,
        code,
        error: Some(format!("the endpoint answered {status}")),
        outcome: next_try(delivery, now, retry_after),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer within 15 seconds"
    } else if e.is_connect() {
        "could not connect (or the address may not be sent to)"
    } else if e.is_redirect() {
        "redirects are not followed"
    } else {
        "the request failed"
    };
    what.to_owned()
}

async fn email(svc: &Services, delivery: &Delivery, now: UnixTime) -> Attempted {
    let payload = delivery.payload.clone().unwrap_or_default();
    let (Some(mailer), Some(to)) = (&svc.reach.mail, &delivery.target) else {
        return given_up(payload, "mail is not configured");
    };
    let parsed: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
    let field = |k: &str| {
        parsed
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match mailer.send(to, &field("subject"), &field("text")).await {
        mail::Sent::Accepted => Attempted {
            payload,
            code: None,
            error: None,
            outcome: AttemptOutcome::Delivered,
        },
        mail::Sent::Refused {
            permanent: true,
            why,
        } => given_up(payload, &why),
        mail::Sent::Refused { why, .. } => failed(delivery, payload, now, why),
    }
}

async fn chat(svc: &Services, delivery: &Delivery, now: UnixTime) -> Attempted {
    let payload = delivery.payload.clone().unwrap_or_default();
    let Some(url) = delivery.target.as_ref().and_then(|g| svc.reach.chat.get(g)) else {
        return given_up(payload, "the group has no chat webhook now");
    };
    if let Err(e) = target::check(url, svc.reach.allow_private) {
        return given_up(payload, &format!("the chat webhook is refused: {e}"));
    }
    let sent = svc
        .reach
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(payload.clone())
        .send()
        .await;
    // A chat webhook that is gone (410) ends this message only: it has no client endpoint to
    // disable (the configuration names the URL), which the store knows by the message's lack
    // of a client.
    answered(delivery, payload, now, sent)
}
