//! [`LogStorage`] on raft-engine.
//!
//! raft-engine stores entries as rust-protobuf v2 messages, so log entries are wrapped in
//! [`EntryMessage`], a hand-written v2 message. Everything lives in one raft group
//! ([`REGION`]); the hard state, the compaction boundary and metadata records are key-value
//! pairs of that group, written with `LogBatch::put` so that each write is one atomic batch.
//!
//! Behaviour of raft-engine 0.4.2 this relies on (read from its source):
//! - appending entries that start inside the existing span truncates the tail from there; a
//!   gap, or an index below the first retained one, panics. [`check_append`] guards both.
//! - `Command::Compact { index }` drops entries below `index`; once every entry is gone the
//!   group reports no first/last index, so the boundary is persisted as our own key.
//! - `Engine::compact_to` writes the compact command without sync and swallows errors, so we
//!   write the command ourselves, in the same batch as the boundary record.
//! - obsolete files are only reclaimed by `purge_expired_files`, and only once the files
//!   exceed `purge_threshold`; it rewrites live key-values (and live entries of old files) to
//!   the rewrite queue. We call it after each compaction.
//! - a failed fsync panics inside raft-engine.
//! - `Engine::sync` writes an empty batch with `sync = true`, and `Engine::write` returns at
//!   once for an empty batch: it never fsyncs. [`RaftEngineLog::sync`] therefore writes a
//!   one-byte marker record ([`SYNC_MARKER_KEY`]) with `sync = true`, which fsyncs the active
//!   file; files rotated out before it were synced when they were closed.

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use parking_lot::Mutex;
use protobuf::descriptor::{
    DescriptorProto, FieldDescriptorProto, FieldDescriptorProto_Label, FieldDescriptorProto_Type,
    FileDescriptorProto,
};
use protobuf::reflect::MessageDescriptor;
use protobuf::reflect::accessor::make_simple_field_accessor;
use protobuf::{
    CachedSize, Clear, CodedInputStream, CodedOutputStream, Message, ProtobufResult, RepeatedField,
    UnknownFields, wire_format::WireType,
};
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};

use super::{
    HardState, LogEntry, LogStorage, check_append, check_compact, check_range, decode_hard_state,
    decode_u64s, encode_hard_state,
};
use crate::error::StorageError;

/// The raft group all our data lives in.
const REGION: u64 = 1;
/// Key of the hard state record.
const HARD_STATE_KEY: &[u8] = b"curp/hard_state";
/// Key of the compaction boundary record: (index, term).
const BOUNDARY_KEY: &[u8] = b"curp/boundary";
/// Prefix of metadata record keys.
const META_PREFIX: &[u8] = b"curp/meta/";
/// Key of the marker record written to force an fsync (see the module docs).
const SYNC_MARKER_KEY: &[u8] = b"curp/sync";
/// How many entries to read from raft-engine at a time in [`LogStorage::entries`].
const READ_CHUNK: u64 = 64;

/// Tuning for [`RaftEngineLog::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftEngineOptions {
    /// Size at which raft-engine starts a new log file, in bytes.
    pub target_file_size: u64,
    /// Total size of the log files above which compacted files are reclaimed, in bytes. Must
    /// be at least `target_file_size`.
    pub purge_threshold: u64,
}

impl Default for RaftEngineOptions {
    /// 32 MiB files, reclaimed once they add up to more than 256 MiB.
    fn default() -> Self {
        Self {
            target_file_size: 32 << 20,
            purge_threshold: 256 << 20,
        }
    }
}

/// A [`LogStorage`] on raft-engine, in one directory.
///
/// Opening takes the directory's lock file, so a directory can be open only once at a time.
/// raft-engine spawns a few background threads; dropping the log stops them.
pub struct RaftEngineLog {
    /// The engine.
    engine: Engine,
    /// Serialises writers and holds the compaction boundary (index, term).
    boundary: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for RaftEngineLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngineLog")
            .field("dir", &self.engine.path())
            .field("boundary", &*self.boundary.lock())
            .finish_non_exhaustive()
    }
}

/// Converts a raft-engine error.
fn engine_error(err: raft_engine::Error) -> StorageError {
    StorageError::Engine(err.to_string())
}

