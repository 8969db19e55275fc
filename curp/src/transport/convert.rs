//! Conversions between the protocol core's vocabulary ([`crate::core::types`],
//! [`crate::cmd`]) and the generated wire types ([`curppb`]).
//!
//! Encoding (`From<&core::X> for curppb::X`) is total. Decoding
//! (`TryFrom<curppb::X> for core::X`) rejects input that has no core meaning — a missing
//! `oneof` case or a missing required sub-message — with a [`MalformedError`]; it never
//! panics. Decoding is lenient where the core value is still well defined: repeated member
//! ids in a [`curppb::Membership`] collapse into the set.

use std::sync::Arc;

use crate::cmd::{ConflictKeys, KeyRange};
use crate::core::{
    CommandData, ConfChange, Entry, EntryKind, Envelope, Membership, Message, ProposeId, Rejection,
};

use super::curppb;
use curppb::{conf_change, entry, envelope, rejection};

/// A wire message that does not describe a core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {message}: `{field}` is missing")]
pub struct MalformedError {
    /// The wire message that was being decoded.
    pub message: &'static str,
    /// The required field (or `oneof`) it lacked.
    pub field: &'static str,
}

/// Unwraps a required field.
fn required<T>(
    value: Option<T>,
    message: &'static str,
    field: &'static str,
) -> Result<T, MalformedError> {
    value.ok_or(MalformedError { message, field })
}

// --- ProposeId -------------------------------------------------------------------------------

impl From<&ProposeId> for curppb::ProposeId {
    fn from(id: &ProposeId) -> Self {
        Self {
            client_id: id.client_id,
            seq: id.seq,
        }
    }
}

impl From<curppb::ProposeId> for ProposeId {
    fn from(id: curppb::ProposeId) -> Self {
        Self {
            client_id: id.client_id,
            seq: id.seq,
        }
    }
}

// --- KeyRange / ConflictKeys -----------------------------------------------------------------

impl From<&KeyRange> for curppb::KeyRange {
    fn from(range: &KeyRange) -> Self {
        Self {
            start: range.start.clone(),
            end: range.end.clone(),
        }
    }
}

impl From<curppb::KeyRange> for KeyRange {
    fn from(range: curppb::KeyRange) -> Self {
        Self {
            start: range.start,
            end: range.end,
        }
    }
}

impl From<&ConflictKeys> for curppb::ConflictKeys {
    fn from(keys: &ConflictKeys) -> Self {
        Self {
            ranges: keys.ranges.iter().map(Into::into).collect(),
            leases: keys.leases.clone(),
            exclusive: keys.exclusive,
        }
    }
}

impl From<curppb::ConflictKeys> for ConflictKeys {
    fn from(keys: curppb::ConflictKeys) -> Self {
        Self {
            ranges: keys.ranges.into_iter().map(Into::into).collect(),
            leases: keys.leases,
            exclusive: keys.exclusive,
        }
    }
}

// --- CommandData -----------------------------------------------------------------------------

impl From<&CommandData> for curppb::CommandData {
    fn from(cmd: &CommandData) -> Self {
        Self {
            id: Some((&cmd.id).into()),
            keys: Some(cmd.keys.as_ref().into()),
            payload: cmd.payload.clone(),
            first_incomplete: cmd.first_incomplete,
        }
    }
}

impl TryFrom<curppb::CommandData> for CommandData {
    type Error = MalformedError;

    fn try_from(cmd: curppb::CommandData) -> Result<Self, Self::Error> {
        Ok(Self {
            id: required(cmd.id, "CommandData", "id")?.into(),
            keys: Arc::new(required(cmd.keys, "CommandData", "keys")?.into()),
            payload: cmd.payload,
            first_incomplete: cmd.first_incomplete,
        })
    }
}

/// Decodes a list of commands, failing on the first malformed one.
fn commands(cmds: Vec<curppb::CommandData>) -> Result<Vec<CommandData>, MalformedError> {
    cmds.into_iter().map(CommandData::try_from).collect()
}

// --- ConfChange / Membership -----------------------------------------------------------------

