//! bbolt's consistency check and `etcdctl snapshot status` (etcd 3.4).

use std::collections::BTreeSet;
use std::path::Path;

use super::{
    BRANCH_PAGE, BUCKET_HEADER, BUCKET_LEAF, BoltError, ELEMENT, FREELIST_PAGE, LEAF_PAGE, MAGIC,
    MAX_DEPTH, META_CHECKSUM, Meta, PAGE_HEADER, PAGE_SIZE, Reader, VERSION, fnv64a, get_u16,
    get_u32, get_u64, read_db, read_meta,
};

/// The freelist page id of a file written without a freelist (etcd's backend sets bbolt's
/// `NoFreelistSync`): its free pages are the unreachable ones.
const NO_FREELIST: u64 = u64::MAX;

/// What `etcdctl snapshot status` reports about a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C (Castagnoli) of every bucket name followed by its keys and values, in order.
    pub hash: u32,
    /// The main revision of the last key of the `key` bucket (0 without one).
    pub revision: i64,
    /// The number of pairs in all buckets.
    pub total_key: u64,
    /// The size of the database: its number of pages times the page size (a snapshot's
    /// trailing checksum is not counted).
    pub total_size: u64,
}

/// Why `etcdctl snapshot status` fails on a file, with etcd 3.4's messages.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file cannot be examined (`stat PATH: no such file or directory`).
    #[error("stat {path}: {}", go_io(.source))]
    Stat {
        /// The path given.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file cannot be opened or read.
    #[error("{op} {path}: {}", go_io(.source))]
    Io {
        /// `open`, `read` or `write`, as Go names the failing call.
        op: &'static str,
        /// The path given.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// No valid meta page: not a bbolt file.
    #[error("invalid database")]
    Invalid,
    /// A bbolt file of another format version.
    #[error("version mismatch")]
    VersionMismatch,
    /// Both meta pages are damaged.
    #[error("checksum error")]
    Checksum,
    /// Shorter than its two meta pages.
    #[error("file size too small")]
    TooSmall,
    /// bbolt's check found damaged pages.
    #[error("snapshot file integrity check failed. {} errors found.\n{}", .0.len(), .0.join("\n"))]
    Integrity(Vec<String>),
    /// A top-level entry that is not a bucket.
    #[error("cannot get hash of bucket {0}")]
    NotABucket(String),
}

/// Go's text for a system error: the C library's message, as Rust's without " (os error N)"
/// and with a lower-case first letter (`no such file or directory`).
fn go_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text
        .rfind(" (os error ")
        .map_or(text.as_str(), |at| &text[..at]);
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// `etcdctl snapshot status PATH`: opens the file as bbolt does (read-only), checks it and
/// computes the status.
pub fn status(path: impl AsRef<Path>) -> Result<Status, StatusError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| StatusError::Stat {
        path: shown.clone(),
        source,
    })?;
    if meta.is_dir() {
        return Err(StatusError::Io {
            op: "open",
            path: shown,
            source: std::io::Error::from_raw_os_error(21),
        });
    }
    if meta.len() == 0 {
        // bbolt initializes an empty file, which a read-only descriptor refuses.
        return Err(StatusError::Io {
            op: "write",
            path: shown,
            source: std::io::Error::from_raw_os_error(9),
        });
    }
    let file = std::fs::read(path).map_err(|source| StatusError::Io {
        op: "open",
        path: shown,
        source,
    })?;
    status_of(&file)
}

/// bbolt's validation of a meta page.
fn validate_meta(meta: &[u8]) -> Result<usize, StatusError> {
    if get_u32(meta, 0) != MAGIC {
        return Err(StatusError::Invalid);
    }
    if get_u32(meta, 4) != VERSION {
        return Err(StatusError::VersionMismatch);
    }
    if get_u64(meta, META_CHECKSUM) != fnv64a(&meta[..META_CHECKSUM]) {
        return Err(StatusError::Checksum);
    }
    Ok(get_u32(meta, 8) as usize)
}

/// `etcdctl snapshot status` of the bytes of a file.
pub fn status_of(file: &[u8]) -> Result<Status, StatusError> {
    // bbolt reads the first 4 KiB and takes the page size from meta page 0 when it is valid.
    let meta_at = |at: usize| file.get(at + PAGE_HEADER..at + PAGE_HEADER + META_CHECKSUM + 8);
    let first = meta_at(0).ok_or(StatusError::Invalid)?;
    if file.len() < PAGE_SIZE {
        return Err(StatusError::Invalid);
    }
    let page_size = validate_meta(first).unwrap_or(PAGE_SIZE);
    if file.len() < 2 * page_size {
        return Err(StatusError::TooSmall);
    }
    let second = meta_at(page_size).map_or(Err(StatusError::Invalid), validate_meta);
    if let (Err(e), Err(_)) = (validate_meta(first), second) {
        return Err(e);
    }
    let meta = read_meta(file).map_err(|e| StatusError::Integrity(vec![e.0]))?;
    check(file).map_err(|e| StatusError::Integrity(vec![e.0]))?;
    let buckets = read_db(file).map_err(|e| match e.0.strip_prefix(NOT_A_BUCKET) {
        Some(name) => StatusError::NotABucket(name.to_owned()),
        None => StatusError::Integrity(vec![e.0]),
    })?;
    let mut status = Status {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: meta.high_water * meta.page_size as u64,
    };
    for bucket in &buckets {
        status.hash = crc32c::crc32c_append(status.hash, &bucket.name);
        for (key, value) in &bucket.pairs {
            status.hash = crc32c::crc32c_append(status.hash, key);
            status.hash = crc32c::crc32c_append(status.hash, value);
            if bucket.name == b"key"
                && let Some(main) = key.get(..8)
            {
                let mut be = [0u8; 8];
                be.copy_from_slice(main);
                status.revision = i64::from_be_bytes(be);
            }
            status.total_key += 1;
        }
    }
    Ok(status)
}

