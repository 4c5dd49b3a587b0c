//! The HTTP surface: thin handlers that extract, call a use case (`crate::service`) and render
//! JSON (`api`) or HTML (`pages`); who is calling is settled first (`guard`); and what every
//! response shares: headers, logging without secrets, metrics.

mod api;
mod extract;
mod guard;
mod log;
pub mod openapi;
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
use openapi::Contract;
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

/// A route of the JSON API: its method and path, and who may call it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub guard: Guard,
}

/// Who may call a route: the middleware of `guard.rs` in front of it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone.
    Public,
    /// A service with an API key (`guard::client`).
    Client,
    /// A signed-in approver, and our Origin unless it is a read (`guard::approver`).
    Approver,
    /// Our Origin unless it is a read (`guard::origin`): calls before sign-in.
    Origin,
}

/// The JSON API, one line a route: method, path, handler and guard. The same lines register the
/// routes (`register_api`), list them (`API_ROUTES`) and name the handlers whose annotations make
/// the OpenAPI document (`openapi::ApiDoc`), so a route cannot exist that the document lacks.
macro_rules! json_api {
    ($($method:ident $path:literal => $($handler:ident)::+ $(, $guard:ident)?;)*) => {
        fn register_api(cfg: &mut web::ServiceConfig) {
            $(cfg.service(
                web::resource($path)
                    $(.wrap(from_fn(guard::$guard)))?
                    .route(web::$method().to($($handler)::+)),
            );)*
        }

        pub const API_ROUTES: &[Route] = &[$(Route {
            method: stringify!($method),
            path: $path,
            guard: json_api!(@guard $($guard)?),
        }),*];

        /// The OpenAPI document: each route's handler, as its annotation describes it, then
        /// what `openapi::Contract` adds.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($($handler)::+),*), modifiers(&Contract))]
        pub struct ApiDoc;
    };
    (@guard client) => { Guard::Client };
    (@guard approver) => { Guard::Approver };
    (@guard origin) => { Guard::Origin };
    (@guard) => { Guard::Public };
}

// actix tries routes in order, matching a pattern with `{…}` by regular expression: the
// decision path and the service calls come first.
json_api! {
    post "/v1/approvals/{id}/decision/finish" => api::decisions::finish, approver;
    post "/v1/approvals/{id}/decision/options" => api::decisions::options, approver;
    post "/v1/approvals" => api::approvals::create, client;
    get "/v1/approvals/{id}" => api::approvals::get, client;
    post "/v1/approvals/{id}/cancel" => api::approvals::cancel, client;
    post "/v1/approvals/{id}/revoke" => api::approvals::revoke, client;
    get "/v1/audit" => api::audit::export, client;
    get "/v1/webhooks/deliveries" => api::webhooks::list, client;
    post "/v1/webhooks/deliveries/{id}/retry" => api::webhooks::retry, client;
    post "/v1/receipts/redeem" => api::receipts::redeem, client;
    post "/v1/enroll/{token}/options" => api::enroll::options, origin;
    post "/v1/enroll/{token}/finish" => api::enroll::finish, origin;
    post "/v1/session/options" => api::session::options, origin;
    post "/v1/session/finish" => api::session::finish, origin;
    post "/v1/session/logout" => api::session::logout, origin;
    get "/v1/me/approvals" => api::me::approvals, approver;
    post "/v1/admin/changes" => api::admin::propose, approver;
    get "/v1/admin/changes/{id}" => api::admin::read, approver;
    get "/v1/me/events" => api::events::events, approver;
    get "/healthz" => api::public::healthz;
    get "/readyz" => api::public::readyz;
    get "/metrics" => api::public::metrics;
    get "/.well-known/jwks.json" => api::receipts::jwks;
    get "/openapi.json" => openapi::document;
}

/// Registers every route; used by the server and nowhere else, so tests exercise the real app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::from(Refusal::InvalidRequest)
            .detail(format!("invalid query: {e}"))
            .into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|_, _| ApiError::from(Refusal::NotFound).into()),
    )
    .configure(register_api)
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
