//! Every table and meta key the server stores, in one place.

/// The tables of the backend. Each implementation maps them to its own namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Revision-keyed MVCC data: key = encoded revision, value = encoded `mvccpb.KeyValue`.
    Kv,
    /// Scalars: applied index, current and compacted revisions (see the `META_*` keys).
    Meta,
    /// Leases by id.
    Lease,
    /// Users, roles and the auth switch.
    Auth,
    /// Cluster members by id.
    Members,
    /// Raised alarms.
    Alarm,
}

impl Table {
    /// Every table, for implementations that create them up front.
    pub const ALL: [Table; 6] = [
        Table::Kv,
        Table::Meta,
        Table::Lease,
        Table::Auth,
        Table::Members,
        Table::Alarm,
    ];

    /// A stable name, used as the table name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Kv => "kv",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::Members => "members",
            Table::Alarm => "alarm",
        }
    }

    /// A one-byte tag, for implementations that keep every table in one keyspace.
    pub fn tag(self) -> u8 {
        match self {
            Table::Kv => 1,
            Table::Meta => 2,
            Table::Lease => 3,
            Table::Auth => 4,
            Table::Members => 5,
            Table::Alarm => 6,
        }
    }
}

/// Meta key: index of the last consensus-log entry whose effects are in the backend (u64 BE).
pub const META_APPLIED_INDEX: &[u8] = b"applied_index";
/// Meta key: the current MVCC main revision (i64 BE).
pub const META_CURRENT_REV: &[u8] = b"current_rev";
/// Meta key: the revision of the last compaction that was scheduled (i64 BE).
pub const META_SCHEDULED_COMPACT_REV: &[u8] = b"scheduled_compact_rev";
/// Meta key: the revision of the last compaction whose physical deletion finished (i64 BE).
pub const META_FINISHED_COMPACT_REV: &[u8] = b"finished_compact_rev";
/// Meta key: the downgrade state, an encoded `etcdserverpb.DowngradeInfo` (absent: none).
pub const META_DOWNGRADE: &[u8] = b"downgrade";
