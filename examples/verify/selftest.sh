#!/usr/bin/env bash
# Self-test of the stock-library receipt verifiers: make_sample.py builds a receipt (and variants
# that are each wrong in one way), then BOTH verifiers must accept the good one and refuse the rest.
# Installs nothing. Run once beforehand, in examples/verify:
#   pip install -r requirements.txt
#   npm ci
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -d "$here/node_modules/jose" ]]; then
  echo "selftest: node_modules missing; run 'npm ci' in $here first" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$here/make_sample.py" "$work"

NOW=1795000100 # between the sample's nbf (1795000000) and exp (1795000300)
passed=0
failed=0

# expect VERIFIER WANT RECEIPT TX AUD NOW [ISS]: WANT is "ok" or a piece of the expected error.
expect() {
  local verifier=$1 want=$2 receipt=$3 tx=$4 aud=$5 now=$6 iss=${7:-https://approve.example.com} out rc=0
  local args=(--jwks "$work/jwks.json" --receipt "$work/$receipt" --tx "$work/$tx" --aud "$aud"
    --iss "$iss" --now "$now")
  case $verifier in
    python) out=$(python3 "$here/verify_receipt.py" "${args[@]}") || rc=$? ;;
    node) out=$(node "$here/verify_receipt.mjs" "${args[@]}") || rc=$? ;;
  esac
  if [[ $want == ok && $rc == 0 && $out == '{"ok":true,'*'"approvers":1}' ]] ||
    [[ $want != ok && $rc == 1 && $out == '{"ok":false,"error":"'*"$want"* ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $verifier $receipt $tx aud=$aud now=$now: wanted '$want', got rc=$rc $out" >&2
  fi
}

for v in python node; do
  expect $v ok receipt.txt tx.json payments-service $NOW
  expect $v ok receipt.txt tx.json payments-service 1795000329 # exp + 29 s: inside the leeway
  expect $v ok receipt-agent.txt tx.json payments-service $NOW # ini: an agent on behalf of a person
  expect $v "ini is malformed" receipt-badini.txt tx.json payments-service $NOW
  expect $v "stage is not in pol.stages" receipt-badstage.txt tx.json payments-service $NOW
  expect $v "transaction does not match txh" receipt.txt tx-tampered.json payments-service $NOW
  expect $v "wrong audience" receipt.txt tx.json ledger-service $NOW
  expect $v "wrong issuer" receipt.txt tx.json payments-service $NOW https://approve.example.net
  expect $v "bad receipt signature" receipt-badsig.txt tx.json payments-service $NOW
  expect $v "high-S" receipt-highs.txt tx.json payments-service $NOW
  expect $v "verification (UV) flag not set" receipt-nouv.txt tx.json payments-service $NOW
  expect $v "receipt expired" receipt.txt tx.json payments-service 1795000330 # exp + 30 s
  expect $v "receipt expired" receipt.txt tx.json payments-service 1895000000
  expect $v "receipt not yet valid" receipt.txt tx.json payments-service 1794999969 # nbf - 31 s
done

echo "selftest: $passed passed, $failed failed"
[[ $failed == 0 ]]
