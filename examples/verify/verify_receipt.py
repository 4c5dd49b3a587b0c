#!/usr/bin/env python3
"""Verify a countersign approval receipt offline, with stock libraries only.
usage: verify_receipt.py --jwks JWKS.json --receipt RECEIPT.txt --tx TX.json --aud AUD [--iss ISS] [--now UNIX]
Prints one JSON line; exit 0 if the receipt holds, 1 if not."""
import argparse, base64, hashlib, json, re, sys, time, uuid
from pathlib import Path
from urllib.parse import urlsplit

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TYP = "countersign-receipt+jwt"
DOMAIN = b"countersign/decision/v1"  # challenge domain separator
APPROVE = b"\x01"
LEEWAY = 30  # seconds of clock skew tolerated on exp/nbf
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # curve order
ES256 = ec.ECDSA(hashes.SHA256())

class Refused(Exception):
    """The receipt does not hold; the message says why."""

def need(ok, why):
    if not ok:
        raise Refused(why)

def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def unb64u(text) -> bytes:
    # Unpadded base64url only: the stdlib decoder would silently skip stray characters.
    need(isinstance(text, str) and re.fullmatch(r"[A-Za-z0-9_-]*", text), "not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

def p256_key(jwk) -> ec.EllipticCurvePublicKey:
    need(jwk.get("kty") == "EC" and jwk.get("crv") == "P-256", "key is not an EC P-256 JWK")
    x, y = unb64u(jwk["x"]), unb64u(jwk["y"])
    need(len(x) == 32 and len(y) == 32, "key coordinates are not 32 bytes")
    # public_key() also checks that the point lies on the curve.
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()

def verify_jws(token: str, jwks: dict) -> dict:
    parts = token.strip().split(".")
    need(len(parts) == 3, "not a compact JWS")
    header = json.loads(unb64u(parts[0]))
    # Exactly these members: no jku/jwk/x5u/crit that could steer the key lookup.
    need(set(header) == {"alg", "typ", "kid"} and header["alg"] == "ES256" and header["typ"] == TYP, "unexpected JWS header")
    keys = [k for k in jwks["keys"] if k.get("kid") == header["kid"]]
    need(len(keys) == 1 and keys[0].get("alg", "ES256") == "ES256" and keys[0].get("use", "sig") == "sig", "unknown kid")
    sig = unb64u(parts[2])
    need(len(sig) == 64, "signature is not 64 bytes (r||s)")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    # Low-S only, so each receipt has exactly one valid signature.
    need(0 < r < P256_N and 0 < s <= P256_N // 2, "signature out of range or high-S")
    try:
        p256_key(keys[0]).verify(encode_dss_signature(r, s), f"{parts[0]}.{parts[1]}".encode(), ES256)
    except InvalidSignature:
        raise Refused("bad receipt signature")
    return json.loads(unb64u(parts[1]))

def check_evidence(i: int, ev: dict, approval_id: bytes, txh: bytes, iss: str) -> None:
    nonce = unb64u(ev["n"])
    need(len(nonce) == 32, f"approver {i}: nonce is not 32 bytes")
    # The challenge ties the passkey signature to this approval, "approve" and this transaction.
    challenge = sha256(DOMAIN + b"\x00" + approval_id + APPROVE + txh + nonce)
    cd_bytes = unb64u(ev["cd"])
    cd = json.loads(cd_bytes)
    need(cd.get("type") == "webauthn.get", f"approver {i}: clientData type is not webauthn.get")
    need(cd.get("challenge") == b64u(challenge), f"approver {i}: challenge is not for this approval and transaction")
    need(cd.get("origin") in (iss, iss + "/"), f"approver {i}: origin is not the issuer")
    need(cd.get("crossOrigin", False) is False, f"approver {i}: cross-origin assertion")
    ad = unb64u(ev["ad"])
    need(len(ad) >= 37 and ad[:32] == sha256(urlsplit(iss).hostname.encode()), f"approver {i}: authenticator data is for another RP ID")
    need(ad[32] & 0x05 == 0x05, f"approver {i}: user presence (UP) or verification (UV) flag not set")
    try:  # WebAuthn signs authenticatorData || SHA-256(clientDataJSON); DER, either S form.
        p256_key(ev["jwk"]).verify(unb64u(ev["sig"]), ad + sha256(cd_bytes), ES256)
    except InvalidSignature:
        raise Refused(f"approver {i}: bad passkey signature")

def verify(args) -> dict:
    claims = verify_jws(Path(args.receipt).read_text(), json.loads(Path(args.jwks).read_bytes()))
    need(claims.get("aud") == args.aud, "wrong audience")
    need(args.iss is None or claims.get("iss") == args.iss, "wrong issuer")
    now = int(time.time()) if args.now is None else args.now
    need(isinstance(claims.get("exp"), int) and isinstance(claims.get("nbf"), int), "exp or nbf missing")
    need(now < claims["exp"] + LEEWAY, "receipt expired")
    need(now >= claims["nbf"] - LEEWAY, "receipt not yet valid")
    tx = json.loads(Path(args.tx).read_bytes())
    need(isinstance(tx, dict), "transaction is not a JSON object")
    need(b64u(sha256(rfc8785.dumps(tx))) == claims.get("txh"), "transaction does not match txh")
    # sub is the approval id as a lowercase hyphenated UUID; its 16 raw bytes enter the challenge.
    approval_id = uuid.UUID(claims["sub"])
    need(str(approval_id) == claims["sub"], "sub is not a lowercase hyphenated UUID")
    need(isinstance(claims.get("apv"), list) and claims["apv"], "receipt has no approvers")
    for i, approver in enumerate(claims["apv"]):
        check_evidence(i, approver["ev"], approval_id.bytes, unb64u(claims["txh"]), claims["iss"])
    # ini is a username, or {"type": "person"|"agent"|"service", "id", "on_behalf_of"?}.
    ini = claims.get("ini")
    need(isinstance(ini, str) or (isinstance(ini, dict) and isinstance(ini.get("id"), str)
                                  and ini.get("type") in ("person", "agent", "service")), "ini is malformed")
    # Stages: every approval is in a listed stage and every listed stage holds one (receipts
    # made before stages list none).
    stages = claims["pol"].get("stages", [])
    if stages:
        for i, approver in enumerate(claims["apv"]):
            need(approver.get("stage") in stages, f"approver {i}: stage is not in pol.stages")
        for stage in stages:
            need(any(a.get("stage") == stage for a in claims["apv"]), f"stage {stage} has no approval")
    return {"ok": True, "approval_id": claims["sub"], "action": claims["act"], "initiator": ini,
            "stages": stages, "approvers": len(claims["apv"])}

class Parser(argparse.ArgumentParser):
    def error(self, message):  # report bad usage as a refusal line too, not argparse's exit 2
        raise Refused(message)

def main() -> int:
    p = Parser(description="Verify a countersign approval receipt.")
    for name in ("--jwks", "--receipt", "--tx", "--aud"):
        p.add_argument(name, required=True)
    p.add_argument("--iss")
    p.add_argument("--now", type=int)
    try:
        result = verify(p.parse_args())
    except Refused as e:
        result = {"ok": False, "error": str(e)}
    except Exception as e:  # unreadable file, missing member, bad JSON: still a refusal, never a pass
        result = {"ok": False, "error": f"malformed input: {type(e).__name__}: {e}"}
    print(json.dumps(result, separators=(",", ":")))
    return 0 if result["ok"] else 1

if __name__ == "__main__":
    sys.exit(main())
