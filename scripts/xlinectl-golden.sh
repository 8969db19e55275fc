#!/usr/bin/env bash
# xlinectl golden test: runs the SAME list of commands through Debian's etcdctl (3.4) and through
# xlinectl against the same server, in every output format, normalizes both transcripts with
# scripts/etcdctl-compat-normalize.py and diffs them. Only the client differs: for each server
# kind (xline, then etcd) the server is started on the same ports with the same flags and an
# empty data dir, the scenario is run with etcdctl, the server is stopped and wiped, started
# again identically, and the scenario is run with xlinectl.
#
# Usage: scripts/xlinectl-golden.sh
#
# Environment:
#   XLINE_BIN        xline binary (default: built with `cargo build --bin xline`)
#   XLINECTL_BIN     xlinectl binary (default: built with `cargo build --bin xlinectl`)
#   REFERENCE_ETCD   etcd binary (default: etcd)
#   GOLDEN_ETCDCTL   etcdctl binary (default: etcdctl)
#   GOLDEN_SERVERS   which servers to run against (default: "xline etcd")
#   GOLDEN_KEEP_DIR  if set, raw and normalized transcripts are copied there
#   GOLDEN_TIMING    if set, the slowest commands are listed at the end
#
# What is normalized is listed in scripts/etcdctl-compat-normalize.py (ids, terms, timings,
# lease ids). In addition, etcdctl's own client-side zap log lines on stderr (`{"level":"warn",
# ... "retrying of unary invoker failed"}`) are dropped: they are gRPC-go client logging, not
# command output. `-w protobuf` output is compared as hex bytes.
#
# Exit status: 0 iff every block matches; 1 on a difference; 2 on a setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALLER_PWD=$PWD
cd "$ROOT"
NORMALIZER="$ROOT/scripts/etcdctl-compat-normalize.py"
REF_ETCD=${REFERENCE_ETCD:-etcd}
ETCDCTL=${GOLDEN_ETCDCTL:-etcdctl}
SERVERS=${GOLDEN_SERVERS:-xline etcd}
KEEP_DIR=${GOLDEN_KEEP_DIR:-}

die() {
    echo "xlinectl-golden: $*" >&2
    exit 2
}

for tool in "$REF_ETCD" "$ETCDCTL" python3 diff od timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool not found: $tool"
done
while IFS= read -r var; do
    unset "$var"
done < <(compgen -e | grep -E '^ETCD(CTL)?_' || true)
export ETCDCTL_API=3

target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir="$ROOT/$target_dir"
if [[ -z ${XLINE_BIN:-} || -z ${XLINECTL_BIN:-} ]]; then
    echo "xlinectl-golden: building xline and xlinectl"
    cargo build --quiet --bin xline --bin xlinectl || die "cargo build failed"
