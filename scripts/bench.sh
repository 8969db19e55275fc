#!/usr/bin/env bash
# Side-by-side benchmark: an xline cluster and a Debian etcd cluster (3 members each by default),
# the same workloads, the same placement, measured by our `benchmark` AND etcd's own tool.
#
#   scripts/bench.sh [options]
#
#   --geometry LAN|G1|G2   LAN (default): loopback. G1/G2: `scripts/wan.sh up G1|G2` first;
#                          members run in namespaces xr1..xr3, clients in xc1 (G1, talking to
#                          its nearest member, xr3) or xc1..xc3 (G2, each talking to the member
#                          of its region, one region after the other)
#   --members 1|3          cluster size (default 3; 1 only on LAN)
#   --runs N               runs of every (server, tool, workload, clients) (default 3; medians)
#   --workloads LIST       comma-separated, default put,put-hot,range-l,range-s,txn-put,txn-mixed:
#                            put        puts, --key-space-size keys (default 100000)
#                            put-hot    puts on one key
#                            range-l    linearizable reads of one existing key
#                            range-s    serializable reads of one existing key
#                            txn-put    one-put transactions, --key-space-size keys
#                            txn-mixed  one-key read or write transactions (our tool only)
#                            watch-latency    put-to-event latency of --watchers watchers on one
#                                             key, --watch-rate puts/s (our tool only)
#                            lease-keepalive  LeaseKeepAlive round trips, one lease per client
#   --sweep LIST           client counts for put and put-hot (default 1,10,50,100,200)
#   --clients N            clients of the other workloads (default 100); --conns N connections
#                          (default 10; never more than the clients)
#   --per-client N         requests per client and run (default 200 on LAN, 20 on G1/G2) ...
#   --total N              ... but at most N per run (default 20000)
#   --key-size N --val-size N --key-space-size N    (default 8, 256, 100000)
#   --watchers N --watch-rate N                     (default 1000 watchers, 1000 puts/s)
#   --servers LIST         xline,etcd (default both; one at a time, never concurrently; run 1 of
#                          each, then run 2 of each, ..., a fresh cluster every time)
#   --tools LIST           ours,etcd (default both); `native` adds our tool with --native (CURP
#                          client fast path; xline only; writes only: put, put-hot, txn-put),
#                          pointed at the members' peer URLs, the client's nearest member first
#   --release | --debug    which cargo profile to build and use (default release; --smoke: debug)
#   --results DIR          (default bench-results/<date>-<geometry>)
#   --dry-run              print the plan and the expected time, run nothing
#   --smoke                seconds-long check of the harness on loopback (what scripts/test.sh
#                          runs): 1 run, clients 1 and 4, 20 requests per client, every
#                          workload, our tool and its native client (add --tools
#                          ours,native,etcd to include etcd's tool),
#                          debug build, results in a temporary directory that is removed
#
# The total expected time is printed before anything runs. The leader is moved to member 1
# before measuring (etcdctl move-leader), for both servers. Writes to the results dir: raw/
# (every tool's output and the members' logs), results.csv (one row per run), medians.csv,
# report.md (machine, load, settings, tables of medians with ratios xline/etcd, the charts),
# plots.json and the PNG charts drawn by `bench-plot` (plotters): throughput against clients for
# the swept workloads and latency CDFs (our tool's, at --clients or the largest swept count).
#
# Environment: XLINE_BIN, BENCH_BIN, PLOT_BIN (default target/<profile>/{xline,benchmark,
# bench-plot}, built), ETCD_BENCHMARK (etcd's tool; default: built into ETCD_BENCHMARK_DIR,
# /tmp/etcd-benchmark, by ../shared/tools/etcd-benchmark.sh), BASE_PORT (LAN: member i serves
# clients on BASE_PORT+2i-2, peers on the next port; default: a free range found at start),
# RUN_TIMEOUT (seconds one tool run may take before it is killed and the harness fails; 600,
# --smoke: 60).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

GEOMETRY=LAN MEMBERS=3 RUNS=3 WORKLOADS=put,put-hot,range-l,range-s,txn-put,txn-mixed
SWEEP=1,10,50,100,200 CLIENTS=100 CONNS=10 PER_CLIENT="" TOTAL=20000
KEY_SIZE=8 VAL_SIZE=256 KEY_SPACE=100000 WATCHERS=1000 WATCH_RATE=1000
SERVERS=xline,etcd TOOLS=ours,etcd PROFILE="" RUN_TIMEOUT=${RUN_TIMEOUT:-600} RESULTS="" SMOKE=0 DRY_RUN=0 TOOLS_SET=0

