//! `xline-server`: an etcd-v3-compatible key-value server.
//!
//! Layers, from the wire inwards: [`service`] (gRPC edge: validate, propose or read, map errors
//! through [`status`]), [`command`] (the replicated request type, a `curp::Command`),
//! [`executor`] (applies committed commands to the MVCC store in log order), [`mvcc`]
//! (revisions, key index, the store) and [`storage`] (the backend trait and its engines).
//! [`server`] wires them together; [`config`] is the command line; [`restore`] is
//! `xline snapshot restore`.

pub mod auth;
pub mod authority;
pub mod bolt;
pub mod command;
pub mod config;
pub mod error;
pub mod executor;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod mvcc;
pub mod native;
pub mod restore;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;
pub mod tls;
pub mod watch;
