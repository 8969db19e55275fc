//! Quorum sizes (CURP.md section 0, decision D6).
//!
//! With `n` voters:
//! - `q = ⌊n/2⌋ + 1`, the majority ([`majority`]);
//! - `f = n − q`, the failures tolerated ([`max_failures`]);
//! - `r = ⌊q/2⌋ + 1`, the recover quorum ([`recover_quorum`]): a new leader re-appends every
//!   witness record it finds in at least `r` of the majority's pools;
//! - `SQ = f + r`, the superquorum ([`super_quorum`]): a command completes on the fast path
//!   once `SQ` witnesses (the leader's included) accepted it.
//!
//! These satisfy, for every `n ≥ 1` (CURP.md Q1):
//! - `2·SQ > n`: two conflicting commands never both complete on the fast path;
//! - `SQ − f ≥ r`: every majority holds a fast-completed command at least `r` times;
//! - `2r > q`: two conflicting commands never both reach `r` pools inside one majority.
//!
//! For even `n` these are the formulas of CURP.md's table, not PR #947's stricter rules
//! (which give `SQ = 4` for `n = 4`); the three invariants hold either way.

/// The `k`-th largest of `values` (`k = 0` counts as `1`): the largest value that at least
/// `k` of them reach, e.g. the highest index a quorum of `k` members holds. `None` when there
/// are fewer than `k` values. Allocates nothing (quadratic, for the handful of voters).
pub(crate) fn kth_largest<I>(values: I, k: usize) -> Option<u64>
where
    I: Iterator<Item = u64> + Clone,
{
    let k = k.max(1);
    values
        .clone()
        .filter(|&x| values.clone().filter(|&v| v >= x).count() >= k)
        .max()
}

/// The majority of `n` voters: `⌊n/2⌋ + 1`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The number of voters that may fail while a majority remains: `n − majority(n)`
/// (`0` for the degenerate `n = 0`).
pub fn max_failures(n: usize) -> usize {
    n.saturating_sub(majority(n))
}

/// The recover quorum: `⌊q/2⌋ + 1` with `q = majority(n)`. A new leader recovers every witness
/// record present in at least this many of the pools it collected from a majority.
pub fn recover_quorum(n: usize) -> usize {
    majority(n) / 2 + 1
}

/// The superquorum: `max_failures(n) + recover_quorum(n)`, the number of witnesses (the
/// leader's included) that must accept a command for it to complete on the fast path.
pub fn super_quorum(n: usize) -> usize {
    max_failures(n) + recover_quorum(n)
}

#[cfg(test)]
mod tests {
    /// `kth_largest` is the `k`-th element of the values sorted in descending order.
    #[test]
    fn kth_largest_matches_sorting() {
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for _ in 0..2_000 {
            let len = usize::try_from(next() % 8).expect("small");
            let values: Vec<u64> = (0..len).map(|_| next() % 6).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            for k in 0..=len + 1 {
                let expected = sorted.get(k.saturating_sub(1)).copied();
                assert_eq!(
                    kth_largest(values.iter().copied(), k),
                    expected,
                    "{values:?} k={k}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn table_values() {
        // (n, q, f, r, SQ), CURP.md section 0 and D6.
        let table = [
            (1, 1, 0, 1, 1),
            (2, 2, 0, 2, 2),
            (3, 2, 1, 2, 3),
            (4, 3, 1, 2, 3),
            (5, 3, 2, 2, 4),
            (6, 4, 2, 3, 5),
            (7, 4, 3, 3, 6),
            (9, 5, 4, 3, 7),
        ];
        for (n, q, f, r, sq) in table {
            assert_eq!(majority(n), q, "q for n={n}");
            assert_eq!(max_failures(n), f, "f for n={n}");
            assert_eq!(recover_quorum(n), r, "r for n={n}");
            assert_eq!(super_quorum(n), sq, "SQ for n={n}");
        }
    }

    #[test]
    fn q1_invariants() {
        for n in 1..=15 {
            let q = majority(n);
            let f = max_failures(n);
            let r = recover_quorum(n);
            let sq = super_quorum(n);
            assert_eq!(q + f, n, "n={n}");
            assert!(2 * q > n, "majorities intersect, n={n}");
            assert!(2 * sq > n, "(a) 2*SQ > n fails for n={n}");
            assert!(sq - f >= r, "(b) SQ - f >= r fails for n={n}");
            assert!(2 * r > q, "(c) 2r > q fails for n={n}");
            assert!(r <= q, "r fits in a majority, n={n}");
            assert!(sq <= n, "the fast path is reachable, n={n}");
        }
    }

    #[test]
    fn odd_sizes_match_the_tla_spec() {
        // For n = 2f+1: SQ = f + (f+1) div 2 + 1 and r = ceil(f/2) + 1.
        for f in 0..=7 {
            let n = 2 * f + 1;
            assert_eq!(max_failures(n), f);
            // `(f + 1) div 2` is `ceil(f / 2)`.
            assert_eq!(super_quorum(n), f + f.div_ceil(2) + 1, "n={n}");
            assert_eq!(recover_quorum(n), f.div_ceil(2) + 1, "n={n}");
        }
    }

    #[test]
    fn degenerate_zero_does_not_panic() {
        assert_eq!(max_failures(0), 0);
        assert_eq!(super_quorum(0), 1);
    }
}
