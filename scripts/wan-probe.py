#!/usr/bin/env python3
"""Tiny network probes for scripts/wan-check.sh (run inside namespaces with `ip netns exec`).

  wan-probe.py udp-echo PORT [IDLE_S]       echo UDP datagrams until idle for IDLE_S (default 30)
  wan-probe.py rtt HOST PORT COUNT           COUNT UDP round trips; prints min/p50/max ms
  wan-probe.py tcp-sink PORT [IDLE_S]        accept one connection, read to EOF, answer one byte
  wan-probe.py tcp-send HOST PORT MIB        send MIB mebibytes; prints MiB/s (connect to ack)

Every mode is bounded in time: servers give up after IDLE_S seconds without traffic, clients
after a per-operation timeout. Output is one `key=value ...` line on stdout.
"""

import socket
import statistics
import sys
import time


def udp_echo(port: int, idle: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(idle)
    try:
        while True:
            data, peer = sock.recvfrom(2048)
            sock.sendto(data, peer)
    except socket.timeout:
        pass


def rtt(host: str, port: int, count: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    samples = []
    lost = 0
    for seq in range(count):
        payload = seq.to_bytes(4, "big")
        start = time.monotonic()
        sock.sendto(payload, (host, port))
        try:
            while True:
                data, _ = sock.recvfrom(2048)
                if data == payload:
                    break
            samples.append((time.monotonic() - start) * 1e3)
        except socket.timeout:
            lost += 1
        time.sleep(0.02)
    if not samples:
        print(f"host={host} lost={lost} min_ms=nan p50_ms=nan max_ms=nan")
        sys.exit(1)
    print(
        f"host={host} n={len(samples)} lost={lost} min_ms={min(samples):.2f} "
        f"p50_ms={statistics.median(samples):.2f} max_ms={max(samples):.2f}"
    )


def tcp_sink(port: int, idle: float) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(idle)
    conn, _ = srv.accept()
    conn.settimeout(idle)
    total = 0
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    conn.sendall(b"k")
    conn.close()
    print(f"received_bytes={total}")


def tcp_send(host: str, port: int, mib: int) -> None:
    block = b"x" * (1 << 20)
    start = time.monotonic()
    sock = socket.create_connection((host, port), timeout=30)
    for _ in range(mib):
        sock.sendall(block)
    sock.shutdown(socket.SHUT_WR)
    ack = sock.recv(1)
    elapsed = time.monotonic() - start
    sock.close()
    if ack != b"k":
        print("error=no-ack")
        sys.exit(1)
    print(
        f"host={host} mib={mib} seconds={elapsed:.3f} mib_per_s={mib / elapsed:.1f} "
        f"mbit_per_s={mib * 8 * 1.048576 / elapsed:.0f}"
    )


def main(argv: list) -> None:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, args = argv[1], argv[2:]
    if mode == "udp-echo":
        udp_echo(int(args[0]), float(args[1]) if len(args) > 1 else 30.0)
    elif mode == "rtt":
        rtt(args[0], int(args[1]), int(args[2]))
    elif mode == "tcp-sink":
        tcp_sink(int(args[0]), float(args[1]) if len(args) > 1 else 30.0)
    elif mode == "tcp-send":
        tcp_send(args[0], int(args[1]), int(args[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