impl RaftEngineLog {
    /// Opens (creating if needed) the log in `dir` with default [`RaftEngineOptions`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] if the directory cannot be created, locked or recovered;
    /// [`StorageError::Corrupted`] if our own records cannot be decoded.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, RaftEngineOptions::default())
    }

    /// Opens (creating if needed) the log in `dir`.
    ///
    /// # Errors
    ///
    /// As [`RaftEngineLog::open`]; also [`StorageError::InvalidArgument`] for a path that is
    /// not UTF-8 or options raft-engine rejects.
    pub fn open_with(dir: &Path, options: RaftEngineOptions) -> Result<Self, StorageError> {
        let dir = dir.to_str().ok_or_else(|| {
            StorageError::InvalidArgument(format!("log directory {dir:?} is not UTF-8"))
        })?;
        if options.purge_threshold < options.target_file_size {
            return Err(StorageError::InvalidArgument(format!(
                "purge threshold {} is below the target file size {}",
                options.purge_threshold, options.target_file_size
            )));
        }
        let config = Config {
            dir: dir.to_owned(),
            target_file_size: ReadableSize(options.target_file_size),
            purge_threshold: ReadableSize(options.purge_threshold),
            // No lz4 on log batches (etcd's WAL is not compressed either): commands carry
            // client values, often incompressible, and compressing each round's batch cost CPU
            // and a fresh output buffer per write on the driver thread.
            batch_compression_threshold: ReadableSize(0),
            ..Config::default()
        };
        let engine = Engine::open(config).map_err(engine_error)?;
        // raft-engine 0.4.2 does not sync the directory after creating its first files (nor a
        // new directory's parent): without this, their names may not survive a power loss.
        let path = Path::new(dir);
        for d in [Some(path), path.parent()].into_iter().flatten() {
            if !d.as_os_str().is_empty() {
                std::fs::File::open(d)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| StorageError::Engine(format!("syncing {}: {e}", d.display())))?;
            }
        }
        let boundary = match engine.get(REGION, BOUNDARY_KEY) {
            Some(bytes) => {
                let [index, term] = decode_u64s::<2>(&bytes, "compaction boundary")?;
                (index, term)
            }
            None => (0, 0),
        };
        let log = Self {
            engine,
            boundary: Mutex::new(boundary),
        };
        // Entries below the boundary must be gone; a crash cannot separate the two because
        // they are written in one batch, but check rather than serve compacted entries.
        if let Some(first) = log.engine.first_index(REGION)
            && first <= boundary.0
        {
            return Err(StorageError::Corrupted(format!(
                "entry {first} survived compaction up to {}",
                boundary.0
            )));
        }
        Ok(log)
    }

    /// First and last index given the boundary.
    fn span(&self, boundary: (u64, u64)) -> (u64, u64) {
        match (
            self.engine.first_index(REGION),
            self.engine.last_index(REGION),
        ) {
            (Some(first), Some(last)) => (first, last),
            _ => (boundary.0 + 1, boundary.0),
        }
    }

    /// The term of a retained entry.
    fn entry_term(&self, index: u64) -> Result<Option<u64>, StorageError> {
        let entry = self
            .engine
            .get_entry::<EntryCodec>(REGION, index)
            .map_err(engine_error)?;
        Ok(entry.map(|entry| entry.term))
    }

    /// Writes `batch`, syncing if asked.
    fn write(&self, batch: &mut LogBatch, sync: bool) -> Result<(), StorageError> {
        if batch.is_empty() {
            if sync {
                self.force_sync()?;
            }
            return Ok(());
        }
        self.engine.write(batch, sync).map_err(engine_error)?;
        Ok(())
    }

    /// Makes every earlier write durable. `Engine::sync` cannot (module docs): a non-empty
    /// batch written with `sync = true` fsyncs the active log file.
    fn force_sync(&self) -> Result<(), StorageError> {
        let mut batch = LogBatch::default();
        batch
            .put(REGION, SYNC_MARKER_KEY.to_vec(), vec![1])
            .map_err(engine_error)?;
        self.engine.write(&mut batch, true).map_err(engine_error)?;
        Ok(())
    }

    /// Key of a metadata record.
    fn meta_key(key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(META_PREFIX.len() + key.len());
        full.extend_from_slice(META_PREFIX);
        full.extend_from_slice(key);
        full
    }
}

