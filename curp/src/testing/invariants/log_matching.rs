//! Log matching (Raft §5.3): if two logs hold an entry with the same index and term, the logs
//! are identical up to and including that index.
//!
//! Logs here are members' *durable* logs (what their `Ready`s told them to persist), which may
//! start after a snapshot; only the indices both logs hold are compared.

use crate::core::{Entry, NodeId};

/// Checks every pair of `logs` (member id, contiguous ascending entries).
///
/// # Errors
///
/// A description of the first mismatch.
pub fn check(logs: &[(NodeId, &[Entry])]) -> Result<(), String> {
    for (i, (a_id, a)) in logs.iter().enumerate() {
        for (b_id, b) in logs.iter().skip(i + 1) {
            check_pair(*a_id, a, *b_id, b)?;
        }
    }
    Ok(())
}

/// The entry at `index` of a contiguous log.
fn at(log: &[Entry], index: u64) -> Option<&Entry> {
    let first = log.first()?.index;
    let pos = usize::try_from(index.checked_sub(first)?).ok()?;
    log.get(pos)
}

fn check_pair(a_id: NodeId, a: &[Entry], b_id: NodeId, b: &[Entry]) -> Result<(), String> {
    let (Some(a0), Some(b0)) = (a.first(), b.first()) else {
        return Ok(());
    };
    let low = a0.index.max(b0.index);
    let high = a
        .last()
        .map_or(0, |e| e.index)
        .min(b.last().map_or(0, |e| e.index));
    let mut matched: Option<u64> = None;
    for index in (low..=high).rev() {
        let (Some(x), Some(y)) = (at(a, index), at(b, index)) else {
            return Err(format!(
                "log of {a_id} or {b_id} is not contiguous at {index}"
            ));
        };
        match matched {
            None if x.term == y.term => {
                if x != y {
                    return Err(format!(
                        "members {a_id} and {b_id} hold different entries with index {index} \
                         and term {}: {x:?} vs {y:?}",
                        x.term
                    ));
                }
                matched = Some(index);
            }
            None => {}
            Some(m) if x != y => {
                return Err(format!(
                    "members {a_id} and {b_id} agree at index {m} but differ at {index}: \
                     {x:?} vs {y:?}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn log(terms: &[(u64, u64)]) -> Vec<Entry> {
        terms
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                kind: EntryKind::Empty,
            })
            .collect()
    }

    #[test]
    fn divergent_tails_are_fine() {
        let a = log(&[(1, 1), (2, 1), (3, 2)]);
        let b = log(&[(1, 1), (2, 1), (3, 3), (4, 3)]);
        assert!(check(&[(1, &a), (2, &b)]).is_ok());
    }

    #[test]
    fn mismatch_below_a_match_is_caught() {
        let a = log(&[(1, 1), (2, 2), (3, 3)]);
        let b = log(&[(1, 1), (2, 1), (3, 3)]);
        assert!(check(&[(1, &a), (2, &b)]).is_err());
    }

    #[test]
    fn offset_logs_compare_on_overlap() {
        let a = log(&[(5, 2), (6, 2)]);
        let b = log(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (7, 2)]);
        assert!(check(&[(1, &a), (2, &b)]).is_ok());
    }
}
