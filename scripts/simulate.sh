#!/usr/bin/env bash
# Runs N seeds of the deterministic cluster simulation (curp/tests/simulation.rs,
# random_fault_sweep) in release mode and prints every failing seed with its replay command.
#
# Usage: scripts/simulate.sh [N] [FIRST_SEED]
#   N           number of seeds (default 1000); n cycles through 1, 3, 5, 7 by seed % 4
#   FIRST_SEED  first seed (default 0), to explore new ranges: scripts/simulate.sh 10000 50000
#
# Replay one seed (with a full trace):
#   SIM_SEED=<seed> SIM_TRACE=1 cargo test -p curp --features test-util --release \
#       --test simulation random_fault_sweep -- --nocapture
# Exit status: 0 when every seed passed, 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

N=${1:-1000}
FIRST=${2:-0}
[[ $N =~ ^[0-9]+$ && $FIRST =~ ^[0-9]+$ ]] || { echo "usage: $0 [N] [FIRST_SEED]" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
SIM_SEEDS=$N SIM_FIRST_SEED=$FIRST cargo test -p curp --features test-util --release \
    --test simulation random_fault_sweep -- --nocapture --exact >"$out" 2>&1 || status=$?

grep -E '^random_fault_sweep:' "$out" || { cat "$out"; exit 1; }
if grep -q '^FAILED SEED' "$out"; then
    # The failing seeds, then each one's first violations (without the trace lines).
    grep '^FAILED SEED' "$out" | sed -E 's/^FAILED SEED ([0-9]+): seed [0-9]+ \(n=([0-9]+)\).*/failing seed \1 (n=\2)/'
    echo
    grep -E '^FAILED SEED|^  \[' "$out" | sed -E 's/^FAILED SEED [0-9]+: //'
    exit 1
fi
exit "$status"