impl LogStorage for RaftEngineLog {
    fn append(&self, entries: &[LogEntry], sync: bool) -> Result<(), StorageError> {
        let boundary = self.boundary.lock();
        let (first, last) = self.span(*boundary);
        check_append(entries, first, last)?;
        let messages: Vec<EntryMessage> = entries
            .iter()
            .map(|entry| EntryMessage {
                index: entry.index,
                term: entry.term,
                data: entry.data.to_vec(),
                ..EntryMessage::default()
            })
            .collect();
        let mut batch = LogBatch::default();
        batch
            .add_entries::<EntryCodec>(REGION, &messages)
            .map_err(engine_error)?;
        self.write(&mut batch, sync)
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<LogEntry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        // Hold the writer lock so that the span cannot change under the read.
        let boundary = self.boundary.lock();
        let (first, last) = self.span(*boundary);
        check_range(low, high, first, last)?;
        let mut out = Vec::new();
        let mut total = 0_u64;
        let mut next = low;
        let mut messages = Vec::new();
        while next < high {
            let end = next.saturating_add(READ_CHUNK).min(high);
            messages.clear();
            self.engine
                .fetch_entries_to::<EntryCodec>(REGION, next, end, None, &mut messages)
                .map_err(engine_error)?;
            if messages.len() as u64 != end - next {
                return Err(StorageError::Corrupted(format!(
                    "read {} entries from [{next}, {end})",
                    messages.len()
                )));
            }
            for message in messages.drain(..) {
                total = total.saturating_add(message.data.len() as u64);
                if total > max_bytes && !out.is_empty() {
                    return Ok(out);
                }
                out.push(LogEntry {
                    index: message.index,
                    term: message.term,
                    data: Bytes::from(message.data),
                });
            }
            next = end;
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<Option<u64>, StorageError> {
        let boundary = self.boundary.lock();
        if index == boundary.0 {
            return Ok(Some(boundary.1));
        }
        let (first, last) = self.span(*boundary);
        if index < first || index > last {
            return Ok(None);
        }
        self.entry_term(index)
    }

    fn first_index(&self) -> u64 {
        let boundary = self.boundary.lock();
        self.span(*boundary).0
    }

    fn last_index(&self) -> u64 {
        let boundary = self.boundary.lock();
        self.span(*boundary).1
    }

    fn compact(&self, to: u64) -> Result<(), StorageError> {
        let mut boundary = self.boundary.lock();
        let (first, last) = self.span(*boundary);
        if !check_compact(to, first, last)? {
            return Ok(());
        }
        let index = to - 1;
        let term = self.entry_term(index)?.ok_or_else(|| {
            StorageError::Corrupted(format!("retained entry {index} cannot be read"))
        })?;
        let mut record = Vec::with_capacity(16);
        record.extend_from_slice(&index.to_be_bytes());
        record.extend_from_slice(&term.to_be_bytes());
        let mut batch = LogBatch::default();
        batch.add_command(REGION, raft_engine::Command::Compact { index: to });
        batch
            .put(REGION, BOUNDARY_KEY.to_vec(), record)
            .map_err(engine_error)?;
        self.write(&mut batch, true)?;
        *boundary = (index, term);
        drop(boundary);
        // Reclaim files that only hold compacted entries. Raft groups it asks us to compact
        // further can only be ours, whose retention the caller decides, so the answer is
        // only logged.
        match self.engine.purge_expired_files() {
            Ok(regions) if !regions.is_empty() => {
                tracing::debug!(?regions, "raft-engine asks for more compaction");
            }
            Ok(_) => {}
            Err(err) => {
                // The compaction itself is durable; the files are reclaimed on a later try.
                tracing::warn!(%err, "purging compacted raft-engine files failed");
            }
        }
        Ok(())
    }

    fn install_snapshot(&self, index: u64, term: u64) -> Result<(), StorageError> {
        let mut boundary = self.boundary.lock();
        let (_, last) = self.span(*boundary);
        let mut record = Vec::with_capacity(16);
        record.extend_from_slice(&index.to_be_bytes());
        record.extend_from_slice(&term.to_be_bytes());
        let mut batch = LogBatch::default();
        // Compacting past the last entry empties the group; raft-engine then accepts an append
        // at any index (an empty memtable checks nothing), which is `index + 1` from now on.
        let to = last.max(index).saturating_add(1);
        batch.add_command(REGION, raft_engine::Command::Compact { index: to });
        batch
            .put(REGION, BOUNDARY_KEY.to_vec(), record)
            .map_err(engine_error)?;
        self.write(&mut batch, true)?;
        *boundary = (index, term);
        Ok(())
    }

    fn hard_state(&self) -> Result<HardState, StorageError> {
        match self.engine.get(REGION, HARD_STATE_KEY) {
            Some(bytes) => decode_hard_state(&bytes),
            None => Ok(HardState::default()),
        }
    }

    fn set_hard_state(&self, hs: HardState, sync: bool) -> Result<(), StorageError> {
        let _writer = self.boundary.lock();
        let mut batch = LogBatch::default();
        batch
            .put(REGION, HARD_STATE_KEY.to_vec(), encode_hard_state(hs))
            .map_err(engine_error)?;
        self.write(&mut batch, sync)
    }

    fn put_meta(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), StorageError> {
        let _writer = self.boundary.lock();
        let mut batch = LogBatch::default();
        batch
            .put(REGION, Self::meta_key(key), value.to_vec())
            .map_err(engine_error)?;
        self.write(&mut batch, sync)
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.engine.get(REGION, &Self::meta_key(key)))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.force_sync()
    }

    fn write_round(
        &self,
        entries: &[LogEntry],
        hard_state: Option<HardState>,
        sync: bool,
    ) -> Result<(), StorageError> {
        let boundary = self.boundary.lock();
        let (first, last) = self.span(*boundary);
        check_append(entries, first, last)?;
        let mut batch = LogBatch::default();
        if !entries.is_empty() {
            let messages: Vec<EntryMessage> = entries
                .iter()
                .map(|entry| EntryMessage {
                    index: entry.index,
                    term: entry.term,
                    data: entry.data.to_vec(),
                    ..EntryMessage::default()
                })
                .collect();
            batch
                .add_entries::<EntryCodec>(REGION, &messages)
                .map_err(engine_error)?;
        }
        if let Some(hs) = hard_state {
            batch
                .put(REGION, HARD_STATE_KEY.to_vec(), encode_hard_state(hs))
                .map_err(engine_error)?;
        }
        // One batch: atomic, and with `sync` one fsync (an empty one still syncs).
        self.write(&mut batch, sync)
    }
}

/// Tells raft-engine how to find the index of an [`EntryMessage`].
struct EntryCodec;

impl MessageExt for EntryCodec {
    type Entry = EntryMessage;

