#!/usr/bin/env bash
# Integration check of the WAN emulation (scripts/wan.sh + wan-router). Needs root and python3.
#
#   scripts/wan-check.sh            G1 and G2 round-trip times for every pair, TCP throughput
#                                   through the router (with and without delay) and bypassing it,
#                                   idempotent `up`, and a clean `down`
#
# Each RTT is measured with UDP echo (scripts/wan-probe.py) and must lie in
# [2 x one-way - 0.5 ms, 2 x one-way + RTT_SLACK_MS] (default slack 25 ms: a loaded 2-core machine
# adds scheduling delay, but a missing or doubled delay is far outside). Throughput is reported,
# not asserted, except that every transfer completes. Takes about a minute. Environment: as for
# wan.sh (WAN_ROUTER, WAN_MTU...), plus RTT_SAMPLES (10), TCP_MIB (256).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WAN=$ROOT/scripts/wan.sh
PROBE=$ROOT/scripts/wan-probe.py
SAMPLES=${RTT_SAMPLES:-10}
MIB=${TCP_MIB:-256}
SLACK=${RTT_SLACK_MS:-25}
PORT=7701

[[ $(id -u) -eq 0 ]] || {
    echo "wan-check.sh: needs root" >&2
    exit 1
}
command -v python3 >/dev/null || {
    echo "wan-check.sh: needs python3" >&2
    exit 1
}

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
trap 'bash "$WAN" down' EXIT

addr() { bash "$WAN" addr "$1"; }

# rtt FROM TO ONE_WAY_MS: measure and check the round trip FROM -> TO -> FROM.
rtt() {
    local from=$1 to=$2 oneway=$3 line p50 lo hi
    ip netns exec "$to" python3 "$PROBE" udp-echo "$PORT" 5 &
    local server=$!
    sleep 0.3
    line=$(ip netns exec "$from" python3 "$PROBE" rtt "$(addr "$to")" "$PORT" "$SAMPLES") || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    lo=$(awk -v o="$oneway" 'BEGIN { print 2 * o - 0.5 }')
    hi=$(awk -v o="$oneway" -v s="$SLACK" 'BEGIN { print 2 * o + s }')
    printf '  %-4s -> %-4s one-way %3s ms  expect RTT %5.1f ms  measured %s\n' \
        "$from" "$to" "$oneway" "$((2 * oneway))" "${line:-nothing}"
    if [[ -z $p50 ]] || awk -v p="$p50" -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(p < lo || p > hi) }'; then
        fail "$from -> $to: p50 RTT ${p50:-?} ms outside [$lo, $hi]"
    fi
}

# tcp FROM TO MIB LABEL: one TCP transfer FROM -> TO, reported.
tcp() {
    local from=$1 to=$2 mib=$3 label=$4 line
    ip netns exec "$to" python3 "$PROBE" tcp-sink "$PORT" 30 >/dev/null &
    local sink=$!
    sleep 0.3
    if line=$(ip netns exec "$from" python3 "$PROBE" tcp-send "$(addr "$to")" "$PORT" "$mib"); then
        printf '  %-34s %-4s -> %-4s %s\n' "$label" "$from" "$to" "$line"
    else
        fail "TCP $label $from -> $to did not complete"
    fi
    wait "$sink" || fail "TCP sink in $to failed"
}

echo "== G1 (members xr1 xr2 xr3, client xc1)"
bash "$WAN" up G1
pid=$(cat "${WAN_STATE_DIR:-/run/xline-wan}/router.pid")
bash "$WAN" up G1
[[ $(cat "${WAN_STATE_DIR:-/run/xline-wan}/router.pid") == "$pid" ]] ||
    fail "a second 'up G1' rebuilt instead of keeping the running setup"
rtt xc1 xr1 75
rtt xc1 xr2 75
rtt xc1 xr3 50
rtt xr1 xr2 50
rtt xr1 xr3 50
rtt xr2 xr3 50
tcp xc1 xr3 "$MIB" "G1 through router, 50 ms one-way"
# G1's regions with every delay 0, for later: a matrix file instead of a preset.
zero=$(mktemp)
{
    bash "$WAN" matrix | grep -vE '^\s*delay'
    echo "default 0"
} >"$zero"

echo "== G2 (regions r1 r2 r3, member xrN and client xcN in each)"
bash "$WAN" up G2
rtt xc1 xr1 0
rtt xc1 xr2 25
rtt xc1 xr3 75
rtt xc2 xr3 50
rtt xr3 xc2 50

echo "== router with zero delay (throughput ceiling of the router itself)"
bash "$WAN" up "$zero"
rm -f "$zero"
rtt xc1 xr1 0
tcp xc1 xr1 $((MIB * 4)) "G1 regions, 0 ms, through router"

echo "== LAN preset (no router on the path)"
bash "$WAN" up LAN
tcp xc1 xr1 $((MIB * 4)) "LAN, bypassing the router"

echo "== down"
bash "$WAN" down
trap - EXIT
ip netns list | grep -qE '^x[rc][0-9]' && fail "namespaces left after down: $(ip netns list | tr '\n' ' ')"
ip link show "${WAN_TUN:-xwan0}" >/dev/null 2>&1 && fail "TUN device left after down"
ip rule | grep -qE "^${WAN_RULE_PREF:-17700}|^$((${WAN_RULE_PREF:-17700} + 10))" && fail "rules left after down"

if ((failures)); then
    echo "wan-check: $failures failure(s)"
    exit 1
fi
echo "wan-check: all checks passed"
