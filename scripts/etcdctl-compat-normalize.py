#!/usr/bin/env python3
"""Normalizer and comparer for scripts/etcdctl-compat.sh.

Usage:
  etcdctl-compat-normalize.py normalize CLIENT_URL < raw-transcript > normalized-transcript
  etcdctl-compat-normalize.py filter NOT_COMPARED_TSV < normalized > filtered
  etcdctl-compat-normalize.py compare LEFT_NAME LEFT_FILE RIGHT_NAME RIGHT_FILE

`normalize` replaces, line by line, only the values that legitimately differ between two
independent single-member servers that were given the same sequence of requests:

  * response headers: cluster_id, member_id, raft_term (revision is kept: both servers start
    empty at revision 1 and see the same writes, so revisions must match exactly);
  * member ids (in JSON, in `-w fields` and in the hex of `member list`): each distinct id is
    replaced by `<id-N>` in order of first appearance, so "leader == member_id == the member's
    ID" is still checked while the numbers themselves are not;
  * endpoint status: version, dbSize, dbSizeInUse, raftIndex, raftAppliedIndex, raftTerm (storage
    engine and consensus log layout are implementation details);
  * member list: name, peer URLs (the two servers are configured differently on the peer side);
    the client URL is replaced by `<client-url>` (each server has its own free port);
  * timings (`took`), and the client-side zap log lines' timestamp and connection target;
  * `snapshot save`: the endpoint and the snapshot's size in etcdctl's log lines (both are
    bbolt files in etcd's layout, but each holds its own members and applied index, and etcd's
    has free pages);
  * lease ids (chosen by each server: in JSON, in the hex of `lease` output, at the end of the
    keys `etcdctl lock` and `elect` print, and in the `$ etcdctl` lines that name them),
    numbered `<lease-N>` by first appearance like member
    ids; the remaining TTL of `lease timetolive` (whole seconds left, which depends on timing).
    etcdctl prints a lease response's header fields at the top level of its JSON, so those are
    normalized there too.

Key and value bytes (base64 in `-w json`) are decoded when they are printable ASCII, only to make
the transcripts readable; this is done identically for both sides.

`compare` splits two normalized transcripts into their `### ` blocks, prints which commands
differ and a closing line `etcdctl-compat: N passed, M failed`; exit code 0 iff all blocks match.
"""

import base64
import binascii
import json
import re
import sys

ID_MAP: dict[int, str] = {}
LEASE_MAP: dict[int, str] = {}
HEX_LEASE = re.compile(r"\b[0-9a-f]{16}\b")


def lease_placeholder(value: int) -> str:
    """Stable placeholder for a lease id, by order of first appearance (0: no lease, kept)."""
    if value == 0:
        return "0"
    if value not in LEASE_MAP:
        LEASE_MAP[value] = f"<lease-{len(LEASE_MAP) + 1}>"
    return LEASE_MAP[value]


def hex_leases(text: str) -> str:
    """Replaces 16-digit hex lease ids (etcdctl's `%016x`) in a line of text."""
    return HEX_LEASE.sub(lambda m: lease_placeholder(int(m.group(0), 16)), text)


def id_placeholder(value: int) -> str:
    """Stable placeholder for a member id, by order of first appearance.

    0 means "not set" (e.g. the headers nested in txn responses) and is kept as it is.
    """
    if value == 0:
        return "0"
    if value not in ID_MAP:
        ID_MAP[value] = f"<id-{len(ID_MAP) + 1}>"
    return ID_MAP[value]


