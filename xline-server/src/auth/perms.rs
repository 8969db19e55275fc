//! The range permissions of one user, merged over its roles (etcd's `unifiedRangePermissions`).
//!
//! A permission names a single key (`range_end` empty), a range `[key, range_end)`, or every key
//! from `key` on (`range_end` = `"\0"`). Each is kept as a half-open interval over byte strings
//! with an optional upper bound (none: unbounded); a single key `k` is `[k, k + "\0")`.
//! Intervals are merged into disjoint, sorted runs when the cache is built, so a check is a
//! binary search.

use xline_proto::authpb::{Permission, Role, permission};

/// A half-open interval `[start, end)`; `end` `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// The interval a stored permission grants (etcd's `getMergedPerms`).
    fn of_permission(perm: &Permission) -> Self {
        if perm.range_end.is_empty() {
            return Self::point(&perm.key);
        }
        Self {
            start: perm.key.clone(),
            end: (!is_open_ended(&perm.range_end)).then(|| perm.range_end.clone()),
        }
    }

    fn point(key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        Self {
            start: key.to_vec(),
            end: Some(end),
        }
    }

    /// Whether this interval's end reaches `other_end` or beyond.
    fn reaches(&self, other_end: Option<&[u8]>) -> bool {
        match (&self.end, other_end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.as_slice() >= b,
        }
    }
}

/// `range_end` = `"\0"`: every key from `key` on.
pub fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// etcd's `isValidPermissionRange`: a non-empty key, and a range end that is empty, `"\0"`,
/// or after the key.
pub fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    range_end.is_empty() || key < range_end || is_open_ended(range_end)
}

/// Disjoint, sorted intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Runs(Vec<Interval>);

impl Runs {
    fn build(mut intervals: Vec<Interval>) -> Self {
        intervals.sort_by(|a, b| a.start.cmp(&b.start));
        let mut runs: Vec<Interval> = Vec::with_capacity(intervals.len());
        for ivl in intervals {
            if let Some(last) = runs.last_mut() {
                // Overlapping or touching: extend the last run.
                let touches = last.end.as_ref().is_none_or(|end| ivl.start <= *end);
                if touches {
                    if !last.reaches(ivl.end.as_deref()) {
                        last.end = ivl.end;
                    }
                    continue;
                }
            }
            runs.push(ivl);
        }
        Self(runs)
    }

    /// The run that starts at or before `key`, if it contains `key`.
    fn run_at(&self, key: &[u8]) -> Option<&Interval> {
        let idx = self.0.partition_point(|r| r.start.as_slice() <= key);
        let run = self.0.get(idx.checked_sub(1)?)?;
        run.end
            .as_ref()
            .is_none_or(|e| key < e.as_slice())
            .then_some(run)
    }

    /// etcd's `Intersects` with a point: some permission covers `key`.
    fn has_key(&self, key: &[u8]) -> bool {
        self.run_at(key).is_some()
    }

    /// etcd's `Contains`: the permissions together cover all of `[key, end)`.
    fn covers(&self, key: &[u8], end: Option<&[u8]>) -> bool {
        if let Some(e) = end
            && e <= key
        {
            // An empty range; etcd's interval tree finds no interval covering it either unless
            // one contains its start.
            return self.has_key(key);
        }
        self.run_at(key).is_some_and(|run| run.reaches(end))
    }
}

/// The merged read and write permissions of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    read: Runs,
    write: Runs,
}

/// The kind of access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Range, Watch, compares, `prev_kv`.
    Read,
    /// Put and DeleteRange.
    Write,
}

impl UserPerms {
    /// Merges the permissions of `roles`.
    pub fn build<'a>(roles: impl IntoIterator<Item = &'a Role>) -> Self {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for role in roles {
            for perm in &role.key_permission {
                let ivl = Interval::of_permission(perm);
                match permission::Type::try_from(perm.perm_type) {
                    Ok(permission::Type::Read) => read.push(ivl),
                    Ok(permission::Type::Write) => write.push(ivl),
                    Ok(permission::Type::Readwrite) => {
                        read.push(ivl.clone());
                        write.push(ivl);
                    }
                    Err(_) => {}
                }
            }
        }
        Self {
            read: Runs::build(read),
            write: Runs::build(write),
        }
    }

    /// Whether `access` to the key, or to `[key, range_end)` when `range_end` is not empty
    /// (`"\0"`: every key from `key` on), is granted (etcd's `isRangeOpPermitted`).
    pub fn allows(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let runs = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        if range_end.is_empty() {
            return runs.has_key(key);
        }
        let end = (!is_open_ended(range_end)).then_some(range_end);
        runs.covers(key, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &str, end: &[u8], t: permission::Type) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    fn role(perms: Vec<Permission>) -> Role {
        Role {
            name: b"r".to_vec(),
            key_permission: perms,
        }
    }

    #[test]
    fn keys_ranges_and_open_ends() {
        use permission::Type::*;
        let r = role(vec![
            perm("a", b"", Read),
            perm("b", b"d", Readwrite),
            perm("d", b"f", Read),
            perm("x", &[0], Write),
        ]);
        let p = UserPerms::build([&r]);
        assert!(p.allows(Access::Read, b"a", b""));
        assert!(!p.allows(Access::Write, b"a", b""));
        assert!(!p.allows(Access::Read, b"a\0", b""));
        assert!(
            !p.allows(Access::Read, b"a", b"b"),
            "a single key is not a range"
        );
        assert!(p.allows(Access::Read, b"a", b"a\0"));
        // Touching ranges merge: [b, d) + [d, f) covers [b, f).
        assert!(p.allows(Access::Read, b"b", b"f"));
        assert!(!p.allows(Access::Read, b"b", b"f\0"));
        assert!(p.allows(Access::Write, b"c", b"d"));
        assert!(!p.allows(Access::Write, b"c", b"e"));
        assert!(p.allows(Access::Write, b"x", &[0]));
        assert!(p.allows(Access::Write, b"zzz", b""));
        assert!(!p.allows(Access::Read, b"x", b""));
        assert!(!p.allows(Access::Write, b"w", &[0]));
    }

    #[test]
    fn roles_merge_and_overlaps() {
        use permission::Type::*;
        let a = role(vec![perm("k1", b"k5", Read)]);
        let b = role(vec![perm("k3", b"k9", Read), perm("k2", b"", Write)]);
        let p = UserPerms::build([&a, &b]);
        assert!(p.allows(Access::Read, b"k1", b"k9"));
        assert!(!p.allows(Access::Read, b"k0", b"k9"));
        assert!(p.allows(Access::Write, b"k2", b""));
        assert!(!p.allows(Access::Write, b"k3", b""));
        assert_eq!(UserPerms::build([]), UserPerms::default());
        assert!(!UserPerms::default().allows(Access::Read, b"a", b""));
    }

    #[test]
    fn valid_permission_ranges() {
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(is_valid_permission_range(b"a", &[0]));
        assert!(!is_valid_permission_range(b"", b""));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
    }
}