fi
abs() { if [[ $1 == /* ]]; then echo "$1"; else echo "$CALLER_PWD/$1"; fi; }
XLINE_BIN=$(abs "${XLINE_BIN:-$target_dir/debug/xline}")
XLINECTL_BIN=$(abs "${XLINECTL_BIN:-$target_dir/debug/xlinectl}")
[[ -x $XLINE_BIN ]] || die "xline binary not found: $XLINE_BIN"
[[ -x $XLINECTL_BIN ]] || die "xlinectl binary not found: $XLINECTL_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xlinectl-golden.XXXXXX")
SERVER_PID=""
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
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

read -r CLIENT_PORT PEER_PORT < <(free_ports 2)
CLIENT_URL="http://127.0.0.1:${CLIENT_PORT}"
PEER_URL="http://127.0.0.1:${PEER_PORT}"

# start_server KIND : a fresh single member of KIND (xline|etcd) on the fixed ports.
start_server() {
    local kind=$1 bin log="$WORK/$1-server.log"
    rm -rf "$WORK/data"
    if [[ $kind == xline ]]; then bin=$XLINE_BIN; else bin=$REF_ETCD; fi
    "$bin" --name golden --data-dir "$WORK/data" \
        --listen-client-urls "$CLIENT_URL" --advertise-client-urls "$CLIENT_URL" \
        --listen-peer-urls "$PEER_URL" --initial-advertise-peer-urls "$PEER_URL" \
        --initial-cluster "golden=${PEER_URL}" >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    local deadline=$((SECONDS + 60))
    until grep -q 'ready to serve client requests' "$log"; do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$log" >&2; die "$kind exited before it was ready"; }
        ((SECONDS < deadline)) || { tail -n 30 "$log" >&2; die "$kind not ready after 60s"; }
        sleep 0.1
    done
}

CTL=""
OUT=""
SEQ=0

# run LABEL STDIN ARGS... : runs the client under test and appends the command, its output and
# exit code to the transcript. The command line is recorded as `$ etcdctl ...` for both clients.
run() {
    local label=$1 input=$2
    shift 2
    SEQ=$((SEQ + 1))
    local out="$WORK/cmd.out" rc=0 pb=0 a start=$EPOCHREALTIME
    for a in "$@"; do [[ $a == protobuf ]] && pb=1; done
    {
        printf '### %03d %s\n' "$SEQ" "$label"
        printf '$ etcdctl'
        printf ' %q' "$@"
        printf '\n'
        [[ -z $input ]] || printf '%s' "$input" | sed 's/^/  | /'
    } >>"$OUT"
    if [[ -n $input ]]; then
        printf '%s' "$input" | "$CTL" --endpoints="$CLIENT_URL" "$@" >"$out.1" 2>"$out.2" || rc=$?
    else
        ${WATCH_TIMEOUT:+timeout -s INT "$WATCH_TIMEOUT"} "$CTL" --endpoints="$CLIENT_URL" "$@" \
            </dev/null >"$out.1" 2>"$out.2" || rc=$?
    fi
    if ((pb)); then
        od -An -tx1 -v "$out.1" | tr -s ' \n' ' ' | sed 's/^ //' >"$out"
        printf '\n' >>"$out"
    else
        cat "$out.1" >"$out"
    fi
    if [[ -s $out.2 ]]; then
        grep -v -E '^\{"level":"(warn|info)".*"caller":"clientv3/' "$out.2" >>"$out" || true
    fi
    cat "$out" >>"$OUT"
    [[ ! -s $out || -z $(tail -c 1 "$out") ]] || printf '\n' >>"$OUT"
    printf '[exit %d]\n\n' "$rc" >>"$OUT"
    if [[ -n ${GOLDEN_TIMING:-} ]]; then
        printf '%s\t%s %s\n' "$(bc <<<"$EPOCHREALTIME - $start")" "${CTL##*/}" "$label" >>"$WORK/timing"
    fi
}

c() {
    local label=$1
    shift
    run "$label" "" "$@"
}

FORMATS=(simple json fields table protobuf)

# every LABEL ARGS... : a read-only command in every output format.
every() {
    local label=$1 f
    shift
    for f in "${FORMATS[@]}"; do
        c "$label -w $f" "$@" -w "$f"
    done
}

scenario() {
    SEQ=0
    # --- cluster views
    every "member list" member list
    every "endpoint status" endpoint status
    every "endpoint hashkv" endpoint hashkv
    c "endpoint health json" endpoint health -w json
    c "endpoint health fields" endpoint health -w fields
    every "alarm list" alarm list
    # --- put in every format (each a new write)
    local f
    for f in "${FORMATS[@]}"; do
        c "put -w $f" put "key-$f" "value-$f" -w "$f"
        c "put prev-kv -w $f" put "key-$f" "value2-$f" --prev-kv -w "$f"
    done
    c "put hex value" put hexkey $'\x01bin' --hex
    c "put from stdin" put stdinkey </dev/null
    run "put from stdin (value)" "from-stdin" put stdinkey
    c "put ignore-value" put key-json --ignore-value
    c "put ignore-value with value" put key-json v --ignore-value
    c "put no args" put
    c "put bad lease" put k v --lease=zz
    c "put missing lease" put k v --lease=1234
    # --- get
    every "get key" get key-json
    every "get prefix" get key- --prefix
    every "get from-key keys-only" get key-s --from-key --keys-only
    every "get range limit" get key-a key-z --limit 2
    every "get sorted" get key- --prefix --sort-by=VALUE --order=DESCEND
    every "get rev" get key-json --rev=3
    c "get hex" get key-json --hex
    c "get hex binary" get hexkey --hex
    c "get value only" get key- --prefix --print-value-only
    c "get value only json" get key- --prefix --print-value-only -w json
    c "get serializable" get key-json --consistency=s
    c "get bad consistency" get key-json --consistency=x
    c "get bad order" get key-json --order=UP
    c "get bad sort" get key-json --sort-by=NAME
    c "get prefix and from-key" get a --prefix --from-key
    c "get too many" get a b --prefix
    c "get no key" get
    c "get future rev" get key-json --rev=1000
    c "get bad format" get key-json -w yaml
    c "get missing" get nothing-here -w json
    # --- txn
    local t1=$'value("key-json") = "value2-json"\n\nput txn-a 1\nget key-json\ndel key-fields --prev-kv\n\nput txn-b 2\n\n'
    local t2=$'mod("key-json") > "1000"\nver("key-simple") != "0"\n\nput txn-c 3\n\nget txn-a --prefix\nput txn-d 4 --prev-kv\n\n'
    for f in "${FORMATS[@]}"; do
        run "txn success -w $f" "$t1" txn -w "$f"
        run "txn failure -w $f" "$t2" txn -w "$f"
    done
    run "txn interactive" "$t1" txn -i
    run "txn bad compare" $'nonsense\n\n\n\n' txn
    run "txn bad target" $'foo("k") = "v"\n\n\n\n' txn
    run "txn bad op" $'\nbogus op\n\n\n' txn
    run "txn truncated" $'\n' txn
    run "txn quoted" $'\nput "quoted key" "a value"\nget "quoted key"\n\n\n' txn
    c "txn with args" txn extra
    # --- del
    for f in "${FORMATS[@]}"; do
        c "del -w $f" del "key-$f" --prev-kv -w "$f"
    done
    c "del prefix" del txn- --prefix
    c "del from-key" del zzz --from-key
    c "del range" del a b
    c "del nothing" del nothing-here
    c "del no args" del
    c "del too many" del a b c
    # --- snapshots: status of a file Debian's etcd saved, of this server's snapshot (saved
    # unrecorded: etcdctl logs zap lines; xline's is the same file for both clients, etcd's
    # bbolt layout is not), of files that are not snapshots; restore's argument error
    every "snapshot status etcd file" snapshot status "$ROOT/xline-bolt/testdata/etcd-3.4.23-snapshot.db"
    rm -f "$WORK/snap.db"
    "$CTL" --endpoints="$CLIENT_URL" snapshot save "$WORK/snap.db" >/dev/null 2>&1
    [[ $kind != xline ]] || every "snapshot status saved" snapshot status "$WORK/snap.db"
    c "snapshot status missing" snapshot status "$WORK/no-such.db"
    printf 'not bbolt\n' >"$WORK/not-bolt.db"
    c "snapshot status not bolt" snapshot status "$WORK/not-bolt.db"
    : >"$WORK/empty.db"
    c "snapshot status empty" snapshot status "$WORK/empty.db"
    c "snapshot status no args" snapshot status
    c "snapshot restore no args" snapshot restore
    # --- leases
    for f in "${FORMATS[@]}"; do
        c "lease grant -w $f" lease grant 100 -w "$f"
    done
    local lease
    lease=$("$CTL" --endpoints="$CLIENT_URL" lease grant 300 | awk '{print $2}')
    c "put with lease" put leased v --lease="$lease"
    every "lease timetolive" lease timetolive "$lease"
    every "lease timetolive keys" lease timetolive "$lease" --keys
    every "lease list" lease list
    for f in "${FORMATS[@]}"; do
        c "lease keep-alive once -w $f" lease keep-alive --once "$lease" -w "$f"
    done
    every "lease timetolive expired" lease timetolive 1234
    c "lease keep-alive once missing" lease keep-alive --once 1234
    c "lease revoke" lease revoke "$lease"
    c "lease revoke missing" lease revoke "$lease"
    c "lease revoke json" lease revoke 1234 -w json
    c "lease grant bad ttl" lease grant x
    c "lease grant no ttl" lease grant
    c "lease timetolive bad id" lease timetolive zz
    # --- watch (history from revision 1; ended by SIGINT after 1 s)
    local wf
    for wf in simple json fields; do
        WATCH_TIMEOUT=1 c "watch history -w $wf" watch key- --prefix --rev=1 --prev-kv -w "$wf"
    done
    WATCH_TIMEOUT=1 c "watch range" watch key-a key-z --rev=1
    c "watch no key" watch
    c "watch prefix and range" watch a b --prefix
    # --- compaction
    c "compaction" compaction 3
    c "compaction again" compaction 3
    c "compaction physical" compaction 4 --physical
    c "compaction bad" compaction x
    c "get compacted" get key-json --rev=2
    # --- members and maintenance, by their error paths that need no second member
    c "member remove missing" member remove 1234
    c "member remove bad id" member remove zz
    c "member update no urls" member update 1234
    c "member add no urls" member add newbie
    c "member add too many" member add a http://x
    c "alarm disarm" alarm disarm
    c "alarm disarm json" alarm disarm -w json
    # --- auth, users, roles
    for f in "${FORMATS[@]}"; do
        c "role add -w $f" role add "role-$f" -w "$f"
    done
    c "role add r1" role add r1
    c "role grant prefix" role grant-permission r1 readwrite /pre --prefix
    c "role grant key" role grant-permission r1 read /k
    c "role grant range" role grant-permission r1 write /a /b
    c "role grant from-key" role grant-permission r1 write /z --from-key
    c "role grant bad type" role grant-permission r1 exec /k
    every "role get" role get r1
    every "role list" role list
    c "role revoke key" role revoke-permission r1 /k
    c "role revoke range" role revoke-permission r1 /a /b
    c "role revoke from-key" role revoke-permission r1 /z --from-key
    c "role revoke missing" role revoke-permission r1 /nothing
    c "role get missing" role get nope
    c "user add" user add u1:pw1
    c "user add json" user add u2:pw2 -w json
    c "user add flag password" user add u3 --new-user-password=pw3
    c "user add exists" user add u1:pw1
    c "user grant-role" user grant-role u1 r1
    every "user get" user get u1
    every "user list" user list
    c "user revoke-role" user revoke-role u1 r1
    c "user delete" user delete u3
    c "user delete missing" user delete u3
    c "role delete" role delete r1
    c "auth disable (not enabled)" auth disable
}

# Values the compat normalizer leaves alone because etcdctl-compat.sh never prints them: the
# `-w fields` "Took" of endpoint health, the lease "ID" lines of `-w fields` (numbered by first
# appearance, as the normalizer numbers lease ids elsewhere), and the db size of endpoint status
# in the simple/fields/table formats (bbolt's file size varies from run to run; the JSON one is
# already normalized).
prenormalize() {
    python3 -c '
import re, sys
ids = {}
block = ""
for line in sys.stdin:
    if line.startswith("### "):
        block = line
    line = re.sub(r"^\"Took\" : \S+$", "\"Took\" : <took>", line.rstrip("\n")) + "\n"
    if " endpoint status " in block:
        line = re.sub(r"^\"DBSize\" : \d+$", "\"DBSize\" : <size>", line.rstrip("\n")) + "\n"
        line = re.sub(r"(, | +)\d+(\.\d)? [kMGTPE]?B( \||,)", r"\1<size>\3", line)
    m = re.match(r"^\"ID\" : (\d+)$", line.rstrip("\n"))
    if m and " lease " in block:
        ids.setdefault(m.group(1), "<lease-id-%d>" % (len(ids) + 1))
        line = "\"ID\" : %s\n" % ids[m.group(1)]
    sys.stdout.write(line)
'
}

# Commands (labels without the sequence number) that run with both clients but whose output is
# not compared, each with the reason. Keep it short: any other difference is a bug.
NOT_COMPARED="$WORK/not-compared.tsv"
printf '%s\t%s\n' \
    "alarm list -w fields" "etcdctl 3.4 panics (nil header) on etcd's header-less AlarmResponse; xlinectl prints zeros" \
    >"$NOT_COMPARED"

RESULT=0
for kind in $SERVERS; do
    for client in etcdctl xlinectl; do
        if [[ $client == etcdctl ]]; then CTL=$(command -v "$ETCDCTL"); else CTL=$XLINECTL_BIN; fi
        OUT="$WORK/$kind-$client.raw"
        : >"$OUT"
        start_server "$kind"
        scenario
        stop_server
        prenormalize <"$OUT" | python3 "$NORMALIZER" normalize "$CLIENT_URL" |
            python3 "$NORMALIZER" filter "$NOT_COMPARED" >"$WORK/$kind-$client.norm"
    done
    echo "xlinectl-golden: against $kind"
    if ! python3 "$NORMALIZER" compare etcdctl "$WORK/$kind-etcdctl.norm" xlinectl "$WORK/$kind-xlinectl.norm"; then
        diff -u "$WORK/$kind-etcdctl.norm" "$WORK/$kind-xlinectl.norm" | head -n 200 || true
        RESULT=1
    fi
done
if [[ -n ${GOLDEN_TIMING:-} ]]; then
    echo "xlinectl-golden: slowest commands (seconds):"
    sort -rn "$WORK/timing" | head -n 15
fi
if [[ -n $KEEP_DIR ]]; then
    mkdir -p "$KEEP_DIR"
    cp "$WORK"/*.raw "$WORK"/*.norm "$WORK"/*-server.log "$KEEP_DIR"/ 2>/dev/null || true
fi
exit "$RESULT"
