//! The HTTP surface: routes, shared state, and cross-cutting headers, logging and metrics.

mod approvals;
mod audit;
mod decide;
mod enroll;
mod extract;
mod pages;
pub mod problem;
mod public;
mod receipts;
mod session;
mod views;

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpResponse};

use crate::clock::Clock;
use crate::config::Config;
use crate::master_key::MasterKey;
use crate::metrics::Metrics;
use crate::passkeys::RelyingParty;
use crate::policy::Policy;
use crate::store::Store;
use problem::ApiError;

pub struct AppState {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub rp: Arc<RelyingParty>,
    pub master_key: Arc<MasterKey>,
    pub issuer: Arc<crate::issuer::Issuer>,
    pub client_limit: crate::ratelimit::RateLimiter,
    pub ceremony_limit: crate::ratelimit::RateLimiter,
}

impl AppState {
    /// The request with this id as it stands now, expired first if its time is up. An id that
    /// is not a UUID names nothing, and the store is not asked.
    pub async fn approval_now(
        &self,
        id: &str,
    ) -> Result<Option<crate::store::ApprovalRecord>, crate::store::StoreError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        self.store.expire_if_due(id, self.clock.now()).await
    }

    /// 429 when `key` has started too many ceremonies lately.
    pub fn ceremony_allowed(&self, key: &str) -> Result<(), ApiError> {
        if self.ceremony_limit.allow(key) {
            Ok(())
        } else {
            tracing::warn!(target: "countersign::security", key, "ceremony starts rate-limited");
            Err(ApiError::rate_limited())
        }
    }
}

/// Registers every route; used by the server and nowhere else, so tests exercise the real app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::invalid_request(format!("invalid query: {e}")).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found().into()))
    .route("/healthz", web::get().to(public::healthz))
    .route("/readyz", web::get().to(public::readyz))
    .route("/metrics", web::get().to(public::metrics))
    .route("/.well-known/jwks.json", web::get().to(receipts::jwks))
    .service(
        // actix tries routes in order, matching a pattern with `{…}` by regular expression:
        // the decision path and the service calls come first.
        web::scope("/v1")
            .route(
                "/approvals/{id}/decision/finish",
                web::post().to(decide::finish),
            )
            .route(
                "/approvals/{id}/decision/options",
                web::post().to(decide::options),
            )
            .route("/approvals", web::post().to(approvals::create))
            .route("/approvals/{id}", web::get().to(approvals::get))
            .route("/approvals/{id}/cancel", web::post().to(approvals::cancel))
            .route("/audit", web::get().to(audit::export))
            .route("/receipts/redeem", web::post().to(receipts::redeem))
            .route("/enroll/{token}/options", web::post().to(enroll::options))
            .route("/enroll/{token}/finish", web::post().to(enroll::finish))
            .route("/session/options", web::post().to(session::options))
            .route("/session/finish", web::post().to(session::finish))
            .route("/session/logout", web::post().to(session::logout))
            .route("/me/approvals", web::get().to(decide::mine)),
    )
    .configure(pages::configure)
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::not_found())
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
            let path = req.path().to_string();
            let metrics = metrics.clone();
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                let status = res.status().as_u16();
                metrics.count_response(status);
                tracing::info!(
                    target: "countersign::http",
                    %method,
                    path,
                    status,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "request"
                );
                Ok(res)
            }
        })
}