impl From<&ConfChange> for curppb::ConfChange {
    fn from(change: &ConfChange) -> Self {
        let change = match change {
            ConfChange::AddLearner(id) => conf_change::Change::AddLearner(*id),
            ConfChange::Promote(id) => conf_change::Change::Promote(*id),
            ConfChange::Remove(id) => conf_change::Change::Remove(*id),
            ConfChange::Add {
                id,
                peer_urls,
                learner,
            } => conf_change::Change::Add(conf_change::MemberAdd {
                id: *id,
                peer_urls: peer_urls.clone(),
                learner: *learner,
            }),
            ConfChange::Update { id, peer_urls } => {
                conf_change::Change::Update(conf_change::MemberUpdate {
                    id: *id,
                    peer_urls: peer_urls.clone(),
                })
            }
            ConfChange::Set(m) => conf_change::Change::Set(m.into()),
        };
        Self {
            change: Some(change),
        }
    }
}

impl TryFrom<curppb::ConfChange> for ConfChange {
    type Error = MalformedError;

    fn try_from(change: curppb::ConfChange) -> Result<Self, Self::Error> {
        Ok(match required(change.change, "ConfChange", "change")? {
            conf_change::Change::AddLearner(id) => ConfChange::AddLearner(id),
            conf_change::Change::Promote(id) => ConfChange::Promote(id),
            conf_change::Change::Remove(id) => ConfChange::Remove(id),
            conf_change::Change::Add(add) => ConfChange::Add {
                id: add.id,
                peer_urls: add.peer_urls,
                learner: add.learner,
            },
            conf_change::Change::Update(update) => ConfChange::Update {
                id: update.id,
                peer_urls: update.peer_urls,
            },
            conf_change::Change::Set(m) => ConfChange::Set(m.into()),
        })
    }
}

impl From<&Membership> for curppb::Membership {
    fn from(membership: &Membership) -> Self {
        Self {
            voters: membership.voters.iter().copied().collect(),
            learners: membership.learners.iter().copied().collect(),
            version: membership.version,
            peers: membership
                .peers
                .iter()
                .map(|(id, urls)| curppb::PeerUrls {
                    id: *id,
                    urls: urls.clone(),
                })
                .collect(),
        }
    }
}

impl From<curppb::Membership> for Membership {
    fn from(membership: curppb::Membership) -> Self {
        Self {
            voters: membership.voters.into_iter().collect(),
            learners: membership.learners.into_iter().collect(),
            version: membership.version,
            peers: membership
                .peers
                .into_iter()
                .map(|p| (p.id, p.urls))
                .collect(),
        }
    }
}

// --- Entry -----------------------------------------------------------------------------------

impl From<&Entry> for curppb::Entry {
    fn from(e: &Entry) -> Self {
        let kind = match &e.kind {
            EntryKind::Empty => entry::Kind::Empty(curppb::Empty {}),
            EntryKind::Command { cmd, origin } => entry::Kind::Command(curppb::CommandEntry {
                cmd: Some(cmd.into()),
                origin: *origin,
            }),
            EntryKind::ConfChange(change) => entry::Kind::ConfChange(change.into()),
            EntryKind::ClientExpired(client_id) => entry::Kind::ClientExpired(*client_id),
        };
        Self {
            index: e.index,
            term: e.term,
            kind: Some(kind),
        }
    }
}

impl TryFrom<curppb::Entry> for Entry {
    type Error = MalformedError;

    fn try_from(e: curppb::Entry) -> Result<Self, Self::Error> {
        let kind = match required(e.kind, "Entry", "kind")? {
            entry::Kind::Empty(curppb::Empty {}) => EntryKind::Empty,
            entry::Kind::Command(command) => EntryKind::Command {
                cmd: required(command.cmd, "CommandEntry", "cmd")?.try_into()?,
                origin: command.origin,
            },
            entry::Kind::ConfChange(change) => EntryKind::ConfChange(change.try_into()?),
            entry::Kind::ClientExpired(client_id) => EntryKind::ClientExpired(client_id),
        };
        Ok(Self {
            index: e.index,
            term: e.term,
            kind,
        })
    }
}

// --- Rejection -------------------------------------------------------------------------------

impl From<&Rejection> for curppb::Rejection {
    fn from(rejection: &Rejection) -> Self {
        let reason = match *rejection {
            Rejection::NotLeader { leader, term } => {
                rejection::Reason::NotLeader(rejection::NotLeader { leader, term })
            }
            Rejection::WrongClusterVersion { version } => {
                rejection::Reason::WrongClusterVersion(rejection::WrongClusterVersion { version })
            }
            Rejection::LeaderTransfer => rejection::Reason::LeaderTransfer(curppb::Empty {}),
            Rejection::ChangePending => rejection::Reason::ChangePending(curppb::Empty {}),
            Rejection::InvalidChange => rejection::Reason::InvalidChange(curppb::Empty {}),
            Rejection::LearnerNotReady => rejection::Reason::LearnerNotReady(curppb::Empty {}),
            Rejection::ClientExpired => rejection::Reason::ClientExpired(curppb::Empty {}),
        };
        Self {
            reason: Some(reason),
        }
    }
}

