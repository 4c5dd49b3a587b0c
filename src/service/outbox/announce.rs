//! Telling approvers of a new request: one mail to each person who may decide it and has an
//! address, one chat message to each of its groups with a chat webhook. Each says what the page
//! says first (the title, the display fields, the fingerprint, who asks, until when) and links
//! to the page; none can decide anything: a decision needs the passkey on the page.

use std::collections::BTreeSet;

use serde_json::json;

use super::super::{decide::who_may_decide, Result, Services};
use crate::clock::rfc3339;
use crate::domain::text::reveal;
use crate::domain::{Channel, Delivery, NewDelivery, Request, Status};

/// The messages an announcement becomes (none once the request is no longer pending).
pub async fn expand(svc: &Services, announcement: &Delivery) -> Result<Vec<NewDelivery>> {
    let Some(request) = svc.store.request(announcement.approval_id).await? else {
        return Ok(Vec::new());
    };
    if request.status_at(svc.clock.now()) != Status::Pending {
        return Ok(Vec::new());
    }
    let text = summary(svc, &request);
    let subject = format!("Approval requested: {}", title(svc, &request));
    let message = |channel, target: String, payload: String| NewDelivery {
        channel,
        target: Some(target),
        event: announcement.event.clone(),
        approval_id: request.id,
        at: announcement.at,
        payload: Some(payload),
    };
    let mut out = Vec::new();
    if svc.reach.mail.is_some() {
        let addresses: BTreeSet<String> = who_may_decide(svc, &request)
            .await?
            .into_iter()
            .filter_map(|u| u.email)
            .collect();
        for address in addresses {
            let body = json!({ "subject": subject, "text": text }).to_string();
            out.push(message(Channel::Email, address, body));
        }
    }
    for group in request.required.groups() {
        if svc.reach.chat.contains_key(&group) {
            let body = json!({ "text": slack_escape(&format!("{subject}\n{text}")) }).to_string();
            out.push(message(Channel::Chat, group, body));
        }
    }
    Ok(out)
}

fn title<'a>(svc: &'a Services, request: &'a Request) -> &'a str {
    svc.policy
        .action(&request.action)
        .map_or(request.action.as_str(), |a| a.title.as_str())
}

/// The plain-text summary: every value with its invisible characters made visible, as on the
/// page, and no redacted field at all.
fn summary(svc: &Services, request: &Request) -> String {
    let mut lines = vec![title(svc, request).to_owned(), String::new()];
    let action = svc.policy.action(&request.action);
    if let (Some(action), Ok(tx)) = (action, request.transaction()) {
        for (field, value) in action.display.iter().zip(action.display_values(&tx)) {
            if field.redact || !value.present {
                continue;
            }
            let currency = value
                .currency
                .as_deref()
                .map(|c| format!(" {}", reveal(c).0))
                .unwrap_or_default();
            lines.push(format!(
                "{}: {}{currency}",
                reveal(&value.label).0,
                reveal(&value.formatted).0
            ));
        }
    }
    lines.push(format!(
        "Requested by: {}",
        reveal(&request.initiator.label()).0
    ));
    lines.push(format!("Fingerprint: {}", request.tx_hash.fingerprint()));
    lines.push(format!("Decide before: {}", rfc3339(request.expires_at)));
    lines.push(String::new());
    lines.push("Check the whole transaction and decide with your passkey on its page:".into());
    lines.push(format!("{}/approvals/{}", svc.origin, request.id));
    lines.push(String::new());
    lines.push("This message cannot approve or reject anything.".into());
    lines.join("\n")
}

/// Slack reads `<…>` as links and mentions and `&` as an entity: the three it asks escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_cannot_mention_or_link() {
        assert_eq!(
            slack_escape("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
    }
}
