//! Linearizability of the client history (CURP.md section 9, "History checking"), checked
//! per key by [`crate::testing::linearizability`] (Wing & Gong with Lowe's memoization).
//!
//! Each op enters with its invocation and response stamps; an abandoned write is
//! indeterminate (it may have taken effect at any time after its call); an abandoned read
//! constrains nothing and is left out. A fast-path write enters with the leader's speculative
//! result, an ordered one with its applied result.

use crate::testing::client::{HistOp, OpPath};
use crate::testing::kv::KvCommand;
use crate::testing::linearizability::{self, CheckResult, Input, Operation, Output};

/// Search steps per key before the checker gives up (reported, not failed).
pub const STEP_BUDGET: u64 = 2_000_000;

/// Converts the simulation's history into the checker's.
pub fn operations(history: &[HistOp]) -> Vec<Operation> {
    checked(history)
        .map(|op| {
            let (input, output) = match op.cmd {
                KvCommand::Put { key, value } => {
                    (Input::Put { key, value }, op.output.map(|_| Output::Put))
                }
                KvCommand::Delete { key } => {
                    (Input::Delete { key }, op.output.map(|_| Output::Delete))
                }
                KvCommand::Cas { key, expected, new } => (
                    Input::Cas { key, expected, new },
                    op.output.map(|prev| Output::Cas(prev == expected)),
                ),
                KvCommand::Get { key } => (Input::Get { key }, op.output.map(Output::Get)),
            };
            Operation {
                client: op.client,
                call: op.call,
                ret: op.ret,
                input,
                output,
            }
        })
        .collect()
}

/// The history ops the checker sees (abandoned reads constrain nothing and are left out).
fn checked(history: &[HistOp]) -> impl Iterator<Item = &HistOp> {
    history
        .iter()
        .filter(|op| op.path != OpPath::Read || op.ret.is_some())
}

/// Checks `history`.
///
/// # Errors
///
/// The checker's account of a non-linearizable key (with the witness operations), or a note
/// that the search ran out of budget (`Err` with `undecided: ` prefix).
pub fn check(history: &[HistOp]) -> Result<(), String> {
    let ops = operations(history);
    match linearizability::check_with_budget(&ops, STEP_BUDGET) {
        CheckResult::Ok => Ok(()),
        CheckResult::Illegal { key, ops: witness } => {
            let verdict = CheckResult::Illegal {
                key,
                ops: witness.clone(),
            };
            let mut text = verdict.describe(&ops);
            let hist: Vec<&HistOp> = checked(history).collect();
            for i in witness {
                if let Some(op) = hist.get(i) {
                    text.push_str(&format!(
                        "\n  #{i}: {:?} via {:?}, {}ms..{:?}ms, fast={}, attempts={}, output={:?}",
                        op.id,
                        op.path,
                        op.call_ms,
                        op.ret_ms,
                        op.completed_fast,
                        op.attempts,
                        op.output
                    ));
                }
            }
            Err(text)
        }
        CheckResult::Timeout => {
            Err("undecided: the linearizability search ran out of steps".into())
        }
    }
}
