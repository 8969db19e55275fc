//! MVCC revisions: `(main, sub)`.
//!
//! `main` increments once per mutating request (a Put, a DeleteRange that deleted something, a Txn
//! with writes); `sub` numbers the writes inside that request from 0. In the backend's `kv` table a
//! revision is the key: 8 bytes of `main` and 8 bytes of `sub`, both big-endian so byte order is
//! revision order, followed by a `t` marker byte when the write is a deletion (a tombstone).

/// A point in the MVCC history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision {
    /// The request's revision, as seen by clients in `header.revision` and `mod_revision`.
    pub main: i64,
    /// The write's position inside the request.
    pub sub: i64,
}

/// The length of an encoded revision without the tombstone marker.
pub const REVISION_LEN: usize = 16;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    /// A revision.
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The backend key for a write at this revision.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(REVISION_LEN + 1);
        key.extend_from_slice(&self.main.to_be_bytes());
        key.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// The smallest backend key of main revision `main` (for range scans by main revision).
    pub fn main_key(main: i64) -> Vec<u8> {
        Revision::new(main, 0).to_key(false)
    }

    /// Parses a backend key into the revision and whether it marks a tombstone.
    pub fn from_key(key: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match key.len() {
            REVISION_LEN => false,
            n if n == REVISION_LEN + 1 && key[REVISION_LEN] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        let main = i64::from_be_bytes(key[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(key[8..16].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_revision_order() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_key(false) < pair[1].to_key(true));
            assert!(pair[0].to_key(true) < pair[1].to_key(false));
        }
    }

    #[test]
    fn round_trip() {
        for tomb in [false, true] {
            let rev = Revision::new(7_000_000_123, 42);
            assert_eq!(Revision::from_key(&rev.to_key(tomb)), Some((rev, tomb)));
        }
        assert_eq!(Revision::from_key(b"short"), None);
        let mut bad = Revision::new(1, 1).to_key(false);
        bad.push(b'x');
        assert_eq!(Revision::from_key(&bad), None);
    }
}