impl TryFrom<curppb::Rejection> for Rejection {
    type Error = MalformedError;

    fn try_from(rejection: curppb::Rejection) -> Result<Self, Self::Error> {
        Ok(match required(rejection.reason, "Rejection", "reason")? {
            rejection::Reason::NotLeader(r) => Rejection::NotLeader {
                leader: r.leader,
                term: r.term,
            },
            rejection::Reason::WrongClusterVersion(r) => {
                Rejection::WrongClusterVersion { version: r.version }
            }
            rejection::Reason::LeaderTransfer(curppb::Empty {}) => Rejection::LeaderTransfer,
            rejection::Reason::ChangePending(curppb::Empty {}) => Rejection::ChangePending,
            rejection::Reason::InvalidChange(curppb::Empty {}) => Rejection::InvalidChange,
            rejection::Reason::LearnerNotReady(curppb::Empty {}) => Rejection::LearnerNotReady,
            rejection::Reason::ClientExpired(curppb::Empty {}) => Rejection::ClientExpired,
        })
    }
}

// --- Message / Envelope ----------------------------------------------------------------------

impl From<&Message> for envelope::Msg {
    fn from(msg: &Message) -> Self {
        match msg {
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_round,
            } => envelope::Msg::Append(curppb::Append {
                term: *term,
                prev_index: *prev_index,
                prev_term: *prev_term,
                entries: entries.iter().map(Into::into).collect(),
                commit: *commit,
                read_round: *read_round,
            }),
            &Message::AppendResponse {
                term,
                success,
                index,
                read_round,
            } => envelope::Msg::AppendResponse(curppb::AppendResponse {
                term,
                success,
                index,
                read_round,
            }),
            &Message::PersistAck {
                term,
                index,
                entry_term,
            } => envelope::Msg::PersistAck(curppb::PersistAck {
                term,
                index,
                entry_term,
            }),
            &Message::Vote {
                term,
                last_index,
                last_term,
                pre_vote,
            } => envelope::Msg::Vote(curppb::Vote {
                term,
                last_index,
                last_term,
                pre_vote,
            }),
            Message::VoteResponse {
                term,
                granted,
                pre_vote,
                witness,
            } => envelope::Msg::VoteResponse(curppb::VoteResponse {
                term: *term,
                granted: *granted,
                pre_vote: *pre_vote,
                witness: witness.iter().map(Into::into).collect(),
            }),
            Message::Snapshot {
                term,
                index,
                index_term,
                membership,
                data,
            } => envelope::Msg::Snapshot(curppb::Snapshot {
                term: *term,
                index: *index,
                index_term: *index_term,
                membership: Some(membership.into()),
                data: data.clone(),
            }),
            &Message::TimeoutNow { term } => envelope::Msg::TimeoutNow(curppb::TimeoutNow { term }),
            Message::Propose { term, cmd } => envelope::Msg::Propose(curppb::Propose {
                term: *term,
                cmd: Some(cmd.into()),
            }),
            Message::ProposeRejected { term, id, reason } => {
                envelope::Msg::ProposeRejected(curppb::ProposeRejected {
                    term: *term,
                    id: Some(id.into()),
                    reason: Some(reason.into()),
                })
            }
            &Message::ReadIndex { term, id } => {
                envelope::Msg::ReadIndex(curppb::ReadIndex { term, id })
            }
            &Message::ReadIndexResponse { term, id, index } => {
                envelope::Msg::ReadIndexResponse(curppb::ReadIndexResponse { term, id, index })
            }
        }
    }
}

impl TryFrom<envelope::Msg> for Message {
    type Error = MalformedError;

