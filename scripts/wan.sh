#!/usr/bin/env bash
# WAN emulation without netem: network namespaces + policy routing + a userspace delay router.
#
#   scripts/wan.sh up G1|G2|LAN|MATRIX-FILE   create everything (idempotent), start the router
#   scripts/wan.sh down                        remove everything this script created
#   scripts/wan.sh addr NS                     print namespace NS's address (e.g. 10.77.1.10)
#   scripts/wan.sh status                      what is up, the delay table, router counters
#   scripts/wan.sh exec NS CMD...              run CMD inside namespace NS
#   scripts/wan.sh matrix                      print the active matrix file
#
# Layout (see README "WAN emulation"): every emulated host is a namespace (xr1..xr3 for members,
# xc1..xc3 for clients in the presets) with one address in 10.77.0.0/16 on its interface `wan0`,
# joined to the root namespace by a veth pair (root side `NS-h`, gateway 10.77.0.1). In the root
# namespace, `ip rule`s send what arrives from a namespace to routing table 177, whose only route
# is 10.77.0.0/16 via the TUN device xwan0 -- except traffic within a region whose internal delay
# is 0, which a higher-priority rule routes directly. `wan-router` (benchmark/src/bin/) reads each
# packet from xwan0, holds it for the one-way delay of its (source region, destination region)
# pair and writes it back; the kernel then delivers it to the destination namespace's veth.
#
# Needs root. Environment:
#   WAN_ROUTER      path of a wan-router binary (default: build it with cargo --release)
#   WAN_STATE_DIR   where the state lives (default /run/xline-wan)
#   WAN_TUN         TUN device name (default xwan0)
#   WAN_TABLE       routing table number (default 177); WAN_RULE_PREF rule priority (17700)
#   WAN_MTU         MTU of the TUN and veth devices (default 9000: the router's cost is per
#                   packet, so jumbo frames cut its CPU use ~6x for bulk traffic; 1500 to be
#                   realistic)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${WAN_STATE_DIR:-/run/xline-wan}
TUN=${WAN_TUN:-xwan0}
TABLE=${WAN_TABLE:-177}
PREF=${WAN_RULE_PREF:-17700} # bypass rules at PREF, per-veth rules at PREF+10
GW=10.77.0.1
NET=10.77.0.0/16
IN_IF=wan0 # interface name inside each namespace
MTU=${WAN_MTU:-9000}

log() { echo "wan.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, routes and a TUN device)"
    command -v ip >/dev/null 2>&1 || die "needs iproute2 (ip)"
}

# ---- the router binary ------------------------------------------------------------------------
router_bin() {
    if [[ -n ${WAN_ROUTER:-} ]]; then
        [[ -x $WAN_ROUTER ]] || die "WAN_ROUTER=$WAN_ROUTER is not executable"
        echo "$WAN_ROUTER"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    local bin=$target/release/wan-router
    # Rebuild only when the router's own sources are newer than the binary: a cargo build of the
    # whole crate can wait minutes on a busy shared target dir.
    if [[ -x $bin ]] && [[ -z $(find "$ROOT/benchmark/src/wan" "$ROOT/benchmark/src/bin/wan-router.rs" \
        "$ROOT/benchmark/Cargo.toml" -newer "$bin" 2>/dev/null) ]]; then
        echo "$bin"
        return
    fi
    log "building wan-router (cargo build --release -p benchmark --bin wan-router)"
    if ! (cd "$ROOT" && cargo build --quiet --release -p benchmark --bin wan-router >&2); then
        [[ -x $bin ]] || die "cannot build wan-router (cargo build --release -p benchmark)"
        log "cargo build failed; using the existing $bin"
    fi
    echo "$bin"
}

# ---- state ------------------------------------------------------------------------------------
router_alive() {
    local pid
    [[ -f $STATE/router.pid ]] || return 1
    pid=$(cat "$STATE/router.pid")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q wan-router
}

plan_namespaces() { # prints "NAME ADDR" lines of the current plan
    [[ -f $STATE/plan ]] && awk '$1 == "ns" { print $2, $3 }' "$STATE/plan"
    return 0
}

lock() { # serialize concurrent up/down
    exec 9>"${STATE%/}.lock"
    flock 9
}

