#!/usr/bin/env python3
"""Analysis half of scripts/fsync-audit.sh (see there for what each check proves).

Usage: fsync-audit.py [--native 0|1] MEMBER_DIR...
       fsync-audit.py --self-test MEMBER_DIR...   (the checks must fail on doctored traces)
Each MEMBER_DIR holds `trace` (strace -f -ttt -yy -xx -s 65536 output), `ports` (client and peer port) and `data/`.
Prints a report per member and exits 1 when a check fails.
"""

import re
import sys
from collections import defaultdict

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)$", re.S)
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$", re.S)
FD = re.compile(r"^(\d+)<((?:[^>\[]|\[[^\]]*\])*)>")
HEXSTR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
RET = re.compile(r"\)\s+=\s+(-?\d+)")

SYNCS = {"fsync", "fdatasync", "sync_file_range", "syncfs"}
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2", "sendmsg", "sendto"}
READS = {"read", "recvfrom", "recvmsg"}

HARD_STATE = b"curp/hard_state"
# raft-engine record keys -> class; the first match wins (order matters).
KEY_CLASSES = [
    (b"curp/meta/node/witness/", "witness journal"),
    (b"curp/meta/node/snapshot", "snapshot record"),
    (b"curp/boundary", "compaction"),
    (b"curp/sync", "sync marker"),
]
FILE_HEADER = b"RAFT-LOG-FILE-HEADER"


