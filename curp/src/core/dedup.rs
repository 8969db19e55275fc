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

use super::types::{CommandData, EntryKind, ProposeId};

/// Executed proposal ids (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DedupTable {
    clients: BTreeMap<u64, ClientSeqs>,
}

/// One client's executed sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ClientSeqs {
    /// Every sequence number below is complete; [`EXPIRED`] for a client whose id lease
    /// expired (every id of it counts as executed).
    watermark: u64,
    /// Executed sequence numbers `>= watermark`.
    executed: BTreeSet<u64>,
}

/// The watermark of an expired client: a tombstone that makes every id of the client count as
/// executed.
const EXPIRED: u64 = u64::MAX;

impl DedupTable {
    /// Whether `id` was already executed (or is below its client's watermark, or its client
    /// expired).
    pub(crate) fn is_applied(&self, id: ProposeId) -> bool {
        self.clients.get(&id.client_id).is_some_and(|c| {
            c.watermark == EXPIRED || id.seq < c.watermark || c.executed.contains(&id.seq)
        })
    }

    /// The client's id lease expired (a committed [`super::EntryKind::ClientExpired`], in log
    /// order). Its executed sequence numbers are dropped, but the client is not forgotten
    /// (CURP.md DD4): witnesses that have not applied the expiry yet may still hold records of
    /// it, and a new leader may collect them; the tombstone makes every id of the client count
    /// as executed, so such records are refused, purged and never recovered, and a late retry
    /// is a duplicate. Client ids are never reused, so the tombstone is kept for good (in
    /// snapshots too: it is encoded as the watermark `u64::MAX`).
    pub(crate) fn expire(&mut self, client_id: u64) {
        self.clients.insert(
            client_id,
            ClientSeqs {
                watermark: EXPIRED,
                executed: BTreeSet::new(),
            },
        );
    }

    /// Whether the client's id lease expired.
    pub(crate) fn is_expired(&self, client_id: u64) -> bool {
        self.clients
            .get(&client_id)
            .is_some_and(|c| c.watermark == EXPIRED)
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

    /// Advances the table over one committed entry, in log order. Returns true for a duplicate
    /// command (the state machine must skip it).
    pub(crate) fn apply(&mut self, kind: &EntryKind) -> bool {
        match kind {
            EntryKind::Command { cmd, .. } => self.record(cmd),
            EntryKind::ClientExpired(client_id) => {
                self.expire(*client_id);
                false
            }
            EntryKind::Empty | EntryKind::ConfChange(_) => false,
        }
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
            keys: std::sync::Arc::new(ConflictKeys::default()),
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

    /// DD4: an expired client keeps a tombstone: every id of it counts as executed (so its
    /// witness records are purged and never recovered, and a late copy is a duplicate), other
    /// clients are untouched, and the tombstone survives a snapshot.
    #[test]
    fn expired_client_keeps_a_tombstone() {
        let mut t = DedupTable::default();
        assert!(!t.record(&cmd(1, 1, 0)));
        assert!(!t.record(&cmd(1, 2, 0)));
        assert!(!t.record(&cmd(2, 1, 0)));
        t.expire(1);
        t.expire(3);
        assert!(t.is_expired(1) && t.is_expired(3) && !t.is_expired(2));
        for seq in [0, 1, 2, 3, 1_000] {
            assert!(t.is_applied(ProposeId { client_id: 1, seq }));
            assert!(t.is_applied(ProposeId { client_id: 3, seq }));
        }
        assert!(
            t.record(&cmd(1, 7, 0)),
            "a copy of an expired client's command never executes"
        );
        assert!(
            t.clients[&1].executed.is_empty(),
            "the executed set is dropped"
        );
        assert!(t.is_applied(ProposeId {
            client_id: 2,
            seq: 1
        }));
        assert!(!t.is_applied(ProposeId {
            client_id: 2,
            seq: 2
        }));
        // A record of the expired client with a larger first_incomplete does not revive it.
        assert!(t.record(&cmd(1, 8, 9)));
        assert!(t.is_expired(1));
        let data = encode_snapshot(&t, &Bytes::new());
        let (restored, _) = decode_snapshot(&data).expect("decodes");
        assert!(restored.is_expired(1) && restored.is_expired(3));
        assert_eq!(restored, t);
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
