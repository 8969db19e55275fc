#!/usr/bin/env bash
# Side-by-side benchmark: a 3-member xline cluster and a 3-member Debian etcd, the same
# workloads, the same placement, measured by our `benchmark` AND etcd's own benchmark tool.
#
#   scripts/bench.sh [options]
#
#   --geometry LAN|G1|G2   LAN (default): loopback. G1/G2: `scripts/wan.sh up G1|G2` first;
#                          members run in namespaces xr1..xr3, clients in xc1 (G1, talking to
#                          its nearest member, xr3) or xc1..xc3 (G2, each talking to the member
#                          of its region, one region after the other)
#   --runs N               runs of every (server, tool, workload) (default 3; medians reported)
#   --workloads LIST       comma-separated: put, range, txn-put (default all three)
#   --servers LIST         xline,etcd (default both; one at a time, never concurrently)
#   --tools LIST           ours,etcd (default both)
#   --clients N --conns N  (default 100 and 10)
#   --total N              requests per run (default 30000)
#   --key-size N --val-size N --key-space-size N    (default 8, 256, 100000)
#   --consistency l|s      of range (default l)
#   --results DIR          (default bench-results/<date>-<geometry>)
#   --smoke                seconds-long check of the harness: 1 run of 300 requests, 10 clients
#
# The leader is moved to member 1 before measuring (etcdctl move-leader), for both servers.
# Range reads one existing key (`foo`, --val-size bytes), as `benchmark range foo` does.
# Writes to the results dir: raw/ (every tool's output), results.csv (one row per run),
# medians.csv, report.md (the table printed at the end: medians and ratios xline/etcd) and,
# when gnuplot is installed, throughput.png.
#
# Environment: XLINE_BIN (default target/release/xline, built), BENCH_BIN (default
# target/release/benchmark, built), ETCD_BENCHMARK (etcd's tool; default: built into
# ETCD_BENCHMARK_DIR, /tmp/etcd-benchmark, by ../shared/tools/etcd-benchmark.sh), BASE_PORT (LAN:
# member i serves clients on BASE_PORT+2i-2, peers on the next port; default 24379).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

GEOMETRY=LAN RUNS=3 WORKLOADS=put,range,txn-put SERVERS=xline,etcd TOOLS=ours,etcd
CLIENTS=100 CONNS=10 TOTAL=30000 KEY_SIZE=8 VAL_SIZE=256 KEY_SPACE=100000 CONSISTENCY=l
RESULTS=""
BASE_PORT=${BASE_PORT:-24379}

die() {
    echo "bench.sh: $*" >&2
    exit 1
}
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }

while (($#)); do
    case $1 in
    --geometry) GEOMETRY=${2^^} && shift ;;
    --runs) RUNS=$2 && shift ;;
    --workloads) WORKLOADS=$2 && shift ;;
    --servers) SERVERS=$2 && shift ;;
    --tools) TOOLS=$2 && shift ;;
    --clients) CLIENTS=$2 && shift ;;
    --conns) CONNS=$2 && shift ;;
    --total) TOTAL=$2 && shift ;;
    --key-size) KEY_SIZE=$2 && shift ;;
    --val-size) VAL_SIZE=$2 && shift ;;
    --key-space-size) KEY_SPACE=$2 && shift ;;
    --consistency) CONSISTENCY=$2 && shift ;;
    --results) RESULTS=$2 && shift ;;
    --smoke) RUNS=1 TOTAL=300 CLIENTS=10 CONNS=2 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
case $GEOMETRY in LAN | G1 | G2) ;; *) die "--geometry must be LAN, G1 or G2" ;; esac
case $CONSISTENCY in l | s) ;; *) die "--consistency must be l or s" ;; esac
for n in RUNS CLIENTS CONNS TOTAL KEY_SIZE VAL_SIZE KEY_SPACE; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive number, not '${!n}'"
done
IFS=, read -ra WORKLOAD_LIST <<<"$WORKLOADS"
IFS=, read -ra SERVER_LIST <<<"$SERVERS"
IFS=, read -ra TOOL_LIST <<<"$TOOLS"
for w in "${WORKLOAD_LIST[@]}"; do [[ $w =~ ^(put|range|txn-put)$ ]] || die "unknown workload $w"; done
for s in "${SERVER_LIST[@]}"; do [[ $s =~ ^(xline|etcd)$ ]] || die "unknown server $s"; done
for t in "${TOOL_LIST[@]}"; do [[ $t =~ ^(ours|etcd)$ ]] || die "unknown tool $t"; done

