//! The replicated request: what an etcd write turns into before it is proposed to consensus.
//!
//! A [`Command`] is encoded with protobuf (an envelope message with a `oneof` of the etcd request
//! messages themselves), so what the log holds is the client's request exactly as validated.
//! The types live in the `xline-native` crate (native clients build them too) and are
//! re-exported here.

pub use xline_native::{Command, Request};
