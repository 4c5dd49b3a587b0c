#!/usr/bin/env python3
"""Shares of a process's samples by what it was doing, from `perf script` stacks. A sample
under an ECDSA sign or verify anywhere in its stack is that; otherwise it goes to the component
of the frame nearest the leaf that belongs to one (kernel, libc, std and I/O-registration frames
are passed over, so a socket call counts for whoever made it).

    perf record -F 499 --call-graph dwarf,8192 -p $SERVER_PID -o perf.data -- sleep 5
    perf script -i perf.data | python3 benches/cpu_shares.py [--after REGEX]

Used for the profiles in docs/performance.md."""
import sys, re, collections
WHOLE = [
    ("P-256 signing (receipts)", re.compile(r"ecdsa::signing|sign_prehash|SigningKey|es256::fast::sign|EcdsaKeyPair")),
    ("P-256 verification (passkey assertions, receipts)", re.compile(r"ecdsa::verifying|verify_prehash|VerifyingKey|es256::fast::verify|ecdsa::verification")),
]
LEAF = [
    ("other P-256 (key decoding)", r"p256::|primeorder|elliptic_curve|ring::|ring_core|nistz256"),
    ("SQLite (statements, commit, fsync)", r"sqlite3|rusqlite|store::sqlite"),
    ("PostgreSQL client (sqlx, its socket calls)", r"sqlx|store::postgres"),
    ("SHA-256, HMAC", r"sha2::|Sha256|hmac::"),
    ("JSON, JCS, base64", r"serde_json|canonical|jcs::|base64|serde::"),
    ("logging and spans (tracing)", r"tracing_subscriber|tracing_core|tracing::span|regex_lite"),
    ("HTTP (actix: parse, route, write, its socket calls)", r"actix|h1::|http::header"),
    ("allocator", r"jemalloc|_rjem_|je_"),
    ("runtime (tokio: wake, park, schedule, timers)", r"tokio::runtime::(scheduler|park|task|context|time)|tokio::sync|tokio::time|futex|epoll_wait"),
    ("countersign's own code", r"countersign::"),
]
LEAF = [(n, re.compile(r)) for n, r in LEAF]
# --after REGEX: count only from the first sample with a frame matching it (the start of a phase)
after = re.compile(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--after" else None
counts = collections.Counter(); total = 0; stack = []
def flush():
    global total, after
    if not stack: return
    if after is not None:
        if not any(after.search(f) for f in stack): return
        after = None
    total += 1
    for name, rx in WHOLE:
        if any(rx.search(f) for f in stack):
            counts[name] += 1; return
    for f in stack:
        if "Instrumented" in f or "tokio::runtime::io" in f or "mio::" in f: continue
        for name, rx in LEAF:
            if rx.search(f):
                counts[name] += 1; return
    counts["other (kernel scheduling, std)"] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack.clear(); continue
    if line[0] in " \t":
        stack.append(line.strip())
flush()
for k, v in counts.most_common():
    print(f"{100*v/total:5.1f}%  {k}")
print(f"({total} samples)")