RESULTS=${RESULTS:-bench-results/$(date +%Y%m%d-%H%M%S)-$GEOMETRY}
mkdir -p "$RESULTS/raw"
RESULTS=$(cd "$RESULTS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xline-bench.XXXXXX")

# ---- prerequisites -----------------------------------------------------------------------------
install_pkg() { # install_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [[ $(id -u) -eq 0 ]] || die "$1 missing: apt-get install $2"
    log "installing $2"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}
install_pkg etcd etcd-server
install_pkg etcdctl etcd-client
install_pkg python3 python3
export ETCDCTL_API=3

XLINE_BIN=${XLINE_BIN:-target/release/xline}
BENCH_BIN=${BENCH_BIN:-target/release/benchmark}
if [[ $XLINE_BIN == target/release/xline || $BENCH_BIN == target/release/benchmark ]]; then
    log "cargo build --release (xline, benchmark)"
    cargo build --quiet --release -p xline-server --bin xline -p benchmark --bin benchmark >&2
fi
XLINE_BIN=$(realpath "$XLINE_BIN")
BENCH_BIN=$(realpath "$BENCH_BIN")
ETCD_BIN=$(command -v etcd)
ETCD_TOOL=""
if [[ " ${TOOL_LIST[*]} " == *" etcd "* ]]; then
    ETCD_TOOL=${ETCD_BENCHMARK:-}
    if [[ -z $ETCD_TOOL ]]; then
        builder=$ROOT/../shared/tools/etcd-benchmark.sh
        [[ -x $builder ]] || builder=/work/shared/tools/etcd-benchmark.sh
        [[ -f $builder ]] || die "etcd's benchmark tool: set ETCD_BENCHMARK or provide shared/tools/etcd-benchmark.sh"
        log "etcd's benchmark tool (built once into ${ETCD_BENCHMARK_DIR:-/tmp/etcd-benchmark})"
        ETCD_TOOL=$(bash "$builder" "${ETCD_BENCHMARK_DIR:-/tmp/etcd-benchmark}")
    fi
    [[ -x $ETCD_TOOL ]] || die "etcd's benchmark tool $ETCD_TOOL is not executable"
fi

# ---- placement -----------------------------------------------------------------------------------
WAN_UP=0
if [[ $GEOMETRY != LAN ]]; then
    [[ $(id -u) -eq 0 ]] || die "--geometry $GEOMETRY needs root (network namespaces)"
    log "scripts/wan.sh up $GEOMETRY"
    scripts/wan.sh up "$GEOMETRY" >&2
    WAN_UP=1
fi
lan() { [[ $GEOMETRY == LAN ]]; }
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
ALL_ENDPOINTS="$(member_url 1),$(member_url 2),$(member_url 3)"
# Client placements: "LABEL NAMESPACE ENDPOINTS" lines.
case $GEOMETRY in
LAN) PLACEMENTS=("lan - $ALL_ENDPOINTS") ;;
G1) PLACEMENTS=("g1 xc1 $(member_url 3)") ;; # the client's nearest member (50 ms)
G2) PLACEMENTS=("r1 xc1 $(member_url 1)" "r2 xc2 $(member_url 2)" "r3 xc3 $(member_url 3)") ;;
esac
CTL_NS=$(if lan; then echo ""; else echo xc1; fi) # where etcdctl runs
ctl() { in_ns "$CTL_NS" etcdctl --dial-timeout 5s --command-timeout 30s --endpoints "$ALL_ENDPOINTS" "$@"; }

