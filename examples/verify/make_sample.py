#!/usr/bin/env python3
"""Build a sample countersign receipt, and broken variants of it, for selftest.sh.

usage: make_sample.py OUTDIR
Writes jwks.json, tx.json, receipt.txt (valid) and, each wrong in one way only:
tx-tampered.json, receipt-badsig.txt, receipt-highs.txt, receipt-nouv.txt.
The issuer and "authenticator" keys are throwaway; nothing here is the Rust server's code.
"""
import base64, hashlib, json, os, sys, uuid
from pathlib import Path

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISS, AUD, RP_ID = "https://approve.example.com", "payments-service", "approve.example.com"
IAT = 1795000000
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
TX = {"amount": "1250.00", "currency": "EUR", "payee": {"name": "ACME GmbH", "iban": "DE89370400440532013000"}}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}


def challenge(approval_id: bytes, txh: bytes, nonce: bytes) -> bytes:
    return sha256(b"countersign/decision/v1" + b"\x00" + approval_id + b"\x01" + txh + nonce)


# Same vector as the Rust unit test challenge::tests::fixed_vectors, so the formula here is the server's.
assert challenge(bytes(range(16)), bytes(range(0x20, 0x40)), bytes(range(0x40, 0x60))).hex() == \
    "0a78c8bfd88d1af3f2c2a9960523d5e730f047684f16134da8e78370843bef04"


def evidence(authenticator, approval_id: bytes, txh: bytes, flags: int) -> dict:
    nonce = os.urandom(32)
    cd = json.dumps({"type": "webauthn.get", "challenge": b64u(challenge(approval_id, txh, nonce)),
                     "origin": ISS, "crossOrigin": False}, separators=(",", ":")).encode()
    ad = sha256(RP_ID.encode()) + bytes([flags]) + (7).to_bytes(4, "big")  # rpIdHash, flags, signCount
    sig = authenticator.sign(ad + sha256(cd), ec.ECDSA(hashes.SHA256()))  # DER, as authenticators send it
    return {"n": b64u(nonce), "ad": b64u(ad), "cd": b64u(cd), "sig": b64u(sig), "jwk": public_jwk(authenticator)}


def sign_jws(issuer, kid: str, claims: dict, high_s: bool = False) -> str:
    header = {"alg": "ES256", "typ": "countersign-receipt+jwt", "kid": kid}
    signing_input = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")).encode())
    r, s = decode_dss_signature(issuer.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    s = min(s, P256_N - s)  # low-S, as receipts must be
    if high_s:
        s = P256_N - s  # still a valid ECDSA signature, but the malleated twin
    return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def main(out: Path) -> None:
    issuer, authenticator = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(issuer)
    kid = b64u(sha256(rfc8785.dumps(jwk)))  # RFC 7638 thumbprint
    approval = uuid.uuid4()
    txh = sha256(rfc8785.dumps(TX))

    def receipt(flags: int = 0x05, high_s: bool = False, ini="alice", stage="default") -> str:  # 0x05 = UP | UV
        claims = {
            "iss": ISS, "aud": AUD, "sub": str(approval), "jti": str(uuid.uuid4()),
            "iat": IAT, "nbf": IAT, "exp": IAT + 300, "act": "payment.transfer", "txh": b64u(txh), "ini": ini,
            "pol": {"id": "payment.transfer", "rev": b64u(os.urandom(32)), "rule": "default", "stages": ["default"]},
            "risk": {"score": 35, "reasons": ["new payee"]},
            "apv": [{"sub": str(uuid.uuid4()), "name": "Bob", "stage": stage, "at": IAT, "cred": b64u(os.urandom(16)), "uv": True,
                     "ev": evidence(authenticator, approval.bytes, txh, flags)}],
        }
        return sign_jws(issuer, kid, claims, high_s)

    good = receipt()
    head, sig = good.rsplit(".", 1)
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=="))
    flipped[10] ^= 0x01

    out.mkdir(parents=True, exist_ok=True)
    (out / "jwks.json").write_text(json.dumps({"keys": [dict(jwk, kid=kid, alg="ES256", use="sig")]}, indent=2))
    (out / "tx.json").write_text(json.dumps(TX, indent=2))  # pretty on purpose: JCS must normalise it
    (out / "tx-tampered.json").write_text(json.dumps(dict(TX, amount="1250.01"), indent=2))
    (out / "receipt.txt").write_text(good + "\n")
    (out / "receipt-badsig.txt").write_text(head + "." + b64u(bytes(flipped)) + "\n")
    (out / "receipt-highs.txt").write_text(receipt(high_s=True) + "\n")
    (out / "receipt-nouv.txt").write_text(receipt(flags=0x01) + "\n")  # re-signed: only UV is wrong
    agent = {"id": "invoice-bot", "on_behalf_of": "alice", "type": "agent"}
    (out / "receipt-agent.txt").write_text(receipt(ini=agent) + "\n")
    (out / "receipt-badini.txt").write_text(receipt(ini={"id": "x", "type": "robot"}) + "\n")
    (out / "receipt-badstage.txt").write_text(receipt(stage="security") + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
