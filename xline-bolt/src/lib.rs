//! bbolt database files, the format of etcd's backend and of its snapshots.
//!
//! [`write_db`] builds a compact, valid file from top-level buckets of sorted pairs, and
//! [`read_db`] reads the buckets of any file bbolt wrote (etcd's own snapshots) or of ours.
//! [`check`] is bbolt's consistency check and [`status`] what `etcdctl snapshot status`
//! reports about a file. (xline-server's `bolt::etcd` maps etcd 3.4's bucket layout to xline's
//! tables and back.)
//!
//! # The format, as far as it is used here
//! The file is a sequence of pages of `page_size` bytes (4096 when written here). Every page
//! starts with a 16-byte header: its id (u64), flags (u16: branch 0x01, leaf 0x02, meta 0x04,
//! freelist 0x10), an element count (u16) and the number of pages it extends over beyond the
//! first (`overflow`, u32). All integers are little-endian.
//! - Pages 0 and 1 hold the meta: magic `0xED0CDAED`, version 2, the page size, flags, the root
//!   bucket (`root` page id, `sequence`), the freelist's page id, the high-water page id (the
//!   number of pages), the transaction id and a 64-bit FNV-1a checksum of the preceding fields.
//!   A reader takes the valid meta with the higher transaction id.
//! - A leaf page has `count` 16-byte elements (flags, pos, key size, value size; `pos` is the
//!   offset of the key from the element itself, the value follows the key), a branch page
//!   `count` 16-byte elements (pos, key size, child page id), each child's first key.
//! - A bucket is a leaf element with flag 0x01 whose value is a bucket header (its root page
//!   id, a sequence); when the root is 0 the bucket is inline: its single leaf page follows the
//!   header inside the value. The root bucket's buckets are the top-level buckets.
//! - The freelist page lists the free page ids (u64 each). Every page below the high-water
//!   mark must be reachable or free (`bbolt check`, run by `etcdctl snapshot status`).

mod status;
#[cfg(test)]
mod tests;

pub use status::{Status, StatusError, check, status, status_of};

/// The page size of the files written here (etcd's on Linux: the OS page size).
pub const PAGE_SIZE: usize = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
/// bbolt inlines a bucket whose page would take at most a quarter of a page.
const MAX_INLINE: usize = PAGE_SIZE / 4;
/// Offset of the checksum inside the meta (the checksum covers the bytes before it).
const META_CHECKSUM: usize = 56;
/// A tree deeper than this is a cycle or garbage (bbolt's trees are a few levels deep).
const MAX_DEPTH: usize = 32;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;

/// A file that is not a bbolt database, or a damaged one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bbolt file: {0}")]
pub struct BoltError(String);

fn err<T>(message: impl Into<String>) -> Result<T, BoltError> {
    Err(BoltError(message.into()))
}

/// A top-level bucket: its name and its pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's name.
    pub name: Vec<u8>,
    /// Its pairs (keys distinct; read back in key order).
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Bucket {
    /// An empty bucket.
    pub fn new(name: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            pairs: Vec::new(),
        }
    }
}

/// One leaf element to be written: flags, key, value.
type LeafElement<'a> = (u32, &'a [u8], &'a [u8]);

