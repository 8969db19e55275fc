//! The state machine the simulation replicates: a map of `u64` registers.
//!
//! Commands ([`KvCommand`]) are encoded into `CommandData::payload`; each touches exactly one
//! key, which is its conflict key (a single-key [`KeyRange`]). Two commands conflict iff they
//! touch the same key, so a workload over many keys commutes and one over a single hot key
//! conflicts.
//!
//! Every mutating command returns the value it found (`prev`), so its result depends on
//! order: that is what lets the linearizability checker and the fast-path invariant see a
//! speculation on stale state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::cmd::{ConflictKeys, KeyRange};
use crate::core::{CommandData, LogIndex, ProposeId};

/// A register key.
pub type Key = u64;
/// A register value.
pub type Value = u64;

/// A command on the register map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCommand {
    /// Set `key` to `value`; returns the previous value.
    Put {
        /// Key.
        key: Key,
        /// New value.
        value: Value,
    },
    /// Remove `key`; returns the previous value.
    Delete {
        /// Key.
        key: Key,
    },
    /// Set `key` to `new` iff it currently holds `expected` (`None`: absent); returns the
    /// value found.
    Cas {
        /// Key.
        key: Key,
        /// Expected current value.
        expected: Option<Value>,
        /// Value to store on success.
        new: Value,
    },
    /// Read `key` (never logged: served by read index).
    Get {
        /// Key.
        key: Key,
    },
}

/// What a command returns: the value the key held before the command (for `Get`, the value
/// read). A `Cas` succeeded iff this equals its `expected`.
pub type KvOutput = Option<Value>;