die() {
    echo "bench.sh: $*" >&2
    exit 1
}
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }

while (($#)); do
    case $1 in
    --geometry) GEOMETRY=${2^^} && shift ;;
    --members) MEMBERS=$2 && shift ;;
    --runs) RUNS=$2 && shift ;;
    --workloads) WORKLOADS=$2 && shift ;;
    --sweep) SWEEP=$2 && shift ;;
    --clients) CLIENTS=$2 && shift ;;
    --conns) CONNS=$2 && shift ;;
    --per-client) PER_CLIENT=$2 && shift ;;
    --total) TOTAL=$2 && shift ;;
    --key-size) KEY_SIZE=$2 && shift ;;
    --val-size) VAL_SIZE=$2 && shift ;;
    --key-space-size) KEY_SPACE=$2 && shift ;;
    --watchers) WATCHERS=$2 && shift ;;
    --watch-rate) WATCH_RATE=$2 && shift ;;
    --servers) SERVERS=$2 && shift ;;
    --tools) TOOLS=$2 TOOLS_SET=1 && shift ;;
    --release) PROFILE=release ;;
    --debug) PROFILE=debug ;;
    --results) RESULTS=$2 && shift ;;
    --dry-run) DRY_RUN=1 ;;
    --smoke) SMOKE=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if ((SMOKE)); then
    [[ $GEOMETRY == LAN ]] || die "--smoke runs on LAN only"
    RUNS=1 SWEEP=1,4 CLIENTS=4 CONNS=2 PER_CLIENT=20 TOTAL=100 WATCHERS=20 WATCH_RATE=100
    WORKLOADS=put,put-hot,range-l,range-s,txn-put,txn-mixed,watch-latency,lease-keepalive
    ((TOOLS_SET)) || TOOLS=ours,native
    PROFILE=${PROFILE:-debug}
    RUN_TIMEOUT=60
fi
PROFILE=${PROFILE:-release}
PER_CLIENT=${PER_CLIENT:-$([[ $GEOMETRY == LAN ]] && echo 200 || echo 20)}
case $GEOMETRY in LAN | G1 | G2) ;; *) die "--geometry must be LAN, G1 or G2" ;; esac
[[ $MEMBERS == 3 || ($MEMBERS == 1 && $GEOMETRY == LAN) ]] || die "--members must be 3 (or 1 on LAN)"
for n in RUNS CLIENTS CONNS PER_CLIENT TOTAL KEY_SIZE VAL_SIZE KEY_SPACE WATCHERS WATCH_RATE; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive number, not '${!n}'"
done
IFS=, read -ra WORKLOAD_LIST <<<"$WORKLOADS"
IFS=, read -ra SERVER_LIST <<<"$SERVERS"
IFS=, read -ra TOOL_LIST <<<"$TOOLS"
IFS=, read -ra SWEEP_LIST <<<"$SWEEP"
for w in "${WORKLOAD_LIST[@]}"; do
    [[ $w =~ ^(put|put-hot|range-l|range-s|txn-put|txn-mixed|watch-latency|lease-keepalive)$ ]] ||
        die "unknown workload $w"