/// The size of a page holding `elements` (header, element headers, keys and values).
fn leaf_page_size(elements: &[LeafElement<'_>]) -> usize {
    PAGE_HEADER
        + elements
            .iter()
            .map(|(_, k, v)| ELEMENT + k.len() + v.len())
            .sum::<usize>()
}

/// The bytes of a page holding leaf elements (the id is filled in when placed).
fn leaf_page(elements: &[LeafElement<'_>]) -> Vec<u8> {
    let mut page = vec![0u8; leaf_page_size(elements)];
    put_u16(&mut page, 8, LEAF_PAGE);
    put_u16(&mut page, 10, element_count(elements.len()));
    let mut data = PAGE_HEADER + ELEMENT * elements.len();
    for (i, (flags, key, value)) in elements.iter().enumerate() {
        let at = PAGE_HEADER + ELEMENT * i;
        put_u32(&mut page, at, *flags);
        put_u32(&mut page, at + 4, offset_u32(data - at));
        put_u32(&mut page, at + 8, offset_u32(key.len()));
        put_u32(&mut page, at + 12, offset_u32(value.len()));
        page[data..data + key.len()].copy_from_slice(key);
        data += key.len();
        page[data..data + value.len()].copy_from_slice(value);
        data += value.len();
    }
    page
}

/// The bytes of a page of branch elements `(first key of the child, child page id)`.
fn branch_page(elements: &[(&[u8], u64)]) -> Vec<u8> {
    let size = PAGE_HEADER
        + elements
            .iter()
            .map(|(k, _)| ELEMENT + k.len())
            .sum::<usize>();
    let mut page = vec![0u8; size];
    put_u16(&mut page, 8, BRANCH_PAGE);
    put_u16(&mut page, 10, element_count(elements.len()));
    let mut data = PAGE_HEADER + ELEMENT * elements.len();
    for (i, (key, child)) in elements.iter().enumerate() {
        let at = PAGE_HEADER + ELEMENT * i;
        put_u32(&mut page, at, offset_u32(data - at));
        put_u32(&mut page, at + 4, offset_u32(key.len()));
        put_u64(&mut page, at + 8, *child);
        page[data..data + key.len()].copy_from_slice(key);
        data += key.len();
    }
    page
}

/// Pages are split well before 65535 elements (each takes 16 bytes of a 4 KiB page).
fn element_count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Offsets and sizes in a page are u32 (bbolt's limit for a key or value is below that).
fn offset_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Splits elements of `sizes` bytes into consecutive groups that fill pages: a group ends before
/// the element that would take it past one page (an element bigger than a page gets an overflow
/// page of its own). No elements give one empty group.
fn page_groups(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut used) = (0, PAGE_HEADER);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && used + size > PAGE_SIZE {
            groups.push(start..i);
            start = i;
            used = PAGE_HEADER;
        }
        used += size;
    }
    groups.push(start..sizes.len());
    groups
}

/// The file being built: pages appended in id order.
struct FileBuilder {
    file: Vec<u8>,
}

impl FileBuilder {
    fn next_id(&self) -> u64 {
        (self.file.len() / PAGE_SIZE) as u64
    }

    /// Places a page (of one or more page sizes), setting its id and overflow; returns its id.
    fn place(&mut self, mut page: Vec<u8>) -> u64 {
        let id = self.next_id();
        let pages = page.len().div_ceil(PAGE_SIZE).max(1);
        put_u64(&mut page, 0, id);
        put_u32(&mut page, 12, offset_u32(pages - 1));
        page.resize(pages * PAGE_SIZE, 0);
        self.file.extend_from_slice(&page);
        id
    }

    /// Writes the tree of sorted leaf elements; returns its root page id.
    fn tree(&mut self, elements: &[LeafElement<'_>]) -> u64 {
        let sizes: Vec<usize> = elements
            .iter()
            .map(|(_, k, v)| ELEMENT + k.len() + v.len())
            .collect();
        let mut level: Vec<(&[u8], u64)> = page_groups(&sizes)
            .into_iter()
            .map(|g| {
                let first = elements.get(g.start).map_or(&[][..], |e| e.1);
                (first, self.place(leaf_page(&elements[g])))
            })
            .collect();
        while level.len() > 1 {
            let sizes: Vec<usize> = level.iter().map(|(k, _)| ELEMENT + k.len()).collect();
            level = page_groups(&sizes)
                .into_iter()
                .map(|g| (level[g.start].0, self.place(branch_page(&level[g]))))
                .collect();
        }
        level.first().map_or(0, |(_, id)| *id)
    }
}

/// A bbolt file holding `buckets` as top-level buckets (buckets and pairs are sorted here; names
/// and keys must be distinct). Small buckets are inline, as bbolt stores them. `txid` is the
/// transaction id of meta page 0 (page 1 gets the one before, as in bbolt's `Tx.WriteTo`).
pub fn write_db(buckets: &[Bucket], txid: u64) -> Vec<u8> {
    let mut builder = FileBuilder {
        file: vec![0u8; 2 * PAGE_SIZE],
    };
    // An empty freelist: every page written is in use.
    let mut freelist = vec![0u8; PAGE_HEADER];
    put_u16(&mut freelist, 8, FREELIST_PAGE);
    let freelist_id = builder.place(freelist);

    let mut sorted: Vec<&Bucket> = buckets.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut values = Vec::with_capacity(sorted.len());
    for bucket in &sorted {
        let mut elements: Vec<LeafElement<'_>> = bucket
            .pairs
            .iter()
            .map(|(k, v)| (0, k.as_slice(), v.as_slice()))
            .collect();
        elements.sort_by(|a, b| a.1.cmp(b.1));
        let inline_size = leaf_page_size(&elements);
        let mut value = vec![0u8; BUCKET_HEADER];
        if inline_size <= MAX_INLINE {
            value.extend_from_slice(&leaf_page(&elements));
        } else {
            let root = builder.tree(&elements);
            put_u64(&mut value, 0, root);
        }
        values.push(value);
    }
    let root_elements: Vec<LeafElement<'_>> = sorted
        .iter()
        .zip(&values)
        .map(|(b, v)| (BUCKET_LEAF, b.name.as_slice(), v.as_slice()))
        .collect();
    let root = builder.tree(&root_elements);
    let high_water = builder.next_id();

    let mut file = builder.file;
    for (id, txid) in [(0u64, txid), (1, txid.saturating_sub(1))] {
        let at = id as usize * PAGE_SIZE;
        let page = &mut file[at..at + PAGE_SIZE];
        put_u64(page, 0, id);
        put_u16(page, 8, META_PAGE);
        let meta = &mut page[PAGE_HEADER..];
        put_u32(meta, 0, MAGIC);
        put_u32(meta, 4, VERSION);
        put_u32(meta, 8, offset_u32(PAGE_SIZE));
        put_u32(meta, 12, 0);
        put_u64(meta, 16, root);
        put_u64(meta, 24, 0);
        put_u64(meta, 32, freelist_id);
        put_u64(meta, 40, high_water);
        put_u64(meta, 48, txid);
        let sum = fnv64a(&meta[..META_CHECKSUM]);
        put_u64(meta, META_CHECKSUM, sum);
    }
    file
}

/// The top-level buckets of a bbolt file (trailing bytes after its pages, such as a snapshot's
/// checksum, are ignored), each with its pairs in key order.
pub fn read_db(file: &[u8]) -> Result<Vec<Bucket>, BoltError> {
    let meta = read_meta(file)?;
    let reader = Reader { file, meta };
    let mut roots = Vec::new();
    reader.walk(meta.root, 0, &mut roots)?;
    let mut buckets = Vec::with_capacity(roots.len());
    for (flags, name, value) in roots {
        if flags & BUCKET_LEAF == 0 {
            return err(format!(
                "{}{}",
                status::NOT_A_BUCKET,
                String::from_utf8_lossy(&name)
            ));
        }
        let mut elements = Vec::new();
        reader.bucket(&value, &mut elements)?;
        let mut pairs = Vec::with_capacity(elements.len());
        for (flags, key, value) in elements {
            if flags & BUCKET_LEAF != 0 {
                return err(format!(
                    "bucket {:?} holds a nested bucket (not used by etcd)",
                    String::from_utf8_lossy(&name)
                ));
            }
            pairs.push((key, value));
        }
        buckets.push(Bucket { name, pairs });
    }
    Ok(buckets)
}

/// The fields of a meta page that reading needs.
#[derive(Debug, Clone, Copy)]
struct Meta {
    page_size: usize,
    root: u64,
    high_water: u64,
    txid: u64,
}

/// The valid meta with the higher transaction id.
fn read_meta(file: &[u8]) -> Result<Meta, BoltError> {
    let parse = |at: usize| -> Result<Meta, BoltError> {
        let meta = file
            .get(at + PAGE_HEADER..at + PAGE_HEADER + META_CHECKSUM + 8)
            .ok_or_else(|| BoltError("too short for a meta page".into()))?;
        if get_u32(meta, 0) != MAGIC {
            return err("no bbolt magic in the meta page (not a bbolt file)");
        }
        if get_u32(meta, 4) != VERSION {
            return err(format!("version {} (want {VERSION})", get_u32(meta, 4)));
        }
        let sum = get_u64(meta, META_CHECKSUM);
        if sum != 0 && sum != fnv64a(&meta[..META_CHECKSUM]) {
            return err("meta checksum mismatch");
        }
        let page_size = get_u32(meta, 8) as usize;
        if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
            return err(format!("page size {page_size}"));
        }
        Ok(Meta {
            page_size,
            root: get_u64(meta, 16),
            high_water: get_u64(meta, 40),
            txid: get_u64(meta, 48),
        })
    };
    let first = parse(0);
    // Page 1 is one page size further; if page 0 is damaged, try the usual sizes.
    let sizes: Vec<usize> = match &first {
        Ok(m) => vec![m.page_size],
        Err(_) => vec![4096, 8192, 16384, 65536],
    };
    let second = sizes
        .into_iter()
        .map(&parse)
        .find(Result::is_ok)
        .unwrap_or_else(|| err("no valid second meta page"));
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
        (Err(e), Err(_)) => Err(e),
    }
}

