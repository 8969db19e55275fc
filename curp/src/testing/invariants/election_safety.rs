//! Election safety (Raft §5.2): at most one member is leader in any term.

use std::collections::BTreeMap;

use crate::core::{NodeId, Term};

/// Remembers the leader of every term seen.
#[derive(Debug, Default, Clone)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records that `id` became leader in `term`.
    ///
    /// # Errors
    ///
    /// A description when another member already led `term`.
    pub fn on_leader(&mut self, term: Term, id: NodeId) -> Result<(), String> {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => Err(format!(
                "members {other} and {id} were both leader in term {term}"
            )),
            _ => Ok(()),
        }
    }

    /// The highest term with a leader observed so far (0: none).
    pub fn max_term(&self) -> Term {
        self.leaders.keys().next_back().copied().unwrap_or(0)
    }

    /// Number of terms that had a leader.
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_is_caught() {
        let mut e = ElectionSafety::default();
        assert!(e.on_leader(1, 1).is_ok());
        assert!(e.on_leader(1, 1).is_ok());
        assert!(e.on_leader(2, 2).is_ok());
        assert!(e.on_leader(1, 3).is_err());
    }
}