    fn index(entry: &EntryMessage) -> u64 {
        entry.index
    }
}

/// A log entry as a protobuf v2 message:
///
/// ```proto
/// syntax = "proto3";
/// package curp.storage;
/// message LogEntry { uint64 index = 1; uint64 term = 2; bytes data = 3; }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
struct EntryMessage {
    /// Field 1.
    index: u64,
    /// Field 2.
    term: u64,
    /// Field 3.
    data: Vec<u8>,
    /// Fields this version does not know, kept for re-encoding.
    unknown_fields: UnknownFields,
    /// Size computed by the last `compute_size`.
    cached_size: CachedSize,
}

/// Field numbers of [`EntryMessage`].
const FIELD_INDEX: u32 = 1;
/// See [`FIELD_INDEX`].
const FIELD_TERM: u32 = 2;
/// See [`FIELD_INDEX`].
const FIELD_DATA: u32 = 3;

/// Reads a varint uint64 field value.
fn read_uint64(wire_type: WireType, is: &mut CodedInputStream<'_>) -> ProtobufResult<u64> {
    if wire_type != WireType::WireTypeVarint {
        return Err(protobuf::rt::unexpected_wire_type(wire_type));
    }
    is.read_uint64()
}

impl Message for EntryMessage {
    fn descriptor(&self) -> &'static MessageDescriptor {
        Self::descriptor_static()
    }

    fn is_initialized(&self) -> bool {
        true
    }

    fn merge_from(&mut self, is: &mut CodedInputStream<'_>) -> ProtobufResult<()> {
        while !is.eof()? {
            let (field, wire_type) = is.read_tag_unpack()?;
            match field {
                FIELD_INDEX => self.index = read_uint64(wire_type, is)?,
                FIELD_TERM => self.term = read_uint64(wire_type, is)?,
                FIELD_DATA => {
                    protobuf::rt::read_singular_proto3_bytes_into(wire_type, is, &mut self.data)?;
                }
                _ => protobuf::rt::read_unknown_or_skip_group(
                    field,
                    wire_type,
                    is,
                    &mut self.unknown_fields,
                )?,
            }
        }
        Ok(())
    }

