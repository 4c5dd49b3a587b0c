//! The console's pages of who and what may act: people, API clients, signing keys.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::super::AppState;
use super::super::view::{Shell, When};
use super::{admin, render, shell, when, AdminShell};
use crate::domain::DeliveryStatus;
use crate::service::console::read;

// People.

#[derive(Template)]
#[template(path = "admin/people.html")]
struct PeoplePage {
    shell: Shell,
    tab: &'static str,
    people: Vec<PersonView>,
    admin_group: String,
}

struct PersonView {
    username: String,
    name: String,
    groups: String,
    email: String,
    created: When,
    disabled: Option<When>,
    passkeys: Vec<PasskeyView>,
}

struct PasskeyView {
    id: String,
    label: String,
    created: When,
    last_used: Option<When>,
    state: &'static str,
}

pub async fn people(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let page = async {
        let list = read::people(&state.svc, &user).await?;
        let AdminShell { shell, tab } = shell(&user, "people", "People");
        Ok(PeoplePage {
            shell,
            tab,
            admin_group: state.svc.admin_group.clone(),
            people: list
                .into_iter()
                .map(|(p, keys)| PersonView {
                    name: crate::domain::text::reveal(&p.display_name).0,
                    username: p.username,
                    groups: p.groups.join(", "),
                    email: p.email.unwrap_or_default(),
                    created: When::at(p.created_at),
                    disabled: when(p.disabled_at),
                    passkeys: keys
                        .into_iter()
                        .map(|k| PasskeyView {
                            state: match (k.revoked_at, k.flagged_at) {
                                (Some(_), _) => "revoked",
                                (None, Some(_)) => "flagged",
                                (None, None) => "active",
                            },
                            id: k.id.to_string(),
                            label: crate::domain::text::reveal(&k.label).0,
                            created: When::at(k.created_at),
                            last_used: when(k.last_used_at),
                        })
                        .collect(),
                })
                .collect(),
        })
    }
    .await;
    render(page, &user)
}

// Clients.

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    shell: Shell,
    tab: &'static str,
    clients: Vec<ClientView>,
    events: Vec<&'static str>,
}

struct ClientView {
    name: String,
    builtin: bool,
    create: String,
    redeem: String,
    audit: bool,
    created: When,
    revoked: Option<When>,
    webhook: Option<WebhookView>,
}

struct WebhookView {
    url: String,
    events: String,
    disabled: Option<String>,
    deliveries: Vec<DeliveryView>,
}

struct DeliveryView {
    event: String,
    approval_id: String,
    at: When,
    status: &'static str,
    attempts: i64,
    last: String,
}

pub async fn clients(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin/clients").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let page = async {
        let list = read::clients(&state.svc, &user).await?;
        let AdminShell { shell, tab } = shell(&user, "clients", "API clients");
        Ok(ClientsPage {
            shell,
            tab,
            events: crate::domain::delivery::WEBHOOK_EVENTS
                .iter()
                .map(|(e, _)| *e)
                .collect(),
            clients: list
                .into_iter()
                .map(|row| ClientView {
                    builtin: row.client.name == crate::domain::RESERVED_CLIENT,
                    create: row.client.rights.create.join(", "),
                    redeem: row.client.rights.redeem.join(", "),
                    audit: row.client.rights.audit,
                    created: When::at(row.client.created_at),
                    revoked: when(row.client.revoked_at),
                    name: row.client.name,
                    webhook: row.webhook.map(|w| WebhookView {
                        url: w.url,
                        events: w.events.join(", "),
                        disabled: w.disabled_why,
                        deliveries: row
                            .deliveries
                            .into_iter()
                            .map(|d| DeliveryView {
                                event: d.event,
                                approval_id: d.approval_id.to_string(),
                                at: When::at(d.at),
                                status: match d.status {
                                    DeliveryStatus::Pending => "pending",
                                    DeliveryStatus::Delivered => "delivered",
                                    DeliveryStatus::Failed => "failed",
                                },
                                attempts: d.attempts,
                                last: match (d.last_code, d.last_error) {
                                    (Some(code), _) => format!("HTTP {code}"),
                                    (None, Some(e)) => e,
                                    (None, None) => String::new(),
                                },
                            })
                            .collect(),
                    }),
                })
                .collect(),
        })
    }
    .await;
    render(page, &user)
}

// Signing keys.

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    shell: Shell,
    tab: &'static str,
    keys: Vec<KeyView>,
}

struct KeyView {
    kid: String,
    created: When,
    retired: Option<When>,
    signing: bool,
}

pub async fn keys(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin/keys").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let page = async {
        let list = read::keys(&state.svc, &user).await?;
        // The newest key that is not retired signs new receipts.
        let signing = list
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .map(|k| k.kid.clone());
        let AdminShell { shell, tab } = shell(&user, "keys", "Signing keys");
        Ok(KeysPage {
            shell,
            tab,
            keys: list
                .into_iter()
                .rev()
                .map(|k| KeyView {
                    signing: signing.as_ref() == Some(&k.kid),
                    created: When::at(k.created_at),
                    retired: when(k.retired_at),
                    kid: k.kid,
                })
                .collect(),
        })
    }
    .await;
    render(page, &user)
}
