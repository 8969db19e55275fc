//! [`MemTransport`]: an in-process [`Transport`] for tests. A [`MemNetwork`] maps member ids
//! to their nodes' [`Inbox`]es; each member sends through its own `MemTransport`. Switches
//! drop traffic: a member can be isolated, or single directions blocked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Transport;
use crate::core::{Envelope, NodeId};
use crate::node::Inbox;

/// The registry and the switches.
#[derive(Debug, Default)]
struct Net {
    /// Where each member receives.
    inboxes: HashMap<NodeId, Inbox>,
    /// Members cut off from everyone (both directions).
    isolated: HashSet<NodeId>,
    /// Blocked directions `(from, to)`.
    blocked: HashSet<(NodeId, NodeId)>,
    /// Messages dropped by the switches or for unknown receivers.
    dropped: u64,
    /// Messages handed to an inbox.
    delivered: u64,
}

/// An in-process network of members (cheap to clone; clones share it).
#[derive(Debug, Clone, Default)]
pub struct MemNetwork {
    /// Shared state.
    net: Arc<Mutex<Net>>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport member `id` sends through.
    pub fn transport(&self, id: NodeId) -> MemTransport {
        MemTransport {
            id,
            network: self.clone(),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Member `id` now receives at `inbox` (replacing a previous registration, e.g. after a
    /// restart).
    pub fn register(&self, id: NodeId, inbox: Inbox) {
        self.net.lock().inboxes.insert(id, inbox);
    }

    /// Member `id` no longer receives anything.
    pub fn unregister(&self, id: NodeId) {
        self.net.lock().inboxes.remove(&id);
    }

    /// Drops every message from or to `id`.
    pub fn isolate(&self, id: NodeId) {
        self.net.lock().isolated.insert(id);
    }

    /// Undoes [`MemNetwork::isolate`].
    pub fn rejoin(&self, id: NodeId) {
        self.net.lock().isolated.remove(&id);
    }

    /// Drops messages from `from` to `to` (one direction).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.net.lock().blocked.insert((from, to));
    }

    /// Undoes [`MemNetwork::block`].
    pub fn unblock(&self, from: NodeId, to: NodeId) {
        self.net.lock().blocked.remove(&(from, to));
    }

    /// Removes every switch (isolations and blocked directions).
    pub fn heal(&self) {
        let mut net = self.net.lock();
        net.isolated.clear();
        net.blocked.clear();
    }

    /// Messages dropped so far (switches, unknown receivers).
    pub fn dropped(&self) -> u64 {
        self.net.lock().dropped
    }

    /// Messages handed to inboxes so far (an inbox may still drop them when full).
    pub fn delivered(&self) -> u64 {
        self.net.lock().delivered
    }

    /// Routes `messages` sent by `from`.
    fn route(&self, from: NodeId, messages: Vec<Envelope>) {
        let mut net = self.net.lock();
        for env in messages {
            let cut = net.isolated.contains(&from)
                || net.isolated.contains(&env.to)
                || net.blocked.contains(&(from, env.to));
            let inbox = if cut {
                None
            } else {
                net.inboxes.get(&env.to).cloned()
            };
            match inbox {
                // `deliver` never blocks (a full inbox drops), so holding the lock is fine.
                Some(inbox) => {
                    inbox.deliver(env);
                    net.delivered += 1;
                }
                None => net.dropped += 1,
            }
        }
    }
}

/// One member's sending side of a [`MemNetwork`].
#[derive(Debug)]
pub struct MemTransport {
    /// The sender.
    id: NodeId,
    /// The network.
    network: MemNetwork,
    /// The peers last set (recorded only: routing is by id).
    peers: Mutex<BTreeMap<NodeId, Vec<String>>>,
}

impl MemTransport {
    /// The peers last passed to [`Transport::set_peers`].
    pub fn peers(&self) -> BTreeMap<NodeId, Vec<String>> {
        self.peers.lock().clone()
    }
}

impl Transport for MemTransport {
    fn send(&self, messages: Vec<Envelope>) {
        self.network.route(self.id, messages);
    }

    fn set_peers(&self, peers: &BTreeMap<NodeId, Vec<String>>) {
        *self.peers.lock() = peers.clone();
    }
}
