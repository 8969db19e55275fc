#!/usr/bin/env bash
# fsync audit: checks from a system-call trace that xline's durable state reaches the disk
# before anything that depends on it is acknowledged. A kill -9 test cannot see a missing fsync
# (the page cache survives the process), a trace can.
#
#   scripts/fsync-audit.sh            # uses target/debug/xline (build it first)
#   XLINE_BIN=target/release/xline scripts/fsync-audit.sh
#
# Environment: XLINE_BIN (default target/debug/xline, under $CARGO_TARGET_DIR when set), BENCH_BIN (default: the benchmark binary
# next to XLINE_BIN; used for native CURP client puts, skipped when missing), ETCDCTL (default
# etcdctl), PUTS (puts per phase, default 150), KEEP=1 keeps the work directory (traces) for
# inspection, WORK_DIR (default: a new temporary directory).
#
# Phases (every member runs under `strace -f -ttt -yy -xx`, each with its own trace file):
#   1. one member, --snapshot-count 40: PUTS etcdctl puts (one connection per put), then SIGTERM.
#   2. three members, --snapshot-count 40: PUTS etcdctl puts spread over the members, then
#      native CURP client puts (fast path: witness records) when the benchmark binary exists,
#      then SIGTERM.
#
# Durable files are classified by path (raft-engine log: member/log/*.raftlog|*.rewrite; applied
# state: member/kv/*.redb; other files by name) and raft-engine writes by the record keys they
# carry (curp/hard_state, curp/meta/node/witness/*, curp/meta/node/snapshot, curp/boundary,
# curp/sync; anything else is log entries). What each check proves:
#   (a) log: every raft-engine write is followed by an fsync/fdatasync of that file before the
#       writing thread writes to any other file or socket (the driver's "persist, then send and
#       apply"), except a hard-state write that only moves the commit index (unsynced by design,
#       like etcd's MustSync; the next sync covers it) and raft-engine's file headers. No write
#       but those may be left unsynced at the end. Reported per class: writes, syncs, writes per
#       sync (mean and max), and audited puts per log sync.
#   (b) vote: every hard-state write that changes (term, vote) - decoded from the record - is
#       synced under the same rule.
#   (c) witness journal: every journal record (node/witness/op/N, node/witness/live) is synced
#       under the same rule. Fails when the native client ran and no record was seen.
#   (d) applied state: redb is synced at all, and every log compaction (curp/boundary record)
#       comes after a completed redb sync with no redb write in between (the state machine is
#       durable before the log entries it replaces are dropped). Applied batches themselves are
#       not durable by design (replayed from the log after a crash).
#   (e) order: for every audited put (unique etcdctl keys; the benchmark's sequential keys), on
#       every member that received it as a unary gRPC call (etcd API on the client port, CURP
#       client service on the peer port), the reply's first HTTP/2 frame is written after the
#       completion of a sync of a local raft-engine write carrying that key (the log entry or the
#       witness record). Proves "acknowledged after a durable local record of the command" on
#       that member. It cannot prove that the device honours fdatasync (strace sees system calls,
#       not the disk) nor anything about a put whose key is not in clear in the log (raft-engine
#       compresses batches above 8 KiB: counted as unmatched, not failed; the audit fails when no
#       put at all could be matched).
# Also reported, not failed: directories never fsynced after a file was created or renamed into
# them (lost only on power failure, not on kill -9).
# Any class written but never synced fails the audit (exit 1); there are no timing thresholds.
# Finally the checks are rerun on doctored copies of the traces (log syncs removed, log syncs
# delayed past the replies, applied-state syncs removed) and must fail each time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

XLINE_BIN=${XLINE_BIN:-${CARGO_TARGET_DIR:-target}/debug/xline}
BENCH_BIN=${BENCH_BIN:-$(dirname "$XLINE_BIN")/benchmark}
ETCDCTL=${ETCDCTL:-etcdctl}
PUTS=${PUTS:-150}

die() {
    echo "fsync-audit: $*" >&2
    exit 1
}
[[ -x $XLINE_BIN ]] || die "$XLINE_BIN not found: build it first (cargo build --bin xline)"
command -v strace >/dev/null 2>&1 || die "strace not found (Debian package strace)"
command -v "$ETCDCTL" >/dev/null 2>&1 || die "etcdctl not found (Debian package etcd-client)"
command -v python3 >/dev/null 2>&1 || die "python3 not found"