    fn try_from(msg: envelope::Msg) -> Result<Self, Self::Error> {
        Ok(match msg {
            envelope::Msg::Append(m) => Message::Append {
                term: m.term,
                prev_index: m.prev_index,
                prev_term: m.prev_term,
                entries: m
                    .entries
                    .into_iter()
                    .map(Entry::try_from)
                    .collect::<Result<_, _>>()?,
                commit: m.commit,
                read_round: m.read_round,
            },
            envelope::Msg::AppendResponse(m) => Message::AppendResponse {
                term: m.term,
                success: m.success,
                index: m.index,
                read_round: m.read_round,
            },
            envelope::Msg::PersistAck(m) => Message::PersistAck {
                term: m.term,
                index: m.index,
                entry_term: m.entry_term,
            },
            envelope::Msg::Vote(m) => Message::Vote {
                term: m.term,
                last_index: m.last_index,
                last_term: m.last_term,
                pre_vote: m.pre_vote,
            },
            envelope::Msg::VoteResponse(m) => Message::VoteResponse {
                term: m.term,
                granted: m.granted,
                pre_vote: m.pre_vote,
                witness: commands(m.witness)?,
            },
            envelope::Msg::Snapshot(m) => Message::Snapshot {
                term: m.term,
                index: m.index,
                index_term: m.index_term,
                membership: required(m.membership, "Snapshot", "membership")?.into(),
                data: m.data,
            },
            envelope::Msg::TimeoutNow(m) => Message::TimeoutNow { term: m.term },
            envelope::Msg::Propose(m) => Message::Propose {
                term: m.term,
                cmd: required(m.cmd, "Propose", "cmd")?.try_into()?,
            },
            envelope::Msg::ProposeRejected(m) => Message::ProposeRejected {
                term: m.term,
                id: required(m.id, "ProposeRejected", "id")?.into(),
                reason: required(m.reason, "ProposeRejected", "reason")?.try_into()?,
            },
            envelope::Msg::ReadIndex(m) => Message::ReadIndex {
                term: m.term,
                id: m.id,
            },
            envelope::Msg::ReadIndexResponse(m) => Message::ReadIndexResponse {
                term: m.term,
                id: m.id,
                index: m.index,
            },
        })
    }
}

impl From<&Envelope> for curppb::Envelope {
    fn from(envelope: &Envelope) -> Self {
        Self {
            from: envelope.from,
            to: envelope.to,
            msg: Some((&envelope.msg).into()),
        }
    }
}

impl TryFrom<curppb::Envelope> for Envelope {
    type Error = MalformedError;

    fn try_from(envelope: curppb::Envelope) -> Result<Self, Self::Error> {
        Ok(Self {
            from: envelope.from,
            to: envelope.to,
            msg: required(envelope.msg, "Envelope", "msg")?.try_into()?,
        })
    }
}

// --- Size estimate ---------------------------------------------------------------------------

/// Fixed per-value overhead assumed by [`estimated_size`] (tags, lengths, integers).
const OVERHEAD: usize = 32;

/// A cheap upper-bound-ish estimate of a command's encoded size.
fn command_size(cmd: &CommandData) -> usize {
    let ranges: usize = cmd
        .keys
        .ranges
        .iter()
        .map(|r| r.start.len() + r.end.len() + 8)
        .sum();
    OVERHEAD + cmd.payload.len() + ranges + cmd.keys.leases.len() * 11
}

/// Roughly how many bytes `envelope` takes on the wire, without encoding it. Used to bound
/// the memory of outbound queues; the batcher measures exact sizes itself.
pub fn estimated_size(envelope: &Envelope) -> usize {
    OVERHEAD
        + match &envelope.msg {
            Message::Append { entries, .. } => entries
                .iter()
                .map(|e| {
                    OVERHEAD
                        + match &e.kind {
                            EntryKind::Command { cmd, .. } => command_size(cmd),
                            EntryKind::ConfChange(change) => conf_change_size(change),
                            EntryKind::Empty | EntryKind::ClientExpired(_) => 0,
                        }
                })
                .sum(),
            Message::VoteResponse { witness, .. } => witness.iter().map(command_size).sum(),
            Message::Snapshot {
                data, membership, ..
            } => data.len() + membership_size(membership),
            Message::Propose { cmd, .. } => command_size(cmd),
            Message::AppendResponse { .. }
            | Message::PersistAck { .. }
            | Message::Vote { .. }
            | Message::TimeoutNow { .. }
            | Message::ProposeRejected { .. }
            | Message::ReadIndex { .. }
            | Message::ReadIndexResponse { .. } => 0,
        }
}

