//! Token buckets that turn floods into 429s: per API client, and per approver (or per address
//! before sign-in) for WebAuthn ceremony starts. Buckets live in each replica's memory: a
//! limit is a brake on abuse, not a security decision, so sharing them across replicas is not
//! worth a database write per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before idle ones are swept, so unique keys cannot grow memory without bound.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// `per_minute` requests a minute on average, in bursts of up to `per_minute`.
    pub fn per_minute(per_minute: u32) -> Self {
        let n = f64::from(per_minute.max(1));
        Self {
            burst: n,
            per_second: n / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; failing open keeps the service up and
            // the other checks still apply.
            return true;
        };
        if buckets.len() >= SWEEP_AT {
            let burst = self.burst;
            let rate = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_key() {
        let l = RateLimiter::per_minute(3);
        assert!(l.allow("a") && l.allow("a") && l.allow("a"));
        assert!(!l.allow("a"));
        assert!(l.allow("b"), "keys are independent");
    }
}
