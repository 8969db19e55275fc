//! The pure CURP protocol core: a synchronous state machine with no I/O, no clocks and no
//! global randomness (CURP.md D7). See [`ready`] for the driver contract.
//!
//! Public API (implemented in the submodules):
//! - [`Core::new`]`(Config, Restored)`, [`Core::step`]`(Input)`, [`Core::tick`]`()`,
//!   [`Core::ready`]`() -> Ready`, [`Core::advance`]`()`, [`Core::status`]`() -> Status`.

pub mod ready;
pub mod types;

pub use ready::{Committed, Event, Input, Ready, Role, RoleState, SnapshotInstall, WitnessOp};
pub use types::{
    CommandData, ConfChange, Entry, EntryKind, Envelope, LogIndex, Membership, Message, NodeId,
    ProposeId, Rejection, Term,
};