struct Reader<'a> {
    file: &'a [u8],
    meta: Meta,
}

/// A leaf element read: flags, key, value.
type Element = (u32, Vec<u8>, Vec<u8>);

impl Reader<'_> {
    /// The bytes of page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<&[u8], BoltError> {
        if id < 2 || id >= self.meta.high_water {
            return err(format!(
                "page {id} out of range (high water {})",
                self.meta.high_water
            ));
        }
        let ps = self.meta.page_size;
        let at = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_mul(ps))
            .ok_or_else(|| BoltError(format!("page {id} out of range")))?;
        let head = self
            .file
            .get(at..at + PAGE_HEADER)
            .ok_or_else(|| BoltError(format!("page {id} beyond the end of the file")))?;
        if get_u64(head, 0) != id {
            return err(format!("page {id} says it is page {}", get_u64(head, 0)));
        }
        let len = (get_u32(head, 12) as usize + 1) * ps;
        self.file
            .get(at..at + len)
            .ok_or_else(|| BoltError(format!("page {id} beyond the end of the file")))
    }

    /// Appends the leaf elements of the tree rooted at page `id`, in key order.
    fn walk(&self, id: u64, depth: usize, out: &mut Vec<Element>) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return err("tree too deep (a cycle?)");
        }
        let page = self.page(id)?;
        match get_u16(page, 8) {
            BRANCH_PAGE => {
                for i in 0..get_u16(page, 10) as usize {
                    let at = PAGE_HEADER + ELEMENT * i;
                    let element = page
                        .get(at..at + ELEMENT)
                        .ok_or_else(|| BoltError(format!("page {id}: element {i} outside")))?;
                    self.walk(get_u64(element, 8), depth + 1, out)?;
                }
                Ok(())
            }
            LEAF_PAGE => leaf_elements(page, out),
            other => err(format!("page {id}: flags {other:#x}, not a branch or leaf")),
        }
    }

    /// Appends the pairs of the bucket whose header (and inline page) is `value`.
    fn bucket(&self, value: &[u8], out: &mut Vec<Element>) -> Result<(), BoltError> {
        if value.len() < BUCKET_HEADER {
            return err("bucket header too short");
        }
        match get_u64(value, 0) {
            0 => {
                let page = &value[BUCKET_HEADER..];
                if page.len() < PAGE_HEADER || get_u16(page, 8) != LEAF_PAGE {
                    return err("inline bucket without a leaf page");
                }
                leaf_elements(page, out)
            }
            root => self.walk(root, 0, out),
        }
    }
}

/// Appends the elements of the leaf page `page`.
fn leaf_elements(page: &[u8], out: &mut Vec<Element>) -> Result<(), BoltError> {
    let id = get_u64(page, 0);
    for i in 0..get_u16(page, 10) as usize {
        let at = PAGE_HEADER + ELEMENT * i;
        let outside = || BoltError(format!("page {id}: element {i} outside the page"));
        let element = page.get(at..at + ELEMENT).ok_or_else(outside)?;
        let key_at = at + get_u32(element, 4) as usize;
        let key_len = get_u32(element, 8) as usize;
        let value_len = get_u32(element, 12) as usize;
        let key = page.get(key_at..key_at + key_len).ok_or_else(outside)?;
        let value_at = key_at + key_len;
        let value = page
            .get(value_at..value_at + value_len)
            .ok_or_else(outside)?;
        out.push((get_u32(element, 0), key.to_vec(), value.to_vec()));
    }
    Ok(())
}

/// 64-bit FNV-1a, bbolt's meta checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Callers check `buf` holds `at + 2` bytes.
fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}