def decode_bytes(text: str) -> str:
    """Decode base64 key/value bytes to text when printable; keep it marked otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text
    if all(32 <= b < 127 for b in raw):
        return "b64:" + raw.decode("ascii")
    return text


class Normalizer:
    """Stateful (the id map spans the whole transcript) line normalizer."""

    def __init__(self, client_url: str) -> None:
        self.client_url = client_url.rstrip("/")

    # ---- URLs ---------------------------------------------------------------------------
    def url(self, url: str) -> str:
        url = url.rstrip("/")
        if url == self.client_url or url == self.client_url.split("://", 1)[-1]:
            return "<client-url>"
        return "<url>"

    def text_urls(self, line: str) -> str:
        line = line.replace(self.client_url, "<client-url>")
        line = re.sub(r"https?://[A-Za-z0-9.\-\[\]:]+", "<url>", line)
        # A bare host:port of the client listener (e.g. inside a gRPC dial error).
        hostport = self.client_url.split("://", 1)[-1]
        return line.replace(hostport, "<client-addr>")

    # ---- JSON -----------------------------------------------------------------------------
    def header(self, hdr: dict) -> dict:
        out = dict(hdr)
        if out.get("cluster_id"):
            out["cluster_id"] = "<cluster_id>"
        if "member_id" in out:
            out["member_id"] = id_placeholder(int(out["member_id"]))
        if out.get("raft_term"):
            out["raft_term"] = "<raft_term>"
        return out

    def walk(self, node, parent_key: str = ""):
        if isinstance(node, list):
            return [self.walk(item, parent_key) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        # Lease responses: etcdctl flattens the header into the top level.
        top_header = parent_key == "" and "cluster_id" in node and "member_id" in node
        if parent_key == "Status":
            # A fresh member's log may be empty (index 0), which JSON omits; etcd's bootstrap
            # entries make its index non-zero. Both are placeholders below, so present or not,
            # compare them as present.
            for key in ("raftIndex", "raftAppliedIndex"):
                node.setdefault(key, 0)
        for key, val in node.items():
            if key == "header" and isinstance(val, dict):
                out[key] = self.header(val)
            elif key in ("key", "value", "range_end") and isinstance(val, str):
                out[key] = decode_bytes(val)
            elif parent_key == "Status" and key in (
                "version",
                "dbSize",
                "dbSizeInUse",
                "raftIndex",
                "raftAppliedIndex",
                "raftTerm",
            ):
                # Maintenance.Status: server version, storage-engine sizes and the consensus
                # log's index/term are implementation details of each server.
                out[key] = f"<{key}>"
            elif parent_key == "Status" and key == "leader":
                out[key] = id_placeholder(int(val))
            elif parent_key == "members" and key == "ID":
                out[key] = id_placeholder(int(val))
            elif parent_key == "members" and key == "name":
                out[key] = "<name>"
            elif parent_key == "members" and key == "peerURLs":
                # The reference etcd gets a peer URL on its own free port; xline's peer side is
                # configured differently. Only "is there a list of URLs" is compared.
                out[key] = ["<peer-url>" for _ in val] if val else val
            elif parent_key == "members" and key == "clientURLs":
                out[key] = [self.url(u) for u in val]
            elif key in ("Endpoint", "endpoint") and isinstance(val, str):
                out[key] = self.url(val)
            elif key == "took":
                out[key] = "<took>"
            elif top_header and key in ("cluster_id", "member_id", "raft_term"):
                out.update(self.header({key: val}))
            elif isinstance(val, int) and (
                (parent_key == "" and key in ("ID", "id")) or (parent_key == "leases" and key == "id") or key == "lease"
            ):
                out[key] = lease_placeholder(val)
            elif top_header and key == "ttl" and isinstance(val, int) and val > 0:
                # LeaseTimeToLive: whole seconds left.
                out[key] = "<remaining>"
            else:
                out[key] = self.walk(val, key)
        if parent_key == "Status":
            out = dict(sorted(out.items()))  # field order independent of which were omitted
        return out

    def zap_line(self, obj: dict) -> dict:
        """etcdctl's own client-side log lines (stderr) carry a timestamp and a dial target."""
        out = dict(obj)
        if "ts" in out:
            out["ts"] = "<ts>"
        if "target" in out:
            out["target"] = "<target>"
        # snapshot save: which endpoint, how big (each server's own format) and how long
        if isinstance(out.get("endpoint"), str):
            out["endpoint"] = self.url(out["endpoint"])
        if "size" in out:
            out["size"] = "<size>"
        if "took" in out:
            out["took"] = "<took>"
        if "error" in out and isinstance(out["error"], str):
            out["error"] = self.text_urls(out["error"])
        return out

    # ---- text -----------------------------------------------------------------------------
    def text(self, line: str) -> str:
        # -w fields
        # (0 means "not set", as in the headers nested in txn responses, and is kept.)
        line = re.sub(r'^"ClusterID" : [1-9]\d*$', '"ClusterID" : <cluster_id>', line)
        line = re.sub(r'^"RaftTerm" : [1-9]\d*$', '"RaftTerm" : <raft_term>', line)
        m = re.match(r'^"MemberID" : (\d+)$', line)
        if m:
            return f'"MemberID" : {id_placeholder(int(m.group(1)))}'
        # member list (simple): ID, status, name, peer URLs, client URLs, is learner
        m = re.match(r"^([0-9a-f]{1,16}), (started|unstarted), ([^,]*), ([^,]*), ([^,]*)(, .*)?$", line)
        if m:
            peers = ",".join("<peer-url>" for u in m.group(4).split(",") if u.strip())
            clients = ",".join(self.url(u) for u in m.group(5).split(",") if u.strip())
            rest = m.group(6) or ""
            return f"{id_placeholder(int(m.group(1), 16))}, {m.group(2)}, <name>, {peers}, {clients}{rest}"
        # member add / remove / update / promote (simple)
        m = re.match(r"^Member\s+([0-9a-f]+) (added to|removed from|updated in|promoted in) cluster\s+([0-9a-f]+)$", line)
        if m:
            return f"Member {id_placeholder(int(m.group(1), 16))} {m.group(2)} cluster <cluster_id>"
        # member add: the existing members' peer URLs differ; entries are in (random) id order
        m = re.match(r'^ETCD_INITIAL_CLUSTER="(.*)"$', line)
        if m:
            entries = sorted(re.sub(r"=.*$", "=<peer-url>", e) for e in m.group(1).split(","))
            return 'ETCD_INITIAL_CLUSTER="' + ",".join(entries) + '"'
        # endpoint health (simple)
        line = re.sub(r"took = [0-9.]+[a-zµ]*s\b", "took = <took>", line)
        # lease grant / timetolive / keep-alive / revoke / list (simple)
        if re.match(r"^[0-9a-f]{16}$", line) or line.startswith("lease "):
            line = hex_leases(line)
        line = re.sub(r"remaining\(\d+s\)", "remaining(<n>s)", line)
        # lock and election keys (`etcdctl lock`, `elect`): NAME/<lease id in unpadded hex>
        m = re.match(r"^(\S+/)([0-9a-f]{12,16})$", line)
        if m:
            return m.group(1) + lease_placeholder(int(m.group(2), 16))
        return self.text_urls(line)

    def line(self, line: str) -> str:
        stripped = line.strip()
        if stripped[:1] in ("{", "["):
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError:
                return self.text(line)
            if isinstance(obj, dict) and "level" in obj and "ts" in obj and "msg" in obj:
                obj = self.zap_line(obj)
            else:
                obj = self.walk(obj)
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return self.text(line)


