//! When a message is tried again (API.md): after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h
//! and 24 h, each with jitter so that many messages failing together do not return together,
//! and never before the receiver's `Retry-After`.

use rand::Rng;

use crate::clock::UnixTime;
use crate::domain::AttemptOutcome;

const DELAYS: [i64; 9] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

/// The longest `Retry-After` honoured: a receiver cannot park a message for longer than the
/// schedule's longest wait.
const MAX_RETRY_AFTER: i64 = 86400;

/// After the `attempts`-th failed attempt: when to try again, or give up.
pub fn after_failure(attempts: i64, now: UnixTime, retry_after: Option<i64>) -> AttemptOutcome {
    let Some(delay) = usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| DELAYS.get(i))
    else {
        return AttemptOutcome::Failed;
    };
    // ±10%, at least a second either way.
    let spread = (delay / 10).max(1);
    let jittered = delay + rand::thread_rng().gen_range(-spread..=spread);
    let wait = jittered
        .max(retry_after.unwrap_or(0).min(MAX_RETRY_AFTER))
        .max(1);
    AttemptOutcome::RetryAt(now.saturating_add(wait))
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: UnixTime) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        return Some(secs.max(0));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some((i64::try_from(at).ok()? - now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(attempts: i64, retry_after: Option<i64>) -> Option<i64> {
        match after_failure(attempts, 1000, retry_after) {
            AttemptOutcome::RetryAt(at) => Some(at - 1000),
            _ => None,
        }
    }

    #[test]
    fn the_schedule_with_jitter_then_gives_up() {
        for _ in 0..50 {
            let w = wait(1, None).unwrap();
            assert!((4..=6).contains(&w), "{w}");
            let w = wait(2, None).unwrap();
            assert!((270..=330).contains(&w), "{w}");
            let w = wait(9, None).unwrap();
            assert!((77760..=95040).contains(&w), "{w}");
        }
        assert_eq!(wait(10, None), None);
        assert_eq!(wait(0, None), None);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        assert!(wait(1, Some(120)).unwrap() >= 120);
        assert!(wait(1, Some(10_000_000)).unwrap() <= 86400);
        assert_eq!(retry_after("120", 0), Some(120));
        assert_eq!(retry_after("-5", 0), Some(0));
        assert_eq!(retry_after("Thu, 01 Jan 1970 00:10:00 GMT", 60), Some(540));
        assert_eq!(retry_after("soon", 0), None);
    }
}
