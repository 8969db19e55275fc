//! The MVCC store: revisions, the in-memory key index and the revision-keyed backend data.

pub mod revision;