impl KvCommand {
    /// The key the command touches.
    pub fn key(&self) -> Key {
        match *self {
            KvCommand::Put { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Cas { key, .. }
            | KvCommand::Get { key } => key,
        }
    }

    /// Whether the command changes state (goes through the log).
    pub fn is_write(&self) -> bool {
        !matches!(self, KvCommand::Get { .. })
    }

    /// Encodes the command: a tag byte, then little-endian `u64` fields.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(26);
        match *self {
            KvCommand::Put { key, value } => {
                out.push(1);
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
            KvCommand::Delete { key } => {
                out.push(2);
                out.extend_from_slice(&key.to_le_bytes());
            }
            KvCommand::Cas { key, expected, new } => {
                out.push(3);
                out.extend_from_slice(&key.to_le_bytes());
                out.push(u8::from(expected.is_some()));
                out.extend_from_slice(&expected.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&new.to_le_bytes());
            }
            KvCommand::Get { key } => {
                out.push(4);
                out.extend_from_slice(&key.to_le_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Decodes a command produced by [`KvCommand::encode`].
    pub fn decode(bytes: &[u8]) -> Option<KvCommand> {
        let (&tag, rest) = bytes.split_first()?;
        let mut r = Reader(rest);
        let cmd = match tag {
            1 => KvCommand::Put {
                key: r.u64()?,
                value: r.u64()?,
            },
            2 => KvCommand::Delete { key: r.u64()? },
            3 => {
                let key = r.u64()?;
                let some = r.u8()? == 1;
                let expected = r.u64()?;
                KvCommand::Cas {
                    key,
                    expected: some.then_some(expected),
                    new: r.u64()?,
                }
            }
            4 => KvCommand::Get { key: r.u64()? },
            _ => return None,
        };
        r.0.is_empty().then_some(cmd)
    }

    /// The conflict keys: the key as a single-key range.
    pub fn conflict_keys(&self) -> ConflictKeys {
        ConflictKeys {
            ranges: vec![KeyRange::new(self.key().to_be_bytes().to_vec(), Vec::new())],
            leases: Vec::new(),
            exclusive: false,
        }
    }

    /// Wraps the command for consensus with proposal id `id`.
    pub fn to_data(&self, id: ProposeId, first_incomplete: u64) -> CommandData {
        CommandData {
            id,
            keys: Arc::new(self.conflict_keys()),
            payload: self.encode(),
            first_incomplete,
        }
    }
}

/// A little-endian cursor.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_at_checked(8)?;
        self.0 = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }
}

/// The replicated register map plus its dedup table (results by proposal id, CURP.md DD2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    data: BTreeMap<Key, Value>,
    /// Result of every applied proposal (the sim keeps them all: runs are short).
    results: HashMap<ProposeId, KvOutput>,
    applied: LogIndex,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last applied log index.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Marks `index` applied (for entries that change no data: no-ops, duplicates).
    pub fn set_applied(&mut self, index: LogIndex) {
        self.applied = self.applied.max(index);
    }

    /// The current value of `key`.
    pub fn get(&self, key: Key) -> Option<Value> {
        self.data.get(&key).copied()
    }

    /// The result of proposal `id`, if it was applied.
    pub fn result(&self, id: &ProposeId) -> Option<KvOutput> {
        self.results.get(id).copied()
    }

    /// Whether proposal `id` was applied.
    pub fn was_applied(&self, id: &ProposeId) -> bool {
        self.results.contains_key(id)
    }

    /// Computes what `cmd` would return now, without changing anything (speculation).
    pub fn peek(&self, cmd: &KvCommand) -> KvOutput {
        self.get(cmd.key())
    }

    /// Applies `cmd` (proposal `id`) at log `index` and returns its result.
    pub fn apply(&mut self, index: LogIndex, id: ProposeId, cmd: &KvCommand) -> KvOutput {
        let key = cmd.key();
        let prev = self.get(key);
        match *cmd {
            KvCommand::Put { value, .. } => {
                self.data.insert(key, value);
            }
            KvCommand::Delete { .. } => {
                self.data.remove(&key);
            }
            KvCommand::Cas { expected, new, .. } => {
                if prev == expected {
                    self.data.insert(key, new);
                }
            }
            KvCommand::Get { .. } => {}
        }
        self.results.insert(id, prev);
        self.set_applied(index);
        prev
    }

    /// Serializes the whole store (data, dedup table, applied index).
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
        put(self.applied);
        put(self.data.len() as u64);
        for (&k, &v) in &self.data {
            put(k);
            put(v);
        }
        let mut results: Vec<_> = self.results.iter().collect();
        results.sort();
        put(results.len() as u64);
        for (id, res) in results {
            put(id.client_id);
            put(id.seq);
            put(u64::from(res.is_some()));
            put(res.unwrap_or(0));
        }
        Bytes::from(out)
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Option<KvStore> {
        let mut r = Reader(bytes);
        let applied = r.u64()?;
        let mut data = BTreeMap::new();
        for _ in 0..r.u64()? {
            data.insert(r.u64()?, r.u64()?);
        }
        let mut results = HashMap::new();
        for _ in 0..r.u64()? {
            let id = ProposeId {
                client_id: r.u64()?,
                seq: r.u64()?,
            };
            let some = r.u64()? == 1;
            let v = r.u64()?;
            results.insert(id, some.then_some(v));
        }
        r.0.is_empty().then_some(KvStore {
            data,
            results,
            applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let cmds = [
            KvCommand::Put { key: 1, value: 2 },
            KvCommand::Delete { key: 3 },
            KvCommand::Cas {
                key: 4,
                expected: None,
                new: 5,
            },
            KvCommand::Cas {
                key: 4,
                expected: Some(0),
                new: 5,
            },
            KvCommand::Get { key: 9 },
        ];
        for c in cmds {
            assert_eq!(KvCommand::decode(&c.encode()), Some(c));
        }
        assert_eq!(KvCommand::decode(&[9]), None);
        assert_eq!(KvCommand::decode(&[]), None);
    }

    #[test]
    fn conflicts_by_key() {
        let a = KvCommand::Put { key: 1, value: 0 }.conflict_keys();
        let b = KvCommand::Delete { key: 1 }.conflict_keys();
        let c = KvCommand::Put { key: 2, value: 0 }.conflict_keys();
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
    }

    #[test]
    fn apply_and_snapshot() {
        let id = |seq| ProposeId { client_id: 1, seq };
        let mut s = KvStore::new();
        assert_eq!(
            s.apply(1, id(1), &KvCommand::Put { key: 1, value: 7 }),
            None
        );
        let cas = KvCommand::Cas {
            key: 1,
            expected: Some(7),
            new: 8,
        };
        assert_eq!(s.peek(&cas), Some(7));
        assert_eq!(s.apply(2, id(2), &cas), Some(7));
        assert_eq!(s.get(1), Some(8));
        assert_eq!(s.apply(3, id(3), &KvCommand::Delete { key: 1 }), Some(8));
        assert_eq!(s.get(1), None);
        assert_eq!(s.result(&id(2)), Some(Some(7)));
        let restored = KvStore::restore(&s.snapshot());
        assert_eq!(restored.as_ref(), Some(&s));
        assert_eq!(restored.map(|r| r.applied()), Some(3));
    }
}