done
for s in "${SERVER_LIST[@]}"; do [[ $s =~ ^(xline|etcd)$ ]] || die "unknown server $s"; done
for t in "${TOOL_LIST[@]}"; do [[ $t =~ ^(ours|etcd|native)$ ]] || die "unknown tool $t"; done
for c in "${SWEEP_LIST[@]}"; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "--sweep: '$c' is not a client count"; done
has() { # has WORD LIST...
    local w=$1
    shift
    [[ " $* " == *" $w "* ]]
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xline-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT # replaced by the full cleanup once clusters can run
if [[ -z $RESULTS ]]; then
    if ((SMOKE)); then RESULTS=$WORK/results; else RESULTS=bench-results/$(date +%Y%m%d-%H%M%S)-$GEOMETRY; fi
fi

# ---- the plan --------------------------------------------------------------------------------------
lan() { [[ $GEOMETRY == LAN ]]; }
# Client placements: "LABEL NAMESPACE MEMBER" lines; MEMBER 0 = every member.
case $GEOMETRY in
LAN) PLACEMENTS=("lan - 0") ;;
G1) PLACEMENTS=("g1 xc1 3") ;; # the client's nearest member (50 ms)
G2) PLACEMENTS=("r1 xc1 1" "r2 xc2 2" "r3 xc3 3") ;;
esac
swept() { [[ $1 == put || $1 == put-hot ]]; }
# tool_supports TOOL WORKLOAD SERVER
tool_supports() {
    case $1 in
    etcd) [[ $2 != txn-mixed && $2 != watch-latency ]] ;;
    native) [[ $3 == xline && $2 =~ ^(put|put-hot|txn-put)$ ]] ;; # native reads are not built
    ours) true ;;
    esac
}
requests_for() { # requests_for WORKLOAD CLIENTS
    if [[ $1 == watch-latency ]]; then
        echo $((TOTAL < WATCH_RATE * 10 ? TOTAL : WATCH_RATE * 10)) # at most 10 s of puts
    else
        local n=$(($2 * PER_CLIENT))
        echo $((n < TOTAL ? n : TOTAL))
    fi
}
# The plan: one "SERVER TOOL WORKLOAD CLIENTS PLACEMENT-INDEX" line per (run-less) cell.
PLAN=()
for server in "${SERVER_LIST[@]}"; do
    for workload in "${WORKLOAD_LIST[@]}"; do
        if swept "$workload"; then counts=("${SWEEP_LIST[@]}"); else counts=("$CLIENTS"); fi
        [[ $workload == watch-latency ]] && counts=(50) # put clients: enough for --watch-rate
        for p in "${!PLACEMENTS[@]}"; do
            for c in "${counts[@]}"; do
                for tool in "${TOOL_LIST[@]}"; do
                    tool_supports "$tool" "$workload" "$server" && PLAN+=("$server $tool $workload $c $p")
                done
            done
        done
    done
