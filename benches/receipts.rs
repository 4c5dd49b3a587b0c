//! Receipt costs beside their baselines, measured in the same run: issuing vs a bare P-256
//! sign; offline verification vs a bare P-256 verify and vs the `jsonwebtoken` crate verifying
//! the same token; evidence re-verification vs as many bare verifies as it has approvers.
//! `cargo bench --bench receipts`; the README quotes the ratios.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign::challenge::{decision_challenge, Decision};
use countersign::es256::{self, KeyPair};
use countersign::receipt::{
    sign, verify_evidence, Approver, Claims, Evidence, Expect, PolicyRef, Verifier,
};
use criterion::{criterion_group, criterion_main, Criterion};
use p256::ecdsa::signature::{Signer, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey};
use serde_json::json;
use sha2::{Digest, Sha256};

const ISS: &str = "https://approve.example.com";
const SUB: &str = "3f1c2a4b-5d6e-4f70-8192-a3b4c5d6e7f8";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A realistic receipt: a payment approved by two people, each with full evidence.
fn claims(approvers: usize) -> Claims {
    let txh = b64(&Sha256::digest(br#"{"amount":"12500.00","currency":"EUR","payee":{"iban":"DE89370400440532013000","name":"ACME GmbH"}}"#));
    let id: [u8; 16] = uuid_bytes(SUB);
    let apv = (0..approvers)
        .map(|i| {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let nonce: [u8; 32] = rand::random();
            let challenge = decision_challenge(&id, Decision::Approve, &URL_SAFE_NO_PAD.decode(&txh).unwrap().try_into().unwrap(), &nonce);
            let cd = json!({ "type": "webauthn.get", "challenge": b64(&challenge), "origin": ISS, "crossOrigin": false }).to_string();
            let mut ad = Sha256::digest(b"approve.example.com").to_vec();
            ad.push(0x05);
            ad.extend_from_slice(&7u32.to_be_bytes());
            let msg = [ad.as_slice(), &Sha256::digest(cd.as_bytes())].concat();
            let sig: DerSignature = key.sign(&msg);
            let point = key.verifying_key().to_encoded_point(false);
            Approver {
                sub: format!("0000000{i}-0000-4000-8000-000000000000"),
                name: format!("Approver {i}"),
                stage: "default".into(),
                at: now(),
                cred: b64(&[i as u8; 16]),
                uv: true,
                ev: Evidence {
                    n: b64(&nonce),
                    ad: b64(&ad),
                    cd: b64(cd.as_bytes()),
                    sig: b64(sig.as_bytes()),
                    jwk: json!({ "kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) }),
                },
            }
        })
        .collect();
    Claims {
        iss: ISS.into(),
        aud: "payments-service".into(),
        sub: SUB.into(),
        jti: "9b2e1c4d-0000-4000-8000-000000000001".into(),
        iat: now(),
        nbf: now(),
        exp: now() + 3600,
        act: "payment.transfer".into(),
        txh,
        ini: countersign::receipt::Initiated::Person("alice".into()),
        pol: PolicyRef {
            id: "payment.transfer".into(),
            rev: b64(&[1; 32]),
            rule: "large-payment".into(),
            stages: vec!["default".into()],
        },
        risk: Some(json!({ "score": 35, "reasons": ["new payee"] })),
        apv,
    }
}

fn uuid_bytes(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let kid = "bench-key";
    let claims = claims(2);
    let pair: KeyPair = key.clone().into();
    let token = sign(&claims, &pair, kid).unwrap();
    let signing_input = token.rsplit_once('.').unwrap().0.to_string();
    let raw_sig: Signature = Signature::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.rsplit_once('.').unwrap().1)
            .unwrap(),
    )
    .unwrap();
    let verifier = Verifier::from_keys([(kid.to_string(), *key.verifying_key())]);
    let expect = Expect {
        issuer: Some(ISS),
        audience: Some("payments-service"),
        tx_hash: Some(&claims.txh),
        now: now(),
        leeway: 30,
    };
    verifier.verify(&token, &expect).unwrap();
    verify_evidence(&claims).unwrap();

    let mut g = c.benchmark_group("issue");
    g.bench_function("bare p256 sign", |b| {
        b.iter(|| black_box::<Signature>(key.sign(black_box(signing_input.as_bytes()))))
    });
    g.bench_function("bare es256 sign (the arithmetic receipts use)", |b| {
        b.iter(|| black_box(pair.sign(black_box(signing_input.as_bytes())).unwrap()))
    });
    g.bench_function("receipt sign (2 approvers)", |b| {
        b.iter(|| black_box(sign(black_box(&claims), &pair, kid).unwrap()))
    });
    g.finish();

    let point = key.verifying_key().to_encoded_point(false);
    let jwt_key = jsonwebtoken::DecodingKey::from_ec_components(
        &b64(point.x().unwrap()),
        &b64(point.y().unwrap()),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["payments-service"]);
    validation.set_issuer(&[ISS]);
    jsonwebtoken::decode::<serde_json::Value>(&token, &jwt_key, &validation).unwrap();

    let mut g = c.benchmark_group("verify");
    g.bench_function("bare p256 verify", |b| {
        b.iter(|| {
            key.verifying_key()
                .verify(black_box(signing_input.as_bytes()), black_box(&raw_sig))
                .unwrap()
        })
    });
    g.bench_function("bare es256 verify (the arithmetic receipts use)", |b| {
        b.iter(|| {
            assert!(es256::verify(
                key.verifying_key(),
                black_box(signing_input.as_bytes()),
                black_box(&raw_sig)
            ))
        })
    });
    g.bench_function("receipt verify (offline)", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&token), &expect).unwrap()))
    });
    g.bench_function("jsonwebtoken verify (same token)", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &jwt_key, &validation)
                    .unwrap(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("evidence");
    g.bench_function("2 bare p256 verifies", |b| {
        b.iter(|| {
            key.verifying_key()
                .verify(black_box(signing_input.as_bytes()), &raw_sig)
                .unwrap();
            key.verifying_key()
                .verify(black_box(signing_input.as_bytes()), &raw_sig)
                .unwrap();
        })
    });
    g.bench_function("evidence re-verify (2 approvers)", |b| {
        b.iter(|| black_box(verify_evidence(black_box(&claims)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