def unhex(text):
    """A path as strace -xx prints it (every byte as \\xNN), decoded."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


class Event:
    __slots__ = ("start", "end", "tid", "name", "fd", "path", "data", "ret", "seq")

    def __init__(self, start, end, tid, name, text, seq):
        self.start, self.end, self.tid, self.name, self.seq = start, end, tid, name, seq
        m = FD.match(text)
        self.fd, self.path = (int(m.group(1)), unhex(m.group(2))) if m else (None, "")
        self.data = b"".join(bytes.fromhex(s.replace("\\x", "")) for s in HEXSTR.findall(text))
        r = RET.search(text)
        self.ret = int(r.group(1)) if r else None


def parse(path):
    """The trace's I/O events, in start order, unfinished/resumed pairs merged."""
    pending = {}
    events = []
    seq = 0
    with open(path, "r", errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            tid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            r = RESUMED.match(rest)
            if r:
                if tid not in pending:
                    continue
                start, name, head, s = pending.pop(tid)
                text, end = head + r.group(2), ts
            else:
                c = CALL.match(rest)
                if not c:
                    continue
                name, text = c.group(1), c.group(2)
                seq += 1
                if rest.endswith("<unfinished ...>"):
                    pending[tid] = (ts, name, text[: -len("<unfinished ...>")], seq)
                    continue
                start, end, s = ts, ts, seq
            if name in ("openat", "rename", "renameat", "renameat2"):
                if name == "openat" and "O_CREAT" not in text:
                    continue
                ev = Event(start, end, tid, name, text, s)
                if ev.ret is None or ev.ret < 0:
                    continue
                ev.path = "\0".join(unhex(x) for x in HEXSTR.findall(text))
                events.append(ev)
            elif name in SYNCS or name in WRITES or name in READS or name == "msync":
                ev = Event(start, end, tid, name, text, s)
                if ev.ret is not None and ev.ret < 0:
                    continue
                events.append(ev)
    events.sort(key=lambda e: (e.start, e.seq))
    return events


def file_class(path):
    if "/member/log/" in path and (path.endswith(".raftlog") or path.endswith(".rewrite")):
        return "log"
    if "/member/kv/" in path:
        return "applied state (" + path.rsplit(".", 1)[-1] + ")"
    if path.startswith("TCP:") or path.startswith("TCPv6:"):
        return "socket"
    if "/data/" in path:
        return "file " + path.rsplit("/", 1)[-1]
    return None


def hard_state_value(data):
    """(term, vote) of the hard-state record in a raft-engine write, or None."""
    i = data.find(HARD_STATE)
    if i < 0:
        return None
    tail = data[i + len(HARD_STATE):]
    for j in range(0, 4):
        if j < len(tail) and tail[j] == 24 and len(tail) >= j + 25:
            v = tail[j + 1: j + 25]
            return int.from_bytes(v[0:8], "big"), int.from_bytes(v[8:16], "big")
    return None


def log_write_class(ev, durable_vote):
    """(class, must_sync, new durable vote) of a raft-engine write."""
    data = ev.data
    if data.startswith(FILE_HEADER):
        return "file header", False, durable_vote
    for key, cls in KEY_CLASSES:
        if key in data:
            return cls, True, durable_vote
    hs = hard_state_value(data)
    i = data.find(HARD_STATE)
    if hs is not None and hs != durable_vote:
        return "vote (term/vote change)", True, hs
    if hs is not None and i < 40 and len(data) - i - len(HARD_STATE) <= 24 + 8:
        return "hard state (commit only)", False, durable_vote
    if b"curp/meta/" in data:
        return "meta record", True, durable_vote
    return "log entries", True, durable_vote


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The keys of the audited puts: etcdctl's, and the benchmark's (--key-size 20 --sequential-keys).
key_re = re.compile(rb"fsync-audit/[a-z]+/\d{5}|0{14}\d{6}")


def h2_frames(chunks):
    """HTTP/2 frames of one direction of a connection: [(time, type, flags, stream, payload)].

    `chunks` are (time, bytes) in order; a frame is timed by the chunk that completes it."""
    buf = b""
    frames = []
    for t, data in chunks:
        buf += data
        if buf.startswith(PREFACE):
            buf = buf[len(PREFACE):]
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            frames.append((t, ftype, flags, stream, buf[9: 9 + length]))
            buf = buf[9 + length:]
    return frames


def unary_puts(events, ports):
    """(request time, reply time, key) of every audited put received on a listening port.

    A request is the only message of a unary gRPC call (one non-empty DATA frame, then the end of
    the client's stream) that carries an audited key; its reply is the first HEADERS or DATA
    frame this member writes on that stream afterwards."""
    reads, writes = defaultdict(list), defaultdict(list)
    for ev in events:
        if not ev.path.startswith("TCP"):
            continue
        local = ev.path.split("[", 1)[-1].split("->", 1)[0]
        if local.rsplit(":", 1)[-1] not in ports:
            continue
        if ev.name in READS and ev.data:
            reads[ev.path].append((ev.end, ev.data[: ev.ret] if ev.ret else ev.data))
        elif ev.name in WRITES and ev.data:
            writes[ev.path].append((ev.start, ev.data))
    out = []
    for sock, chunks in reads.items():
        replies = h2_frames(writes.get(sock, []))
        streams = defaultdict(list)
        for t, ftype, flags, stream, payload in h2_frames(chunks):
            if ftype in (0, 1) and stream:
                streams[stream].append((t, ftype, flags, payload))
        for stream, frames in streams.items():
            data = [(t, p) for t, ftype, _, p in frames if ftype == 0 and p]
            ended = any(flags & 1 for _, _, flags, _ in frames)
            # A unary call: one request message, then the end of the request stream (CURP's
            # peer streams carry many messages and are left out).
            if len(data) != 1 or not ended:
                continue
            t, payload = data[0]
            m = key_re.search(payload)
            if not m:
                continue
            reply = next((rt for rt, rtype, _, rs, _ in replies
                          if rs == stream and rtype in (0, 1) and rt >= t), None)
            if reply is not None:
                out.append((t, reply, m.group(0)))
    return out


def audit(member_dir, events=None, quiet=False):
    """Checks one member's trace; returns (failures, matched puts, witness journal writes)."""
    name = member_dir.rstrip("/").split("/")[-2] + "/" + member_dir.rstrip("/").split("/")[-1]
    with open(member_dir + "/ports") as f:
        ports = f.read().split()
    client_port = ports[0]
    if events is None:
        events = parse(member_dir + "/trace")
    print_ = (lambda *a, **k: None) if quiet else print
    failures = []
    notes = []

    # ---- per-file bookkeeping: pending writes since the last sync --------------------------
    stats = defaultdict(lambda: {"writes": 0, "syncs": 0, "max_pending": 0, "files": set()})
    pending = defaultdict(list)  # path -> [(event, class, must_sync)]
    must_sync_open = {}  # tid -> list of (event, class, path) awaiting a sync before moving on
    last_sync_end = {}  # path -> end time of the last sync
    syncs_by_path = defaultdict(list)  # path -> [sync events]
    writes_by_path = defaultdict(list)
    durable_vote = (0, 0)
    idle_syncs = defaultdict(int)  # file class -> syncs with no write pending
    audit_keys_per_sync = []

    def violation(msg):
        failures.append(msg)

    created = defaultdict(set)  # directory -> files created or renamed into it
    for ev in events:
        if ev.name in ("openat", "rename", "renameat", "renameat2"):
            target = ev.path.split("\0")[-1]
            if "/data/" in target:
                d, f = target.rsplit("/", 1)
                created[d].add(f)
            continue
        cls_file = file_class(ev.path) if ev.fd is not None else None
        if ev.name in SYNCS or ev.name == "msync":
            if ev.name == "syncfs" or ev.name == "msync":
                notes.append(f"{ev.name} at {ev.start:.6f} (treated as syncing every file)")
                paths = list(pending.keys())
            elif cls_file is None or cls_file == "socket":
                continue
            else:
                paths = [ev.path]
            for p in paths:
                covered = pending.pop(p, [])
                syncs_by_path[p].append(ev)
                last_sync_end[p] = ev.end
                classes = {c for _, c, _ in covered}
                for c in classes:
                    stats[c]["syncs"] += 1
                    n = sum(1 for _, cc, _ in covered if cc == c)
                    stats[c]["max_pending"] = max(stats[c]["max_pending"], n)
                if not covered:
                    idle_syncs[file_class(p) or p] += 1
                keys = set()
                for w, c, _ in covered:
                    if c in ("log entries", "witness journal"):
                        keys.update(key_re.findall(w.data))
                if p and file_class(p) == "log" and keys:
                    audit_keys_per_sync.append(len(keys))
            # A sync by the same thread closes that thread's open must-sync writes on the file.
            for tid in list(must_sync_open):
                rest = [(w, c, p) for (w, c, p) in must_sync_open[tid] if p not in paths]
                if rest:
                    must_sync_open[tid] = rest
                else:
                    del must_sync_open[tid]
            continue
        if ev.name in READS or cls_file is None:
            continue
        # A write. The writing thread must not move on to another file or a socket while it
        # has a must-sync write outstanding.
        open_writes = must_sync_open.get(ev.tid, [])
        if any(p != ev.path and not (cls_file == "log" and file_class(p) == "log")
               for (_, _, p) in open_writes):
            for w, c, p in open_writes:
                violation(
                    f"{name}: {c} write of {len(w.data)} bytes to {p} at {w.start:.6f} (tid {w.tid}) "
                    f"was not synced before the thread wrote to {ev.path} at {ev.start:.6f}")
            del must_sync_open[ev.tid]
        if cls_file == "socket":
            continue
        if cls_file == "log":
            cls, must, durable_vote = log_write_class(ev, durable_vote)
        else:
            cls, must = cls_file, False
        stats[cls]["writes"] += 1
        stats[cls]["files"].add(ev.path.rsplit("/", 1)[-1])
        pending[ev.path].append((ev, cls, must))
        writes_by_path[ev.path].append((ev, cls))
        if must:
            must_sync_open.setdefault(ev.tid, []).append((ev, cls, ev.path))

    # ---- never synced / unsynced at the end --------------------------------------------------
    for p, left in pending.items():
        if (file_class(p) or "").startswith("applied state"):
            # Applied batches are not durable by design (replayed from the log after a crash);
            # what matters is (d) below. A clean shutdown flushes them.
            if left:
                notes.append(f"{len(left)} applied-state writes after its last sync")
            continue
        for w, c, must in left:
            if c in ("hard state (commit only)",):
                continue
            if c == "file header" and not any(x is not w for x, _ in writes_by_path[p]):
                notes.append(f"{p.rsplit('/', 1)[-1]}: only its file header was written, never synced")
                continue
            violation(f"{name}: {c} write of {len(w.data)} bytes to {p} at {w.start:.6f} "
                      "was never synced")
    for c, s in stats.items():
        if s["writes"] and not s["syncs"] and c not in ("file header",):
            if c == "hard state (commit only)":
                continue
            violation(f"{name}: class '{c}' was written {s['writes']} times and never synced")
    if not any(file_class(p) == "log" for p in syncs_by_path):
        violation(f"{name}: the raft-engine log was never synced")
    redb_paths = [p for p in writes_by_path if (file_class(p) or "").startswith("applied state")]
    if not redb_paths:
        violation(f"{name}: no write to the applied-state backend was seen")

    # ---- directory entries (power loss, not kill -9: reported, not failed) --------------------
    dir_synced = {e.path for e in events if e.name in SYNCS}
    for d, files in sorted(created.items()):
        if d not in dir_synced:
            notes.append(f"WARNING: {d.split('/data/', 1)[-1]}/ never fsynced after creating or "
                         f"renaming {', '.join(sorted(files))} into it (the entry can be lost on "
                         "power failure)")

    # ---- (d) compaction after a durable state machine -----------------------------------------
    compactions = [w for p, ws in writes_by_path.items() for w, c in ws if c == "compaction"]
    for comp in compactions:
        for p in redb_paths:
            before = [w for w, _ in writes_by_path[p] if w.end <= comp.start]
            if not before:
                continue
            last = before[-1]
            if not any(s.start >= last.end and s.end <= comp.start for s in syncs_by_path[p]):
                violation(f"{name}: log compaction at {comp.start:.6f} with an unsynced write to "
                          f"{p} at {last.start:.6f}")
    # ---- (e) reply after the sync of a record holding the command ------------------------------
    log_writes = [(w, p) for p, ws in writes_by_path.items() if file_class(p) == "log"
                  for w, c in ws if c in ("log entries", "witness journal", "vote (term/vote change)")]
    matched = unmatched = late = 0
    covers = defaultdict(int)
    for req_t, resp_t, key in unary_puts(events, ports):
        holders = [(w, p) for (w, p) in log_writes if key in w.data and w.end <= resp_t]
        if not holders:
            unmatched += 1
            continue
        matched += 1
        ok = None
        for w, p in holders:
            s = next((s for s in syncs_by_path[p] if s.start >= w.end), None)
            if s is not None and s.end <= resp_t:
                ok = w
                break
        if ok is None:
            late += 1
            w, p = holders[0]
            violation(f"{name}: put {key.decode()} answered at {resp_t:.6f} before any sync "
                      f"of its record (written to {p} at {w.start:.6f})")
        else:
            covers["witness record" if b"curp/meta/node/witness/" in ok.data else "log entry"] += 1

    # ---- report --------------------------------------------------------------------------------
    print_(f"\n== {name} (client port {client_port}): {len(events)} I/O events")
    print_(f"  {'class':34} {'writes':>7} {'syncs':>6} {'writes/sync':>11} {'max':>4}  files")
    for c in sorted(stats):
        s = stats[c]
        ratio = f"{s['writes'] / s['syncs']:.2f}" if s["syncs"] and s["writes"] else "-"
        files = ",".join(sorted(s["files"]))[:60]
        print_(f"  {c:34} {s['writes']:7} {s['syncs']:6} {ratio:>11} {s['max_pending']:4}  {files}")
    if audit_keys_per_sync:
        n = len(audit_keys_per_sync)
        print_(f"  audited puts per log sync: mean {sum(audit_keys_per_sync) / n:.2f}, "
              f"max {max(audit_keys_per_sync)} over {n} syncs")
    print_(f"  compactions checked against applied-state syncs: {len(compactions)}")
    print_(f"  audited puts answered by this member: {matched + unmatched}; reply after the sync "
          f"of a local record holding the key: {matched - late}"
          f" ({', '.join(f'{k}: {v}' for k, v in sorted(covers.items())) or 'none'}); "
          f"answered before: {late}; no local record holding the key in clear: {unmatched}")
    for c, n in sorted(idle_syncs.items()):
        print_(f"  syncs of {c} with no write pending since the previous one: {n}")
    for n_ in sorted(set(notes)):
        print_(f"  note: {n_}")
    witness = stats.get("witness journal", {"writes": 0})["writes"]
    return failures, matched, witness


def self_test(member_dir):
    """Runs the checks on doctored copies of a passing trace: each must fail as expected, which
    shows the audit can catch the hole it is for. Returns the problems (empty when all fail)."""
    events = parse(member_dir + "/trace")
    problems = []

    def is_sync(e, cls):
        return e.name in SYNCS and (file_class(e.path) or "").startswith(cls)

    def delayed(e):
        """A log sync moved 10 s later (done, but after everything that followed it)."""
        if not is_sync(e, "log"):
            return e
        c = Event.__new__(Event)
        for slot in Event.__slots__:
            setattr(c, slot, getattr(e, slot))
        c.start, c.end = e.start + 10, e.end + 10
        return c

    cases = [
        ("log syncs removed", [e for e in events if not is_sync(e, "log")],
         ["was never synced", "before any sync", "was not synced before the thread"]),
        ("log syncs delayed", sorted(map(delayed, events), key=lambda e: (e.start, e.seq)),
         ["before any sync", "was not synced before the thread"]),
        ("applied-state syncs removed", [e for e in events if not is_sync(e, "applied state")],
         ["log compaction at", "never synced"]),
    ]
    for what, doctored, expected in cases:
        failures, _, _ = audit(member_dir, doctored, quiet=True)
        for needle in expected:
            if not any(needle in f for f in failures):
                problems.append(f"self-test '{what}' on {member_dir}: no failure "
                                f"mentioning '{needle}' ({len(failures)} failures)")
    return problems


def main(argv):
    native = False
    if len(argv) >= 2 and argv[0] == "--self-test":
        problems = []
        for d in argv[1:]:
            problems += self_test(d)
        for p in problems:
            print("  " + p)
        print(f"fsync-audit: self-test {'FAILED' if problems else 'passed'}: doctored traces "
              f"(log syncs removed or delayed, applied-state syncs removed) of {len(argv) - 1} "
              "member(s)")
        return 1 if problems else 0
    if len(argv) >= 2 and argv[0] == "--native":
        native = argv[1] == "1"
        argv = argv[2:]
    failures = []
    matched = witness = 0
    for d in argv:
        f, m, w = audit(d)
        failures += f
        matched += m
        if "/cluster/" in d:
            witness += w
    if matched == 0:
        failures.append("(e): no put could be matched to its reply and its log record")
    if native and witness == 0:
        failures.append("(c): native fast-path puts ran but no witness journal record was seen")
    if failures:
        print(f"\nfsync-audit: FAILED ({len(failures)} problems)")
        for f in failures[:40]:
            print("  " + f)
        if len(failures) > 40:
            print(f"  ... and {len(failures) - 40} more")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
