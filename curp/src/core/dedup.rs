//! Exactly-once bookkeeping (CURP.md D5, DD1-DD4): which proposal ids the replicated state
//! machine has executed.
//!
//! The table is a pure function of the log prefix: it is updated in log order as committed
//! entries are handed out (so every member decides `duplicate` identically for the same entry),
//! rebuilt on restart from the snapshot's copy plus the log after it, and carried inside
//! snapshots ([`encode_snapshot`]).
//!
//! Per client it keeps the `first_incomplete` watermark (every lower sequence number is done:
//! the client consumed its reply) and the executed sequence numbers at or above it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::types::{CommandData, ProposeId};

/// Executed proposal ids (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DedupTable {
    clients: BTreeMap<u64, ClientSeqs>,
}

/// One client's executed sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ClientSeqs {
    /// Every sequence number below is complete.
    watermark: u64,
    /// Executed sequence numbers `>= watermark`.
    executed: BTreeSet<u64>,
}

impl DedupTable {
    /// Whether `id` was already executed (or is below its client's watermark).
    pub(crate) fn is_applied(&self, id: ProposeId) -> bool {
        self.clients
            .get(&id.client_id)
            .is_some_and(|c| id.seq < c.watermark || c.executed.contains(&id.seq))
    }

    /// Records a committed command, in log order. Returns true when it is a duplicate (the
    /// state machine must skip it). The watermark only moves forward, and only by commands'
    /// own `first_incomplete` (recovered commands carry 0 there, CURP.md DD3).
    pub(crate) fn record(&mut self, cmd: &CommandData) -> bool {
        if self.is_applied(cmd.id) {
            return true;
        }
        let client = self.clients.entry(cmd.id.client_id).or_default();
        client.executed.insert(cmd.id.seq);
        if cmd.first_incomplete > client.watermark {
            client.watermark = cmd.first_incomplete;
            client.executed = client.executed.split_off(&client.watermark);
        }
        false
    }

    /// Serializes the table (little-endian: clients, then per client id, watermark, count,
    /// sequence numbers).
    fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.clients.len() as u64);
        for (id, c) in &self.clients {
            out.put_u64_le(*id);
            out.put_u64_le(c.watermark);
            out.put_u64_le(c.executed.len() as u64);
            for seq in &c.executed {
                out.put_u64_le(*seq);
            }
        }
    }

    /// Parses [`DedupTable::encode`]'s output; `None` when malformed.
    fn decode(buf: &mut Bytes) -> Option<Self> {
        let mut table = Self::default();
        let clients = get_u64(buf)?;
        for _ in 0..clients {
            let id = get_u64(buf)?;
            let watermark = get_u64(buf)?;
            let count = get_u64(buf)?;
            if count > buf.remaining() as u64 / 8 {
                return None;
            }
            let mut executed = BTreeSet::new();
            for _ in 0..count {
                executed.insert(get_u64(buf)?);
            }
            table.clients.insert(
                id,
                ClientSeqs {
                    watermark,
                    executed,
                },
            );
        }
        Some(table)
    }
}

/// Reads a little-endian u64, `None` at the end of input.
fn get_u64(buf: &mut Bytes) -> Option<u64> {
    (buf.remaining() >= 8).then(|| buf.get_u64_le())
}

/// Magic and format version of the snapshot envelope.
const SNAPSHOT_MAGIC: &[u8; 8] = b"CURPSNP1";

/// Builds the snapshot bytes the core ships and installs: the dedup table as of the snapshot
/// index, then the state machine's opaque bytes.
pub(crate) fn encode_snapshot(dedup: &DedupTable, state_machine: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + state_machine.len());
    out.put_slice(SNAPSHOT_MAGIC);
    let mut table = BytesMut::new();
    dedup.encode(&mut table);
    out.put_u64_le(table.len() as u64);
    out.put_slice(&table);
    out.put_slice(state_machine);
    out.freeze()
}

/// Splits snapshot bytes made by [`encode_snapshot`] into the dedup table and the state
/// machine's bytes; `None` when malformed.
pub(crate) fn decode_snapshot(data: &Bytes) -> Option<(DedupTable, Bytes)> {
    let mut buf = data.clone();
    if buf.remaining() < SNAPSHOT_MAGIC.len() || &buf[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return None;
    }
    buf.advance(SNAPSHOT_MAGIC.len());
    let len = usize::try_from(get_u64(&mut buf)?).ok()?;
    if len > buf.remaining() {
        return None;
    }
    let mut table_bytes = buf.split_to(len);
    let table = DedupTable::decode(&mut table_bytes)?;
    Some((table, buf))
}

/// The state machine's part of snapshot bytes built by the core (what
/// [`super::SnapshotInstall::data`] carries); the whole input if it is not in the core's
/// format.
pub fn snapshot_state_machine_data(data: &Bytes) -> Bytes {
    decode_snapshot(data).map_or_else(|| data.clone(), |(_, sm)| sm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::ConflictKeys;

    fn cmd(client_id: u64, seq: u64, first_incomplete: u64) -> CommandData {
        CommandData {
            id: ProposeId { client_id, seq },
            keys: ConflictKeys::default(),
            payload: Bytes::new(),
            first_incomplete,
        }
    }

    #[test]
    fn duplicates_and_watermark() {
        let mut t = DedupTable::default();
        assert!(!t.record(&cmd(1, 1, 0)));
        assert!(
            t.record(&cmd(1, 1, 0)),
            "retry of an executed id is a duplicate"
        );
        assert!(!t.record(&cmd(1, 3, 0)));
        assert!(!t.is_applied(ProposeId {
            client_id: 1,
            seq: 2
        }));
        // The client consumed everything below 3.
        assert!(!t.record(&cmd(1, 4, 3)));
        assert_eq!(t.clients[&1].watermark, 3);
        assert!(
            t.is_applied(ProposeId {
                client_id: 1,
                seq: 2
            }),
            "below the watermark"
        );
        assert!(t.is_applied(ProposeId {
            client_id: 1,
            seq: 3
        }));
        // A lower first_incomplete never moves the watermark back.
        assert!(!t.record(&cmd(1, 5, 1)));
        assert_eq!(t.clients[&1].watermark, 3);
        assert!(!t.is_applied(ProposeId {
            client_id: 2,
            seq: 1
        }));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut t = DedupTable::default();
        t.record(&cmd(1, 1, 0));
        t.record(&cmd(9, 7, 5));
        let sm = Bytes::from_static(b"state");
        let data = encode_snapshot(&t, &sm);
        assert_eq!(decode_snapshot(&data), Some((t, sm.clone())));
        assert_eq!(snapshot_state_machine_data(&data), sm);
        assert_eq!(decode_snapshot(&Bytes::from_static(b"garbage")), None);
        let truncated = data.slice(..20);
        assert_eq!(decode_snapshot(&truncated), None);
    }
}
