//! The pure CURP protocol core: a synchronous state machine with no I/O, no clocks and no
//! global randomness (CURP.md D7). See [`ready`] for the driver contract.
//!
//! Public API:
//! - [`Core::new`]`(Config, Restored)`, [`Core::step`]`(Input)`, [`Core::tick`]`()`,
//!   [`Core::ready`]`() -> Ready`, [`Core::advance`]`()`, [`Core::status`]`() -> Status`,
//!   [`Core::log`]`()` (entries held, for invariant checkers);
//! - [`Config`] (with [`Config::validate`]), [`Restored`], [`Status`];
//! - the vocabulary in [`types`] and [`ready`]; quorum sizes in [`quorum`]; the witness pool
//!   ([`witness`]) and the leader's uncommitted pool ([`ucp`]).
//!
//! Module map (private modules extend [`Core`] by concern):
//! - `raft.rs`: the [`Core`] state and the driver API; term handling and message dispatch;
//! - `election.rs`: timeouts, pre-vote, votes, taking office;
//! - `replication.rs`: Append, backtracking, commit;
//! - `read.rs`: read index (CURP.md D8);
//! - `curp.rs`: proposals, witness records, origin commit (D2), recovery (E3);
//! - `change.rs`: membership changes and leader transfer; `membership.rs`: configurations
//!   as a function of the log;
//! - `snapshot.rs`: compaction and snapshots; `dedup.rs`: exactly-once table (D5);
//! - `log.rs`: the in-memory log; `config.rs`; `rng.rs` (seeded SplitMix64).

mod change;
mod config;
mod curp;
mod dedup;
mod election;
mod interval;
mod log;
mod membership;
pub mod quorum;
mod raft;
mod read;
pub mod ready;
mod replication;
mod rng;
mod snapshot;
pub mod types;
pub mod ucp;
pub mod witness;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use dedup::snapshot_state_machine_data;
pub use raft::{Core, Restored, Status};
pub use ready::{Committed, Event, Input, Ready, Role, RoleState, SnapshotInstall, WitnessOp};
pub use types::{
    CommandData, ConfChange, Entry, EntryKind, Envelope, LogIndex, Membership, Message, NodeId,
    ProposeId, Rejection, Term,
};
