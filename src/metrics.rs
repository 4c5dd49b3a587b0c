//! Prometheus counters, kept in atomics: a handful of numbers does not need a metrics crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    http_2xx: AtomicU64,
    http_3xx: AtomicU64,
    http_4xx: AtomicU64,
    http_5xx: AtomicU64,
    pub approvals_created: AtomicU64,
    pub approvals_cancelled: AtomicU64,
    pub approvals_revoked: AtomicU64,
    pub idempotent_replays: AtomicU64,
    pub receipts_issued: AtomicU64,
    pub receipts_redeemed: AtomicU64,
    pub store_unavailable: AtomicU64,
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        let c = match status {
            200..=299 => &self.http_2xx,
            300..=399 => &self.http_3xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if status == 503 {
            self.store_unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP countersign_http_responses_total HTTP responses by status class.\n");
        out.push_str("# TYPE countersign_http_responses_total counter\n");
        for (class, c) in [
            ("2xx", &self.http_2xx),
            ("3xx", &self.http_3xx),
            ("4xx", &self.http_4xx),
            ("5xx", &self.http_5xx),
        ] {
            let _ = writeln!(
                out,
                "countersign_http_responses_total{{class=\"{class}\"}} {}",
                get(c)
            );
        }
        for (name, help, c) in [
            (
                "countersign_approvals_created_total",
                "Approval requests created.",
                &self.approvals_created,
            ),
            (
                "countersign_approvals_cancelled_total",
                "Approval requests cancelled by their client.",
                &self.approvals_cancelled,
            ),
            (
                "countersign_approvals_revoked_total",
                "Approvals revoked by their client before their receipt was redeemed.",
                &self.approvals_revoked,
            ),
            (
                "countersign_idempotent_replays_total",
                "Requests answered from an Idempotency-Key.",
                &self.idempotent_replays,
            ),
            (
                "countersign_receipts_issued_total",
                "Receipts issued (requests approved).",
                &self.receipts_issued,
            ),
            (
                "countersign_receipts_redeemed_total",
                "Receipts redeemed.",
                &self.receipts_redeemed,
            ),
            (
                "countersign_store_unavailable_total",
                "Responses refused because the store was unreachable.",
                &self.store_unavailable,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        out
    }
}
