//! The MVCC store: revisions, the in-memory key index and the revision-keyed backend data.

pub mod check;
pub mod index;
pub mod key_index;
mod range;
pub mod revision;
pub mod store;
