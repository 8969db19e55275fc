//! Exactly once (CURP.md D5, P3, P4): a proposal id takes effect at most once.
//!
//! - Globally: a proposal id is applied (not as a duplicate) at one log index only. A retry or
//!   a recovered witness record that lands at a second index must be flagged
//!   `Committed::duplicate`.
//! - Per member: a member's state machine never executes an id it already executed.
//!
//! [`ExactlyOnce`] also keeps the first (index, term, result) of every id: the ordered result
//! that `fast_path_agrees` and `no_lost_ack` compare against.

use std::collections::HashMap;

use crate::core::{LogIndex, NodeId, ProposeId, Term};
use crate::testing::kv::KvOutput;

/// Where and with what result an id first took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstApply {
    /// Log index.
    pub index: LogIndex,
    /// Term of the entry.
    pub term: Term,
    /// The ordered result.
    pub result: KvOutput,
}

/// The global record of executed proposal ids.
#[derive(Debug, Default, Clone)]
pub struct ExactlyOnce {
    first: HashMap<ProposeId, FirstApply>,
    /// Entries flagged duplicate whose id this member had never executed (allowed for
    /// abandoned ids below the client's `first_incomplete`; `no_lost_ack` catches the bad case).
    pub duplicates_never_executed: u64,
    /// Entries flagged duplicate.
    pub duplicates: u64,
}

impl ExactlyOnce {
    /// Records that `member` executed `id` (not flagged duplicate) at `index`, having executed
    /// it before iff `member_had_it`. Returns whether this is the id's first execution anywhere.
    ///
    /// # Errors
    ///
    /// A description when the id took effect twice.
    pub fn on_execute(
        &mut self,
        member: NodeId,
        id: ProposeId,
        index: LogIndex,
        term: Term,
        result: KvOutput,
        member_had_it: bool,
    ) -> Result<bool, String> {
        if member_had_it {
            return Err(format!(
                "member {member} executed {id:?} again at index {index} (not flagged duplicate)"
            ));
        }
        match self.first.get(&id) {
            Some(f) if f.index != index => Err(format!(
                "{id:?} executed at index {index} (member {member}) and at index {}",
                f.index
            )),
            Some(_) => Ok(false),
            None => {
                self.first.insert(
                    id,
                    FirstApply {
                        index,
                        term,
                        result,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Records an entry flagged duplicate; `member_had_it` tells whether the member executed the
    /// id before.
    pub fn on_duplicate(&mut self, member_had_it: bool) {
        self.duplicates += 1;
        if !member_had_it {
            self.duplicates_never_executed += 1;
        }
    }

    /// Where `id` first took effect.
    pub fn first(&self, id: &ProposeId) -> Option<FirstApply> {
        self.first.get(id).copied()
    }

    /// Number of distinct ids executed.
    pub fn executed(&self) -> usize {
        self.first.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_index_is_caught() {
        let id = ProposeId {
            client_id: 1,
            seq: 1,
        };
        let mut e = ExactlyOnce::default();
        assert_eq!(e.on_execute(1, id, 5, 1, None, false), Ok(true));
        assert_eq!(e.on_execute(2, id, 5, 1, None, false), Ok(false));
        assert!(e.on_execute(3, id, 6, 2, None, false).is_err());
        assert!(e.on_execute(1, id, 5, 1, None, true).is_err());
    }
}
