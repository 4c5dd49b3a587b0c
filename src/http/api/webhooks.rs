//! The service API for a client's webhook messages: the delivery log and a manual retry.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::extract::{Empty, EmptyBody, ServiceClient};
use super::super::problem::ApiError;
use super::super::AppState;
use crate::clock::rfc3339;
use crate::domain::{Delivery, DeliveryStatus, Refusal};
use crate::service::outbox::endpoints;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only messages in this state.
    #[param(pattern = "^(failed|pending|delivered)$")]
    status: Option<String>,
    /// Messages a page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A message as its client sees it.
#[derive(Serialize, ToSchema)]
struct DeliveryView<'a> {
    id: &'a str,
    event: &'a str,
    approval_id: String,
    #[schema(pattern = "^(failed|pending|delivered)$")]
    status: &'static str,
    attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
}

impl<'a> DeliveryView<'a> {
    fn of(d: &'a Delivery) -> DeliveryView<'a> {
        DeliveryView {
            id: &d.id,
            event: &d.event,
            approval_id: d.approval_id.to_string(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_status: d.last_code,
            last_error: d.last_error.as_deref(),
            next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_at)),
            created_at: rfc3339(d.at),
            delivered_at: d.delivered_at.map(rfc3339),
        }
    }
}

/// A page of the client's webhook messages.
#[derive(Serialize, ToSchema)]
struct Deliveries<'a> {
    deliveries: Vec<DeliveryView<'a>>,
}

/// The client's webhook messages, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    operation_id = "listDeliveries",
    tag = "service",
    params(ListQuery),
    responses((
        status = 200,
        description = "The messages",
        body = Deliveries,
        links(("retryDelivery" = (
            operation_id = "retryDelivery",
            parameters(("id" = "$response.body#/deliveries/0/id"))
        ))),
    )),
)]
#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn list(
    state: web::Data<AppState>,
    client: ServiceClient,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let list =
        endpoints::deliveries(&state.svc, &client.0, query.status.as_deref(), query.limit).await?;
    let views: Vec<DeliveryView<'_>> = list.iter().map(DeliveryView::of).collect();
    Ok(HttpResponse::Ok().json(Deliveries { deliveries: views }))
}

/// Sends a message again, due now.
#[utoipa::path(
    post,
    path = "/v1/webhooks/deliveries/{id}/retry",
    operation_id = "retryDelivery",
    tag = "service",
    params(("id" = String, Path, description = "The message's id")),
    request_body(content = Empty, description = "Nothing, or `{}`"),
    responses((status = 202, description = "The message, due now", body = DeliveryView)),
)]
#[tracing::instrument(skip_all, fields(client = %client.0.name, delivery = %path))]
pub async fn retry(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    if path.len() > 64 {
        return Err(Refusal::NotFound.into());
    }
    let delivery = endpoints::retry(&state.svc, &client.0, &path).await?;
    Ok(HttpResponse::Accepted().json(DeliveryView::of(&delivery)))
}
