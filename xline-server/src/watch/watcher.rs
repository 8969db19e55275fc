//! One watcher of a Watch stream: its key range and options, where it is in the revision
//! history, and how its events become responses (including etcd's fragmenting).

use prost::Message;
use xline_proto::etcdserverpb::watch_create_request::FilterType;
use xline_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use xline_proto::mvccpb::{Event, event};

use super::WatchError;
use crate::mvcc::store::PrevKvInterest;

/// The keys a watcher covers, normalized as etcd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// Every key `>= start` (`range_end` is `"\0"`).
    FromKey(Vec<u8>),
    /// `[start, end)`.
    Range(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    /// etcd's conventions: an empty key is `"\0"` (the smallest key); an empty `range_end` is one
    /// key; `"\0"` is "from key"; otherwise `key` must sort before `range_end`.
    pub fn new(key: &[u8], range_end: &[u8]) -> Result<Self, WatchError> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Ok(Self::Single(key)),
            [0] => Ok(Self::FromKey(key)),
            end if key.as_slice() >= end => Err(WatchError::EmptyRange),
            end => Ok(Self::Range(key, end.to_vec())),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::Single(k) => k.as_slice() == key,
            Self::FromKey(start) => key >= start.as_slice(),
            Self::Range(start, end) => key >= start.as_slice() && key < end.as_slice(),
        }
    }
}

/// The main revision of an event (a delete's `kv` carries it too).
pub fn event_revision(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// A watcher on one stream.
#[derive(Debug)]
pub struct Watcher {
    /// The id the client knows it by.
    pub id: i64,
    range: KeyRange,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    /// Periodic progress notifications were asked for.
    pub progress_notify: bool,
    /// Large responses may be split into fragments.
    pub fragment: bool,
    /// The first revision not delivered yet: every event below it was sent (or was not wanted).
    pub next_rev: i64,
    /// Live: fed from the store's broadcast. Unsynced watchers catch up from the store first.
    pub synced: bool,
    /// While synced: every event at or below this revision was sent (the revision a progress
    /// notification may announce).
    pub served: i64,
    /// etcd's progress flag: no events were sent since the last progress tick.
    pub idle: bool,
    /// Held while the watcher wants `prev_kv`, so live batches carry it.
    pub prev_interest: Option<PrevKvInterest>,
}

impl Watcher {
    /// A watcher for `req` with id `id`, created when the store was at `current` revision.
    /// `start_revision` 0 means `current + 1`; a watcher starting after `current` is live at
    /// once, one starting at or before it must replay history first.
    pub fn new(id: i64, req: &WatchCreateRequest, range: KeyRange, current: i64) -> Self {
        let next_rev = if req.start_revision == 0 {
            current.saturating_add(1)
        } else {
            req.start_revision
        };
        Self {
            id,
            range,
            prev_kv: req.prev_kv,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev,
            synced: next_rev > current,
            served: current,
            idle: true,
            prev_interest: None,
        }
    }

    /// Whether the client asked for `prev_kv`.
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv
    }

    /// Whether this watcher wants `ev` (key in range, not filtered out), ignoring revisions.
    fn wants(&self, ev: &Event) -> bool {
        let is_put = ev.r#type == event::EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        ev.kv
            .as_ref()
            .is_some_and(|kv| self.range.contains(&kv.key))
    }

    /// The events of `events` this watcher still has to get (revision at or after `next_rev`,
    /// wanted), `prev_kv` removed unless asked for.
    pub fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|ev| event_revision(ev) >= self.next_rev && self.wants(ev))
            .map(|ev| {
                let mut ev = ev.clone();
                if !self.prev_kv {
                    ev.prev_kv = None;
                }
                ev
            })
            .collect()
    }
}

/// A response carrying `events` for watcher `watch_id`.
pub fn events_response(header: ResponseHeader, watch_id: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        events,
        ..Default::default()
    }
}

/// Bytes an event adds to an encoded `WatchResponse` (field 11, length-delimited).
fn event_field_len(ev: &Event) -> usize {
    let len = ev.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Splits `resp` as etcd's `sendFragments` does: unchanged when it is smaller than `max_bytes`
/// or has fewer than two events; otherwise responses with `fragment` set, each holding events
/// while it stays under `max_bytes` (at least one), the last one with `fragment` cleared.
pub fn fragments(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut template = resp;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = base;
    for ev in events {
        let add = event_field_len(&ev);
        if !current.is_empty() && size + add >= max_bytes {
            let mut part = template.clone();
            part.events = std::mem::take(&mut current);
            out.push(part);
            size = base;
        }
        size += add;
        current.push(ev);
    }
    let mut last = template;
    last.events = current;
    last.fragment = false;
    out.push(last);
    out
}

#[cfg(test)]
mod tests {
    use xline_proto::mvccpb::KeyValue;

    use super::*;

    fn put(key: &str, rev: i64, value_len: usize) -> Event {
        Event {
            r#type: event::EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                value: vec![b'v'; value_len],
                ..Default::default()
            }),
            prev_kv: Some(KeyValue::default()),
        }
    }

    fn del(key: &str, rev: i64) -> Event {
        Event {
            r#type: event::EventType::Delete as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn ranges_follow_etcd_conventions() {
        assert_eq!(KeyRange::new(b"", b""), Ok(KeyRange::Single(vec![0])));
        assert_eq!(KeyRange::new(b"", b"\0"), Ok(KeyRange::FromKey(vec![0])));
        assert_eq!(KeyRange::new(b"b", b"a"), Err(WatchError::EmptyRange));
        assert_eq!(KeyRange::new(b"a", b"a"), Err(WatchError::EmptyRange));
        let r = KeyRange::new(b"a", b"c").unwrap();
        assert!(r.contains(b"a") && r.contains(b"bzz") && !r.contains(b"c"));
        let f = KeyRange::new(b"m", b"\0").unwrap();
        assert!(f.contains(b"m") && f.contains(b"zz") && !f.contains(b"l"));
        let s = KeyRange::new(b"k", b"").unwrap();
        assert!(s.contains(b"k") && !s.contains(b"k1"));
    }

    #[test]
    fn select_filters_and_strips() {
        let req = WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        };
        let range = KeyRange::new(&req.key, &req.range_end).unwrap();
        let w = Watcher::new(0, &req, range, 4);
        assert!(w.synced);
        assert_eq!(w.next_rev, 5);
        let evs = [put("a", 4, 1), put("b", 5, 1), del("c", 6), put("0", 7, 1)];
        let got = w.select(&evs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kv.as_ref().unwrap().key, b"b");
        assert!(got[0].prev_kv.is_none());
    }

    #[test]
    fn fragments_like_etcd() {
        let header = ResponseHeader::default();
        let small = events_response(header, 1, vec![put("a", 2, 10), put("b", 2, 10)]);
        assert_eq!(fragments(small.clone(), 1000), vec![small]);
        let one = events_response(header, 1, vec![put("a", 2, 5000)]);
        assert_eq!(fragments(one.clone(), 1000).len(), 1);
        let evs: Vec<Event> = (0..10).map(|i| put(&format!("k{i}"), 3, 300)).collect();
        let big = events_response(header, 1, evs.clone());
        let parts = fragments(big, 1000);
        assert!(parts.len() > 1);
        let (last, init) = parts.split_last().unwrap();
        assert!(init.iter().all(|p| p.fragment && p.encoded_len() < 1000));
        assert!(!last.fragment);
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, evs);
    }
}
