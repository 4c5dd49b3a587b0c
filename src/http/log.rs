//! What of a request target may be logged: paths and query strings can carry secrets (an
//! enrolment link's token is a path segment), so the segment after `enroll` is replaced, and
//! every query value but a few known harmless ones.

/// Query parameters whose values are never secret.
const PLAIN_QUERY: &[&str] = &["wait", "status", "after", "limit", "before"];

pub fn redacted(path: &str, query: &str) -> String {
    let mut out = String::with_capacity(path.len() + query.len() + 1);
    let mut after_enroll = false;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if after_enroll && !segment.is_empty() {
            out.push('…');
        } else {
            out.push_str(segment);
        }
        after_enroll = segment == "enroll";
    }
    if !query.is_empty() {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, value)) if PLAIN_QUERY.contains(&key) && !value.contains('%') => {
                    out.push_str(pair)
                }
                Some((key, _)) => {
                    out.push_str(key);
                    out.push_str("=…");
                }
                None => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_paths_and_queries_are_not_logged() {
        assert_eq!(redacted("/enroll/SECRET", ""), "/enroll/…");
        assert_eq!(
            redacted("/v1/enroll/SECRET/options", ""),
            "/v1/enroll/…/options"
        );
        assert_eq!(
            redacted("/v1/approvals/abc", "wait=30"),
            "/v1/approvals/abc?wait=30"
        );
        assert_eq!(redacted("/x", "token=SECRET&limit=5"), "/x?token=…&limit=5");
        assert_eq!(redacted("/", "next=%2Fhistory"), "/?next=…");
        assert_eq!(redacted("/", "next=/enroll/SECRET"), "/?next=…");
        assert_eq!(redacted("/enroll/", ""), "/enroll/");
    }
}