/// The start of [`read_db`]'s error for a top-level value that is not a bucket.
pub(crate) const NOT_A_BUCKET: &str = "not a bucket: ";

/// bbolt's `Tx.Check`: every page below the high-water mark is a meta page, the freelist, a
/// free page, or reachable from exactly one place in the tree; tree pages are branches or
/// leaves whose keys are in order and whose branch elements name their child's first key.
pub fn check(file: &[u8]) -> Result<(), BoltError> {
    let meta = read_meta(file)?;
    let reader = Reader { file, meta };
    let mut checker = Checker {
        reader: &reader,
        reached: BTreeSet::from([0, 1]),
        freed: BTreeSet::new(),
    };
    let freelist = freelist_id(file, &meta)?;
    if freelist != NO_FREELIST {
        let page = reader.page(freelist)?;
        if get_u16(page, 8) != FREELIST_PAGE {
            return Err(BoltError(format!("page {freelist}: not the freelist")));
        }
        for i in 0..=u64::from(get_u32(page, 12)) {
            checker.reach(freelist + i)?;
        }
        let (mut count, mut at) = (get_u16(page, 10) as usize, PAGE_HEADER);
        if count == 0xFFFF {
            count = usize::try_from(get_u64(page, at)).unwrap_or(usize::MAX);
            at += 8;
        }
        for i in 0..count {
            let id = page
                .get(at + 8 * i..at + 8 * i + 8)
                .map(|b| get_u64(b, 0))
                .ok_or_else(|| BoltError(format!("page {freelist}: freelist outside the page")))?;
            if !checker.freed.insert(id) {
                return Err(BoltError(format!("page {id}: already freed")));
            }
        }
    }
    checker.tree(meta.root, 0)?;
    for id in 0..meta.high_water {
        if freelist != NO_FREELIST && !checker.reached.contains(&id) && !checker.freed.contains(&id)
        {
            return Err(BoltError(format!("page {id}: unreachable unfreed")));
        }
    }
    Ok(())
}

/// The freelist page id of the meta [`read_meta`] chose.
fn freelist_id(file: &[u8], meta: &Meta) -> Result<u64, BoltError> {
    for at in [0, meta.page_size] {
        if let Some(m) = file.get(at + PAGE_HEADER..at + PAGE_HEADER + META_CHECKSUM + 8)
            && get_u32(m, 0) == MAGIC
            && get_u64(m, 48) == meta.txid
        {
            return Ok(get_u64(m, 32));
        }
    }
    Err(BoltError("no meta page with the chosen transaction".into()))
}

struct Checker<'a, 'f> {
    reader: &'a Reader<'f>,
    reached: BTreeSet<u64>,
    freed: BTreeSet<u64>,
}

impl Checker<'_, '_> {
    fn reach(&mut self, id: u64) -> Result<(), BoltError> {
        if id >= self.reader.meta.high_water {
            return Err(BoltError(format!(
                "page {id}: out of bounds: {}",
                self.reader.meta.high_water
            )));
        }
        if self.freed.contains(&id) {
            return Err(BoltError(format!("page {id}: reachable freed")));
        }
        if !self.reached.insert(id) {
            return Err(BoltError(format!("page {id}: multiple references")));
        }
        Ok(())
    }

    /// Checks the tree rooted at page `id` and the trees of its buckets; returns its first key.
    fn tree(&mut self, id: u64, depth: usize) -> Result<Vec<u8>, BoltError> {
        if depth > MAX_DEPTH {
            return Err(BoltError("tree too deep (a cycle?)".into()));
        }
        let page = self.reader.page(id)?;
        for i in 0..=u64::from(get_u32(page, 12)) {
            self.reach(id + i)?;
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        match get_u16(page, 8) {
            BRANCH_PAGE => {
                for i in 0..get_u16(page, 10) as usize {
                    let at = PAGE_HEADER + ELEMENT * i;
                    let outside = || BoltError(format!("page {id}: element {i} outside the page"));
                    let element = page.get(at..at + ELEMENT).ok_or_else(outside)?;
                    let pos = at + get_u32(element, 0) as usize;
                    let key = page
                        .get(pos..pos + get_u32(element, 4) as usize)
                        .ok_or_else(outside)?;
                    let first = self.tree(get_u64(element, 8), depth + 1)?;
                    if first != key {
                        return Err(BoltError(format!(
                            "page {id}: element {i} does not name its child's first key"
                        )));
                    }
                    keys.push(key.to_vec());
                }
            }
            LEAF_PAGE => {
                let mut elements = Vec::new();
                super::leaf_elements(page, &mut elements)?;
                for (flags, key, value) in elements {
                    if flags & BUCKET_LEAF != 0 {
                        if value.len() < BUCKET_HEADER {
                            return Err(BoltError(format!("page {id}: bucket header too short")));
                        }
                        let root = get_u64(&value, 0);
                        if root != 0 {
                            self.tree(root, depth + 1)?;
                        }
                    }
                    keys.push(key);
                }
            }
            other => {
                return Err(BoltError(format!("page {id}: invalid type: {other:#x}")));
            }
        }
        if !keys.windows(2).all(|w| w[0] < w[1]) {
            return Err(BoltError(format!("page {id}: keys out of order")));
        }
        Ok(keys.into_iter().next().unwrap_or_default())
    }
}
