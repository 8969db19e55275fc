#!/usr/bin/env bash
# etcdctl compatibility check: runs the SAME list of etcdctl (API v3) commands against a fresh
# reference etcd (Debian's etcd-server, 3.4.x) and against a fresh xline, each on its own free
# loopback ports and temporary data dir, normalizes both transcripts and diffs them.
#
# Usage: scripts/etcdctl-compat.sh
#
# Environment:
#   XLINE_BIN          xline binary (default: target/debug/xline, or $CARGO_TARGET_DIR/debug/xline;
#                      when XLINE_BIN is unset the binary is (re)built with `cargo build --bin xline`)
#   XLINE_EXTRA_ARGS   extra arguments for xline, split on spaces (e.g. "--backend memory")
#   REFERENCE_ETCD     reference etcd binary (default: etcd)
#   COMPAT_ETCDCTL     etcdctl binary (default: etcdctl)
#   COMPAT_STARTUP_TIMEOUT  seconds to wait for "ready to serve client requests" (default: 90)
#   COMPAT_KEEP_DIR    if set, raw and normalized transcripts and server logs are copied there
#   COMPAT_MEMBERS     members per server cluster (default: 1). With N > 1, an N-member etcd
#                      cluster runs the scenario, is stopped, then an N-member xline cluster runs
#                      it on the SAME ports, names and cluster token (so member and cluster ids,
#                      derived from them as etcd does, are the same on both sides); before the
#                      scenario leadership is moved to member m0, and the commands go to m0.
#   COMPAT_ROTATE      with COMPAT_MEMBERS > 1: if set, command k goes to member k mod N instead
#                      of m0 (the same member on both sides), so followers serve and forward too.
#
# Self-check of the normalization (etcd against etcd):
#   XLINE_BIN=scripts/etcd-as-xline.sh scripts/etcdctl-compat.sh
#
# What is normalized (values that legitimately differ between two independent single-member
# servers given the same requests) is listed in scripts/etcdctl-compat-normalize.py. Revisions are
# NOT normalized: both servers start empty at revision 1 and receive the same writes.
#
# Exit status: 0 iff the normalized transcripts are identical after the KNOWN_DIFFERENCES and
# NOT_COMPARED filters below; 1 on any difference; 2 on a setup failure (missing tool, server did not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALLER_PWD=$PWD
cd "$ROOT"
NORMALIZER="$ROOT/scripts/etcdctl-compat-normalize.py"

REF_ETCD=${REFERENCE_ETCD:-etcd}
ETCDCTL=${COMPAT_ETCDCTL:-etcdctl}
STARTUP_TIMEOUT=${COMPAT_STARTUP_TIMEOUT:-90}
KEEP_DIR=${COMPAT_KEEP_DIR:-}
read -r -a XLINE_EXTRA <<<"${XLINE_EXTRA_ARGS:-}"

# Differences between xline and etcd that are understood and accepted. Keep both lists short: a
# difference that a client could observe and that is not explained here is a bug.
#
# KNOWN_DIFFERENCES: sed -E expressions applied to BOTH normalized transcripts before they are
# compared. Every entry must carry a comment saying why the difference is legitimate.
KNOWN_DIFFERENCES=(
    # `snapshot status`: the revision must match; the hash (CRC-32C of every bucket's pairs) and
    # the size do not: the files hold each server's member ids, URLs, lease ids, cluster version
    # and applied index, and etcd's file also has free pages. The total keys (every bucket's
    # pairs) count the leases, which include the 10 s session leases of the lock and elect
    # commands: how many of those have expired by then depends on each server's pace.
    's/^\{"hash":[0-9]+,("revision":[0-9]+),"totalKey":[0-9]+,"totalSize":[0-9]+\}$/{"hash":<hash>,\1,"totalKey":<keys>,"totalSize":<size>}/'
)
# NOT_COMPARED: commands (by label, without the sequence number) that still run against both
# servers, so the state stays in step, but whose output is not compared. The value says why.
declare -A NOT_COMPARED=(
    # (none: etcdctl 3.4's per-endpoint calls send the endpoint URL as the HTTP/2 :authority;
    # xline-server/src/authority.rs rewrites it to host:port before h2 sees it, so those calls
    # are compared like every other.)
)

die() {
    echo "etcdctl-compat: $*" >&2
    exit 2
}

for tool in "$REF_ETCD" "$ETCDCTL" python3 diff sed; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool not found: $tool (see scripts/test.sh)"
done

# The servers and etcdctl must not pick up configuration from the caller's environment.
while IFS= read -r var; do
    unset "$var"
done < <(compgen -e | grep -E '^ETCD(CTL)?_' || true)
export ETCDCTL_API=3

# ---- xline binary --------------------------------------------------------------------------
if [[ -z ${XLINE_BIN:-} ]]; then
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir="$ROOT/$target_dir" # cargo runs in $ROOT
    XLINE_BIN="$target_dir/debug/xline"
    echo "etcdctl-compat: building xline (cargo build --bin xline)"
    cargo build --quiet --bin xline || die "cargo build --bin xline failed"