WORK=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fsync-audit.XXXXXX")}
mkdir -p "$WORK"
STRACE_PIDS=()
cleanup() {
    local pid child
    for pid in "${STRACE_PIDS[@]}"; do
        child=$(pgrep -P "$pid" | head -n 1 || true)
        if [[ -n $child ]]; then kill -KILL "$child" 2>/dev/null || true; fi
        kill "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-} == 1 ]]; then
        echo "fsync-audit: traces kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# free_ports N: N distinct free loopback ports.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# start_members PHASE N: starts N members under strace; sets CLIENT_PORTS, PEER_PORTS.
start_members() {
    local phase=$1 n=$2 i cluster=""
    local ports
    read -r -a ports <<<"$(free_ports $((2 * n)))"
    CLIENT_PORTS=() PEER_PORTS=()
    for ((i = 0; i < n; i++)); do
        CLIENT_PORTS+=("${ports[2 * i]}")
        PEER_PORTS+=("${ports[2 * i + 1]}")
        cluster+="${cluster:+,}m$i=http://127.0.0.1:${ports[2 * i + 1]}"
    done
    STRACE_PIDS=()
    for ((i = 0; i < n; i++)); do
        local dir=$WORK/$phase/m$i
        mkdir -p "$dir"
        strace -f -ttt -yy -xx -s 65536 -o "$dir/trace" \
            -e trace=fsync,fdatasync,sync_file_range,syncfs,msync,write,pwrite64,writev,pwritev,pwritev2,read,recvfrom,recvmsg,sendmsg,sendto,openat,rename,renameat,renameat2 \
            "$XLINE_BIN" --name "m$i" --data-dir "$dir/data" --snapshot-count 40 \
            --listen-client-urls "http://127.0.0.1:${CLIENT_PORTS[i]}" \
            --advertise-client-urls "http://127.0.0.1:${CLIENT_PORTS[i]}" \
            --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[i]}" \
            --initial-cluster "$cluster" >"$dir/log" 2>&1 &
        STRACE_PIDS+=($!)
        echo "${CLIENT_PORTS[i]} ${PEER_PORTS[i]}" >"$dir/ports"
    done
    for ((i = 0; i < n; i++)); do
        local tries=0
        until grep -q "ready to serve client requests" "$WORK/$phase/m$i/log" 2>/dev/null; do
            tries=$((tries + 1))
            if ((tries > 300)) || ! kill -0 "${STRACE_PIDS[i]}" 2>/dev/null; then
                tail -n 20 "$WORK/$phase/m$i/log" >&2 || true
                die "$phase member m$i did not start"
            fi
            sleep 0.1
        done
    done
}

# stop_members: SIGTERM to each traced xline (the child of its strace), then wait.
stop_members() {
    local pid child
    for pid in "${STRACE_PIDS[@]}"; do
        child=$(pgrep -P "$pid" | head -n 1 || true)
        if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi
    done
    for pid in "${STRACE_PIDS[@]}"; do
        local tries=0
        while kill -0 "$pid" 2>/dev/null && ((tries < 150)); do
            tries=$((tries + 1))
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "fsync-audit: a member did not stop within 15 s of SIGTERM: killed" >&2
            child=$(pgrep -P "$pid" | head -n 1 || true)
            if [[ -n $child ]]; then kill -KILL "$child" 2>/dev/null || true; fi
        fi
        wait "$pid" 2>/dev/null || true
    done
    STRACE_PIDS=()
}

# etcdctl_puts PHASE: PUTS puts with unique keys, round-robin over the members.
etcdctl_puts() {
    local phase=$1 i n=${#CLIENT_PORTS[@]} port
    for ((i = 0; i < PUTS; i++)); do
        port=${CLIENT_PORTS[i % n]}
        "$ETCDCTL" --endpoints "127.0.0.1:$port" --command-timeout 10s \
            put "fsync-audit/$phase/$(printf %05d "$i")" "value-$i" >/dev/null ||
            die "$phase: put $i to 127.0.0.1:$port failed"
    done
}

SECONDS=0
echo "fsync-audit: $XLINE_BIN, $PUTS puts per phase, work dir $WORK"

start_members single 1
etcdctl_puts single
stop_members
echo "fsync-audit: single member done (${SECONDS}s)"

start_members cluster 3
etcdctl_puts cluster
NATIVE=0
if [[ -x $BENCH_BIN ]] && "$BENCH_BIN" put --help 2>/dev/null | grep -q -- --native; then
    peers=""
    for p in "${PEER_PORTS[@]}"; do
        peers+="${peers:+,}127.0.0.1:$p"
    done
    "$BENCH_BIN" put --native --endpoints "$peers" --clients 4 --total "$PUTS" \
        --key-size 20 --sequential-keys --key-space-size 1000000 --no-progress >"$WORK/cluster/native.txt" 2>&1 ||
        { cat "$WORK/cluster/native.txt" >&2; die "native CURP client puts failed"; }
    NATIVE=1
else
    echo "fsync-audit: $BENCH_BIN has no --native: no native CURP client puts"
fi
stop_members
echo "fsync-audit: three members done (${SECONDS}s)"

python3 "$ROOT/scripts/fsync-audit.py" --native "$NATIVE" "$WORK/single/m0" \
    "$WORK/cluster/m0" "$WORK/cluster/m1" "$WORK/cluster/m2"
# The checks must catch the holes they are for: rerun them on doctored copies of these traces.
python3 "$ROOT/scripts/fsync-audit.py" --self-test "$WORK/single/m0" "$WORK/cluster/m0"
echo "fsync-audit: passed (${SECONDS}s)"