/// About the encoded size of a membership.
fn membership_size(m: &Membership) -> usize {
    (m.voters.len() + m.learners.len()) * 11
        + m.peers
            .values()
            .map(|urls| 11 + urls.iter().map(|u| u.len() + 2).sum::<usize>())
            .sum::<usize>()
}

/// About the encoded size of a membership change.
fn conf_change_size(change: &ConfChange) -> usize {
    match change {
        ConfChange::Add { peer_urls, .. } | ConfChange::Update { peer_urls, .. } => {
            16 + peer_urls.iter().map(|u| u.len() + 2).sum::<usize>()
        }
        ConfChange::Set(m) => membership_size(m),
        ConfChange::AddLearner(_) | ConfChange::Promote(_) | ConfChange::Remove(_) => 11,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use prost::Message as _;

    use super::*;
    use crate::core::NodeId;

    /// SplitMix64, the test's source of random values.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bool(&mut self) -> bool {
            self.next() & 1 == 1
        }

        /// Mostly small numbers, sometimes 0 and sometimes huge (varint edge cases).
        fn num(&mut self) -> u64 {
            match self.below(4) {
                0 => 0,
                1 => u64::MAX - self.below(3),
                _ => self.below(1000),
            }
        }

        fn bytes(&mut self, max: u64) -> Vec<u8> {
            let len = self.below(max + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }

        fn option(&mut self) -> Option<u64> {
            self.bool().then(|| self.num())
        }

        fn set(&mut self) -> BTreeSet<NodeId> {
            (0..self.below(6)).map(|_| self.num()).collect()
        }
    }

    fn propose_id(rng: &mut Rng) -> ProposeId {
        ProposeId {
            client_id: rng.num(),
            seq: rng.num(),
        }
    }

    fn command(rng: &mut Rng) -> CommandData {
        CommandData {
            id: propose_id(rng),
            keys: Arc::new(ConflictKeys {
                ranges: (0..rng.below(4))
                    .map(|_| KeyRange::new(rng.bytes(8), rng.bytes(8)))
                    .collect(),
                leases: (0..rng.below(4)).map(|_| rng.next() as i64).collect(),
                exclusive: rng.bool(),
            }),
            payload: Bytes::from(rng.bytes(64)),
            first_incomplete: rng.num(),
        }
    }

    fn urls(rng: &mut Rng) -> Vec<String> {
        (0..rng.below(3))
            .map(|_| format!("http://h{}:{}", rng.num(), rng.below(65536)))
            .collect()
    }

    fn membership(rng: &mut Rng) -> Membership {
        Membership {
            voters: rng.set(),
            learners: rng.set(),
            version: rng.num(),
            peers: (0..rng.below(4)).map(|_| (rng.num(), urls(rng))).collect(),
        }
    }

    fn conf_change(rng: &mut Rng) -> ConfChange {
        match rng.below(6) {
            0 => ConfChange::AddLearner(rng.num()),
            1 => ConfChange::Promote(rng.num()),
            2 => ConfChange::Remove(rng.num()),
            3 => ConfChange::Add {
                id: rng.num(),
                peer_urls: urls(rng),
                learner: rng.bool(),
            },
            4 => ConfChange::Update {
                id: rng.num(),
                peer_urls: urls(rng),
            },
            _ => ConfChange::Set(membership(rng)),
        }
    }

    fn entry(rng: &mut Rng) -> Entry {
        let kind = match rng.below(3) {
            0 => EntryKind::Empty,
            1 => EntryKind::Command {
                cmd: command(rng),
                origin: rng.num(),
            },
            _ => EntryKind::ConfChange(conf_change(rng)),
        };
        Entry {
            index: rng.num(),
            term: rng.num(),
            kind,
        }
    }

    fn rejection(rng: &mut Rng) -> Rejection {
        match rng.below(7) {
            0 => Rejection::NotLeader {
                leader: rng.option(),
                term: rng.num(),
            },
            1 => Rejection::WrongClusterVersion { version: rng.num() },
            2 => Rejection::LeaderTransfer,
            3 => Rejection::ChangePending,
            4 => Rejection::LearnerNotReady,
            5 => Rejection::ClientExpired,
            _ => Rejection::InvalidChange,
        }
    }

    /// Number of `Message` variants; `message(rng, k)` builds variant `k`.
    const VARIANTS: u64 = 11;

    fn message(rng: &mut Rng, variant: u64) -> Message {
        match variant {
            0 => Message::Append {
                term: rng.num(),
                prev_index: rng.num(),
                prev_term: rng.num(),
                entries: (0..rng.below(5)).map(|_| entry(rng)).collect(),
                commit: rng.num(),
                read_round: rng.num(),
            },
            1 => Message::AppendResponse {
                term: rng.num(),
                success: rng.bool(),
                index: rng.num(),
                read_round: rng.num(),
            },
            2 => Message::PersistAck {
                term: rng.num(),
                index: rng.num(),
                entry_term: rng.num(),
            },
            3 => Message::Vote {
                term: rng.num(),
                last_index: rng.num(),
                last_term: rng.num(),
                pre_vote: rng.bool(),
            },
            4 => Message::VoteResponse {
                term: rng.num(),
                granted: rng.bool(),
                pre_vote: rng.bool(),
                witness: (0..rng.below(4)).map(|_| command(rng)).collect(),
            },
            5 => Message::Snapshot {
                term: rng.num(),
                index: rng.num(),
                index_term: rng.num(),
                membership: membership(rng),
                data: Bytes::from(rng.bytes(128)),
            },
            6 => Message::TimeoutNow { term: rng.num() },
            7 => Message::Propose {
                term: rng.num(),
                cmd: command(rng),
            },
            8 => Message::ProposeRejected {
                term: rng.num(),
                id: propose_id(rng),
                reason: rejection(rng),
            },
            9 => Message::ReadIndex {
                term: rng.num(),
                id: rng.num(),
            },
            _ => Message::ReadIndexResponse {
                term: rng.num(),
                id: rng.num(),
                index: rng.option(),
            },
        }
    }

    /// A random envelope of the given variant.
    pub(crate) fn random_envelope(seed: u64, variant: u64) -> Envelope {
        let mut rng = Rng(seed);
        Envelope {
            from: rng.num(),
            to: rng.num(),
            msg: message(&mut rng, variant % VARIANTS),
        }
    }

    fn round_trip(envelope: &Envelope) -> Envelope {
        let wire = curppb::Envelope::from(envelope);
        let bytes = wire.encode_to_vec();
        let decoded = curppb::Envelope::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, wire);
        Envelope::try_from(decoded).expect("well formed")
    }

    #[test]
    fn every_variant_round_trips() {
        for seed in 0..2000 {
            for variant in 0..VARIANTS {
                let envelope = random_envelope(seed * VARIANTS + variant, variant);
                assert_eq!(
                    round_trip(&envelope),
                    envelope,
                    "seed {seed} variant {variant}"
                );
            }
        }
    }

    #[test]
    fn every_inner_case_is_covered() {
        // Sanity check of the generator: each entry kind, conf change and rejection appears.
        use std::collections::HashSet;
        use std::mem::discriminant;
        let mut kinds = HashSet::new();
        let mut changes = HashSet::new();
        let mut reasons = HashSet::new();
        for seed in 0..500 {
            let mut rng = Rng(seed);
            kinds.insert(discriminant(&entry(&mut rng).kind));
            changes.insert(discriminant(&conf_change(&mut rng)));
            reasons.insert(discriminant(&rejection(&mut rng)));
        }
        assert_eq!(kinds.len(), 3);
        assert_eq!(changes.len(), 6);
        assert_eq!(reasons.len(), 7);
    }

    #[test]
    fn missing_required_fields_are_rejected() {
        let mut rng = Rng(7);
        let cmd = command(&mut rng);
        let envelope = |msg: Option<envelope::Msg>| curppb::Envelope {
            from: 1,
            to: 2,
            msg,
        };
        let mut cases: Vec<(curppb::Envelope, &str)> = vec![(envelope(None), "msg")];

        let mut no_id = curppb::CommandData::from(&cmd);
        no_id.id = None;
        cases.push((
            envelope(Some(envelope::Msg::Propose(curppb::Propose {
                term: 1,
                cmd: Some(no_id.clone()),
            }))),
            "id",
        ));
        let mut no_keys = curppb::CommandData::from(&cmd);
        no_keys.keys = None;
        cases.push((
            envelope(Some(envelope::Msg::VoteResponse(curppb::VoteResponse {
                witness: vec![curppb::CommandData::from(&cmd), no_keys],
                ..Default::default()
            }))),
            "keys",
        ));
        cases.push((
            envelope(Some(envelope::Msg::Propose(curppb::Propose {
                term: 1,
                cmd: None,
            }))),
            "cmd",
        ));
        let good_entry = curppb::Entry::from(&Entry {
            index: 1,
            term: 1,
            kind: EntryKind::Empty,
        });
        let bad_entries = [
            (
                curppb::Entry {
                    kind: None,
                    ..good_entry.clone()
                },
                "kind",
            ),
            (
                curppb::Entry {
                    kind: Some(entry::Kind::Command(curppb::CommandEntry {
                        cmd: None,
                        origin: 3,
                    })),
                    ..good_entry.clone()
                },
                "cmd",
            ),
            (
                curppb::Entry {
                    kind: Some(entry::Kind::Command(curppb::CommandEntry {
                        cmd: Some(no_id),
                        origin: 3,
                    })),
                    ..good_entry.clone()
                },
                "id",
            ),
            (
                curppb::Entry {
                    kind: Some(entry::Kind::ConfChange(curppb::ConfChange { change: None })),
                    ..good_entry.clone()
                },
                "change",
            ),
        ];
        for (bad, field) in bad_entries {
            cases.push((
                envelope(Some(envelope::Msg::Append(curppb::Append {
                    entries: vec![good_entry.clone(), bad],
                    ..Default::default()
                }))),
                field,
            ));
        }
        cases.push((
            envelope(Some(envelope::Msg::Snapshot(curppb::Snapshot::default()))),
            "membership",
        ));
        cases.push((
            envelope(Some(envelope::Msg::ProposeRejected(
                curppb::ProposeRejected {
                    term: 1,
                    id: None,
                    reason: Some((&Rejection::ChangePending).into()),
                },
            ))),
            "id",
        ));
        cases.push((
            envelope(Some(envelope::Msg::ProposeRejected(
                curppb::ProposeRejected {
                    term: 1,
                    id: Some(curppb::ProposeId::default()),
                    reason: None,
                },
            ))),
            "reason",
        ));
        cases.push((
            envelope(Some(envelope::Msg::ProposeRejected(
                curppb::ProposeRejected {
                    term: 1,
                    id: Some(curppb::ProposeId::default()),
                    reason: Some(curppb::Rejection { reason: None }),
                },
            ))),
            "reason",
        ));
        for (wire, field) in cases {
            // Also through bytes: presence must survive encoding.
            let wire = curppb::Envelope::decode(wire.encode_to_vec().as_slice()).expect("decodes");
            let err = Envelope::try_from(wire.clone()).expect_err("malformed");
            assert_eq!(err.field, field, "{wire:?}");
        }
    }

    #[test]
    fn membership_decoding_collapses_duplicates() {
        let wire = curppb::Membership {
            voters: vec![3, 1, 3],
            learners: vec![],
            version: 2,
            peers: vec![],
        };
        let membership = Membership::from(wire);
        assert_eq!(membership.voters, BTreeSet::from([1, 3]));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(99);
        let valid: Vec<Vec<u8>> = (0..VARIANTS)
            .map(|v| curppb::Envelope::from(&random_envelope(v, v)).encode_to_vec())
            .collect();
        for i in 0..20_000 {
            let bytes = if i % 2 == 0 {
                rng.bytes(64)
            } else {
                // Flip a few bytes of a valid encoding.
                let mut b = valid[(i / 2) % valid.len()].clone();
                for _ in 0..=rng.below(3) {
                    if !b.is_empty() {
                        let at = rng.below(b.len() as u64) as usize;
                        b[at] = rng.next() as u8;
                    }
                }
                b
            };
            if let Ok(wire) = curppb::Envelope::decode(bytes.as_slice()) {
                let _ = Envelope::try_from(wire);
            }
            if let Ok(batch) = curppb::EnvelopeBatch::decode(bytes.as_slice()) {
                for wire in batch.envelopes {
                    let _ = Envelope::try_from(wire);
                }
            }
        }
    }

    #[test]
    fn estimate_tracks_encoded_size() {
        for seed in 0..500 {
            for variant in 0..VARIANTS {
                let envelope = random_envelope(seed, variant);
                let exact = curppb::Envelope::from(&envelope).encoded_len();
                let estimate = estimated_size(&envelope);
                // Within a small constant factor and offset of the truth.
                assert!(estimate <= 4 * exact + 64, "{estimate} vs {exact}");
                assert!(exact <= 4 * estimate + 64, "{estimate} vs {exact}");
            }
        }
    }
}
