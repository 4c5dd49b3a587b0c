#!/usr/bin/env node
// Verify a countersign approval receipt offline, with stock libraries only.
// usage: node verify_receipt.mjs --jwks JWKS.json --receipt RECEIPT.txt --tx TX.json --aud AUD [--iss ISS] [--now UNIX]
// Prints one JSON line; exit 0 if the receipt holds, 1 if not.
import { createHash, createPublicKey, verify as verifySig } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import canonicalize from 'canonicalize';
import { compactVerify, decodeProtectedHeader, importJWK, errors } from 'jose';

const TYP = 'countersign-receipt+jwt';
const DOMAIN = Buffer.from('countersign/decision/v1'); // challenge domain separator
const APPROVE = 0x01;
const LEEWAY = 30; // seconds of clock skew tolerated on exp/nbf
const P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n; // curve order
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

class Refused extends Error {}
const need = (ok, why) => { if (!ok) throw new Refused(why); };
const sha256 = (...parts) => createHash('sha256').update(Buffer.concat(parts)).digest();
const b64u = (bytes) => Buffer.from(bytes).toString('base64url'); // unpadded
const unb64u = (text) => {
  // Unpadded base64url only: Buffer.from would silently skip stray characters.
  need(typeof text === 'string' && /^[A-Za-z0-9_-]*$/.test(text), 'not unpadded base64url');
  return Buffer.from(text, 'base64url');
};
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

