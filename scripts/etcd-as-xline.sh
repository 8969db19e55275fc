#!/usr/bin/env bash
# Test double for scripts/etcdctl-compat.sh: accepts xline's command line and runs Debian's etcd
# in its place, so the compat script's normalization can be checked etcd-vs-etcd:
#
#   XLINE_BIN=scripts/etcd-as-xline.sh scripts/etcdctl-compat.sh
#
# xline takes etcd's flag names, so every flag is passed through except `--backend`, which etcd
# does not have. When no peer URLs are given, etcd gets a peer listener on a free loopback port
# (its default, localhost:2380, may be taken). The etcd binary is $XLINE_STANDIN_ETCD (default:
# etcd on PATH). The script `exec`s etcd, so the caller's pid is etcd's and killing it stops it.
set -euo pipefail

args=()
name=default
have_peer=0
while (($#)); do
    case $1 in
    --backend)
        shift 2
        ;;
    --backend=*)
        shift
        ;;
    --name)
        name=$2
        args+=("$1" "$2")
        shift 2
        ;;
    --name=*)
        name=${1#*=}
        args+=("$1")
        shift
        ;;
    --listen-peer-urls | --listen-peer-urls=*)
        have_peer=1
        args+=("$1")
        shift
        ;;
    *)
        args+=("$1")
        shift
        ;;
    esac
done

if ((!have_peer)); then
    # A free loopback port below the kernel's ephemeral range (as scripts/etcdctl-compat.sh does).
    peer_port=$(
        python3 - <<'EOF'
import random
import socket

while True:
    port = random.randrange(10000, 32000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
EOF
    )
    peer="http://127.0.0.1:${peer_port}"
    args+=(--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "${name}=${peer}")
fi

exec "${XLINE_STANDIN_ETCD:-etcd}" "${args[@]}"