# ---- clusters --------------------------------------------------------------------------------------
PIDS=()
stop_cluster() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
    if ((WAN_UP)); then scripts/wan.sh down >&2 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_cluster() { # start_cluster xline|etcd
    local kind=$1 bin i cluster="" ns host
    bin=$ETCD_BIN
    [[ $kind == xline ]] && bin=$XLINE_BIN
    for i in 1 2 3; do
        cluster+="${cluster:+,}m$i=http://$(member_host "$i"):$(peer_port "$i")"
    done
    for i in 1 2 3; do
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
    for i in 1 2 3; do
        until grep -q "ready to serve client requests" "$RESULTS/raw/$kind-m$i.log"; do
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
# tool_args TOOL WORKLOAD: the workload's flags (identical for both tools where they share them)
workload_args() {
    case $2 in
    put) echo "put --total $TOTAL --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size $KEY_SPACE" ;;
    range) echo "range foo --total $TOTAL --consistency $CONSISTENCY" ;;
    txn-put) echo "txn-put --total $TOTAL --key-size $KEY_SIZE --val-size $VAL_SIZE --key-space-size $KEY_SPACE --txn-ops 1" ;;
    esac
}

PARSER=$WORK/parse.py
cat >"$PARSER" <<'EOF'
# parse.py TOOL FILE -> "requests_per_sec p50_ms p99_ms errors" (errors: -1 when unknown)
import json, re, sys
tool, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8", errors="replace").read()
if tool == "ours":
    s = json.loads(text[text.index("{"):])["summary"]
    l = s["latency_ms"] or {}
    print(s["requests_per_sec"], l.get("p50", "nan"), l.get("p99", "nan"), s["errors"])
else:
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    p50 = re.search(r"\b50% in ([0-9.]+) secs", text)
    p99 = re.search(r"\b99% in ([0-9.]+) secs", text)
    if not rps:
        sys.exit("no Requests/sec in " + path)
    block = re.search(r"Error distribution:\n((?:[ \t]+\[\d+\].*(?:\n|$))+)", text)
    errs = sum(int(n) for n in re.findall(r"\[(\d+)\]", block.group(1))) if block else 0
    f = lambda m: float(m.group(1)) * 1000 if m else float("nan")
    print(rps.group(1), f(p50), f(p99), errs)
EOF

CSV=$RESULTS/results.csv
echo "geometry,placement,server,tool,workload,run,requests_per_sec,p50_ms,p99_ms,errors" >"$CSV"

run_one() { # run_one SERVER TOOL WORKLOAD PLACEMENT-LINE RUN
    local server=$1 tool=$2 workload=$3 label ns eps run=$5 out args
    read -r label ns eps <<<"$4"
    [[ $ns == - ]] && ns=""
    out="$RESULTS/raw/$server-$tool-$workload-$label-$run.txt"
    read -ra args <<<"$(workload_args "$tool" "$workload")"
    local common=(--endpoints "$eps" --clients "$CLIENTS" --conns "$CONNS")
    if [[ $tool == ours ]]; then
        in_ns "$ns" "$BENCH_BIN" "${common[@]}" --json --no-progress "${args[@]}" >"$out" 2>&1 ||
            die "our benchmark failed; see $out"
    else
        in_ns "$ns" "$ETCD_TOOL" "${common[@]}" --precise "${args[@]}" >"$out" 2>&1 ||
            die "etcd's benchmark failed; see $out"
    fi
    local rps p50 p99 errors
    read -r rps p50 p99 errors <<<"$(python3 "$PARSER" "$tool" "$out")"
    echo "$GEOMETRY,$label,$server,$tool,$workload,$run,$rps,$p50,$p99,$errors" >>"$CSV"
    printf '  %-5s %-4s %-7s %-3s run %d: %9.1f req/s  p50 %7.3f ms  p99 %7.3f ms%s\n' \
        "$server" "$tool" "$workload" "$label" "$run" "$rps" "$p50" "$p99" \
        "$( ((errors > 0)) && echo "  ($errors errors)")" >&2
}

