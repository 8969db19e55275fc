use super::*;

/// A snapshot `etcdctl snapshot save` wrote from Debian's etcd 3.4.23 after: put a 1, put a 2,
/// put b x, del b, lease grant 600, put leased l --lease, compact 3, put big (10000 `v`s),
/// user add root, role add r1, role grant-permission r1 read k1.
const ETCD_SNAPSHOT: &[u8] = include_bytes!("../testdata/etcd-3.4.23-snapshot.db");

fn sorted(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    for b in &mut buckets {
        b.pairs.sort();
    }
    buckets
}

/// Buckets that make every kind of page: inline buckets (empty, small), values spanning
/// overflow pages, and enough pairs for two levels of branch pages above the leaves.
fn varied_buckets() -> Vec<Bucket> {
    let mut big = Bucket::new("big");
    for (i, len) in [0usize, 1, 4000, 4081, 4096, 10_000, 100_000]
        .iter()
        .enumerate()
    {
        big.pairs
            .push((format!("v{i}").into_bytes(), vec![i as u8 + 1; *len]));
    }
    let mut many = Bucket::new("many");
    for i in 0..20_000u64 {
        many.pairs.push((
            i.to_be_bytes().to_vec(),
            format!("value {i:>20}").into_bytes(),
        ));
    }
    let small = Bucket {
        name: b"small".to_vec(),
        pairs: vec![
            (b"b".to_vec(), b"2".to_vec()),
            (b"a".to_vec(), b"1".to_vec()),
        ],
    };
    vec![small, big, Bucket::new("empty"), many]
}

#[test]
fn files_round_trip_with_inline_buckets_overflow_pages_and_deep_trees() {
    let buckets = varied_buckets();
    let file = write_db(&buckets, 9);
    check(&file).unwrap();
    assert_eq!(read_db(&file).unwrap(), sorted(buckets.clone()));
    // A trailing checksum (a snapshot file) is ignored.
    let mut with_sum = file.clone();
    with_sum.extend_from_slice(&[0xAB; 32]);
    assert_eq!(read_db(&with_sum).unwrap(), sorted(buckets));
    check(&with_sum).unwrap();

    // The many pairs need a branch page over branch pages.
    let root_page = &file[read_meta(&file).unwrap().root as usize * PAGE_SIZE..];
    let mut roots = Vec::new();
    leaf_elements(&root_page[..PAGE_SIZE], &mut roots).unwrap();
    let many_root = get_u64(&roots.iter().find(|e| e.1 == b"many").unwrap().2, 0);
    let many_page = &file[many_root as usize * PAGE_SIZE..];
    assert_eq!(get_u16(many_page, 8), BRANCH_PAGE);
    let child = get_u64(many_page, PAGE_HEADER + 8);
    assert_eq!(get_u16(&file[child as usize * PAGE_SIZE..], 8), BRANCH_PAGE);
    // Small and empty buckets are inline; the others have pages.
    for (_, name, value) in &roots {
        let inline = get_u64(value, 0) == 0;
        assert_eq!(inline, name == b"small" || name == b"empty", "{name:?}");
    }
}

#[test]
fn small_databases_take_four_pages() {
    let file = write_db(&[Bucket::new("a"), Bucket::new("b")], 1);
    assert_eq!(file.len(), 4 * PAGE_SIZE);
    check(&file).unwrap();
    let empty = write_db(&[], 1);
    check(&empty).unwrap();
    assert_eq!(read_db(&empty).unwrap(), vec![]);
}

