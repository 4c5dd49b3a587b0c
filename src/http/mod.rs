//! The HTTP surface: thin handlers that extract, call a use case (`crate::service`) and render
//! JSON (`api`) or HTML (`pages`); who is calling is settled first (`guard`); and what every
//! response shares: headers, logging without secrets, metrics.

mod api;
mod extract;
mod guard;
mod log;
mod pages;
pub mod problem;

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpResponse};

use crate::config::Config;
use crate::domain::Refusal;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::service::Services;
use problem::ApiError;

pub use pages::CSP;

pub struct AppState {
    pub svc: Arc<Services>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
}

/// Token buckets that turn floods into 429s.
pub struct Limits {
    /// Requests per API client.
    pub client: RateLimiter,
    /// Ceremony starts per signed-in approver, per address before sign-in (sign-in options,
    /// refused enrolment links), and per invitation (valid enrolment links): an invalid token
    /// never spends a real invitee's budget.
    pub ceremony: RateLimiter,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            client: RateLimiter::per_minute(config.client_requests_per_minute),
            ceremony: RateLimiter::per_minute(config.ceremonies_per_minute),
        }
    }
}

impl AppState {
    /// 429 when `key` has started too many ceremonies lately.
    pub fn ceremony_allowed(&self, key: &str) -> Result<(), ApiError> {
        if self.limits.ceremony.allow(key) {
            Ok(())
        } else {
            tracing::warn!(target: "countersign::security", key, "ceremony starts rate-limited");
            self.metrics
                .rate_limited
                .get_or_create(&crate::metrics::Kind { kind: "ceremony" })
                .inc();
            Err(Refusal::RateLimited.into())
        }
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.config.is_https() {
            "__Host-countersign-session"
        } else {
            "countersign-session"
        }
    }
}

/// Rate-limit key for calls made before sign-in: the peer address.
pub fn peer_key(req: &actix_web::HttpRequest) -> String {
    format!(
        "addr:{}",
        req.peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    )
}

/// Registers every route; used by the server and nowhere else, so tests exercise the real app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let client = || from_fn(guard::client);
    let approver = || from_fn(guard::approver);
    let origin = || from_fn(guard::origin);
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::from(Refusal::InvalidRequest)
            .detail(format!("invalid query: {e}"))
            .into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|_, _| ApiError::from(Refusal::NotFound).into()),
    )
    .route("/healthz", web::get().to(api::public::healthz))
    .route("/readyz", web::get().to(api::public::readyz))
    .route("/metrics", web::get().to(api::public::metrics))
    .route("/.well-known/jwks.json", web::get().to(api::receipts::jwks))
    .service(
        // actix tries routes in order, matching a pattern with `{…}` by regular expression:
        // the decision path and the service calls come first.
        web::scope("/v1")
            .service(
                web::resource("/approvals/{id}/decision/finish")
                    .wrap(approver())
                    .route(web::post().to(api::decisions::finish)),
            )
            .service(
                web::resource("/approvals/{id}/decision/options")
                    .wrap(approver())
                    .route(web::post().to(api::decisions::options)),
            )
            .service(
                web::resource("/approvals")
                    .wrap(client())
                    .route(web::post().to(api::approvals::create)),
            )
            .service(
                web::resource("/approvals/{id}")
                    .wrap(client())
                    .route(web::get().to(api::approvals::get)),
            )
            .service(
                web::resource("/approvals/{id}/cancel")
                    .wrap(client())
                    .route(web::post().to(api::approvals::cancel)),
            )
            .service(
                web::resource("/approvals/{id}/revoke")
                    .wrap(client())
                    .route(web::post().to(api::approvals::revoke)),
            )
            .service(
                web::resource("/audit")
                    .wrap(client())
                    .route(web::get().to(api::audit::export)),
            )
            .service(
                web::resource("/webhooks/deliveries")
                    .wrap(client())
                    .route(web::get().to(api::webhooks::list)),
            )
            .service(
                web::resource("/webhooks/deliveries/{id}/retry")
                    .wrap(client())
                    .route(web::post().to(api::webhooks::retry)),
            )
            .service(
                web::resource("/receipts/redeem")
                    .wrap(client())
                    .route(web::post().to(api::receipts::redeem)),
            )
            .service(
                web::resource("/enroll/{token}/options")
                    .wrap(origin())
                    .route(web::post().to(api::enroll::options)),
            )
            .service(
                web::resource("/enroll/{token}/finish")
                    .wrap(origin())
                    .route(web::post().to(api::enroll::finish)),
            )
            .service(
                web::resource("/session/options")
                    .wrap(origin())
                    .route(web::post().to(api::session::options)),
            )
            .service(
                web::resource("/session/finish")
                    .wrap(origin())
                    .route(web::post().to(api::session::finish)),
            )
            .service(
                web::resource("/session/logout")
                    .wrap(origin())
                    .route(web::post().to(api::session::logout)),
            )
            .service(
                web::resource("/me/approvals")
                    .wrap(approver())
                    .route(web::get().to(api::me::approvals)),
            )
            .service(
                web::resource("/admin/changes")
                    .wrap(approver())
                    .route(web::post().to(api::admin::propose)),
            )
            .service(
                web::resource("/admin/changes/{id}")
                    .wrap(approver())
                    .route(web::get().to(api::admin::read)),
            )
            .service(
                web::resource("/me/events")
                    .wrap(approver())
                    .route(web::get().to(api::events::events)),
            ),
    )
    .configure(pages::configure)
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::from(Refusal::NotFound))
    }));
}

pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    let arrivals = state.svc.store.arrivals();
    App::new()
        .app_data(state)
        .configure(configure)
        .wrap(
            DefaultHeaders::new()
                .add((header::CACHE_CONTROL, "no-store"))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::REFERRER_POLICY, "no-referrer")),
        )
        .wrap_fn(move |req, srv| {
            let started = std::time::Instant::now();
            let method = req.method().clone();
            // Paths and queries can carry secrets (enrolment tokens): logged redacted.
            let target = log::redacted(req.path(), req.query_string());
            let metrics = metrics.clone();
            // A call that changes something will write: counted until it does, so that the
            // store's batch waits for it instead of guessing.
            let writing = (method != actix_web::http::Method::GET)
                .then(|| arrivals.clone())
                .flatten();
            let fut = srv.call(req);
            async move {
                let res = match writing {
                    Some(arrivals) => arrivals.expecting(fut).await?,
                    None => fut.await?,
                };
                let status = res.status().as_u16();
                metrics.observe(
                    res.request().match_pattern().as_deref(),
                    status,
                    started.elapsed().as_secs_f64(),
                );
                tracing::info!(
                    target: "countersign::http",
                    %method,
                    target,
                    status,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "request"
                );
                Ok(res)
            }
        })
}
