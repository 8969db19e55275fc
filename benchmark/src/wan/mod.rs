//! WAN emulation without netem: a userspace router that delays packets between regions.
//!
//! scripts/wan.sh puts each emulated host in a network namespace joined to the root namespace
//! by a veth pair, and policy routing sends every packet between two regions into a TUN device.
//! The `wan-router` binary reads those packets, holds each one for the one-way delay of its
//! (source region, destination region) pair ([`WanMatrix`]) on a release-time heap
//! ([`DelayQueue`]), and writes it back into the TUN, from where the kernel delivers it. One
//! reader and one writer thread ([`Router`]); flows keep their order, nothing is rate limited.

mod error;
mod matrix;
mod packet;
mod queue;
mod router;

pub use error::WanError;
pub use matrix::{
    Ipv4Prefix, MAX_DELAY, MAX_NS_NAME, MatrixBuilder, Namespace, PRESET_G1, PRESET_G2, PRESET_LAN,
    Region, RegionId, WanMatrix, parse_delay, preset_text,
};
pub use packet::{Verdict, ipv4_endpoints, ipv4_packet};
pub use queue::{DelayQueue, QueueFull};
pub use router::{PacketSink, PacketSource, Router, RouterConfig, RouterStats};
