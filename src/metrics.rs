//! What `/metrics` tells an operator, as OpenMetrics text: request latency by route and status
//! class, decisions and redemptions by outcome, database commit latency, ceremonies and
//! sessions started, rate-limit refusals, the outbox's backlog and delivery outcomes, and build
//! info. One registry a server (no global recorder), so every server in a test process counts
//! its own.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// The route's pattern (`/v1/approvals/{id}`), never the path itself: ids and tokens
    /// would make a series each.
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// What happened: `approve`, `reject`, `redeemed`, `delivered`, or the refusal's code.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

/// Latency buckets from 0.5 ms to about 8 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The histogram a store records its commits in.
pub fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Histogram, fn() -> Histogram>,
    responses: Family<ClassLabels, Counter>,
    pub approvals_created: Counter,
    pub approvals_cancelled: Counter,
    pub approvals_revoked: Counter,
    pub idempotent_replays: Counter,
    pub receipts_issued: Counter,
    pub receipts_redeemed: Counter,
    store_unavailable: Counter,
    /// Decision finishes: `approve`, `reject`, or the refusal's code.
    pub decisions: Family<Outcome, Counter>,
    /// Redemptions: `redeemed`, or the refusal's code.
    pub redemptions: Family<Outcome, Counter>,
    /// WebAuthn ceremonies started: `enrolment`, `sign_in`, `decision`.
    pub ceremonies: Family<Kind, Counter>,
    pub sessions: Counter,
    /// Refusals for going too fast: `client` (API key) or `ceremony`.
    pub rate_limited: Family<Kind, Counter>,
    /// Outbox attempts by outcome: `delivered`, `retry`, `failed`, `endpoint_gone`.
    pub deliveries: Family<Outcome, Counter>,
    backlog: Gauge,
}

fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// The registry, with the store's commit latency if it records one.
    pub fn new(commits: Option<Histogram>) -> Metrics {
        let mut registry = Registry::with_prefix("countersign");
        let requests =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route pattern and status class",
            requests.clone(),
        );
        let responses = Family::<ClassLabels, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by status class",
            responses.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let approvals_created = counter(
            &mut registry,
            "approvals_created",
            "Approval requests created",
        );
        let approvals_cancelled = counter(
            &mut registry,
            "approvals_cancelled",
            "Approval requests cancelled by their client",
        );
        let approvals_revoked = counter(
            &mut registry,
            "approvals_revoked",
            "Approvals revoked by their client before their receipt was redeemed",
        );
        let idempotent_replays = counter(
            &mut registry,
            "idempotent_replays",
            "Requests answered from an Idempotency-Key",
        );
        let receipts_issued = counter(
            &mut registry,
            "receipts_issued",
            "Receipts issued (requests approved)",
        );
        let receipts_redeemed = counter(&mut registry, "receipts_redeemed", "Receipts redeemed");
        let store_unavailable = counter(
            &mut registry,
            "store_unavailable",
            "Responses refused because the store was unreachable",
        );
        let sessions = counter(
            &mut registry,
            "sessions_started",
            "Approver sessions started",
        );
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Outcome, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let decisions = family(
            &mut registry,
            "decisions",
            "Decision finishes by outcome: approve, reject or the refusal's code",
        );
        let redemptions = family(
            &mut registry,
            "redemptions",
            "Redemptions by outcome: redeemed or the refusal's code",
        );
        let deliveries = family(
            &mut registry,
            "deliveries",
            "Outbox delivery attempts by outcome: delivered, retry, failed, endpoint_gone",
        );
        let kinds = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Kind, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let ceremonies = kinds(
            &mut registry,
            "ceremonies_started",
            "WebAuthn ceremonies started: enrolment, sign_in, decision",
        );
        let rate_limited = kinds(
            &mut registry,
            "rate_limited",
            "Requests refused with 429: client (per API key) or ceremony",
        );
        let backlog = Gauge::default();
        registry.register(
            "outbox_backlog",
            "Outbox messages waiting to be delivered (read when scraped)",
            backlog.clone(),
        );
        if let Some(commits) = commits {
            registry.register(
                "db_commit_duration_seconds",
                "Database commit latency (SQLite: each group commit; PostgreSQL: explicit transactions)",
                commits,
            );
        }
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running build", build);
        Metrics {
            registry,
            requests,
            responses,
            approvals_created,
            approvals_cancelled,
            approvals_revoked,
            idempotent_replays,
            receipts_issued,
            receipts_redeemed,
            store_unavailable,
            decisions,
            redemptions,
            ceremonies,
            sessions,
            rate_limited,
            deliveries,
            backlog,
        }
    }

    /// One answered request: its route's pattern (`None`: no route matched), status and time.
    pub fn observe(&self, route: Option<&str>, status: u16, seconds: f64) {
        let class = class(status);
        self.requests
            .get_or_create(&RouteLabels {
                route: route.unwrap_or("unmatched").to_owned(),
                class,
            })
            .observe(seconds);
        self.responses.get_or_create(&ClassLabels { class }).inc();
        if status == 503 {
            self.store_unavailable.inc();
        }
    }

    /// Counts `outcome` in `family`.
    pub fn count(family: &Family<Outcome, Counter>, outcome: &str) {
        family
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text, with the outbox backlog as read now.
    pub fn render(&self, backlog: Option<i64>) -> String {
        if let Some(n) = backlog {
            self.backlog.set(n);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// The OpenMetrics content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_outcomes_are_labelled() {
        let m = Metrics::new(Some(commit_histogram()));
        m.observe(Some("/v1/approvals/{id}"), 200, 0.003);
        m.observe(None, 404, 0.001);
        Metrics::count(&m.decisions, "approve");
        m.ceremonies.get_or_create(&Kind { kind: "sign_in" }).inc();
        let text = m.render(Some(7));
        for line in [
            "countersign_http_request_duration_seconds_count{route=\"/v1/approvals/{id}\",class=\"2xx\"} 1",
            "countersign_http_request_duration_seconds_count{route=\"unmatched\",class=\"4xx\"} 1",
            "countersign_http_responses_total{class=\"2xx\"} 1",
            "countersign_decisions_total{outcome=\"approve\"} 1",
            "countersign_ceremonies_started_total{kind=\"sign_in\"} 1",
            "countersign_outbox_backlog 7",
            "countersign_build_info{version=",
            "# TYPE countersign_db_commit_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
