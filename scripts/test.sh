#!/usr/bin/env bash
# Runs every check of the workspace, in the order CI runs them:
#   prerequisites -> cargo fmt --check -> clippy (-D warnings) -> build bins -> tests
#   (doc tests, then cargo nextest; or cargo test when nextest is missing) -> etcdctl compat
#   (plain and TLS) -> xlinectl golden outputs -> benchmark harness smoke (scripts/bench.sh --smoke).
#
# Prerequisites (installed with apt-get when running as root, otherwise the command is printed):
#   protoc   (protobuf-compiler) the etcd-client dev-dependency's build script needs it
#   etcd     (etcd-server)       the reference server of scripts/etcdctl-compat.sh and of tests
#   etcdctl  (etcd-client)       the client of scripts/etcdctl-compat.sh
#   python3  (python3)           transcript normalization in scripts/etcdctl-compat.sh
#   openssl  (openssl)           key pairs for the JWT auth tests
#   ip       (iproute2)          network namespaces of the WAN emulation test (benchmark crate)
#   strace   (strace)            system-call trace of scripts/fsync-audit.sh
#   cargo-nextest is optional: without it the tests run with `cargo test`.
#
# Environment:
#   SKIP_FMT=1 SKIP_CLIPPY=1 SKIP_BUILD=1 SKIP_TESTS=1 SKIP_DOCTESTS=1 SKIP_COMPAT=1
#   SKIP_BENCH_SMOKE=1 SKIP_FSYNC_AUDIT=1
#                     skip a stage (every stage runs by default)
#   FAIL_FAST=1       stop at the first failed stage (default: run them all, report, exit 1)
#   NEXTEST_PROFILE   nextest profile (default: "ci" when CI=true, else "default"),
#                     see .config/nextest.toml
#   NO_NEXTEST=1      use `cargo test` even when cargo-nextest is installed
#   NO_INSTALL=1      never install prerequisites, only report them
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

START=$SECONDS
log() {
    printf '\n==> [%4ds] %s\n' "$((SECONDS - START))" "$*"
}
die() {
    echo "test.sh: $*" >&2
    exit 1
}

# ---- prerequisites ----------------------------------------------------------------------------
log "checking prerequisites"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup)"

missing_pkgs=()
need() { # need COMMAND DEBIAN_PACKAGE
    if command -v "$1" >/dev/null 2>&1; then
        echo "  found $1: $(command -v "$1")"
    else
        echo "  missing $1 (Debian package $2)"
        missing_pkgs+=("$2")
    fi
}
need protoc protobuf-compiler
need etcd etcd-server
need etcdctl etcd-client
need python3 python3
need openssl openssl
need ip iproute2
need strace strace

if ((${#missing_pkgs[@]})); then
    install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
    if [[ ${NO_INSTALL:-} == 1 ]]; then
        die "missing prerequisites; install them with: $install_cmd"
    elif [[ $(id -u) -ne 0 ]]; then
        echo "test.sh: missing prerequisites. Install them with:" >&2
        echo "  sudo sh -c '$install_cmd'" >&2
        exit 1
    elif ! command -v apt-get >/dev/null 2>&1; then
        die "missing prerequisites (${missing_pkgs[*]}) and no apt-get to install them"
    fi
    log "installing: ${missing_pkgs[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}"
    for tool in protoc etcd etcdctl python3 openssl ip strace; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after apt-get install"
    done
fi

use_nextest=0
if [[ ${NO_NEXTEST:-} != 1 ]] && cargo nextest --version >/dev/null 2>&1; then
    use_nextest=1
    echo "  found cargo-nextest: $(cargo nextest --version 2>/dev/null | head -n 1)"
else
    echo "  cargo-nextest not used: falling back to cargo test" \
        "(install it with: cargo install cargo-nextest --locked)"
fi
if [[ ${SKIP_FMT:-} != 1 ]] && ! cargo fmt --version >/dev/null 2>&1; then
    die "cargo fmt not available: rustup component add rustfmt"
fi
if [[ ${SKIP_CLIPPY:-} != 1 ]] && ! cargo clippy --version >/dev/null 2>&1; then
    die "cargo clippy not available: rustup component add clippy"
fi
echo "  $(cargo --version); $(rustc --version); $(etcd --version | head -n 1); $(protoc --version)"

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# ---- stages ------------------------------------------------------------------------------------
# Every stage runs even when an earlier one failed (one CI run reports everything), unless
# FAIL_FAST=1. The exit status is 1 when any stage failed.
results=()
failed=0

# stage NAME SKIP_VARIABLE COMMAND... : runs COMMAND unless $SKIP_VARIABLE is 1.
stage() {
    local name=$1 skip_var=$2
    shift 2
    if [[ ${!skip_var:-} == 1 ]]; then
        log "SKIP $name ($skip_var=1)"
        results+=("$name: skipped")
        return 0
    fi
    log "$*"
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    if ((rc == 0)); then
        results+=("$name: ok ($((SECONDS - t0))s)")
    else
        results+=("$name: FAILED with exit code $rc ($((SECONDS - t0))s)")
        failed=1
        if [[ ${FAIL_FAST:-} == 1 ]]; then
            summary
            exit 1
        fi
    fi
}

summary() {
    log "summary"
    local line
    for line in "${results[@]}"; do
        echo "  $line"
    done
}

stage fmt SKIP_FMT cargo fmt --all -- --check
stage clippy SKIP_CLIPPY cargo clippy --workspace --all-targets --all-features -- -D warnings
stage build SKIP_BUILD cargo build --workspace --bins
if ((use_nextest)); then
    if [[ -n ${NEXTEST_PROFILE:-} ]]; then
        profile=$NEXTEST_PROFILE
    elif [[ ${CI:-} == true ]]; then
        profile=ci
    else
        profile=default
    fi
    # nextest does not run doc tests; they run first so that nextest's summary closes the stage.
    if [[ ${SKIP_TESTS:-} != 1 ]]; then
        stage doctests SKIP_DOCTESTS cargo test --workspace --doc
    fi
    stage tests SKIP_TESTS cargo nextest run --workspace --all-features --profile "$profile"
else
    stage tests SKIP_TESTS cargo test --workspace --all-features
fi
stage etcdctl-compat SKIP_COMPAT bash scripts/etcdctl-compat.sh
stage tls-compat SKIP_COMPAT bash scripts/tls-compat.sh
# xlinectl and etcdctl against the same xline server, every output format.
stage xlinectl-golden SKIP_COMPAT env GOLDEN_SERVERS=xline bash scripts/xlinectl-golden.sh
# Seconds-long loopback run of the benchmark harness (xline and etcd, our tool and its native
# client; debug binaries of the build stage): keeps scripts/bench.sh and its report working.
stage bench-smoke SKIP_BENCH_SMOKE bash scripts/bench.sh --smoke
# Log, vote, witness journal and applied state really fsynced before acknowledgement: checked
# from an strace of 1 and 3 debug members (about 20 s).
stage fsync-audit SKIP_FSYNC_AUDIT bash scripts/fsync-audit.sh

summary
if ((failed)); then
    echo "test.sh: FAILED" >&2
    exit 1
fi
echo "test.sh: all stages passed"
