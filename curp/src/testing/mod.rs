//! Test support (feature `test-util`): a linearizability checker and a seeded deterministic
//! simulation of whole clusters.
//!
//! - [`linearizability`](crate::testing::linearizability): per-key Wing & Gong checker for
//!   register histories;
//! - [`sim`](crate::testing::sim): the simulation
//!   ([`Simulation`](crate::testing::sim::Simulation), configured by
//!   [`config`](crate::testing::config), reporting a
//!   [`Report`](crate::testing::report::Report)), built from
//!   [`network`](crate::testing::network) (a virtual-time network with delays, loss,
//!   duplication, reordering and partitions, carrying [`packet`](crate::testing::packet)s),
//!   [`member`](crate::testing::member) (a core plus its [`durable`](crate::testing::durable)
//!   state and a state machine, driven as `core::ready` prescribes),
//!   [`client`](crate::testing::client) (fast, ordered and read operations with retries) and
//!   [`kv`](crate::testing::kv) (the register state machine);
//! - [`invariants`](crate::testing::invariants): one safety or liveness property per file;
//! - [`rng`](crate::testing::rng): the seeded PRNG everything draws from.

pub mod client;
pub mod config;
pub mod durable;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod member;
pub mod network;
pub mod packet;
pub mod report;
pub mod rng;
pub mod sim;