n_runs=$((${#SERVER_LIST[@]} * ${#TOOL_LIST[@]} * ${#WORKLOAD_LIST[@]} * RUNS * ${#PLACEMENTS[@]}))
log "geometry $GEOMETRY: $n_runs runs of $TOTAL requests ($CLIENTS clients, $CONNS conns," \
    "$KEY_SIZE B keys, $VAL_SIZE B values, $KEY_SPACE keys); at ~10K req/s that is about" \
    "$(((n_runs * TOTAL / 10000 + n_runs * 2 + ${#SERVER_LIST[@]} * 10 + 59) / 60)) min"
log "results: $RESULTS"

for server in "${SERVER_LIST[@]}"; do
    log "starting a 3-member $server"
    start_cluster "$server"
    ctl put foo "$(head -c "$VAL_SIZE" /dev/zero | tr '\0' v)" >/dev/null
    for workload in "${WORKLOAD_LIST[@]}"; do
        for placement in "${PLACEMENTS[@]}"; do
            for run in $(seq 1 "$RUNS"); do
                for tool in "${TOOL_LIST[@]}"; do
                    run_one "$server" "$tool" "$workload" "$placement" "$run"
                done
            done
        done
    done
    stop_cluster
done

# ---- report ----------------------------------------------------------------------------------------
python3 - "$CSV" "$RESULTS" <<'EOF'
import csv, math, statistics, sys
from collections import defaultdict
path, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path)))
groups = defaultdict(list)
for r in rows:
    groups[(r["workload"], r["placement"], r["tool"], r["server"])].append(r)
def med(rs, k):
    vals = [float(r[k]) for r in rs if not math.isnan(float(r[k]))]
    return statistics.median(vals) if vals else float("nan")
keys = sorted({k[:3] for k in groups}, key=lambda k: (["put", "range", "txn-put"].index(k[0]), k[1], k[2]))
with open(f"{out}/medians.csv", "w") as f:
    w = csv.writer(f)
    w.writerow(["workload", "placement", "tool", "server", "runs", "requests_per_sec", "p50_ms", "p99_ms"])
    for (wl, pl, tool, server), rs in sorted(groups.items()):
        w.writerow([wl, pl, tool, server, len(rs), f"{med(rs, 'requests_per_sec'):.1f}", f"{med(rs, 'p50_ms'):.3f}", f"{med(rs, 'p99_ms'):.3f}"])
def ratio(a, b):
    return f"{a / b:.2f}x" if b and not math.isnan(a) and not math.isnan(b) else "-"
geometry = rows[0]["geometry"] if rows else "?"
lines = [
    f"# xline vs etcd, geometry {geometry}",
    "",
    "Medians of every run; ratio = xline / etcd (throughput: higher is better for xline; latency: lower is).",
    "",
    "| workload | client | tool | xline req/s | etcd req/s | ratio | xline p50 ms | etcd p50 ms | ratio | xline p99 ms | etcd p99 ms | ratio |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for wl, pl, tool in keys:
    x, e = groups.get((wl, pl, tool, "xline"), []), groups.get((wl, pl, tool, "etcd"), [])
    cells = [wl, pl, tool]
    for k, fmt in (("requests_per_sec", "{:.0f}"), ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}")):
        a, b = med(x, k), med(e, k)
        cells += [fmt.format(a) if x else "-", fmt.format(b) if e else "-", ratio(a, b)]
    lines.append("| " + " | ".join(cells) + " |")
errors = sum(int(float(r["errors"])) for r in rows if float(r["errors"]) > 0)
lines += ["", f"{len(rows)} runs; {errors} failed requests in total. Raw outputs: raw/, every run: results.csv."]
report = "\n".join(lines) + "\n"
open(f"{out}/report.md", "w").write(report)
print(report)
with open(f"{out}/throughput.dat", "w") as f:
    f.write("# label xline etcd\n")
    for wl, pl, tool in keys:
        x, e = groups.get((wl, pl, tool, "xline"), []), groups.get((wl, pl, tool, "etcd"), [])
        f.write(f"{wl}/{tool}{'' if pl in ('lan', 'g1') else '@' + pl} {med(x, 'requests_per_sec') if x else 0:.1f} {med(e, 'requests_per_sec') if e else 0:.1f}\n")
EOF

if command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<EOF && log "plot: $RESULTS/throughput.png"
set terminal pngcairo size 900,500
set output "$RESULTS/throughput.png"
set title "Throughput, median of $RUNS runs ($GEOMETRY, $CLIENTS clients, $CONNS conns)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "requests/s"
set yrange [0:*]
set key top right
set xtics rotate by -20
plot "$RESULTS/throughput.dat" using 2:xtic(1) title "xline", '' using 3 title "etcd"
EOF
else
    log "gnuplot not installed: no plot (apt-get install gnuplot-nox)"
fi
log "done: $RESULTS/report.md"
