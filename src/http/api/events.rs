//! `GET /v1/me/events`: the signed-in person's live events as a `text/event-stream`
//! (`crate::service::live` says what is sent, when, and how ids let a reconnect resume).

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, StreamExt};

use super::super::extract::Approver;
use super::super::guard::presented_session;
use super::super::problem::ApiError;
use super::super::AppState;
use crate::domain::Refusal;
use crate::service::live::{Frame, Listener};

/// How long a browser waits before it reconnects, in milliseconds.
const RETRY_MS: u32 = 3000;

/// The stream: a `retry:` line, then each event the person may see (`id:` and one `data:`
/// line of JSON), a `: keepalive` comment every heartbeat, and the end when the session ends.
/// The session cookie is the guard's business and never logged.
#[utoipa::path(
    get,
    path = "/v1/me/events",
    operation_id = "myEvents",
    tag = "approver",
    params((
        "Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event received, to resume after it"
    )),
    responses((
        status = 200,
        description = "A stream of events (`id:` and one `data:` line of JSON each) until the session ends",
        content_type = "text/event-stream",
        body = String
    )),
)]
#[tracing::instrument(skip_all, fields(user = %approver.0.username))]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    approver: Approver,
) -> Result<HttpResponse, ApiError> {
    let session = presented_session(&req, &state).ok_or_else(|| {
        ApiError::from(Refusal::Unauthorized).detail("sign in with your passkey first")
    })?;
    let last_event_id = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok());
    let listener = Listener::open(&state.svc, approver.0, session, last_event_id);
    let opening =
        stream::once(async { Ok::<_, Infallible>(Bytes::from(format!("retry: {RETRY_MS}\n\n"))) });
    let frames = stream::unfold(listener, |mut listener| async move {
        let frame = listener.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(text(&frame))), listener))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Proxies that buffer responses (nginx) pass this one on as it comes.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(opening.chain(frames)))
}

/// A frame as the event-stream format writes it. Ids and data are ours (no line breaks).
fn text(frame: &Frame) -> String {
    match frame {
        Frame::Event { id, data } => format!("id: {id}\ndata: {data}\n\n"),
        Frame::Keepalive => ": keepalive\n\n".to_owned(),
    }
}