async function verifyJws(token, jwks) {
  const parts = token.split('.');
  need(parts.length === 3, 'not a compact JWS');
  const header = decodeProtectedHeader(token);
  // Exactly these members: no jku/jwk/x5u/crit that could steer the key lookup.
  need(Object.keys(header).sort().join() === 'alg,kid,typ' && header.alg === 'ES256' && header.typ === TYP, 'unexpected JWS header');
  const keys = jwks.keys.filter((k) => k.kid === header.kid);
  need(keys.length === 1 && (keys[0].alg ?? 'ES256') === 'ES256' && (keys[0].use ?? 'sig') === 'sig', 'unknown kid');
  const sig = unb64u(parts[2]);
  need(sig.length === 64, 'signature is not 64 bytes (r||s)');
  const r = BigInt('0x' + sig.subarray(0, 32).toString('hex'));
  const s = BigInt('0x' + sig.subarray(32).toString('hex'));
  // Low-S only, so each receipt has exactly one valid signature (WebCrypto accepts both forms).
  need(r > 0n && r < P256_N && s > 0n && s <= P256_N / 2n, 'signature out of range or high-S');
  const { kty, crv, x, y } = keys[0];
  need(kty === 'EC' && crv === 'P-256', 'key is not an EC P-256 JWK');
  try {
    const { payload } = await compactVerify(token, await importJWK({ kty, crv, x, y }, 'ES256'), { algorithms: ['ES256'] });
    return JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (e) {
    if (e instanceof errors.JWSSignatureVerificationFailed) throw new Refused('bad receipt signature');
    throw e;
  }
}

function checkEvidence(i, ev, approvalId, txh, iss) {
  const nonce = unb64u(ev.n);
  need(nonce.length === 32, `approver ${i}: nonce is not 32 bytes`);
  // The challenge ties the passkey signature to this approval, "approve" and this transaction.
  const challenge = sha256(DOMAIN, Buffer.from([0x00]), approvalId, Buffer.from([APPROVE]), txh, nonce);
  const cdBytes = unb64u(ev.cd);
  const cd = JSON.parse(cdBytes.toString('utf8'));
  need(cd.type === 'webauthn.get', `approver ${i}: clientData type is not webauthn.get`);
  need(cd.challenge === b64u(challenge), `approver ${i}: challenge is not for this approval and transaction`);
  need(cd.origin === iss || cd.origin === iss + '/', `approver ${i}: origin is not the issuer`);
  need(cd.crossOrigin === undefined || cd.crossOrigin === false, `approver ${i}: cross-origin assertion`);
  const ad = unb64u(ev.ad);
  need(ad.length >= 37 && ad.subarray(0, 32).equals(sha256(Buffer.from(new URL(iss).hostname))), `approver ${i}: authenticator data is for another RP ID`);
  need((ad[32] & 0x05) === 0x05, `approver ${i}: user presence (UP) or verification (UV) flag not set`);
  const { kty, crv, x, y } = ev.jwk;
  need(kty === 'EC' && crv === 'P-256', `approver ${i}: key is not an EC P-256 JWK`);
  const key = createPublicKey({ key: { kty, crv, x, y }, format: 'jwk' });
  // WebAuthn signs authenticatorData || SHA-256(clientDataJSON); DER, either S form.
  const ok = verifySig('sha256', Buffer.concat([ad, sha256(cdBytes)]), { key, dsaEncoding: 'der' }, unb64u(ev.sig));
  need(ok, `approver ${i}: bad passkey signature`);
}

async function verifyReceipt(args) {
  const claims = await verifyJws(readFileSync(args.receipt, 'utf8').trim(), readJson(args.jwks));
  need(claims.aud === args.aud, 'wrong audience');
  need(args.iss === undefined || claims.iss === args.iss, 'wrong issuer');
  const now = args.now === undefined ? Math.floor(Date.now() / 1000) : Number(args.now);
  need(Number.isInteger(now), '--now is not a whole number of seconds');
  need(Number.isInteger(claims.exp) && Number.isInteger(claims.nbf), 'exp or nbf missing');
  need(now < claims.exp + LEEWAY, 'receipt expired');
  need(now >= claims.nbf - LEEWAY, 'receipt not yet valid');
  const tx = readJson(args.tx);
  need(tx !== null && typeof tx === 'object' && !Array.isArray(tx), 'transaction is not a JSON object');
  need(b64u(sha256(Buffer.from(canonicalize(tx), 'utf8'))) === claims.txh, 'transaction does not match txh');
  // sub is the approval id as a lowercase hyphenated UUID; its 16 raw bytes enter the challenge.
  need(typeof claims.sub === 'string' && UUID.test(claims.sub), 'sub is not a lowercase hyphenated UUID');
  const approvalId = Buffer.from(claims.sub.replaceAll('-', ''), 'hex');
  need(Array.isArray(claims.apv) && claims.apv.length > 0, 'receipt has no approvers');
  claims.apv.forEach((a, i) => checkEvidence(i, a.ev, approvalId, unb64u(claims.txh), claims.iss));
  // ini is a username, or {"type": "person"|"agent"|"service", "id", "on_behalf_of"?}.
  const ini = claims.ini;
  need(typeof ini === 'string' || (ini !== null && typeof ini === 'object' && typeof ini.id === 'string'
    && ['person', 'agent', 'service'].includes(ini.type)), 'ini is malformed');
  // Stages: every approval is in a listed stage and every listed stage holds one (receipts
  // made before stages list none).
  const stages = claims.pol.stages ?? [];
  if (stages.length > 0) {
    claims.apv.forEach((a, i) => need(stages.includes(a.stage), `approver ${i}: stage is not in pol.stages`));
    for (const stage of stages) need(claims.apv.some((a) => a.stage === stage), `stage ${stage} has no approval`);
  }
  return { ok: true, approval_id: claims.sub, action: claims.act, initiator: ini, stages, approvers: claims.apv.length };
}

const options = { jwks: {}, receipt: {}, tx: {}, aud: {}, iss: {}, now: {} };
let result;
try {
  const { values } = parseArgs({ options: Object.fromEntries(Object.keys(options).map((k) => [k, { type: 'string' }])) });
  for (const name of ['jwks', 'receipt', 'tx', 'aud']) need(values[name] !== undefined, `--${name} is required`);
  result = await verifyReceipt(values);
} catch (e) {
  // Refusals carry their reason; anything else (unreadable file, missing member) still refuses.
  result = { ok: false, error: e instanceof Refused ? e.message : `malformed input: ${e.name}: ${e.message}` };
}
console.log(JSON.stringify(result));
process.exitCode = result.ok ? 0 : 1;
