//! ES256 (ECDSA on P-256 with SHA-256) arithmetic: the one signature scheme of receipts and
//! passkeys.
//!
//! Keys, signature encodings and every check on them (points on the curve, scalars in range,
//! low S, DER) are p256's everywhere; only the arithmetic differs. The verify-only library does
//! it with p256. The server does it with ring, whose P-256 is BoringSSL's assembly, about five
//! times faster to verify and eight to sign (`cargo bench --bench receipts`), and which the
//! server already builds for TLS; a receipt check is most of a redemption's CPU. The tests below
//! hold the two to the same answers.

use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

/// Whether `signature` is `key`'s over `message` (SHA-256 inside).
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    #[cfg(feature = "server")]
    {
        fast::verify(key, message, signature)
    }
    #[cfg(not(feature = "server"))]
    {
        use p256::ecdsa::signature::Verifier as _;
        key.verify(message, signature).is_ok()
    }
}

/// A signing key, made ready for the arithmetic that signs with it.
pub struct KeyPair {
    key: SigningKey,
    #[cfg(feature = "server")]
    fast: Option<ring::signature::EcdsaKeyPair>,
}

impl KeyPair {
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `message` (SHA-256 inside). The S it returns may be high or low.
    pub fn sign(&self, message: &[u8]) -> Option<Signature> {
        #[cfg(feature = "server")]
        if let Some(pair) = &self.fast {
            return fast::sign(pair, message);
        }
        use p256::ecdsa::signature::Signer as _;
        self.key.try_sign(message).ok()
    }
}

impl From<SigningKey> for KeyPair {
    fn from(key: SigningKey) -> KeyPair {
        KeyPair {
            #[cfg(feature = "server")]
            fast: fast::pair(&key),
            key,
        }
    }
}

#[cfg(feature = "server")]
mod fast {
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    pub fn verify(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
        let point = key.to_encoded_point(false);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes())
            .verify(message, &signature.to_bytes())
            .is_ok()
    }

    /// None only if ring refuses a key p256 accepted, which would leave signing to p256.
    pub fn pair(key: &SigningKey) -> Option<EcdsaKeyPair> {
        let public = key.verifying_key().to_encoded_point(false);
        EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            public.as_bytes(),
            &SystemRandom::new(),
        )
        .ok()
    }

    pub fn sign(pair: &EcdsaKeyPair, message: &[u8]) -> Option<Signature> {
        let signature = pair.sign(&SystemRandom::new(), message).ok()?;
        Signature::from_slice(signature.as_ref()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::Scalar;

    fn keys() -> Vec<SigningKey> {
        (0..8)
            .map(|_| SigningKey::random(&mut rand::rngs::OsRng))
            .collect()
    }

    fn reference(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
        key.verify(message, signature).is_ok()
    }

    #[test]
    fn signatures_verify_under_both_and_only_under_their_key() {
        let keys = keys();
        for (i, key) in keys.iter().enumerate() {
            let pair = KeyPair::from(key.clone());
            #[cfg(feature = "server")]
            assert!(pair.fast.is_some(), "ring took the key");
            for length in [0, 1, 63, 64, 65, 1000] {
                let message = vec![i as u8; length];
                let signature = pair.sign(&message).unwrap();
                let public = key.verifying_key();
                assert!(reference(public, &message, &signature));
                assert!(verify(public, &message, &signature));
                let other = keys[(i + 1) % keys.len()].verifying_key();
                assert!(!verify(other, &message, &signature));
                let mut changed = message.clone();
                changed.push(0);
                assert!(!verify(public, &changed, &signature));
            }
        }
    }

    #[test]
    fn both_answer_alike_on_altered_signatures() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let public = key.verifying_key();
        let message = b"countersign";
        let signature: Signature = key.sign(message);
        let (r, s): (Scalar, Scalar) = (*signature.r(), *signature.s());
        let one = Scalar::ONE;
        let candidates = [
            (r, s),
            // The other S of the same signature: valid for ECDSA; receipts refuse it earlier.
            (r, -s),
            (r, s + one),
            (r + one, s),
            (s, r),
            (one, one),
        ];
        let answers: Vec<bool> = candidates
            .iter()
            .map(|(r, s)| {
                let altered = Signature::from_scalars(*r, *s).unwrap();
                let ours = verify(public, message, &altered);
                assert_eq!(ours, reference(public, message, &altered), "r={r:?}");
                ours
            })
            .collect();
        assert_eq!(answers, [true, true, false, false, false, false]);
    }
}