    fn write_to_with_cached_sizes(&self, os: &mut CodedOutputStream<'_>) -> ProtobufResult<()> {
        if self.index != 0 {
            os.write_uint64(FIELD_INDEX, self.index)?;
        }
        if self.term != 0 {
            os.write_uint64(FIELD_TERM, self.term)?;
        }
        if !self.data.is_empty() {
            os.write_bytes(FIELD_DATA, &self.data)?;
        }
        os.write_unknown_fields(&self.unknown_fields)
    }

    fn compute_size(&self) -> u32 {
        let mut size = 0;
        if self.index != 0 {
            size += protobuf::rt::value_size(FIELD_INDEX, self.index, WireType::WireTypeVarint);
        }
        if self.term != 0 {
            size += protobuf::rt::value_size(FIELD_TERM, self.term, WireType::WireTypeVarint);
        }
        if !self.data.is_empty() {
            size += protobuf::rt::bytes_size(FIELD_DATA, &self.data);
        }
        size += protobuf::rt::unknown_fields_size(&self.unknown_fields);
        self.cached_size.set(size);
        size
    }

    fn get_cached_size(&self) -> u32 {
        self.cached_size.get()
    }

    fn get_unknown_fields(&self) -> &UnknownFields {
        &self.unknown_fields
    }

    fn mut_unknown_fields(&mut self) -> &mut UnknownFields {
        &mut self.unknown_fields
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }

    fn new() -> Self {
        Self::default()
    }

    fn descriptor_static() -> &'static MessageDescriptor {
        // `MessageDescriptor` is `Sync` but not `Send`, which `OnceLock` needs; rust-protobuf's
        // own lazy cell is what its generated code uses.
        static DESCRIPTOR: protobuf::rt::LazyV2<MessageDescriptor> = protobuf::rt::LazyV2::INIT;
        DESCRIPTOR.get(|| {
            let fields = vec![
                make_simple_field_accessor::<_, protobuf::types::ProtobufTypeUint64>(
                    "index",
                    |m: &EntryMessage| &m.index,
                    |m: &mut EntryMessage| &mut m.index,
                ),
                make_simple_field_accessor::<_, protobuf::types::ProtobufTypeUint64>(
                    "term",
                    |m: &EntryMessage| &m.term,
                    |m: &mut EntryMessage| &mut m.term,
                ),
                make_simple_field_accessor::<_, protobuf::types::ProtobufTypeBytes>(
                    "data",
                    |m: &EntryMessage| &m.data,
                    |m: &mut EntryMessage| &mut m.data,
                ),
            ];
            MessageDescriptor::new_pb_name::<EntryMessage>("LogEntry", fields, file_descriptor())
        })
    }

    fn default_instance() -> &'static Self {
        static INSTANCE: OnceLock<EntryMessage> = OnceLock::new();
        INSTANCE.get_or_init(EntryMessage::default)
    }
}

impl Clear for EntryMessage {
    fn clear(&mut self) {
        self.index = 0;
        self.term = 0;
        self.data.clear();
        self.unknown_fields.clear();
    }
}