done
((${#PLAN[@]})) || die "nothing to run (no tool supports these workloads)"
# Expected time: requests / (clients / latency) per run, plus a second of process start; the
# typical latency is ~2 ms per request on LAN (more with many clients: ~8K req/s at most) and the
# geometry's commit latency over WAN.
estimate=$(
    for line in "${PLAN[@]}"; do
        read -r _ _ workload c _ <<<"$line"
        echo "$workload $c $(requests_for "$workload" "$c")"
    done | python3 -c '
import sys
geometry, runs, servers, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lat = {"LAN": 0.002, "G1": 0.25, "G2": 0.13}[geometry]
cap = {"LAN": 8000.0, "G1": 2000.0, "G2": 2000.0}[geometry]
secs = 0.0
for line in sys.stdin:
    w, c, n = line.split()
    c, n = int(c), int(n)
    secs += 1.0 + (n / rate + 3 if w == "watch-latency" else n / min(c / lat, cap))
secs = secs * runs + servers * runs * 15 + (10 if geometry != "LAN" else 0)
print(int(secs))' "$GEOMETRY" "$RUNS" "${#SERVER_LIST[@]}" "$WATCH_RATE"
)
n_runs=$((${#PLAN[@]} * RUNS))
log "plan: geometry $GEOMETRY, $MEMBERS member(s), $n_runs runs (${#PLAN[@]} cells x $RUNS runs);" \
    "workloads $WORKLOADS; sweep $SWEEP clients; tools $TOOLS; servers $SERVERS"
log "expected total time: about $(((estimate + 59) / 60)) min ($estimate s) plus builds"
if ((DRY_RUN)); then
    printf '  %s\n' "${PLAN[@]}" >&2
    rm -rf "$WORK"
    exit 0
fi

mkdir -p "$RESULTS/raw"
RESULTS=$(cd "$RESULTS" && pwd)

# ---- prerequisites -----------------------------------------------------------------------------
install_pkg() { # install_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [[ $(id -u) -eq 0 ]] || die "$1 missing: apt-get install $2"
    log "installing $2"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}
has etcd "${SERVER_LIST[@]}" && install_pkg etcd etcd-server
install_pkg etcdctl etcd-client
install_pkg python3 python3
export ETCDCTL_API=3

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
XLINE_BIN=${XLINE_BIN:-$TARGET/xline}
BENCH_BIN=${BENCH_BIN:-$TARGET/benchmark}
PLOT_BIN=${PLOT_BIN:-$TARGET/bench-plot}
build=()
[[ $XLINE_BIN == "$TARGET/xline" ]] && build+=(-p xline-server --bin xline)
[[ $BENCH_BIN == "$TARGET/benchmark" || $PLOT_BIN == "$TARGET/bench-plot" ]] &&
    build+=(-p benchmark --bin benchmark --bin bench-plot)
# The smoke builds what scripts/test.sh's build stage built (the same feature unification), so
# there it costs nothing.
((${#build[@]} && SMOKE)) && build=(--workspace --bins)
if ((${#build[@]})); then
    log "cargo build ($PROFILE profile) ${build[*]}"
    if [[ $PROFILE == release ]]; then build+=(--release); fi
    cargo build --quiet "${build[@]}" >&2
fi
XLINE_BIN=$(realpath "$XLINE_BIN")
BENCH_BIN=$(realpath "$BENCH_BIN")
PLOT_BIN=$(realpath "$PLOT_BIN")
ETCD_BIN=$(command -v etcd || true)
ETCD_TOOL=""
if has etcd "${TOOL_LIST[@]}"; then
    ETCD_TOOL=${ETCD_BENCHMARK:-}
    if [[ -z $ETCD_TOOL ]]; then
        builder=$ROOT/../shared/tools/etcd-benchmark.sh
        [[ -f $builder ]] || builder=/work/shared/tools/etcd-benchmark.sh
        [[ -f $builder ]] || die "etcd's benchmark tool: set ETCD_BENCHMARK or provide shared/tools/etcd-benchmark.sh"
        log "etcd's benchmark tool (built once into ${ETCD_BENCHMARK_DIR:-/tmp/etcd-benchmark})"
        ETCD_TOOL=$(bash "$builder" "${ETCD_BENCHMARK_DIR:-/tmp/etcd-benchmark}")
    fi
    [[ -x $ETCD_TOOL ]] || die "etcd's benchmark tool $ETCD_TOOL is not executable"
fi

# ---- placement -----------------------------------------------------------------------------------
WAN_UP=0
PIDS=()
stop_cluster() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_cluster
    if ((WAN_UP)); then scripts/wan.sh down >&2 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if lan; then
    if [[ -z ${BASE_PORT:-} ]]; then # a free range of 2 x members ports
        BASE_PORT=$(python3 -c '
import socket, random
for _ in range(200):
    base = random.randrange(20000, 40000, 2)
    socks = []
    try:
        for p in range(base, base + 6):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break')
    fi
else
    [[ $(id -u) -eq 0 ]] || die "--geometry $GEOMETRY needs root (network namespaces)"
    log "scripts/wan.sh up $GEOMETRY"
    WAN_UP=1
    scripts/wan.sh up "$GEOMETRY" >&2
fi
member_ns() { if lan; then echo ""; else echo "xr$1"; fi; }
member_host() { if lan; then echo 127.0.0.1; else scripts/wan.sh addr "xr$1"; fi; }
client_port() { if lan; then echo $((BASE_PORT + 2 * $1 - 2)); else echo 2379; fi; }
peer_port() { if lan; then echo $((BASE_PORT + 2 * $1 - 1)); else echo 2380; fi; }
in_ns() { # in_ns NS CMD...: run CMD in namespace NS ("" = here)
    local ns=$1
    shift
    if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
member_url() { echo "$(member_host "$1"):$(client_port "$1")"; }
# peer_endpoints M: every member's peer URL, member M's first (M = 0: in member order); the
# native client's seeds (it learns the cluster from them and talks to the leader and witnesses).
peer_endpoints() {
    local i first=$1
    ((first > 0)) || first=1
    for i in $(seq "$first" "$MEMBERS") $(seq 1 $((first - 1))); do
        echo "http://$(member_host "$i"):$(peer_port "$i")"
    done | paste -sd,
}
ALL_ENDPOINTS=$(for i in $(seq 1 "$MEMBERS"); do member_url "$i"; done | paste -sd,)
CTL_NS=$(if lan; then echo ""; else echo xc1; fi) # where etcdctl runs
ctl() { in_ns "$CTL_NS" etcdctl --dial-timeout 5s --command-timeout 30s --endpoints "$ALL_ENDPOINTS" "$@"; }

# ---- clusters --------------------------------------------------------------------------------------
start_cluster() { # start_cluster xline|etcd
    local kind=$1 bin i cluster="" ns host
    bin=$ETCD_BIN
    [[ $kind == xline ]] && bin=$XLINE_BIN
    [[ -n $bin ]] || die "no $kind binary"
    for i in $(seq 1 "$MEMBERS"); do
        cluster+="${cluster:+,}m$i=http://$(member_host "$i"):$(peer_port "$i")"
    done
    rm -rf "$WORK/$kind"
    for i in $(seq 1 "$MEMBERS"); do
        ns=$(member_ns "$i")
        host=$(member_host "$i")
        mkdir -p "$WORK/$kind"
        local cmd=("$bin" --name "m$i" --data-dir "$WORK/$kind/m$i"
            --listen-client-urls "http://$host:$(client_port "$i")"
            --advertise-client-urls "http://$host:$(client_port "$i")"
            --listen-peer-urls "http://$host:$(peer_port "$i")"
            --initial-advertise-peer-urls "http://$host:$(peer_port "$i")"
            --initial-cluster "$cluster")
        # `ip netns exec` execs the command, so $! is the member's own pid either way (a
        # backgrounded shell function would be a subshell, and killing it would orphan the member).
        [[ -n $ns ]] && cmd=(ip netns exec "$ns" "${cmd[@]}")
        "${cmd[@]}" >"$RESULTS/raw/$kind-m$i.log" 2>&1 &
        PIDS+=($!)
    done
    local tries=0
    for i in $(seq 1 "$MEMBERS"); do
        until grep -qs "ready to serve client requests" "$RESULTS/raw/$kind-m$i.log"; do
            tries=$((tries + 1))
            ((tries < 300)) || die "$kind member m$i did not start; see $RESULTS/raw/$kind-m$i.log"
            kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || die "$kind member m$i exited; see $RESULTS/raw/$kind-m$i.log"
            sleep 0.1
        done
    done
    place_leader
}

status_json() { ctl endpoint status -w json 2>/dev/null; }
place_leader() { # moves the leader to member 1 and checks it is there
    local tries=0 ids m1 leader
    while :; do
        ids=$(status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s[0]["Status"]["header"]["member_id"], s[0]["Status"]["leader"])' 2>/dev/null) || ids=""
        read -r m1 leader <<<"$ids"
        if [[ -n ${leader:-} && $leader != 0 ]]; then
            [[ $leader == "$m1" ]] && break
            ctl move-leader "$(printf '%x' "$m1")" >&2 || true
        fi
        tries=$((tries + 1))
        ((tries < 50)) || die "could not place the leader on member 1"
        sleep 0.2
    done
    log "leader is member 1 ($(printf '%x' "$m1"))"
}

# ---- runs ------------------------------------------------------------------------------------------
# workload_args TOOL WORKLOAD TOTAL: the workload's flags (the same for both tools where shared)
workload_args() {
    local tool=$1 total=$3
    case $2 in
    put) echo "put --total $total --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size $KEY_SPACE" ;;
    put-hot) echo "put --total $total --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size 1" ;;
    range-l) echo "range foo --total $total --consistency l" ;;
    range-s) echo "range foo --total $total --consistency s" ;;
    txn-put) echo "txn-put --total $total --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size $KEY_SPACE --txn-ops 1" ;;
    txn-mixed) echo "txn-mixed --total $total --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size $KEY_SPACE --rw-ratio 1" ;;
    watch-latency)
        # WATCHERS watchers on 10 (or fewer) streams; TOTAL puts at WATCH_RATE per second.
        local streams=$((WATCHERS < 10 ? WATCHERS : 10))
        echo "watch-latency --total $total --rate $WATCH_RATE --streams $streams" \
            "--watchers-per-stream $(((WATCHERS + streams - 1) / streams)) --key-size $KEY_SIZE --val-size $VAL_SIZE"
        ;;
    lease-keepalive) echo "lease-keepalive --total $total" ;;
    esac
}

PARSER=$WORK/parse.py
cat >"$PARSER" <<'EOF'
# parse.py TOOL FILE -> "requests_per_sec p50_ms p99_ms errors fast_share" (errors: -1 when
# unknown; fast_share: the native client's share of fast-path completions, nan for other tools)
import json, re, sys
tool, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8", errors="replace").read()
if tool in ("ours", "native"):
    s = json.loads(text[text.index("{"):])["summary"]
    l = s["latency_ms"] or {}
    n = json.loads(text[text.index("{"):]).get("native") or {}
    print(s["requests_per_sec"], l.get("p50", "nan"), l.get("p99", "nan"), s["errors"], n.get("fast_share", "nan"))
else:
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    p50 = re.search(r"\b50% in ([0-9.]+) secs", text)
    p99 = re.search(r"\b99% in ([0-9.]+) secs", text)
    if not rps:
        sys.exit("no Requests/sec in " + path)
    block = re.search(r"Error distribution:\n((?:[ \t]+\[\d+\].*(?:\n|$))+)", text)
    errs = sum(int(n) for n in re.findall(r"\[(\d+)\]", block.group(1))) if block else 0
    f = lambda m: float(m.group(1)) * 1000 if m else float("nan")
    print(rps.group(1), f(p50), f(p99), errs, "nan")
EOF

CSV=$RESULTS/results.csv
echo "geometry,members,placement,server,tool,workload,clients,conns,requests,run,requests_per_sec,p50_ms,p99_ms,errors,fast_share,raw" >"$CSV"
LOAD_LOG=$RESULTS/load.txt
: >"$LOAD_LOG"

run_one() { # run_one SERVER TOOL WORKLOAD CLIENTS PLACEMENT-INDEX RUN
    local server=$1 tool=$2 workload=$3 clients=$4 run=$6 label ns member eps out args conns total
    read -r label ns member <<<"${PLACEMENTS[$5]}"
    [[ $ns == - ]] && ns=""
    if ((member == 0)); then eps=$ALL_ENDPOINTS; else eps=$(member_url "$member"); fi
    [[ $tool == native ]] && eps=$(peer_endpoints "$member")
    conns=$((clients < CONNS ? clients : CONNS))
    total=$(requests_for "$workload" "$clients")
    out="raw/$server-$tool-$workload-$label-c$clients-$run.txt"
    read -ra args <<<"$(workload_args "$tool" "$workload" "$total")"
    local common=(--endpoints "$eps" --clients "$clients" --conns "$conns")
    # A run that hangs fails the harness instead of stalling it.
    local limit=(timeout --kill-after 5 "$RUN_TIMEOUT")
    [[ -n $ns ]] && limit+=(ip netns exec "$ns")
    case $tool in
    ours) "${limit[@]}" "$BENCH_BIN" "${common[@]}" --json --no-progress "${args[@]}" >"$RESULTS/$out" 2>&1 ;;
    native) "${limit[@]}" "$BENCH_BIN" "${common[@]}" --native --json --no-progress "${args[@]}" >"$RESULTS/$out" 2>&1 ;;
    etcd) "${limit[@]}" "$ETCD_TOOL" "${common[@]}" --precise "${args[@]}" >"$RESULTS/$out" 2>&1 ;;
    esac || die "$tool benchmark failed ($server $workload, $clients clients); see $RESULTS/$out"
    local rps p50 p99 errors fast
    read -r rps p50 p99 errors fast <<<"$(python3 "$PARSER" "$tool" "$RESULTS/$out")"
    echo "$GEOMETRY,$MEMBERS,$label,$server,$tool,$workload,$clients,$conns,$total,$run,$rps,$p50,$p99,$errors,$fast,$out" >>"$CSV"
    printf '  %-5s %-6s %-15s %-3s c=%-4d run %d: %9.1f req/s  p50 %8.3f ms  p99 %8.3f ms%s\n' \
        "$server" "$tool" "$workload" "$label" "$clients" "$run" "$rps" "$p50" "$p99" \
        "$( ((errors > 0)) && echo "  ($errors errors)")$([[ $fast != nan ]] && echo "  (fast path $fast)")" >&2
}

log "results: $RESULTS"
# Runs are interleaved: run 1 of every server, then run 2 of every server, ... each on a fresh
# cluster. The speed of a shared machine drifts by tens of percent within minutes; back-to-back
# blocks per server turned that drift into the ratio, interleaving spreads it over both.
for run in $(seq 1 "$RUNS"); do
    for server in "${SERVER_LIST[@]}"; do
        log "run $run: starting $MEMBERS member(s) of $server"
        sync # the previous cluster's writeback should not land on this one's fsyncs
        start_cluster "$server"
        ctl put foo "$(head -c "$VAL_SIZE" /dev/zero | tr '\0' v)" >/dev/null
        echo "$server run $run start: $(uptime)" >>"$LOAD_LOG"
        for line in "${PLAN[@]}"; do
            read -r s tool workload clients p <<<"$line"
            [[ $s == "$server" ]] || continue
            run_one "$server" "$tool" "$workload" "$clients" "$p" "$run"
        done
        echo "$server run $run end:   $(uptime)" >>"$LOAD_LOG"
        stop_cluster
    done
done

# ---- report ----------------------------------------------------------------------------------------
{
    echo "date: $(date -Is)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r)"
    echo "settings: geometry $GEOMETRY, $MEMBERS member(s), $RUNS run(s), $PER_CLIENT requests per client (at most $TOTAL), conns min(clients, $CONNS), keys $KEY_SIZE B, values $VAL_SIZE B, key space $KEY_SPACE, watchers $WATCHERS at $WATCH_RATE puts/s, $PROFILE build"
} >"$RESULTS/meta.txt"
python3 - "$RESULTS" <<'EOF'
import csv, json, math, statistics, sys
from collections import defaultdict
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/results.csv")))
order = ["put", "put-hot", "range-l", "range-s", "txn-put", "txn-mixed", "watch-latency", "lease-keepalive"]
tools = {"ours": "our tool", "native": "our tool, native client", "etcd": "etcd's tool"}
groups = defaultdict(list)
for r in rows:
    groups[(r["workload"], r["placement"], r["tool"], int(r["clients"]), r["server"])].append(r)
def med(rs, k):
    vals = [float(r[k]) for r in rs if not math.isnan(float(r[k]))]
    return statistics.median(vals) if vals else float("nan")
cells = sorted({k[:4] for k in groups}, key=lambda k: (order.index(k[0]), k[1], list(tools).index(k[2]), k[3]))
with open(f"{out}/medians.csv", "w") as f:
    w = csv.writer(f)
    w.writerow(["workload", "placement", "tool", "clients", "server", "runs", "requests_per_sec", "p50_ms", "p99_ms", "errors", "fast_share"])
    for key, rs in sorted(groups.items()):
        w.writerow(list(key) + [len(rs), f"{med(rs, 'requests_per_sec'):.1f}", f"{med(rs, 'p50_ms'):.3f}",
                                f"{med(rs, 'p99_ms'):.3f}", sum(max(0, int(float(r['errors']))) for r in rs),
                                f"{med(rs, 'fast_share'):.3f}"])
def ratio(a, b):
    return f"{a / b:.2f}x" if b and not math.isnan(a) and not math.isnan(b) else "-"
def num(v, fmt):
    return "-" if v is None or math.isnan(v) else fmt.format(v)
meta = open(f"{out}/meta.txt").read().strip().splitlines()
load = open(f"{out}/load.txt").read().strip().splitlines()
geometry = rows[0]["geometry"] if rows else "?"
lines = [f"# xline vs etcd, geometry {geometry}", ""] + [f"- {m}" for m in meta] + [""]
lines += ["Machine load (uptime) around each server's runs:", "", "```"] + load + ["```", ""]
lines += [
    "Medians of every run; ratio = xline / etcd (throughput: higher is better for xline; latency: lower is).",
    "watch-latency: requests/s are events delivered per second, latency is put-to-event.",
    "",
    "| workload | client | tool | clients | xline req/s | etcd req/s | ratio | xline p50 ms | etcd p50 ms | ratio | xline p99 ms | etcd p99 ms | ratio |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for wl, pl, tool, c in cells:
    x, e = groups.get((wl, pl, tool, c, "xline"), []), groups.get((wl, pl, tool, c, "etcd"), [])
    cols = [wl, pl, tools[tool], str(c)]
    for k, fmt in (("requests_per_sec", "{:.0f}"), ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}")):
        a = med(x, k) if x else None
        b = med(e, k) if e else None
        cols += [num(a, fmt), num(b, fmt), ratio(a, b) if x and e else "-"]
    lines.append("| " + " | ".join(cols) + " |")
native = [k for k in cells if k[2] == "native"]
if native:
    lines += ["", "Native client (xline only) against etcd measured with each etcd-API tool, medians; fast-path share:",
              "requests completed in one round trip (the rest fell back to the ordered result: a conflict on the",
              "key, a txn, or too few witness records).",
              "", "| workload | client | clients | fast-path share | native req/s | etcd req/s (our tool) | ratio "
              "| etcd req/s (etcd's tool) | ratio | native p50 ms | etcd p50 ms (our tool) | ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for wl, pl, tool, c in native:
        x = groups[(wl, pl, tool, c, "xline")]
        eo, ee = groups.get((wl, pl, "ours", c, "etcd")), groups.get((wl, pl, "etcd", c, "etcd"))
        a, o, e = med(x, "requests_per_sec"), med(eo, "requests_per_sec") if eo else None, med(ee, "requests_per_sec") if ee else None
        lp, lo = med(x, "p50_ms"), med(eo, "p50_ms") if eo else None
        lines.append(f"| {wl} | {pl} | {c} | {num(med(x, 'fast_share'), '{:.1%}')} | {num(a, '{:.0f}')} "
                     f"| {num(o, '{:.0f}')} | {ratio(a, o) if o else '-'} | {num(e, '{:.0f}')} | {ratio(a, e) if e else '-'} "
                     f"| {num(lp, '{:.2f}')} | {num(lo, '{:.2f}')} | {ratio(lp, lo) if lo else '-'} |")
errors = sum(max(0, int(float(r["errors"]))) for r in rows)
lines += ["", f"{len(rows)} runs; {errors} failed requests in total. Raw outputs: raw/, every run: results.csv, medians: medians.csv."]

# Charts: throughput against clients for every swept workload, latency CDFs of our tool.
charts = []
for wl in order:
    for pl in sorted({k[1] for k in cells if k[0] == wl}):
        counts = sorted({k[3] for k in cells if k[0] == wl and k[1] == pl})
        if len(counts) > 1:
            series = []
            for tool in tools:
                for server in ("xline", "etcd"):
                    pts = [[c, med(groups[(wl, pl, tool, c, server)], "requests_per_sec")]
                           for c in counts if (wl, pl, tool, c, server) in groups]
                    if pts:
                        series.append({"name": f"{server} ({tools[tool]})", "points": pts})
            charts.append({"file": f"throughput-{wl}-{pl}.png", "x_label": "clients", "y_label": "requests/s",
                           "title": f"{wl} throughput vs clients ({geometry}, {pl}, median of runs)",
                           "log_x": True, "series": series})
        ref = max(counts)
        series = []
        for tool in ("ours", "native"):
            for server in ("xline", "etcd"):
                rs = groups.get((wl, pl, tool, ref, server))
                if not rs:
                    continue
                # the run with the median p50
                r = sorted(rs, key=lambda r: float(r["p50_ms"]))[len(rs) // 2]
                text = open(f"{out}/{r['raw']}").read()
                cdf = json.loads(text[text.index("{"):])["summary"].get("cdf") or []
                if cdf:
                    series.append({"name": f"{server} ({tools[tool]})", "points": [[p["ms"], p["quantile"]] for p in cdf]})
        if series:
            charts.append({"file": f"cdf-{wl}-{pl}.png", "x_label": "latency (ms, log)", "y_label": "fraction of requests",
                           "title": f"{wl} latency CDF ({geometry}, {pl}, {ref} clients)",
                           "log_x": True, "y_from_zero": True, "series": series})
json.dump({"charts": charts}, open(f"{out}/plots.json", "w"), indent=1)
if charts:
    lines += ["", "## Charts", ""] + [f"![{c['title']}]({c['file']})" for c in charts]
report = "\n".join(lines) + "\n"
open(f"{out}/report.md", "w").write(report)
print(report)
EOF

if [[ -s $RESULTS/plots.json ]]; then
    if plots=$("$PLOT_BIN" "$RESULTS/plots.json" 2>&1); then
        log "charts: $(echo "$plots" | wc -l) PNG files in $RESULTS"
    else
        echo "$plots" >&2
        ((SMOKE)) && die "bench-plot failed"
        log "bench-plot failed: no charts"
    fi
fi
if ((SMOKE)); then
    # The harness must have produced a row per run and every chart it planned.
    rows=$(($(wc -l <"$CSV") - 1))
    ((rows == n_runs)) || die "smoke: $rows result rows, expected $n_runs"
    python3 - "$RESULTS" <<'EOF' || die "smoke: a chart or a native run's fast-path count is missing"
import json, os, sys
out = sys.argv[1]
charts = json.load(open(f"{out}/plots.json"))["charts"]
assert charts, "no charts planned"
for c in charts:
    p = os.path.join(out, c["file"])
    assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n", p
# Every native run reported how its requests completed.
import csv, math
for r in csv.DictReader(open(f"{out}/results.csv")):
    if r["tool"] == "native":
        assert not math.isnan(float(r["fast_share"])), r
EOF
    log "smoke: $rows runs and every chart: ok"
fi
log "done: $RESULTS/report.md"
