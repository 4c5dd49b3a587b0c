//! A client's webhook endpoint (set by the operator, later the admin console) and its delivery
//! log (read and retried by the client itself).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::super::{refuse, Error, Result, Services};
use super::{signature, target, Reach};
use crate::clock::UnixTime;
use crate::domain::delivery::{is_webhook_event, WEBHOOK_EVENTS};
use crate::domain::{
    Actor, Client, Delivery, DeliveryStatus, EventKind, NewEvent, Refusal, SealedSecret, Webhook,
};
use crate::signing::Sealer;
use crate::store::Store;

/// How long a replaced secret keeps signing beside the new one, so receivers can switch.
pub const ROTATION_SECS: i64 = 24 * 3600;

/// An endpoint set: its URL and its secret, shown this once.
pub struct NewEndpoint {
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
}

/// Sets `client`'s endpoint. A client that had one gets a new secret and the old one keeps
/// signing for [`ROTATION_SECS`]; an endpoint disabled by a 410 is enabled again. `event`
/// completes the change's event (`webhook_set`) with what it needs of the new secret.
#[allow(clippy::too_many_arguments)]
pub async fn set(
    store: &dyn Store,
    sealer: &Sealer,
    client: &Client,
    url: &str,
    events: &[String],
    allow_private: bool,
    event: impl FnOnce(NewEvent, &str) -> anyhow::Result<NewEvent>,
    actor: Actor,
    now: UnixTime,
) -> anyhow::Result<NewEndpoint> {
    target::check(url, allow_private).map_err(|e| anyhow::anyhow!("webhook URL {url:?}: {e}"))?;
    let mut chosen: Vec<String> = Vec::new();
    for e in events {
        if !is_webhook_event(e) {
            let known: Vec<&str> = WEBHOOK_EVENTS.iter().map(|(n, _)| *n).collect();
            anyhow::bail!("unknown webhook event {e:?} (known: {})", known.join(", "));
        }
        if !chosen.contains(e) {
            chosen.push(e.clone());
        }
    }
    if chosen.is_empty() {
        chosen = WEBHOOK_EVENTS
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
    }
    let (secret, bytes) = signature::new_secret();
    let sealed = sealer
        .seal(&Reach::seal_label(client.id), &bytes)
        .map_err(|e| anyhow::anyhow!("sealing the webhook secret: {e}"))?;
    let mut secrets = vec![SealedSecret {
        sealed: URL_SAFE_NO_PAD.encode(sealed),
        until: None,
    }];
    if let Some(old) = store.webhook(client.id).await? {
        secrets.extend(
            old.secrets
                .into_iter()
                .filter(|s| s.until.is_none_or(|u| u > now))
                .map(|s| SealedSecret {
                    until: Some(
                        s.until
                            .map_or(now + ROTATION_SECS, |u| u.min(now + ROTATION_SECS)),
                    ),
                    ..s
                })
                .take(2),
        );
    }
    let webhook = Webhook {
        client_id: client.id,
        url: url.to_owned(),
        events: chosen.clone(),
        secrets,
        created_at: now,
        disabled_at: None,
        disabled_why: None,
    };
    // The URL's path may hold a token: the audit records where, not the whole URL.
    let event = event(
        NewEvent::new(
            EventKind::WebhookSet,
            actor,
            json!({ "client": client.name, "host": host_of(url), "events": chosen }),
        ),
        &secret,
    )?;
    if !store.set_webhook(&webhook, event, now).await? {
        anyhow::bail!("client {} is revoked", client.name);
    }
    Ok(NewEndpoint {
        url: url.to_owned(),
        secret,
        events: chosen,
    })
}

/// Removes `client`'s endpoint; false when it had none.
pub async fn remove(
    store: &dyn Store,
    client: &Client,
    actor: Actor,
    now: UnixTime,
) -> anyhow::Result<bool> {
    let event = NewEvent::new(
        EventKind::WebhookRemoved,
        actor,
        json!({ "client": client.name }),
    );
    Ok(store.remove_webhook(client.id, event, now).await?)
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The most a page of the delivery log holds.
pub const MAX_LIST: i64 = 200;

/// `GET /v1/webhooks/deliveries[?status=…]`: the client's messages, newest first.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn deliveries(
    svc: &Services,
    client: &Client,
    status: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<Delivery>> {
    let status = match status {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            Error::from(Refusal::InvalidRequest)
                .detail("status is one of failed, pending, delivered")
        })?),
    };
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(
            Error::from(Refusal::InvalidRequest).detail(format!("limit is 1 to {MAX_LIST}"))
        );
    }
    Ok(svc.store.deliveries(client.id, status, limit).await?)
}

/// `POST /v1/webhooks/deliveries/{id}/retry`: sends a message again, due now.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn retry(svc: &Services, client: &Client, id: &str) -> Result<Delivery> {
    match svc
        .store
        .retry_delivery(client.id, id, svc.clock.now())
        .await?
    {
        Some(d) => Ok(d),
        None => refuse(Refusal::NotFound),
    }
}