def normalize(client_url: str) -> int:
    norm = Normalizer(client_url)
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        # Transcript structure lines ("### ...", "$ etcdctl ...", "  | stdin", "[exit N]") are kept.
        if line.startswith("$ etcdctl member "):
            # member ids in the arguments (random per server); short test ids like 1234 are kept
            line = re.sub(r"\b[0-9a-f]{8,16}\b", lambda m: id_placeholder(int(m.group(0), 16)), line)
            sys.stdout.write(line + "\n")
        elif line.startswith("$ etcdctl ") and "lease" in line:
            sys.stdout.write(hex_leases(line) + "\n")
        elif line.startswith(("### ", "$ etcdctl ", "  | ", "[exit ")):
            sys.stdout.write(line + "\n")
        else:
            sys.stdout.write(norm.line(line) + "\n")
    return 0


def filter_blocks(skip_file: str) -> int:
    """Replace the output of the commands listed in SKIP_FILE (label TAB reason) by a note."""
    skip: dict[str, str] = {}
    with open(skip_file, encoding="utf-8") as fh:
        for raw in fh:
            if "\t" in raw:
                label, reason = raw.rstrip("\n").split("\t", 1)
                skip[label] = reason
    dropping = False
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        if line.startswith("### "):
            # "### NNN label": the label without its sequence number.
            label = line[4:].split(" ", 1)[-1]
            dropping = label in skip
            sys.stdout.write(line + "\n")
            if dropping:
                sys.stdout.write(f"(output not compared: {skip[label]})\n\n")
            continue
        if not dropping:
            sys.stdout.write(line + "\n")
    return 0


def blocks(path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith("### "):
                current = line[4:]
                out[current] = []
            elif current is not None:
                out[current].append(line)
    return out


def compare(left_name: str, left: str, right_name: str, right: str) -> int:
    a, b = blocks(left), blocks(right)
    labels = list(a) + [k for k in b if k not in a]
    passed = failed = 0
    for label in labels:
        if a.get(label) == b.get(label):
            passed += 1
        else:
            failed += 1
            print(f"DIFFERS: {label} ({left_name} vs {right_name})")
    print(f"etcdctl-compat: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "normalize":
        return normalize(argv[2])
    if len(argv) == 3 and argv[1] == "filter":
        return filter_blocks(argv[2])
    if len(argv) == 6 and argv[1] == "compare":
        return compare(argv[2], argv[3], argv[4], argv[5])
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
