//! Unit tests of the core: single-member behaviour asserted message by message (openraft
//! `accept_vote_test` style) and small deterministic clusters wired by [`harness`].

mod curp;
mod harness;
mod leadership;
mod membership;
mod raft_paper;