sysctl_set() { # sysctl_set KEY VALUE: remember the old value (once) and set the new one
    local key=$1 value=$2 old
    old=$(sysctl -n "$key")
    if ! grep -q "^$key " "$STATE/sysctl" 2>/dev/null; then
        echo "$key $old" >>"$STATE/sysctl"
    fi
    sysctl -q -w "$key=$value" >/dev/null
}

# ---- down -------------------------------------------------------------------------------------
cmd_down() {
    need_root
    if router_alive; then
        local pid
        pid=$(cat "$STATE/router.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    # Rules: ours are identified by their priorities.
    local pref
    for pref in "$PREF" "$((PREF + 10))"; do
        while ip rule del pref "$pref" 2>/dev/null; do :; done
    done
    ip route flush table "$TABLE" 2>/dev/null || true
    local name addr
    while read -r name addr; do
        [[ -n $name ]] || continue
        ip netns del "$name" 2>/dev/null || true
        ip link del "$name-h" 2>/dev/null || true # gone with the namespace, unless half-made
    done < <(plan_namespaces)
    ip link del "$TUN" 2>/dev/null || true
    if [[ -f $STATE/sysctl ]]; then
        local key old
        while read -r key old; do
            sysctl -q -w "$key=$old" >/dev/null 2>&1 || true
        done <"$STATE/sysctl"
    fi
    rm -rf "$STATE"
}

# ---- up ---------------------------------------------------------------------------------------
resolve_matrix() { # resolve_matrix SPEC BIN OUT: writes the matrix text to OUT
    local spec=$1 bin=$2 out=$3
    case ${spec^^} in
    G1 | G2 | LAN) "$bin" preset "$spec" >"$out" ;;
    *)
        [[ -f $spec ]] || die "$spec: neither a preset (G1, G2, LAN) nor a matrix file"
        cp "$spec" "$out"
        ;;
    esac
}

is_up_with() { # is_up_with MATRIX-FILE: the same matrix is fully up
    [[ -f $STATE/matrix && -f $STATE/up ]] || return 1
    cmp -s "$1" "$STATE/matrix" || return 1
    [[ $(cat "$STATE/mtu" 2>/dev/null) == "$MTU" ]] || return 1
    router_alive || return 1
    ip link show "$TUN" >/dev/null 2>&1 || return 1
    local name addr
    while read -r name addr; do
        ip netns exec "$name" true 2>/dev/null || return 1
    done < <(plan_namespaces)
}

build() { # build BIN: create everything from $STATE/matrix and $STATE/plan
    local bin=$1 name addr kind src dst
    sysctl_set net.ipv4.ip_forward 1
    sysctl_set net.ipv4.conf.all.rp_filter 0

    # The TUN device: persistent, so the router can be restarted without losing routes.
    ip tuntap add dev "$TUN" mode tun
    ip link set "$TUN" txqueuelen 10000 mtu "$MTU"
    sysctl -q -w "net.ipv4.conf.$TUN.rp_filter=0" >/dev/null
    sysctl -q -w "net.ipv6.conf.$TUN.disable_ipv6=1" >/dev/null 2>&1 || true
    ip link set "$TUN" up
    ip route add "$NET" dev "$TUN" table "$TABLE"

    while read -r name addr; do
        [[ $addr == 10.77.* && $addr != "$GW" ]] || die "namespace $name: address $addr is not in $NET (or is the gateway $GW)"
        ip netns add "$name"
        ip link add "$name-h" mtu "$MTU" type veth peer name "$IN_IF" mtu "$MTU" netns "$name"
        # Root side: gateway address (shared by all veths), host route to the namespace.
        sysctl -q -w "net.ipv4.conf.$name-h.rp_filter=0" >/dev/null
        sysctl -q -w "net.ipv6.conf.$name-h.disable_ipv6=1" >/dev/null 2>&1 || true
        ip addr add "$GW/32" dev "$name-h"
        ip link set "$name-h" up
        ip route add "$addr/32" dev "$name-h" scope link
        ip rule add pref "$((PREF + 10))" iif "$name-h" lookup "$TABLE"
        # Inside: one address, a link route to the gateway, the emulated network behind it.
        ip netns exec "$name" sysctl -q -w "net.ipv6.conf.all.disable_ipv6=1" >/dev/null 2>&1 || true
        ip -n "$name" link set lo up
        ip -n "$name" addr add "$addr/32" dev "$IN_IF"
        ip -n "$name" link set "$IN_IF" up
        ip -n "$name" route add "$GW/32" dev "$IN_IF" scope link
        ip -n "$name" route add "$NET" via "$GW" dev "$IN_IF" src "$addr"
    done < <(plan_namespaces)

    # Regions with no internal delay: their own traffic skips the router.
    while read -r kind src dst; do
        [[ $kind == local ]] || continue
        ip rule add pref "$PREF" from "$src" to "$dst" lookup main
    done <"$STATE/plan"

    # The router, detached, with its pid recorded.
    setsid "$bin" run --tun "$TUN" --matrix "$STATE/matrix" --stats-interval 60 \
        </dev/null >"$STATE/router.log" 2>&1 9>&- &
    echo $! >"$STATE/router.pid"
    for _ in $(seq 100); do
        [[ $(cat "/sys/class/net/$TUN/carrier" 2>/dev/null) == 1 ]] && break
        router_alive || die "wan-router exited: $(tail -n 5 "$STATE/router.log")"
        sleep 0.05
    done
    [[ $(cat "/sys/class/net/$TUN/carrier" 2>/dev/null) == 1 ]] ||
        die "wan-router did not attach to $TUN: $(tail -n 5 "$STATE/router.log")"
    touch "$STATE/up"
}