#[test]
fn damaged_files_are_refused() {
    let file = write_db(&[Bucket::new("a")], 3);
    assert!(read_db(b"not a database").is_err());
    assert!(read_db(&vec![0u8; 3 * PAGE_SIZE]).is_err());
    // One damaged meta page: the other one serves.
    let mut one_bad = file.clone();
    one_bad[PAGE_HEADER + 20] ^= 1;
    assert_eq!(read_db(&one_bad).unwrap(), read_db(&file).unwrap());
    let mut both_bad = one_bad.clone();
    both_bad[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    let err = read_db(&both_bad).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // A root page pointing past the end.
    assert!(read_db(&file[..3 * PAGE_SIZE]).is_err());
}

#[test]
fn check_finds_damaged_pages() {
    let file = write_db(&varied_buckets(), 2);
    // A tree page that is neither a branch nor a leaf.
    let root = read_meta(&file).unwrap().root as usize;
    let mut bad_type = file.clone();
    bad_type[root * PAGE_SIZE + 8] = 0x20;
    let err = check(&bad_type).unwrap_err().to_string();
    assert!(err.contains("invalid type"), "{err}");
    // A branch naming the wrong child: that child is reached twice, another one never.
    let many_root = {
        let mut roots = Vec::new();
        leaf_elements(&file[root * PAGE_SIZE..(root + 1) * PAGE_SIZE], &mut roots).unwrap();
        get_u64(&roots.iter().find(|e| e.1 == b"many").unwrap().2, 0) as usize
    };
    let mut twice = file.clone();
    let at = many_root * PAGE_SIZE + PAGE_HEADER;
    let first_child = get_u64(&twice, at + 8);
    put_u64(&mut twice, at + ELEMENT + 8, first_child);
    assert!(check(&twice).is_err());
    // The status of a damaged file is etcdctl's integrity error.
    let err = status_of(&bad_type).unwrap_err().to_string();
    assert!(
        err.starts_with("snapshot file integrity check failed. 1 errors found.\n"),
        "{err}"
    );
}

#[test]
fn status_of_a_snapshot_saved_from_etcd() {
    check(ETCD_SNAPSHOT).unwrap();
    let names: Vec<_> = read_db(ETCD_SNAPSHOT)
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(&b.name).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "alarm",
            "auth",
            "authRoles",
            "authUsers",
            "cluster",
            "key",
            "lease",
            "members",
            "members_removed",
            "meta"
        ]
    );
    // `etcdctl snapshot status -w json` said
    // {"hash":382033196,"revision":7,"totalKey":14,"totalSize":40960}.
    assert_eq!(
        status_of(ETCD_SNAPSHOT).unwrap(),
        Status {
            hash: 382_033_196,
            revision: 7,
            total_key: 14,
            total_size: 40960
        }
    );
}

/// etcdctl's errors for files it cannot read.
#[test]
fn status_errors_are_etcdctls() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let message = |name: &str| status(path(name)).unwrap_err().to_string();
    let shown = |name: &str| path(name).display().to_string();
    assert_eq!(
        message("missing.db"),
        format!("stat {}: no such file or directory", shown("missing.db"))
    );
    std::fs::create_dir(path("dir.db")).unwrap();
    assert_eq!(
        message("dir.db"),
        format!("open {}: is a directory", shown("dir.db"))
    );
    std::fs::write(path("empty.db"), b"").unwrap();
    assert_eq!(
        message("empty.db"),
        format!("write {}: bad file descriptor", shown("empty.db"))
    );
    std::fs::write(path("hello.db"), b"hello\n").unwrap();
    assert_eq!(message("hello.db"), "invalid database");
    std::fs::write(path("zero.db"), vec![0u8; 100_000]).unwrap();
    assert_eq!(message("zero.db"), "invalid database");
    // One damaged meta page is fine, two are a checksum error.
    let mut file = ETCD_SNAPSHOT.to_vec();
    file[PAGE_HEADER + 20] ^= 1;
    std::fs::write(path("one.db"), &file).unwrap();
    assert_eq!(status(path("one.db")).unwrap().revision, 7);
    file[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    std::fs::write(path("two.db"), &file).unwrap();
    assert_eq!(message("two.db"), "checksum error");
}

/// `etcdctl snapshot status` computes what [`status`] does on our files (skipped without
/// etcdctl).
#[test]
fn etcdctl_agrees_on_status() {
    if std::process::Command::new("etcdctl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("etcdctl not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("etcd", ETCD_SNAPSHOT.to_vec()),
        ("varied", write_db(&varied_buckets(), 2)),
        ("small", write_db(&[Bucket::new("key")], 2)),
    ];
    for (name, file) in files {
        let path = dir.path().join(format!("{name}.db"));
        std::fs::write(&path, &file).unwrap();
        let out = std::process::Command::new("etcdctl")
            .args(["snapshot", "status", "-w", "fields"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = status(&path).unwrap();
        let want = format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            s.hash, s.revision, s.total_key, s.total_size
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{name}");
    }
}
