//! bbolt database files, the format of etcd's backend and of its snapshots: the generic
//! reader, writer, check and status live in the `xline-bolt` crate (re-exported here);
//! [`etcd`] maps etcd 3.4's bucket layout to xline's tables and back.

pub mod etcd;

#[cfg(test)]
mod tests;

pub use xline_bolt::*;

use crate::error::ServerError;

impl From<BoltError> for ServerError {
    fn from(e: BoltError) -> Self {
        ServerError::Corrupt(e.to_string())
    }
}
