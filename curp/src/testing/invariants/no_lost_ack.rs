//! No lost acknowledgement (CURP.md P1, P2, P4): every write a client saw succeed - on the fast
//! or the ordered path - is eventually executed, once the cluster has healed, on every member.

use super::exactly_once::ExactlyOnce;
use crate::core::NodeId;
use crate::testing::client::{HistOp, OpPath};
use crate::testing::kv::KvStore;

/// Checks, after the liveness phase, that every acknowledged write of `history` took effect
/// (per `executed`) and that the state machine of every member in `members` executed it.
///
/// # Errors
///
/// A description of the first acknowledged write that is missing.
pub fn check(
    history: &[HistOp],
    executed: &ExactlyOnce,
    members: &[(NodeId, &KvStore)],
) -> Result<(), String> {
    for op in history {
        if op.path == OpPath::Read || op.ret.is_none() {
            continue;
        }
        if executed.first(&op.id).is_none() {
            return Err(format!(
                "{:?} ({:?}, {:?} path, acknowledged at {}ms with {:?}) was never applied",
                op.id,
                op.cmd,
                op.path,
                op.ret_ms.unwrap_or(0),
                op.output
            ));
        }
        for (member, kv) in members {
            if !kv.was_applied(&op.id) {
                return Err(format!(
                    "member {member} never applied acknowledged {:?} ({:?})",
                    op.id, op.cmd
                ));
            }
        }
    }
    Ok(())
}
