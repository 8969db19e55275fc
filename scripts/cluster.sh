#!/usr/bin/env bash
# Runs a local xline cluster on loopback ports.
#
#   scripts/cluster.sh start [N]   start N members (default 3), data under $XLINE_CLUSTER_ROOT
#   scripts/cluster.sh status      show the members (etcdctl endpoint status) if etcdctl exists
#   scripts/cluster.sh stop        stop the members started by `start` (data is kept)
#
# Member i (1-based) serves clients on 127.0.0.1:(BASE_PORT + 2i - 2) and peers on the next
# port; BASE_PORT defaults to 22379. XLINE_BIN picks the binary (default: target/release/xline,
# built when missing). Extra flags for every member: XLINE_FLAGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROOT=${XLINE_CLUSTER_ROOT:-${TMPDIR:-/tmp}/xline-cluster}
BASE_PORT=${BASE_PORT:-22379}
BIN=${XLINE_BIN:-target/release/xline}

client_port() { echo $((BASE_PORT + 2 * $1 - 2)); }
peer_port() { echo $((BASE_PORT + 2 * $1 - 1)); }

start() {
    local n=${1:-3}
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "member count must be a positive number" >&2; exit 2; }
    if [[ ! -x $BIN ]]; then
        cargo build --release --bin xline >&2
    fi
    mkdir -p "$ROOT"
    local cluster="" i
    for ((i = 1; i <= n; i++)); do
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$(peer_port "$i")"
    done
    echo "$n" >"$ROOT/size"
    for ((i = 1; i <= n; i++)); do
        # shellcheck disable=SC2086 # XLINE_FLAGS is a list of flags
        "$BIN" --name "m$i" --data-dir "$ROOT/m$i" \
            --listen-client-urls "http://127.0.0.1:$(client_port "$i")" \
            --advertise-client-urls "http://127.0.0.1:$(client_port "$i")" \
            --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
            --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
            --initial-cluster "$cluster" ${XLINE_FLAGS:-} \
            >"$ROOT/m$i.log" 2>&1 &
        echo $! >"$ROOT/m$i.pid"
    done
    for ((i = 1; i <= n; i++)); do
        local tries=0
        until grep -q "ready to serve client requests" "$ROOT/m$i.log" 2>/dev/null; do
            tries=$((tries + 1))
            if ((tries > 100)) || ! kill -0 "$(cat "$ROOT/m$i.pid")" 2>/dev/null; then
                echo "member m$i did not start; see $ROOT/m$i.log" >&2
                exit 1
            fi
            sleep 0.1
        done
    done
    echo "started $n members under $ROOT"
    endpoints
}

endpoints() {
    local n i eps=""
    n=$(cat "$ROOT/size" 2>/dev/null || echo 0)
    for ((i = 1; i <= n; i++)); do
        eps+="${eps:+,}127.0.0.1:$(client_port "$i")"
    done
    echo "endpoints: $eps"
    ENDPOINTS=$eps
}

status() {
    endpoints
    if command -v etcdctl >/dev/null 2>&1; then
        ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" endpoint status -w table || true
    fi
}

stop() {
    local f
    for f in "$ROOT"/m*.pid; do
        [[ -e $f ]] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    echo "stopped (data kept under $ROOT)"
}

case ${1:-} in
start) start "${2:-3}" ;;
status) status ;;
stop) stop ;;
*)
    echo "usage: $0 start [N] | status | stop" >&2
    exit 2
    ;;
esac