cmd_up() {
    need_root
    local spec=${1:-}
    [[ -n $spec ]] || die "usage: wan.sh up G1|G2|LAN|MATRIX-FILE"
    local bin tmp
    bin=$(router_bin)
    tmp=$(mktemp)
    resolve_matrix "$spec" "$bin" "$tmp"
    if ! "$bin" plan --matrix "$tmp" >/dev/null; then
        rm -f "$tmp"
        die "invalid matrix $spec"
    fi
    if is_up_with "$tmp"; then
        rm -f "$tmp"
        log "already up with the same matrix"
        return 0
    fi
    cmd_down
    mkdir -p "$STATE"
    mv "$tmp" "$STATE/matrix"
    "$bin" plan --matrix "$STATE/matrix" >"$STATE/plan"
    echo "$spec" >"$STATE/spec"
    echo "$MTU" >"$STATE/mtu"
    "$bin" show --matrix "$STATE/matrix" >"$STATE/table"
    # Any failure from here on (a failed command or a die) removes what was made.
    trap 'rc=$?; if ((rc != 0)); then log "setup failed; cleaning up"; cmd_down; fi' EXIT
    build "$bin"
    trap - EXIT
    log "up ($spec); one-way delays (ms):"
    cat "$STATE/table" >&2
    plan_namespaces | sed 's/^/  /' >&2
}

# ---- queries ----------------------------------------------------------------------------------
cmd_addr() {
    local want=${1:-} name addr
    [[ -n $want ]] || die "usage: wan.sh addr NS"
    while read -r name addr; do
        if [[ $name == "$want" ]]; then
            echo "$addr"
            return 0
        fi
    done < <(plan_namespaces)
    die "no namespace $want (is the WAN up?)"
}

cmd_status() {
    if [[ ! -f $STATE/up ]]; then
        echo "down"
        return 0
    fi
    echo "up: $(cat "$STATE/spec")"
    if router_alive; then
        echo "router: pid $(cat "$STATE/router.pid") on $TUN"
    else
        echo "router: NOT RUNNING (see $STATE/router.log)"
    fi
    echo "namespaces:"
    plan_namespaces | sed 's/^/  /'
    echo "one-way delays (ms):"
    sed 's/^/  /' "$STATE/table"
    echo "regions:"
    grep -E '^\s*region' "$STATE/matrix" | sed 's/^\s*/  /'
    grep -vE '^\s*(#|$)' "$STATE/router.log" | grep -E 'received=' | tail -n 1 | sed 's/^/last counters: /' || true
}

cmd_exec() {
    local name=${1:-}
    [[ -n $name ]] || die "usage: wan.sh exec NS CMD..."
    shift
    exec ip netns exec "$name" "$@"
}

cmd_matrix() {
    [[ -f $STATE/up ]] || die "the WAN is down"
    cat "$STATE/matrix"
}

case ${1:-} in
up)
    lock
    cmd_up "${2:-}"
    ;;
matrix) cmd_matrix ;;
down)
    lock
    cmd_down
    ;;
addr) cmd_addr "${2:-}" ;;
status) cmd_status ;;
exec)
    shift
    cmd_exec "$@"
    ;;
*)
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
