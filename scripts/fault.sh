#!/usr/bin/env bash
# Long run of the process fault test (xline-server/tests/fault.rs): kills, restarts, SIGSTOP /
# SIGCONT and link cuts through the fault-injecting proxy, with a linearizability check and an
# explicit check that every acknowledged write is present at the end. One run per seed.
#
# Usage: scripts/fault.sh [SEED...]
#
# Environment:
#   XLINE_FAULT_SECS    length of each run's faulty phase in seconds (default: 120)
#   FAULT_RUNS          number of runs when no seed is given (default: 5; seeds drawn at random)
#   XLINE_TEST_SERVER   xline (default) or etcd (the same test against Debian's etcd)
#   FAULT_LOG_DIR       where each run's output goes (default: a new temporary directory)
#
# Exit status: 0 iff every run passed. A failing run's output (with the member logs the
# harness prints on failure) stays in FAULT_LOG_DIR; rerun it with `scripts/fault.sh SEED`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export XLINE_FAULT_SECS=${XLINE_FAULT_SECS:-120}
RUNS=${FAULT_RUNS:-5}
LOG_DIR=${FAULT_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/xline-fault.XXXXXX")}
mkdir -p "$LOG_DIR"

seeds=("$@")
if ((${#seeds[@]} == 0)); then
    for ((i = 0; i < RUNS; i++)); do
        seeds+=("$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')")
    done
fi

cargo nextest run -p xline-server --all-features --test fault --no-run
failed=()
for seed in "${seeds[@]}"; do
    log="$LOG_DIR/seed-$seed.log"
    echo "fault.sh: seed $seed, ${XLINE_FAULT_SECS}s (${XLINE_TEST_SERVER:-xline}), log $log"
    if XLINE_FAULT_SEED=$seed cargo nextest run -p xline-server --all-features --test fault \
        --no-capture linearizable_under_faults >"$log" 2>&1; then
        grep -E '^fault test: seed .*verdict' "$log" || true
    else
        echo "fault.sh: seed $seed FAILED (see $log)"
        grep -E 'panicked|seed .*:' "$log" | head -n 5 || true
        failed+=("$seed")
    fi
done
echo "fault.sh: ${#seeds[@]} runs, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}; logs in $LOG_DIR"
((${#failed[@]} == 0))