fi
if [[ $XLINE_BIN != */* ]]; then
    # A bare command name: look it up on PATH.
    XLINE_BIN=$(command -v "$XLINE_BIN") || die "xline binary not found on PATH: $XLINE_BIN"
elif [[ $XLINE_BIN != /* ]]; then
    # A relative path is relative to where the script was started from.
    XLINE_BIN="$CALLER_PWD/$XLINE_BIN"
fi
[[ -x $XLINE_BIN ]] || die "xline binary not found or not executable: $XLINE_BIN"

# ---- scratch space and process cleanup ------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/etcdctl-compat.XXXXXX")
PIDS=()

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    local pid _
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports N: N distinct loopback TCP ports that are free right now. They are drawn below the
# kernel's ephemeral range, so an outgoing connection cannot take one before the server binds it.
free_ports() {
    python3 - "$1" <<'EOF'
import random
import socket
import sys

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
        low = int(fh.read().split()[0])
except OSError:
    low = 32768
low = max(low, 12000)
ports = []
while len(ports) < int(sys.argv[1]):
    port = random.randrange(10000, low)
    if port in ports:
        continue
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# start_server NAME LOG CMD... : starts CMD in the background and waits for etcd's ready line.
start_server() {
    local name=$1 log=$2
    shift 2
    launch_server "$log" "$@"
    wait_ready "$name" "$log" "$LAUNCHED_PID"
}

# launch_server LOG CMD... : starts CMD in the background (its pid in LAUNCHED_PID and PIDS).
launch_server() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 </dev/null &
    LAUNCHED_PID=$!
    PIDS+=("$LAUNCHED_PID")
}

# wait_ready NAME LOG PID : waits for etcd's ready line in LOG.
wait_ready() {
    local name=$1 log=$2 pid=$3
    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    until grep -q 'ready to serve client requests' "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "---- $name log ($log) ----" >&2
            tail -n 50 "$log" >&2 || true
            die "$name exited before it was ready"
        fi
        if ((SECONDS >= deadline)); then
            echo "---- $name log ($log) ----" >&2
            tail -n 50 "$log" >&2 || true
            die "$name not ready after ${STARTUP_TIMEOUT}s"
        fi
        sleep 0.2
    done
    echo "etcdctl-compat: $name ready (pid $pid)"
}

MEMBERS=${COMPAT_MEMBERS:-1}
[[ $MEMBERS =~ ^[1-9][0-9]*$ ]] || die "COMPAT_MEMBERS must be a positive number, not $MEMBERS"
ROTATE=${COMPAT_ROTATE:-}
STOPPED_DEAD=0
if ((MEMBERS > 1)); then
    # N-member clusters, one after the other on the same ports (see COMPAT_MEMBERS above).
    read -r -a CLUSTER_PORTS < <(free_ports $((2 * MEMBERS)))
    CLUSTER_URLS=()
    CLUSTER_PEER_URLS=()
    CLUSTER_INITIAL=""
    for ((i = 0; i < MEMBERS; i++)); do
        CLUSTER_URLS+=("http://127.0.0.1:${CLUSTER_PORTS[2 * i]}")
        CLUSTER_PEER_URLS+=("http://127.0.0.1:${CLUSTER_PORTS[2 * i + 1]}")
        CLUSTER_INITIAL+="${CLUSTER_INITIAL:+,}m${i}=${CLUSTER_PEER_URLS[i]}"
    done
    ETCD_URL=${CLUSTER_URLS[0]}
    XLINE_URL=${CLUSTER_URLS[0]}
    CLUSTER_PIDS=()

    # start_cluster KIND CMD... : starts the N members of KIND (etcd|xline) with CMD, waits
    # until each is ready and m0 leads. Member 0 logs to $WORK/KIND.log, member i to KIND-mi.log.
    start_cluster() {
        local kind=$1 i log all
        shift
        CLUSTER_PIDS=()
        for ((i = 0; i < MEMBERS; i++)); do
            log="$WORK/${kind}.log"
            ((i == 0)) || log="$WORK/${kind}-m${i}.log"
            launch_server "$log" "$@" \
                --name "m${i}" \
                --data-dir "$WORK/${kind}-data-m${i}" \
                --listen-client-urls "${CLUSTER_URLS[i]}" \
                --advertise-client-urls "${CLUSTER_URLS[i]}" \
                --listen-peer-urls "${CLUSTER_PEER_URLS[i]}" \
                --initial-advertise-peer-urls "${CLUSTER_PEER_URLS[i]}" \
                --initial-cluster "$CLUSTER_INITIAL" \
                --initial-cluster-state new \
                --initial-cluster-token compat-cluster
            CLUSTER_PIDS+=("$LAUNCHED_PID")
        done
        for ((i = 0; i < MEMBERS; i++)); do
            log="$WORK/${kind}.log"
            ((i == 0)) || log="$WORK/${kind}-m${i}.log"
            wait_ready "$kind m${i}" "$log" "${CLUSTER_PIDS[i]}"
        done
        # Leadership to m0, so that leader-dependent output (endpoint status) is the same.
        all=$(IFS=,; echo "${CLUSTER_URLS[*]}")
        local deadline=$((SECONDS + 30)) status m0_id
        while :; do
            status=$("$ETCDCTL" --endpoints="${CLUSTER_URLS[0]}" endpoint status 2>/dev/null || true)
            m0_id=$(cut -d, -f2 <<<"$status" | tr -d ' ')
            [[ $(cut -d, -f5 <<<"$status" | tr -d ' ') == true ]] && break
            ((SECONDS < deadline)) || die "$kind: m0 did not become the leader ($status)"
            if [[ -n $m0_id ]]; then
                "$ETCDCTL" --endpoints="$all" move-leader "$m0_id" >/dev/null 2>&1 || true
            fi
            sleep 0.5
        done
        echo "etcdctl-compat: $kind cluster of $MEMBERS ready, m0 ($m0_id) leads"
    }

    # stop_cluster KIND : stops the members (noting any that died during the run).
    stop_cluster() {
        local pid _
        for pid in "${CLUSTER_PIDS[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "etcdctl-compat: $1 member pid $pid exited during the run" >&2
                STOPPED_DEAD=1
            fi
            kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in "${CLUSTER_PIDS[@]}"; do
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        # Gone for good: the final liveness check is about the cluster still running.
        local keep=() p
        for p in "${PIDS[@]}"; do
            [[ " ${CLUSTER_PIDS[*]} " == *" $p "* ]] || keep+=("$p")
        done
        PIDS=("${keep[@]}")
    }
else
read -r ETCD_CLIENT_PORT ETCD_PEER_PORT XLINE_CLIENT_PORT XLINE_PEER_PORT < <(free_ports 4)
ETCD_URL="http://127.0.0.1:${ETCD_CLIENT_PORT}"
ETCD_PEER_URL="http://127.0.0.1:${ETCD_PEER_PORT}"
XLINE_URL="http://127.0.0.1:${XLINE_CLIENT_PORT}"
XLINE_PEER_URL="http://127.0.0.1:${XLINE_PEER_PORT}"

start_server etcd "$WORK/etcd.log" "$REF_ETCD" \
    --name compat \
    --data-dir "$WORK/etcd-data" \
    --listen-client-urls "$ETCD_URL" \
    --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$ETCD_PEER_URL" \
    --initial-advertise-peer-urls "$ETCD_PEER_URL" \
    --initial-cluster "compat=${ETCD_PEER_URL}"

# The same flags as etcd's (xline takes etcd's flag names), on xline's own ports. The peer flags
# only decide the advertised peer URL (and with it the member id) as long as xline is one member;
# they also keep xline off the default peer port 2380.
start_server xline "$WORK/xline.log" "$XLINE_BIN" \
    --name compat \
    --data-dir "$WORK/xline-data" \
    --listen-client-urls "$XLINE_URL" \
    --advertise-client-urls "$XLINE_URL" \
    --listen-peer-urls "$XLINE_PEER_URL" \
    --initial-advertise-peer-urls "$XLINE_PEER_URL" \
    --initial-cluster "compat=${XLINE_PEER_URL}" \
    "${XLINE_EXTRA[@]}"
fi

# ---- transcript recording -------------------------------------------------------------------
CUR_EP=""
CUR_OUT=""
SEQ=0

# run_cmd LABEL STDIN ARGS... : runs `etcdctl ARGS` (STDIN piped in when non-empty) and appends
# the command, its stdin, its stdout+stderr and its exit code to the current transcript.
run_cmd() {
    local label=$1 input=$2
    shift 2
    SEQ=$((SEQ + 1))
    local out="$WORK/cmd.out" rc=0 ep=$CUR_EP
    # COMPAT_ROTATE: commands meant for the run's endpoint go to member SEQ mod N.
    if ((MEMBERS > 1)) && [[ -n $ROTATE && $CUR_EP == "$RUN_EP" ]]; then
        ep=${CLUSTER_URLS[SEQ % MEMBERS]}
    fi
    {
        printf '### %03d %s\n' "$SEQ" "$label"
        printf '$ etcdctl'
        printf ' %q' "$@"
        printf '\n'
        if [[ -n $input ]]; then
            printf '%s' "$input" | sed 's/^/  | /'
        fi
    } >>"$CUR_OUT"
    if [[ -n $input ]]; then
        printf '%s' "$input" |
            "$ETCDCTL" --endpoints="$ep" --dial-timeout=2s --command-timeout=5s "$@" \
                >"$out" 2>&1 || rc=$?
    else
        ${WATCH_TIMEOUT:+timeout "$WATCH_TIMEOUT"} \
            "$ETCDCTL" --endpoints="$ep" --dial-timeout=2s --command-timeout=5s "$@" \
            </dev/null >"$out" 2>&1 || rc=$?
    fi
    cat "$out" >>"$CUR_OUT"
    # Some etcdctl printers (e.g. `-w fields` of del) end without a newline.
    if [[ -s $out && -n $(tail -c 1 "$out") ]]; then
        printf '\n' >>"$CUR_OUT"
    fi
    printf '[exit %d]\n\n' "$rc" >>"$CUR_OUT"
}

# c LABEL ARGS... : a plain etcdctl command.
c() {
    local label=$1
    shift
    run_cmd "$label" "" "$@"
}

# w LABEL ARGS... : `etcdctl watch ARGS`, ended by `timeout` after 2 s (a watch waits for new
# events forever, exit 124): the transcript holds the history it printed by then.
w() {
    local label=$1
    shift
    WATCH_TIMEOUT=2 run_cmd "$label" "" watch "$@"
}

# txn LABEL WRITE_OUT LINE... : `etcdctl txn -w WRITE_OUT` with LINE... (one per line) on stdin.
# The stdin format is: compares, blank line, success ops, blank line, failure ops, blank line.
txn() {
    local label=$1 wout=$2 input
    shift 2
    printf -v input '%s\n' "$@"
    run_cmd "$label" "$input" txn -w "$wout"
}

# The scenario. Revision numbers in comments are the expected ones (fresh server: revision 1);
# later commands rely on them (--rev, compaction, create/mod compares).
scenario() {
    # --- cluster-level read-only RPCs
    c "endpoint health" endpoint health
    c "endpoint health json" endpoint health -w json
    c "endpoint status json" endpoint status -w json
    CUR_EP="${CUR_EP#http://}" c "endpoint status json (host:port endpoint)" endpoint status -w json
    c "member list json" member list -w json
    c "member list simple" member list
    c "alarm list" alarm list
    c "alarm disarm (no alarms)" alarm disarm

    # --- put
    c "put plain" put k1 v1                                   # rev 2
    c "put json" put k2 v2 -w json                            # rev 3
    c "put fields" put k3 v3 -w fields                        # rev 4
    c "put prev-kv" put k1 v1b --prev-kv                      # rev 5
    c "put prev-kv json" put k2 v2b --prev-kv -w json         # rev 6
    c "put prev-kv on missing key" put k6 v6 --prev-kv -w json # rev 7
    c "put ignore-value missing key" put k9 --ignore-value
    c "put ignore-value existing key" put k3 --ignore-value   # rev 8 (k3 stays v3, version 2)
    c "put ignore-value prev-kv json" put k3 --ignore-value --prev-kv -w json # rev 9
    c "put lease missing" put k4 v4 --lease=1234
    c "put lease missing json" put k4 v4 --lease=1234 -w json
    c "put ignore-lease existing key" put k3 v3c --ignore-lease # rev 10
    c "put ignore-lease missing key" put k5 v5 --ignore-lease
    c "put spaces" put "key with spaces" "value with spaces"  # rev 11
    c "put empty value" put empty ""                          # rev 12
    c "get after ignore-value" get k3 -w json

    # --- data for range / sort tests: every sort target gives a different order
    c "put a/3 q" put a/3 q                                   # rev 13
    c "put a/1 x" put a/1 x                                   # rev 14
    c "put a/2 m" put a/2 m                                   # rev 15
    c "put a/3 r" put a/3 r                                   # rev 16
    c "put a/3 c" put a/3 c                                   # rev 17
    c "put a/1 t" put a/1 t                                   # rev 18
    c "put b" put b b0                                        # rev 19
    c "put c" put c c0                                        # rev 20

    # --- get
    c "get single" get k1
    c "get single json" get k1 -w json
    c "get single fields" get k1 -w fields
    c "get single simple" get k1 -w simple
    c "get single hex" get k1 --hex
    c "get missing" get nokey
    c "get missing json" get nokey -w json
    c "get key with spaces" get "key with spaces"
    c "get empty value json" get empty -w json
    c "get prefix" get a/ --prefix
    c "get prefix json" get a/ --prefix -w json
    c "get prefix fields" get a/ --prefix -w fields
    c "get prefix keys-only" get --prefix a/ --keys-only
    c "get prefix keys-only json" get --prefix a/ --keys-only -w json
    c "get prefix print-value-only" get --prefix a/ --print-value-only
    c "get from-key" get --from-key b
    c "get from-key json" get --from-key b -w json
    c "get from-key empty key (all keys)" get --from-key "" --keys-only
    c "get range" get a/1 a/3
    c "get range json" get a c -w json
    c "get range empty" get x y -w json
    c "get limit json" get --prefix a/ --limit 2 -w json
    c "get limit simple" get --prefix a/ --limit 1
    c "get from-key limit keys-only" get --from-key a --limit 3 --keys-only
    local order target
    for order in ASCEND DESCEND; do
        for target in KEY VERSION CREATE MODIFY VALUE; do
            c "get sort ${target} ${order}" get --prefix a/ --order="$order" --sort-by="$target"
        done
    done
    c "get order only" get --prefix a/ --order=DESCEND
    c "get sort-by only" get --prefix a/ --sort-by=MODIFY
    c "get sort limit json" get --prefix a/ --sort-by=VALUE --order=DESCEND --limit 2 -w json
    c "get sort range" get a c --sort-by=CREATE --order=DESCEND --keys-only
    c "get serializable" get k1 --consistency=s
    c "get rev before create" get a/3 --rev=12
    c "get rev 13" get a/3 --rev=13 -w json
    c "get rev 16" get a/3 --rev=16 -w json
    c "get rev 17" get a/3 --rev=17
    c "get prefix rev 15" get --prefix a/ --rev=15 -w json
    c "get k1 rev 2" get k1 --rev=2 -w json
    c "get k1 rev 5" get k1 --rev=5
    c "get rev current" get c --rev=20 -w json

    # --- del
    c "del missing" del nokey
    c "del missing json" del nokey -w json
    c "del single" del k1                                     # rev 21
    c "get deleted key at old rev" get k1 --rev=20
    c "get deleted key" get k1 -w json
    c "del prev-kv" del k2 --prev-kv                          # rev 22
    c "del prefix prev-kv json" del --prefix a/ --prev-kv -w json # rev 23
    c "del from-key fields" del --from-key k -w fields        # rev 24 (k3, k6, key with spaces)
    c "del range" del b c                                     # rev 25 (b)
    c "del prefix none" del --prefix zz
    c "del prefix none json" del --prefix zz -w json
    c "get all after dels" get --from-key "" -w json
    c "get prefix history" get --prefix a/ --rev=22 -w json

    # --- txn (t/1 created at rev 26, t/2 at rev 27 and modified at rev 28)
    c "put t/1" put t/1 one                                   # rev 26
    c "put t/2" put t/2 two                                   # rev 27
    c "put t/2 again" put t/2 two2                            # rev 28
    txn "txn value = success simple" simple \
        'value("t/1") = "one"' '' 'put t/3 three' 'get t/1' '' 'put t/fail x' '' # rev 29
    txn "txn value != failure json" json \
        'value("t/1") != "one"' '' 'put t/never x' '' 'get t/2' 'del t/none' 'put t/f y' '' # rev 30
    txn "txn value > success json" json \
        'value("t/2") > "two"' '' 'get --prefix t/' '' '' # no write
    txn "txn value < failure simple" simple \
        'value("t/2") < "two"' '' 'put t/never x' '' 'get t/2' '' # no write
    txn "txn version = and > success json" json \
        'version("t/2") = "2"' 'version("t/2") > "1"' '' 'del t/1 --prev-kv' '' '' # rev 31
    txn "txn version < failure json" json \
        'version("t/2") < "2"' '' 'put t/never x' '' 'get --prefix t/ --keys-only' '' # no write
    txn "txn version != on missing key" simple \
        'version("t/1") != "0"' '' 'put t/never x' '' 'put t/1 back' '' # rev 32
    txn "txn create = success" simple \
        'create("t/2") = "27"' '' 'put t/c ok' '' '' # rev 33
    txn "txn create > failure json" json \
        'create("t/2") > "27"' '' '' 'get t/2' '' # no write
    txn "txn create = 0 on missing key" json \
        'create("t/missing") = "0"' '' 'put t/missing now' '' '' # rev 34
    txn "txn create < and != success" simple \
        'create("t/2") < "28"' 'create("t/2") != "1"' '' 'get t/2' '' '' # no write
    txn "txn mod = success json" json \
        'mod("t/2") = "28"' '' 'put t/2 three' 'get t/2' '' '' # rev 35
    txn "txn mod < failure" simple \
        'mod("t/2") < "35"' '' '' 'get t/2' '' # no write
    txn "txn mod > and != success" simple \
        'mod("t/2") > "28"' 'mod("t/2") != "28"' '' 'del --prefix t/' '' '' # rev 36
    txn "txn mixed compares one false" json \
        'value("c") = "c0"' 'version("c") = "1"' 'create("c") = "999"' '' 'put t/never x' '' 'get c' '' # no write
    txn "txn no compares" json \
        '' 'put t/x 1' 'put t/y 2' '' '' # rev 37
    txn "txn empty branches" simple \
        'value("c") = "c0"' '' '' '' # no write
    txn "txn fields" fields \
        'value("c") = "nope"' '' '' 'put t/z 3' '' # rev 38
    txn "txn duplicate put" simple \
        '' 'put t/d 1' 'put t/d 2' '' '' # error, no write
    txn "txn get with rev" json \
        '' 'get t/x --rev=37' 'get c --rev=20' '' '' # no write
    c "get after txns" get --prefix t/ -w json

    # --- watch history (current revision: 38); nothing is written while these run
    w "watch key from rev" --rev=1 c
    w "watch prefix from rev prev-kv" --prefix --rev=13 --prev-kv a/
    w "watch range from rev" --rev=20 k1 k3
    w "watch from-key from rev" --from-key --rev=26 t/2
    w "watch all keys from rev" --prefix --rev=33 ""

    # --- compaction (current revision: 38)
    c "compaction 20" compaction 20
    c "get at compacted rev" get c --rev=19
    c "get at compaction rev" get --from-key "" --rev=20 --keys-only
    c "get at future rev" get c --rev=1000
    c "get at future rev json" get c --rev=39 -w json
    c "compaction same rev again" compaction 20
    c "compaction older rev" compaction 10
    c "compaction future rev" compaction 100000
    c "compaction physical" compaction --physical 30
    c "get below physical compaction" get t/2 --rev=29
    c "get at physical compaction rev" get --prefix t/ --rev=30 -w json
    w "watch at compacted rev" --rev=15 c
    w "watch at compaction rev" --rev=30 --prefix t/
    c "put after compaction" put after compact -w json       # rev 39
    lease_scenario                                            # revs 40-45
    lock_elect_scenario                                       # revs 46-59
    maintenance_scenario                                      # no write
    c "get all final" get --from-key "" -w json
    c "endpoint status final" endpoint status -w json
    CUR_EP="${CUR_EP#http://}" c "endpoint status final (host:port endpoint)" endpoint status -w json
    member_scenario
    auth_scenario
}

# Leases (current revision: 39). Ids are chosen by each server (the normalizer numbers them);
# only long TTLs, so nothing expires while the scenario runs. Keys are attached one at a time
# where `--keys` prints them: etcd lists a lease's keys in map order.
lease_scenario() {
    local lease
    c "lease grant" lease grant 600
    lease=$(awk '/granted/ {print $2}' "$WORK/cmd.out")
    c "lease grant json" lease grant 300 -w json
    c "lease grant ttl too large" lease grant 9000000001
    c "lease list (soonest expiry first)" lease list
    c "lease list json" lease list -w json
    c "put with lease" put --lease="$lease" l/1 v1            # rev 40
    c "get with lease json" get l/1 -w json
    c "lease timetolive keys" lease timetolive "$lease" --keys
    c "lease timetolive keys json" lease timetolive "$lease" --keys -w json
    c "put second key with lease" put --lease="$lease" l/2 v2 # rev 41
    c "put third key with lease" put --lease="$lease" l/3 v3  # rev 42
    c "put ignore-lease keeps it" put l/1 v1b --ignore-lease  # rev 43
    c "put without lease detaches" put l/3 v3b                # rev 44
    c "get leased keys json" get --prefix l/ -w json
    c "lease keep-alive once" lease keep-alive --once "$lease"
    c "lease keep-alive once json" lease keep-alive --once "$lease" -w json
    c "lease revoke" lease revoke "$lease"                    # rev 45: l/1 and l/2
    c "get after lease revoke" get --prefix l/ -w json
    c "lease revoke again" lease revoke "$lease"
    c "lease timetolive revoked" lease timetolive "$lease"
    c "lease timetolive unknown json" lease timetolive 1234 -w json
    c "lease keep-alive unknown" lease keep-alive --once 1234
    c "put with revoked lease" put --lease="$lease" l/4 v4
    c "lease list after revoke" lease list
}

# Locks and elections (current revision: 45). etcdctl builds both from leases, txns and watches
# on the client side; their keys end in the session's lease id, which the normalizer numbers.
# A held lock or campaign prints its key and then waits for a signal, so those commands run
# under `timeout -s INT` (etcdctl unlocks or resigns on SIGINT; `elect` ignores SIGTERM).
lock_elect_scenario() {
    local held="$WORK/etcdctl-held" holder
    printf '#!/bin/sh\nexec timeout -s INT 1.5 %q "$@"\n' "$(command -v "$ETCDCTL")" >"$held"
    chmod +x "$held"
    # shellcheck disable=SC2016  # expanded by the command etcdctl runs, not here
    c "lock with command" lock lk -- sh -c 'echo "$ETCD_LOCK_KEY"; echo "rev $ETCD_LOCK_REV"'
    c "lock with failing command" lock lk -- sh -c 'exit 3'
    c "lock without name" lock
    ETCDCTL=$held c "lock held until SIGINT" lock lk
    c "lock keys after unlock" get --prefix lk/ -w json
    # A second locker waits until the holder (in the background) is interrupted.
    timeout -s INT 3 "$ETCDCTL" --endpoints="$CUR_EP" lock lk >/dev/null 2>&1 &
    holder=$!
    sleep 0.7
    # shellcheck disable=SC2016  # expanded by the command etcdctl runs, not here
    c "lock waits for the holder" lock lk -- sh -c 'echo "rev $ETCD_LOCK_REV"'
    wait "$holder" || true
    c "lock keys after contention" get --prefix lk/ -w json
    ETCDCTL=$held c "elect campaign held until SIGINT" elect el p1
    c "elect without proposal" elect el
    c "elect without name" elect
    # An observer sees the leader that campaigns in the background.
    timeout -s INT 3 "$ETCDCTL" --endpoints="$CUR_EP" elect el leader1 >/dev/null 2>&1 &
    holder=$!
    sleep 0.7
    ETCDCTL=$held c "elect listen" elect --listen el
    wait "$holder" || true
    c "election keys after resign" get --prefix el/ -w json
}

# Membership changes on the single member (last: they change the raft index). Only learners
# are added (a second voter that never starts would take the quorum away); their peer URLs are
# never served. Ids are random per server: the normalizer numbers them, also in command lines.
# `member list` runs only while there is one member (the list is ordered by the random ids).
member_scenario() {
    local self learner
    self=$("$ETCDCTL" --endpoints="$CUR_EP" member list | head -n 1 | cut -d, -f1)
    c "member add learner" member add lrn --learner --peer-urls=http://127.0.0.1:1
    learner=$(awk '/added to cluster/ {print $2}' "$WORK/cmd.out")
    # (not the same URL list: within the same second etcd would derive the same id and answer
    # "member ID already exist" first)
    c "member add peer url in use" member add dup --learner --peer-urls=http://127.0.0.1:1,http://127.0.0.1:5
    c "member add second learner" member add lrn2 --learner --peer-urls=http://127.0.0.1:2
    c "member add bad url" member add bad --learner --peer-urls=http://127.0.0.1
    c "member promote learner not in sync" member promote "$learner"
    c "member promote voter" member promote "$self"
    c "member promote unknown" member promote 1234
    c "member update learner" member update "$learner" --peer-urls=http://127.0.0.1:3
    c "member update unknown" member update 1234 --peer-urls=http://127.0.0.1:4
    c "member remove learner" member remove "$learner"
    c "member remove removed" member remove "$learner"
    c "member remove unknown" member remove 1234
    c "member list after remove" member list
}

# Maintenance (nothing is written). HashKV up to revision 39 covers no lease id (ids differ per
# server; later revisions hold leased and lock keys), so its number must be etcd's exactly: xline
# hashes the same bytes etcd does. Both snapshots are bbolt files in etcd's bucket layout:
# `etcdctl snapshot save` accepts both streams and `snapshot status` reads both files.
maintenance_scenario() {
    c "hashkv before leases" endpoint hashkv --rev=39 -w json
    c "hashkv before leases (simple)" endpoint hashkv --rev=35
    c "hashkv at compaction rev" endpoint hashkv --rev=30
    c "hashkv future rev" endpoint hashkv --rev=100000
    c "defrag" defrag
    c "alarm list after defrag" alarm list
    c "snapshot save" snapshot save "$WORK/snapshot.db"
    c "snapshot status" snapshot status "$WORK/snapshot.db" -w json
}

# Auth (last: it adds users and roles and ends with auth disabled again). etcdctl 3.4 has no
# `auth status`. Nothing here writes a key except the puts marked with their revision, made
# as the users that may. `--user` makes etcdctl authenticate first (a bcrypt check per call).
auth_scenario() {
    local root=(--user root:rootpw) lease
    c "auth enable without root user" auth enable
    c "user add root" user add root:rootpw
    c "user add existing" user add root:other
    c "user add alice" user add alice:alicepw
    run_cmd "user add bob from stdin" $'bobpw\n' user add bob --interactive=false
    c "user add no password" user add carol --no-password
    c "user list" user list
    c "user list json" user list -w json
    c "user get" user get alice
    c "user get unknown" user get nobody
    c "role add reader" role add reader
    c "role add existing" role add reader
    c "role add writer" role add writer
    c "role grant read key" role grant-permission reader read foo
    c "role grant readwrite prefix" role grant-permission reader readwrite p/ --prefix
    c "role grant write range" role grant-permission writer write a c
    c "role grant from key" role grant-permission writer read z --from-key
    c "role grant bad type" role grant-permission reader admin foo
    c "role grant unknown role" role grant-permission nobody read foo
    c "role grant again changes type" role grant-permission writer readwrite a c
    c "role get" role get reader
    c "role get json" role get writer -w json
    c "role get unknown" role get nobody
    c "role list" role list
    c "role list json" role list -w json
    c "user grant-role" user grant-role alice reader
    c "user grant-role writer" user grant-role bob writer
    c "user grant-role unknown role" user grant-role alice nobody
    c "user grant-role unknown user" user grant-role nobody reader
    c "user get detail" user get alice --detail
    c "user get json" user get alice -w json
    c "role revoke-permission not granted" role revoke-permission reader bar
    c "role revoke-permission" role revoke-permission writer z --from-key
    c "role get after revoke" role get writer
    # etcdctl 3.4 answers "root user does not have root role" by adding the role and retrying.
    c "auth enable adds the root role" auth enable
    c "auth enable again without user" auth enable
    c "auth enable again" "${root[@]}" auth enable
    c "user get root" "${root[@]}" user get root --detail
    c "get without user" get foo
    c "put as root" "${root[@]}" put foo bar -w json             # +1
    c "lease grant without user" lease grant 600
    c "lease grant as alice" --user alice:alicepw lease grant 600
    lease=$(awk '/granted/ {print $2}' "$WORK/cmd.out")
    c "put with lease as root" "${root[@]}" put --lease="$lease" foo2 v # +1
    c "lease keep-alive as alice" --user alice:alicepw lease keep-alive --once "$lease"
    c "lease keep-alive without user" lease keep-alive --once "$lease"
    c "lease revoke as alice denied" --user alice:alicepw lease revoke "$lease"
    c "lease revoke as root" "${root[@]}" lease revoke "$lease"       # +1
    c "put prefix as alice" --user alice:alicepw put p/1 v1      # +1
    c "get as alice" --user alice:alicepw get foo
    c "get prefix as alice" --user alice:alicepw get --prefix p/ -w json
    c "put as alice denied" --user alice:alicepw put foo x
    c "get all as alice denied" --user alice:alicepw get --from-key ""
    c "del range as bob" --user bob:bobpw del a b                # write a..c
    c "get as bob (readwrite since the second grant)" --user bob:bobpw get a
    c "get as bob denied" --user bob:bobpw get c
    w "watch as alice denied" --user alice:alicepw bar
    w "watch as alice" --user alice:alicepw --prefix p/ --rev=1
    run_cmd "txn as alice" $'value("p/1") = "v1"\n\nput p/2 v2\n\nget foo\n\n' \
        --user alice:alicepw txn -w json                         # +1
    run_cmd "txn compare denied" $'value("x") = "1"\n\nput p/3 v3\n\n\n' \
        --user alice:alicepw txn
    run_cmd "txn failure branch denied" $'value("p/1") = "v1"\n\nput p/3 v3\n\nput w v\n\n' \
        --user alice:alicepw txn
    c "wrong password" --user alice:wrong get foo
    c "unknown user" --user nobody:pw get foo
    c "no-password user cannot authenticate" --user carol:x get foo
    c "user list as alice denied" --user alice:alicepw user list
    c "user get self as alice" --user alice:alicepw user get alice
    c "user get other as alice denied" --user alice:alicepw user get bob
    c "role get own role as alice" --user alice:alicepw role get reader
    c "role get other role as alice denied" --user alice:alicepw role get writer
    c "user list as root" "${root[@]}" user list
    run_cmd "user passwd" $'alicepw2\n' "${root[@]}" user passwd alice --interactive=false
    c "old password after passwd" --user alice:alicepw get foo
    c "new password after passwd" --user alice:alicepw2 get foo
    c "user revoke-role" "${root[@]}" user revoke-role alice reader
    c "user revoke-role not granted" "${root[@]}" user revoke-role alice reader
    c "get after revoke-role denied" --user alice:alicepw2 get foo
    c "user delete root denied" "${root[@]}" user delete root
    c "user revoke-role root denied" "${root[@]}" user revoke-role root root
    c "role delete root denied" "${root[@]}" role delete root
    c "role delete reader" "${root[@]}" role delete reader
    c "role delete unknown" "${root[@]}" role delete reader
    c "user delete alice" "${root[@]}" user delete alice
    c "user delete unknown" "${root[@]}" user delete alice
    c "deleted user cannot authenticate" --user alice:alicepw2 get foo
    c "auth disable without user" auth disable
    c "auth disable" "${root[@]}" auth disable
    c "get after auth disable" get foo -w json
    c "auth disable again" auth disable
    c "user delete root when disabled" user delete root
    c "role delete root when disabled" role delete root
    c "user list final" user list
    c "role list final" role list
}

run_scenario() {
    local name=$1 ep=$2
    CUR_EP=$ep
    RUN_EP=$ep
    CUR_OUT="$WORK/${name}.raw"
    SEQ=0
    : >"$CUR_OUT"
    scenario
}

if ((MEMBERS > 1)); then
    start_cluster etcd "$REF_ETCD"
    run_scenario etcd "$ETCD_URL"
    stop_cluster etcd
    start_cluster xline "$XLINE_BIN" "${XLINE_EXTRA[@]}"
    run_scenario xline "$XLINE_URL"
else
    run_scenario etcd "$ETCD_URL"
    run_scenario xline "$XLINE_URL"
fi

: >"$WORK/not-compared.tsv"
for label in "${!NOT_COMPARED[@]}"; do
    printf '%s\t%s\n' "$label" "${NOT_COMPARED[$label]}" >>"$WORK/not-compared.tsv"
done
for pair in "etcd:$ETCD_URL" "xline:$XLINE_URL"; do
    name=${pair%%:*}
    url=${pair#*:}
    python3 "$NORMALIZER" normalize "$url" <"$WORK/${name}.raw" >"$WORK/${name}.norm"
    python3 "$NORMALIZER" filter "$WORK/not-compared.tsv" <"$WORK/${name}.norm" >"$WORK/${name}.txt"
    for expr in "${KNOWN_DIFFERENCES[@]}"; do
        sed -E -i "$expr" "$WORK/${name}.txt"
    done
done

# A server that died during the run is a failure even if the transcripts agree.
alive_errors=$STOPPED_DEAD
for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "etcdctl-compat: server pid $pid exited during the run" >&2
        alive_errors=1
    fi
done

if [[ -n $KEEP_DIR ]]; then
    mkdir -p "$KEEP_DIR"
    cp "$WORK"/etcd.raw "$WORK"/xline.raw "$WORK"/etcd.norm "$WORK"/xline.norm \
        "$WORK"/etcd.txt "$WORK"/xline.txt \
        "$WORK"/etcd.log "$WORK"/xline.log "$KEEP_DIR"/
fi

echo
# The transcripts are printed before the KNOWN_DIFFERENCES / NOT_COMPARED filters (everything
# stays visible); the diff and the verdict are on the filtered ones.
echo "==================== etcd transcript (normalized) ===================="
cat "$WORK/etcd.norm"
echo "==================== xline transcript (normalized) ==================="
cat "$WORK/xline.norm"
echo "==================== diff -u etcd xline (filtered) ==================="
status=0
if diff -u --label "etcd ($("$REF_ETCD" --version | head -n 1))" --label "xline ($XLINE_BIN)" \
    "$WORK/etcd.txt" "$WORK/xline.txt"; then
    echo "(no differences)"
else
    status=1
fi
echo "======================================================================"
for label in "${!NOT_COMPARED[@]}"; do
    echo "not compared: $label (${NOT_COMPARED[$label]})"
done
for expr in "${KNOWN_DIFFERENCES[@]}"; do
    echo "known-difference filter: $expr"
done
python3 "$NORMALIZER" compare etcd "$WORK/etcd.txt" xline "$WORK/xline.txt" || status=1
if ((alive_errors)); then
    tail -n 30 "$WORK/xline.log" >&2 || true
    status=1
fi
exit "$status"
