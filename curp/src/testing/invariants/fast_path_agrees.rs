//! Fast path agrees (CURP.md D1, F2, P5): the leader's speculative result equals the result of
//! the same command in the ordered apply.
//!
//! Two checks:
//! - every op a client completed on the fast path got the result its command later had when
//!   applied (a fast ack promises exactly that);
//! - stronger: when leader `L` speculated `id` in term `t` (`conflict = false`) and the entry
//!   that first applies `id` has term `t` (so it is `L`'s own placement of the command), the
//!   speculative result equals the applied one. `conflict = false` promises that nothing
//!   conflicting precedes the entry unapplied, which is what P5 breaks. Ids speculated twice in
//!   one term are skipped (which speculation matches the entry is ambiguous).

use std::collections::HashMap;

use super::exactly_once::FirstApply;
use crate::core::{ProposeId, Term};
use crate::testing::kv::KvOutput;

/// Speculations and fast acks seen so far.
#[derive(Debug, Default, Clone)]
pub struct FastPathAgrees {
    speculated: HashMap<ProposeId, Vec<(Term, KvOutput)>>,
    acked: HashMap<ProposeId, KvOutput>,
    /// Speculations checked against their ordered result.
    pub checked: u64,
}

impl FastPathAgrees {
    /// A leader in `term` speculated `id` with `result`. `first` is the id's first execution,
    /// if it already happened.
    ///
    /// # Errors
    ///
    /// A description when the speculation disagrees with an execution of the same term.
    pub fn on_speculate(
        &mut self,
        id: ProposeId,
        term: Term,
        result: KvOutput,
        first: Option<FirstApply>,
    ) -> Result<(), String> {
        self.speculated.entry(id).or_default().push((term, result));
        match first {
            // Already executed in this term: compare at once (same rule as on first execute).
            Some(f) if f.term == term => self.on_first_execute(id, f),
            _ => Ok(()),
        }
    }

    /// A client completed `id` on the fast path with `output`.
    ///
    /// # Errors
    ///
    /// A description when the id already took effect with another result.
    pub fn on_fast_ack(
        &mut self,
        id: ProposeId,
        output: KvOutput,
        first: Option<FirstApply>,
    ) -> Result<(), String> {
        self.acked.insert(id, output);
        match first {
            Some(f) if f.result != output => Err(format!(
                "{id:?} completed on the fast path with {output:?} but was applied at index {} \
                 with {:?}",
                f.index, f.result
            )),
            _ => Ok(()),
        }
    }

    /// `id` took effect for the first time, as described by `first`.
    ///
    /// # Errors
    ///
    /// A description when a fast ack or a same-term speculation disagrees.
    pub fn on_first_execute(&mut self, id: ProposeId, first: FirstApply) -> Result<(), String> {
        if let Some(&acked) = self.acked.get(&id)
            && acked != first.result
        {
            return Err(format!(
                "{id:?} completed on the fast path with {acked:?} but was applied at index {} \
                 with {:?}",
                first.index, first.result
            ));
        }
        let Some(list) = self.speculated.get(&id) else {
            return Ok(());
        };
        let same_term: Vec<_> = list.iter().filter(|(t, _)| *t == first.term).collect();
        if let [(term, spec)] = same_term.as_slice() {
            self.checked += 1;
            if *spec != first.result {
                return Err(format!(
                    "leader of term {term} speculated {id:?} = {spec:?}, but its entry {} \
                     (term {}) applied with {:?}",
                    first.index, first.term, first.result
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(term: Term, result: KvOutput) -> FirstApply {
        FirstApply {
            index: 3,
            term,
            result,
        }
    }

    #[test]
    fn same_term_speculation_must_agree() {
        let id = ProposeId::default();
        let mut f = FastPathAgrees::default();
        f.on_speculate(id, 2, Some(1), None).ok();
        assert!(f.on_first_execute(id, first(2, Some(1))).is_ok());
        assert!(f.on_first_execute(id, first(2, Some(2))).is_err());
        // Another term's placement (recovered, reordered among commuting commands) is not
        // compared with this speculation.
        assert!(f.on_first_execute(id, first(3, Some(2))).is_ok());
    }

    #[test]
    fn fast_ack_must_agree() {
        let id = ProposeId::default();
        let mut f = FastPathAgrees::default();
        assert!(f.on_fast_ack(id, Some(1), None).is_ok());
        assert!(f.on_first_execute(id, first(5, Some(2))).is_err());
        assert!(f.on_fast_ack(id, Some(1), Some(first(5, Some(2)))).is_err());
    }
}
