#!/usr/bin/env bash
# TLS compatibility check: generates a CA and certificates with openssl, then runs the SAME
# etcdctl (API v3) TLS cases (--cacert --cert --key, https endpoint, --client-cert-auth, a
# client without a certificate or with one from an unknown CA, the certificate's CN as the auth
# user) against a fresh reference etcd and then a fresh xline on the same port, and diffs the
# normalized transcripts. (etcdctl-compat.sh drives plain-HTTP servers; TLS needs its own PKI
# and flags, hence this separate script.)
#
# Then the same cases run with xlinectl (this workspace's etcdctl) against a fresh xline: its
# transcript must be etcdctl's.
#
# Usage: scripts/tls-compat.sh
# Environment: XLINE_BIN (default: target/debug/xline, built when unset), XLINECTL_BIN
# (default: target/debug/xlinectl, built when unset), REFERENCE_ETCD
# (default: etcd), COMPAT_ETCDCTL (default: etcdctl), COMPAT_KEEP_DIR (copy transcripts there).
# Exit status: 0 iff the transcripts are identical; 1 on a difference; 2 on a setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REF_ETCD=${REFERENCE_ETCD:-etcd}
ETCDCTL=${COMPAT_ETCDCTL:-etcdctl}
KEEP_DIR=${COMPAT_KEEP_DIR:-}

for tool in openssl "$REF_ETCD" "$ETCDCTL" python3; do
    command -v "$tool" >/dev/null || { echo "tls-compat: $tool not found" >&2; exit 2; }
done
if [[ -z "${XLINE_BIN:-}" ]]; then
    cargo build --quiet --bin xline
    XLINE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/xline"
fi
if [[ -z "${XLINECTL_BIN:-}" ]]; then
    cargo build --quiet --bin xlinectl
    XLINECTL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/xlinectl"
fi

WORK=$(mktemp -d -t xline-tls-compat.XXXXXX)
SERVER_PID=
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ----- PKI -----
PKI="$WORK/pki"
mkdir -p "$PKI"
gen_ca() { # name cn
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$PKI/$1-key.pem" -out "$PKI/$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
}
gen_leaf() { # name cn ca
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$PKI/$1-key.pem" -out "$PKI/$1.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$3.pem" -CAkey "$PKI/$3-key.pem" \
        -CAcreateserial -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
gen_ca ca test-ca
gen_ca rogue-ca rogue-ca
gen_leaf server member ca
for user in root alice mallory; do gen_leaf "$user" "$user" ca; done
gen_leaf rogue root rogue-ca

read -r CLIENT_PORT PEER_PORT < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
URL="https://127.0.0.1:$CLIENT_PORT"

start() { # binary data-dir log
    "$1" --name n1 --data-dir "$2" \
        --listen-client-urls "$URL" --advertise-client-urls "$URL" \
        --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
        --initial-cluster "n1=http://127.0.0.1:$PEER_PORT" \
        --cert-file "$PKI/server.pem" --key-file "$PKI/server-key.pem" \
        --trusted-ca-file "$PKI/ca.pem" --client-cert-auth >"$3" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if ctl root endpoint health >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "tls-compat: $1 did not start; log:" >&2
    cat "$3" >&2
    exit 2
}
stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
ctl() { # cert-name|none|rogue args...
    local who=$1
    shift
    local certs=()
    if [[ "$who" != none ]]; then certs=(--cert "$PKI/$who.pem" --key "$PKI/$who-key.pem"); fi
    ETCDCTL_API=3 "$ETCDCTL" --endpoints "$URL" --dial-timeout 2s --command-timeout 4s \
        --cacert "$PKI/ca.pem" "${certs[@]}" "$@"
}
# One case: label, then ctl's arguments. Records the exit status, stdout and etcdctl's final
# "Error:" line (its JSON retry logs carry timestamps and client ids).
run_case() {
    local label=$1
    shift
    local out err status=0
    out=$(ctl "$@" 2>"$WORK/stderr") || status=$?
    err=$(grep -E '^Error:|is (un)?healthy' "$WORK/stderr" | tail -n 1 || true)
    printf '### %s (exit %s)\n%s\n%s\n' "$label" "$status" "$out" "$err"
}
scenario() {
    run_case put root put k v
    run_case get root get k
    run_case get-no-cert none get k
    run_case get-rogue-cert rogue get k
    run_case health root endpoint health
    run_case user-add-root root user add root --new-user-password=rootpw
    run_case grant-root root user grant-role root root
    run_case user-add-alice root user add alice --new-user-password=alicepw
    run_case role-add root role add a-writer
    run_case grant-perm root role grant-permission a-writer readwrite a b
    run_case grant-alice root user grant-role alice a-writer
    run_case auth-enable root auth enable
    run_case alice-put-own alice put a1 x
    run_case alice-get-own alice get a1
    run_case alice-put-other alice put c1 x
    run_case mallory-get mallory get a1
    run_case root-put root put c1 y
    run_case root-user-list root user list
    run_case token-beats-cert root --user=alice:alicepw put c2 x
    # Lock runs as the caller (the certificate's user) too.
    run_case alice-lock-own alice lock a-lock echo held
    run_case alice-lock-other alice lock c-lock echo held
    run_case auth-disable root auth disable
}
normalize() {
    sed -E -e "s/$CLIENT_PORT/PORT/g" -e 's/took = [0-9.]+[µmn]?s/took = T/' "$1"
}

start "$REF_ETCD" "$WORK/etcd-data" "$WORK/etcd.log"
scenario >"$WORK/etcd.txt"
stop
start "$XLINE_BIN" "$WORK/xline-data" "$WORK/xline.log"
scenario >"$WORK/xline.txt"
stop
ETCDCTL=$XLINECTL_BIN
start "$XLINE_BIN" "$WORK/xlinectl-data" "$WORK/xlinectl.log"
scenario >"$WORK/xlinectl.txt"
stop

normalize "$WORK/etcd.txt" >"$WORK/etcd.norm"
normalize "$WORK/xline.txt" >"$WORK/xline.norm"
normalize "$WORK/xlinectl.txt" >"$WORK/xlinectl.norm"
if [[ -n "$KEEP_DIR" ]]; then
    mkdir -p "$KEEP_DIR"
    cp "$WORK"/*.txt "$WORK"/*.norm "$WORK"/*.log "$KEEP_DIR/"
fi
if diff -u "$WORK/etcd.norm" "$WORK/xline.norm"; then
    echo "tls-compat: $(grep -c '^### ' "$WORK/etcd.norm") cases identical"
else
    echo "tls-compat: transcripts differ" >&2
    exit 1
fi
if diff -u "$WORK/etcd.norm" "$WORK/xlinectl.norm"; then
    echo "tls-compat: xlinectl: $(grep -c '^### ' "$WORK/xlinectl.norm") cases identical to etcdctl's"
else
    echo "tls-compat: xlinectl's transcript differs from etcdctl's" >&2
    exit 1
fi