/// The `.proto` file [`EntryMessage`] would be generated from, built by hand.
fn file_descriptor() -> &'static FileDescriptorProto {
    static FILE: OnceLock<FileDescriptorProto> = OnceLock::new();
    FILE.get_or_init(|| {
        let field = |name: &str, number: u32, kind| {
            let mut field = FieldDescriptorProto::new();
            field.set_name(name.to_owned());
            field.set_number(i32::try_from(number).unwrap_or(i32::MAX));
            field.set_label(FieldDescriptorProto_Label::LABEL_OPTIONAL);
            field.set_field_type(kind);
            field
        };
        let mut message = DescriptorProto::new();
        message.set_name("LogEntry".to_owned());
        message.set_field(RepeatedField::from_vec(vec![
            field("index", FIELD_INDEX, FieldDescriptorProto_Type::TYPE_UINT64),
            field("term", FIELD_TERM, FieldDescriptorProto_Type::TYPE_UINT64),
            field("data", FIELD_DATA, FieldDescriptorProto_Type::TYPE_BYTES),
        ]));
        let mut file = FileDescriptorProto::new();
        file.set_name("curp/storage/log_entry.proto".to_owned());
        file.set_package("curp.storage".to_owned());
        file.set_syntax("proto3".to_owned());
        file.set_message_type(RepeatedField::from_vec(vec![message]));
        file
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time raft-engine spent in fsync on this thread, reset.
    fn synced() -> std::time::Duration {
        raft_engine::take_perf_context().log_sync_duration
    }

    #[test]
    fn sync_really_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = RaftEngineLog::open(dir.path()).expect("open");
        let _ = synced();
        // raft-engine's own `Engine::sync` does nothing: the reason for `force_sync`.
        log.engine.sync().expect("engine sync");
        assert_eq!(synced(), std::time::Duration::ZERO);
        log.put_meta(b"k", b"v", false).expect("put");
        assert_eq!(
            synced(),
            std::time::Duration::ZERO,
            "unsynced write fsynced"
        );
        log.sync().expect("sync");
        assert!(synced() > std::time::Duration::ZERO, "sync() did not fsync");
        log.append(&[], true).expect("empty synced append");
        assert!(
            synced() > std::time::Duration::ZERO,
            "append(&[], true) did not fsync"
        );
        log.set_hard_state(HardState::default(), true)
            .expect("hard state");
        assert!(
            synced() > std::time::Duration::ZERO,
            "synced write did not fsync"
        );
        // The driver's round write: one batch, fsynced only when asked.
        let entries = [LogEntry {
            index: 1,
            term: 1,
            data: Bytes::from_static(b"e"),
        }];
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 1,
        };
        log.write_round(&entries, Some(hs), false)
            .expect("unsynced round");
        assert_eq!(
            synced(),
            std::time::Duration::ZERO,
            "unsynced round fsynced"
        );
        log.write_round(&[], Some(hs), true).expect("synced round");
        assert!(
            synced() > std::time::Duration::ZERO,
            "synced round did not fsync"
        );
        log.write_round(&[], None, true)
            .expect("empty synced round");
        assert!(
            synced() > std::time::Duration::ZERO,
            "empty synced round did not fsync"
        );
    }

    #[test]
    fn entry_message_round_trips() {
        let entry = EntryMessage {
            index: 300,
            term: 7,
            data: b"hello".to_vec(),
            ..EntryMessage::default()
        };
        let bytes = entry.write_to_bytes().expect("encode");
        // index = 300 (varint 0xac 0x02), term = 7, data = "hello".
        assert_eq!(bytes, b"\x08\xac\x02\x10\x07\x1a\x05hello");
        let decoded = EntryMessage::parse_from_bytes(&bytes).expect("decode");
        assert_eq!(decoded.index, 300);
        assert_eq!(decoded.term, 7);
        assert_eq!(decoded.data, b"hello");

        let empty = EntryMessage::default();
        let bytes = empty.write_to_bytes().expect("encode");
        assert!(bytes.is_empty());
        assert_eq!(
            EntryMessage::parse_from_bytes(&bytes).expect("decode"),
            empty
        );
    }

    #[test]
    fn entry_message_keeps_unknown_fields_and_rejects_bad_wire_types() {
        // Field 9 (varint 5) is unknown; it survives a round trip.
        let bytes = b"\x08\x01\x48\x05";
        let decoded = EntryMessage::parse_from_bytes(bytes).expect("decode");
        assert_eq!(decoded.index, 1);
        assert_eq!(decoded.write_to_bytes().expect("encode"), bytes);
        // Field 1 as length-delimited is an error.
        assert!(EntryMessage::parse_from_bytes(b"\x0a\x01\x00").is_err());
    }

    #[test]
    fn entry_message_descriptor() {
        let descriptor = EntryMessage::new().descriptor();
        assert_eq!(descriptor.name(), "LogEntry");
        assert_eq!(descriptor.full_name(), "curp.storage.LogEntry");
        let names: Vec<&str> = descriptor
            .fields()
            .iter()
            .map(protobuf::reflect::FieldDescriptor::name)
            .collect();
        assert_eq!(names, ["index", "term", "data"]);
    }
}
