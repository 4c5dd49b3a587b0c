//! Standard Webhooks v1 signatures: `v1,` and the base64 of HMAC-SHA256 over
//! `id.timestamp.body`, keyed by the secret's bytes (what follows `whsec_`, base64). Receivers
//! verify them with the reference libraries.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new secret: 32 random bytes (the standard asks for 24 to 64), as `whsec_…`.
pub fn new_secret() -> (String, [u8; 32]) {
    let bytes = super::super::random32();
    (format!("{PREFIX}{}", STANDARD.encode(bytes)), bytes)
}

/// The `webhook-signature` header: one `v1,…` per secret, space-separated (several while a
/// rotated secret still signs).
pub fn header<'a>(
    secrets: impl IntoIterator<Item = &'a [u8]>,
    id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    secrets
        .into_iter()
        .map(|key| format!("v1,{}", sign(key, id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn the_reference_example_signs_the_same() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            header(
                [key.as_slice()],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotation_signs_with_each_secret() {
        let (text, bytes) = new_secret();
        assert!(text.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text[6..]).unwrap(), bytes);
        let h = header([bytes.as_slice(), b"older".as_slice()], "msg_1", 1, "{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
