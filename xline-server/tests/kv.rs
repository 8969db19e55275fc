//! KV API integration tests: Range, Put, DeleteRange, Txn, Compact and response headers,
//! driven through `etcd-client` against a spawned server process.
//!
//! Every expectation here is etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against
//! Debian's etcd, and without it to check our `xline` binary.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::{Kv, ServerOpts, TestServer, check_header, expect_status, keys, kv, kvs, to_kv};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const KEY_NOT_FOUND: &str = "etcdserver: key not found";
const KEY_NOT_PROVIDED: &str = "etcdserver: key is not provided";
const VALUE_PROVIDED: &str = "etcdserver: value is provided";
const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Puts `key = value` and asserts the response header says revision `rev`.
async fn put(c: &mut Client, key: &str, value: &str, rev: i64) {
    let r = c.put(key, value, None).await.unwrap();
    check_header(r.header(), rev);
    assert!(r.prev_key().is_none(), "no prev_kv unless asked for");
}

/// A Range with options; the response header must say revision `rev`.
async fn get(c: &mut Client, key: &str, opts: GetOptions, rev: i64) -> GetResponse {
    let r = c.get(key, Some(opts)).await.unwrap();
    check_header(r.header(), rev);
    r
}

/// (kvs, count, more) of a Range response.
fn res(r: &GetResponse) -> (Vec<Kv>, i64, bool) {
    (kvs(r.kvs()), r.count(), r.more())
}

/// Runs a Range and returns (kvs, count, more), checking the header revision.
async fn range(c: &mut Client, key: &str, opts: GetOptions, rev: i64) -> (Vec<Kv>, i64, bool) {
    res(&get(c, key, opts, rev).await)
}

/// Keys (in order), count and more of a Range.
async fn range_keys(
    c: &mut Client,
    key: &str,
    opts: GetOptions,
    rev: i64,
) -> (Vec<String>, i64, bool) {
    let r = get(c, key, opts, rev).await;
    (keys(r.kvs()), r.count(), r.more())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Evaluates one compare in an op-less txn; the store revision must stay `rev`.
async fn holds(c: &mut Client, cmp: Compare, rev: i64) -> bool {
    holds_all(c, vec![cmp], rev).await
}

/// Evaluates compares (AND-ed) in an op-less txn; the store revision must stay `rev`.
async fn holds_all(c: &mut Client, cmps: Vec<Compare>, rev: i64) -> bool {
    let r = c.txn(Txn::new().when(cmps)).await.unwrap();
    check_header(r.header(), rev);
    assert!(r.op_responses().is_empty());
    r.succeeded()
}

/// The current store revision (from a Range header).
async fn current_rev(c: &mut Client) -> i64 {
    let r = c.get("any", None).await.unwrap();
    r.header().unwrap().revision()
}

fn as_get(r: &TxnOpResponse) -> &GetResponse {
    match r {
        TxnOpResponse::Get(g) => g,
        other => panic!("expected a Range response, got {other:?}"),
    }
}

fn as_put(r: &TxnOpResponse) -> &etcd_client::PutResponse {
    match r {
        TxnOpResponse::Put(p) => p,
        other => panic!("expected a Put response, got {other:?}"),
    }
}

fn as_delete(r: &TxnOpResponse) -> &etcd_client::DeleteResponse {
    match r {
        TxnOpResponse::Delete(d) => d,
        other => panic!("expected a DeleteRange response, got {other:?}"),
    }
}

fn as_txn(r: &TxnOpResponse) -> &etcd_client::TxnResponse {
    match r {
        TxnOpResponse::Txn(t) => t,
        other => panic!("expected a Txn response, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Range
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn range_single_key() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;

    // A fresh store is at revision 1 and empty.
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 1).await,
        (vec![], 0, false)
    );

    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "2", 3).await;
    put(&mut c, "a", "11", 4).await;

    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 4).await,
        (vec![kv("a", "11", 2, 4, 2)], 1, false)
    );
    assert_eq!(
        range(&mut c, "b", GetOptions::new(), 4).await,
        (vec![kv("b", "2", 3, 3, 1)], 1, false)
    );
    // A missing key, and a key that is only a prefix of an existing one.
    assert_eq!(
        range(&mut c, "zz", GetOptions::new(), 4).await,
        (vec![], 0, false)
    );
    put(&mut c, "abc", "3", 5).await;
    assert_eq!(
        range(&mut c, "ab", GetOptions::new(), 5).await,
        (vec![], 0, false)
    );
    // Binary keys and values round-trip.
    let r = c
        .put(vec![0u8, 255, 1], vec![7u8, 0, 255], None)
        .await
        .unwrap();
    check_header(r.header(), 6);
    let r = c.get(vec![0u8, 255, 1], None).await.unwrap();
    check_header(r.header(), 6);
    assert_eq!(r.kvs().len(), 1);
    assert_eq!(r.kvs()[0].key(), &[0u8, 255, 1]);
    assert_eq!(r.kvs()[0].value(), &[7u8, 0, 255]);
    assert_eq!(r.kvs()[0].create_revision(), 6);
    // An empty value is a value.
    put(&mut c, "empty", "", 7).await;
    assert_eq!(
        range(&mut c, "empty", GetOptions::new(), 7).await,
        (vec![kv("empty", "", 7, 7, 1)], 1, false)
    );
}

/// Loads keys a, b, c, ca, d, foo, foo/a, foo/b, fop (revisions 2..=10 in that order).
async fn load_range_keys(c: &mut Client) {
    for (i, k) in ["a", "b", "c", "ca", "d", "foo", "foo/a", "foo/b", "fop"]
        .iter()
        .enumerate()
    {
        put(c, k, &format!("v-{k}"), i as i64 + 2).await;
    }
}

#[tokio::test]
async fn range_interval() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_range_keys(&mut c).await;

    // [a, c)
    assert_eq!(
        range(&mut c, "a", GetOptions::new().with_range("c"), 10).await,
        (
            vec![kv("a", "v-a", 2, 2, 1), kv("b", "v-b", 3, 3, 1)],
            2,
            false
        )
    );
    // [b, ca): c is in, ca is not
    assert_eq!(
        range_keys(&mut c, "b", GetOptions::new().with_range("ca"), 10).await,
        (strs(&["b", "c"]), 2, false)
    );
    // [c, d]: the end is exclusive
    assert_eq!(
        range_keys(&mut c, "c", GetOptions::new().with_range("d"), 10).await,
        (strs(&["c", "ca"]), 2, false)
    );
    // A range between existing keys.
    assert_eq!(
        range_keys(&mut c, "cb", GetOptions::new().with_range("cz"), 10).await,
        (vec![], 0, false)
    );
    // range_end before key: empty.
    assert_eq!(
        range_keys(&mut c, "d", GetOptions::new().with_range("a"), 10).await,
        (vec![], 0, false)
    );
}

#[tokio::test]
async fn range_prefix() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_range_keys(&mut c).await;

    assert_eq!(
        range(&mut c, "foo", GetOptions::new().with_prefix(), 10).await,
        (
            vec![
                kv("foo", "v-foo", 7, 7, 1),
                kv("foo/a", "v-foo/a", 8, 8, 1),
                kv("foo/b", "v-foo/b", 9, 9, 1),
            ],
            3,
            false
        )
    );
    assert_eq!(
        range_keys(&mut c, "foo/", GetOptions::new().with_prefix(), 10).await,
        (strs(&["foo/a", "foo/b"]), 2, false)
    );
    assert_eq!(
        range_keys(&mut c, "c", GetOptions::new().with_prefix(), 10).await,
        (strs(&["c", "ca"]), 2, false)
    );
    // The same prefix spelled out as a range end.
    assert_eq!(
        range_keys(&mut c, "fo", GetOptions::new().with_range("fp"), 10).await,
        (strs(&["foo", "foo/a", "foo/b", "fop"]), 4, false)
    );
    assert_eq!(
        range_keys(&mut c, "x", GetOptions::new().with_prefix(), 10).await,
        (vec![], 0, false)
    );
}

#[tokio::test]
async fn range_from_key_and_all_keys() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_range_keys(&mut c).await;
    let all = strs(&["a", "b", "c", "ca", "d", "foo", "foo/a", "foo/b", "fop"]);

    // from-key: range_end "\0"
    assert_eq!(
        range_keys(&mut c, "d", GetOptions::new().with_from_key(), 10).await,
        (strs(&["d", "foo", "foo/a", "foo/b", "fop"]), 5, false)
    );
    assert_eq!(
        range_keys(&mut c, "foo/b", GetOptions::new().with_range(vec![0u8]), 10).await,
        (strs(&["foo/b", "fop"]), 2, false)
    );
    assert_eq!(
        range_keys(&mut c, "g", GetOptions::new().with_from_key(), 10).await,
        (vec![], 0, false)
    );
    // all keys: key "\0", range_end "\0"
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), 10).await,
        (all.clone(), 9, false)
    );
    let r = c
        .get(vec![0u8], Some(GetOptions::new().with_range(vec![0u8])))
        .await
        .unwrap();
    check_header(r.header(), 10);
    assert_eq!((keys(r.kvs()), r.count(), r.more()), (all, 9, false));
    // all keys at an older revision
    assert_eq!(
        range_keys(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_revision(4),
            10
        )
        .await,
        (strs(&["a", "b", "c"]), 3, false)
    );
}

#[tokio::test]
async fn range_limit_more_and_count() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    for i in 1..=5 {
        put(&mut c, &format!("k{i}"), &format!("v{i}"), i + 1).await;
    }
    let all = GetOptions::new().with_prefix();

    assert_eq!(
        range(&mut c, "k", all.clone().with_limit(2), 6).await,
        (
            vec![kv("k1", "v1", 2, 2, 1), kv("k2", "v2", 3, 3, 1)],
            5,
            true
        )
    );
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(1), 6).await,
        (strs(&["k1"]), 5, true)
    );
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(4), 6).await,
        (strs(&["k1", "k2", "k3", "k4"]), 5, true)
    );
    // limit == number of keys: no more
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(5), 6).await,
        (strs(&["k1", "k2", "k3", "k4", "k5"]), 5, false)
    );
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(100), 6).await,
        (strs(&["k1", "k2", "k3", "k4", "k5"]), 5, false)
    );
    // limit 0 is no limit
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(0), 6).await,
        (strs(&["k1", "k2", "k3", "k4", "k5"]), 5, false)
    );
    // limit on a sub-range: count is the sub-range's size
    assert_eq!(
        range_keys(
            &mut c,
            "k2",
            GetOptions::new().with_range("k5").with_limit(2),
            6
        )
        .await,
        (strs(&["k2", "k3"]), 3, true)
    );
    // limit on a single key
    assert_eq!(
        range_keys(&mut c, "k3", GetOptions::new().with_limit(1), 6).await,
        (strs(&["k3"]), 1, false)
    );

    // Deleted keys do not count; limit with a historical revision.
    let d = c.delete("k2", None).await.unwrap();
    check_header(d.header(), 7);
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(2), 7).await,
        (strs(&["k1", "k3"]), 4, true)
    );
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(2).with_revision(6), 7).await,
        (strs(&["k1", "k2"]), 5, true)
    );
    assert_eq!(
        range_keys(&mut c, "k", all.clone().with_limit(2).with_revision(3), 7).await,
        (strs(&["k1", "k2"]), 2, false)
    );
}

#[tokio::test]
async fn range_at_revision() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "1", 3).await;
    put(&mut c, "a", "2", 4).await;
    let d = c.delete("a", None).await.unwrap();
    check_header(d.header(), 5);
    put(&mut c, "c", "1", 6).await;
    put(&mut c, "a", "3", 7).await;

    let at = |rev: i64| GetOptions::new().with_revision(rev);
    // Historical reads answer with the current revision in the header.
    assert_eq!(range(&mut c, "a", at(1), 7).await, (vec![], 0, false)); // before it existed
    assert_eq!(
        range(&mut c, "a", at(2), 7).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    assert_eq!(
        range(&mut c, "a", at(3), 7).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    assert_eq!(
        range(&mut c, "a", at(4), 7).await,
        (vec![kv("a", "2", 2, 4, 2)], 1, false)
    );
    assert_eq!(range(&mut c, "a", at(5), 7).await, (vec![], 0, false)); // deleted
    assert_eq!(range(&mut c, "a", at(6), 7).await, (vec![], 0, false));
    assert_eq!(
        range(&mut c, "a", at(7), 7).await,
        (vec![kv("a", "3", 7, 7, 1)], 1, false) // re-created: new create_revision, version 1
    );
    // revision 0 means the current one
    assert_eq!(
        range(&mut c, "a", at(0), 7).await,
        (vec![kv("a", "3", 7, 7, 1)], 1, false)
    );
    // whole key space at several revisions
    let all_at = |rev: i64| GetOptions::new().with_all_keys().with_revision(rev);
    assert_eq!(range(&mut c, "", all_at(1), 7).await, (vec![], 0, false));
    assert_eq!(
        range(&mut c, "", all_at(3), 7).await,
        (vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)], 2, false)
    );
    assert_eq!(
        range(&mut c, "", all_at(5), 7).await,
        (vec![kv("b", "1", 3, 3, 1)], 1, false)
    );
    assert_eq!(
        range(&mut c, "", all_at(6), 7).await,
        (vec![kv("b", "1", 3, 3, 1), kv("c", "1", 6, 6, 1)], 2, false)
    );
    assert_eq!(
        range(&mut c, "", all_at(7), 7).await,
        (
            vec![
                kv("a", "3", 7, 7, 1),
                kv("b", "1", 3, 3, 1),
                kv("c", "1", 6, 6, 1)
            ],
            3,
            false
        )
    );
    // A future revision is an error.
    expect_status(c.get("a", Some(at(8))).await, Code::OutOfRange, FUTURE_REV);
    expect_status(
        c.get(
            "a",
            Some(GetOptions::new().with_all_keys().with_revision(100)),
        )
        .await,
        Code::OutOfRange,
        FUTURE_REV,
    );
}

/// Final state (revision 11):
/// a = v3 (create 5, mod 10, version 2), b = v1 (3, 9, 4), c = v4 (4, 4, 1), d = v2 (2, 11, 3).
/// Orders: key a b c d; version c a d b; create d b c a; mod c b a d; value b d a c.
async fn load_sort_keys(c: &mut Client) {
    put(c, "d", "d1", 2).await;
    put(c, "b", "b1", 3).await;
    put(c, "c", "v4", 4).await;
    put(c, "a", "a1", 5).await;
    put(c, "b", "b2", 6).await;
    put(c, "d", "d2", 7).await;
    put(c, "b", "b3", 8).await;
    put(c, "b", "v1", 9).await;
    put(c, "a", "v3", 10).await;
    put(c, "d", "v2", 11).await;
}

#[tokio::test]
async fn range_sort() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_sort_keys(&mut c).await;
    let a = kv("a", "v3", 5, 10, 2);
    let b = kv("b", "v1", 3, 9, 4);
    let cc = kv("c", "v4", 4, 4, 1);
    let d = kv("d", "v2", 2, 11, 3);

    let sorted = |t: SortTarget, o: SortOrder| GetOptions::new().with_all_keys().with_sort(t, o);
    let cases: Vec<(SortTarget, SortOrder, [&str; 4])> = vec![
        // (KEY, ASCEND is sent as NONE by etcd-client: the natural order)
        (SortTarget::Key, SortOrder::Ascend, ["a", "b", "c", "d"]),
        (SortTarget::Key, SortOrder::Descend, ["d", "c", "b", "a"]),
        (SortTarget::Key, SortOrder::None, ["a", "b", "c", "d"]),
        (SortTarget::Version, SortOrder::Ascend, ["c", "a", "d", "b"]),
        (
            SortTarget::Version,
            SortOrder::Descend,
            ["b", "d", "a", "c"],
        ),
        (SortTarget::Create, SortOrder::Ascend, ["d", "b", "c", "a"]),
        (SortTarget::Create, SortOrder::Descend, ["a", "c", "b", "d"]),
        (SortTarget::Mod, SortOrder::Ascend, ["c", "b", "a", "d"]),
        (SortTarget::Mod, SortOrder::Descend, ["d", "a", "b", "c"]),
        (SortTarget::Value, SortOrder::Ascend, ["b", "d", "a", "c"]),
        (SortTarget::Value, SortOrder::Descend, ["c", "a", "d", "b"]),
        // A target other than KEY with order NONE sorts ascending by that target.
        (SortTarget::Version, SortOrder::None, ["c", "a", "d", "b"]),
        (SortTarget::Create, SortOrder::None, ["d", "b", "c", "a"]),
        (SortTarget::Mod, SortOrder::None, ["c", "b", "a", "d"]),
        (SortTarget::Value, SortOrder::None, ["b", "d", "a", "c"]),
    ];
    for (target, order, want) in cases {
        let got = range_keys(&mut c, "", sorted(target, order), 11).await;
        assert_eq!(got, (strs(&want), 4, false), "sort {target:?} {order:?}");
    }

    // Full key-values come back sorted too.
    assert_eq!(
        range(&mut c, "", sorted(SortTarget::Mod, SortOrder::Descend), 11).await,
        (vec![d.clone(), a.clone(), b.clone(), cc.clone()], 4, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            sorted(SortTarget::Version, SortOrder::Ascend),
            11
        )
        .await,
        (vec![cc.clone(), a.clone(), d.clone(), b.clone()], 4, false)
    );

    // Sorting happens before the limit is applied.
    assert_eq!(
        range(
            &mut c,
            "",
            sorted(SortTarget::Version, SortOrder::Descend).with_limit(2),
            11
        )
        .await,
        (vec![b.clone(), d.clone()], 4, true)
    );
    assert_eq!(
        range_keys(
            &mut c,
            "",
            sorted(SortTarget::Key, SortOrder::Descend).with_limit(3),
            11
        )
        .await,
        (strs(&["d", "c", "b"]), 4, true)
    );
    assert_eq!(
        range_keys(
            &mut c,
            "",
            sorted(SortTarget::Value, SortOrder::None).with_limit(1),
            11
        )
        .await,
        (strs(&["b"]), 4, true)
    );
    assert_eq!(
        range_keys(
            &mut c,
            "",
            sorted(SortTarget::Create, SortOrder::Ascend).with_limit(4),
            11
        )
        .await,
        (strs(&["d", "b", "c", "a"]), 4, false)
    );
    // Sorting a sub-range, and sorting at a historical revision
    // (at revision 6: a(create 5, version 1), b(create 3, version 2), c(create 4), d(create 2)).
    assert_eq!(
        range_keys(
            &mut c,
            "b",
            GetOptions::new()
                .with_range("d")
                .with_sort(SortTarget::Mod, SortOrder::Descend),
            11
        )
        .await,
        (strs(&["b", "c"]), 2, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            sorted(SortTarget::Version, SortOrder::Descend)
                .with_revision(6)
                .with_limit(1),
            11
        )
        .await,
        (vec![kv("b", "b2", 3, 6, 2)], 4, true)
    );
}

#[tokio::test]
async fn range_serializable() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "2", 3).await;
    put(&mut c, "a", "3", 4).await;

    assert_eq!(
        range(&mut c, "a", GetOptions::new().with_serializable(), 4).await,
        (vec![kv("a", "3", 2, 4, 2)], 1, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_serializable(),
            4
        )
        .await,
        (vec![kv("a", "3", 2, 4, 2), kv("b", "2", 3, 3, 1)], 2, false)
    );
    assert_eq!(
        range(
            &mut c,
            "a",
            GetOptions::new().with_serializable().with_revision(2),
            4
        )
        .await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    assert_eq!(
        range(&mut c, "zz", GetOptions::new().with_serializable(), 4).await,
        (vec![], 0, false)
    );
}

#[tokio::test]
async fn range_keys_only_and_count_only() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "22", 3).await;
    put(&mut c, "c", "333", 4).await;
    put(&mut c, "b", "4444", 5).await;

    // keys_only: values are empty, everything else is kept.
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_keys_only(),
            5
        )
        .await,
        (
            vec![
                kv("a", "", 2, 2, 1),
                kv("b", "", 3, 5, 2),
                kv("c", "", 4, 4, 1)
            ],
            3,
            false
        )
    );
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new()
                .with_all_keys()
                .with_keys_only()
                .with_limit(1),
            5
        )
        .await,
        (vec![kv("a", "", 2, 2, 1)], 3, true)
    );
    assert_eq!(
        range(
            &mut c,
            "b",
            GetOptions::new().with_keys_only().with_revision(3),
            5
        )
        .await,
        (vec![kv("b", "", 3, 3, 1)], 1, false)
    );

    // count_only: no key-values, only the count; `more` stays false even with a limit.
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_count_only(),
            5
        )
        .await,
        (vec![], 3, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new()
                .with_all_keys()
                .with_count_only()
                .with_limit(1),
            5
        )
        .await,
        (vec![], 3, false)
    );
    assert_eq!(
        range(
            &mut c,
            "a",
            GetOptions::new().with_range("c").with_count_only(),
            5
        )
        .await,
        (vec![], 2, false)
    );
    assert_eq!(
        range(&mut c, "zz", GetOptions::new().with_count_only(), 5).await,
        (vec![], 0, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new()
                .with_all_keys()
                .with_count_only()
                .with_revision(3),
            5
        )
        .await,
        (vec![], 2, false)
    );
}

/// Final state (revision 7): a (create 2, mod 5), b (3, 7), c (4, 4), d (6, 6).
async fn load_filter_keys(c: &mut Client) {
    put(c, "a", "a1", 2).await;
    put(c, "b", "b1", 3).await;
    put(c, "c", "c1", 4).await;
    put(c, "a", "a2", 5).await;
    put(c, "d", "d1", 6).await;
    put(c, "b", "b2", 7).await;
}

#[tokio::test]
async fn range_revision_filters() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_filter_keys(&mut c).await;
    let all = || GetOptions::new().with_all_keys();
    let a = kv("a", "a2", 2, 5, 2);
    let b = kv("b", "b2", 3, 7, 2);
    let cc = kv("c", "c1", 4, 4, 1);
    let d = kv("d", "d1", 6, 6, 1);

    // Filters drop key-values but `count` stays the size of the whole range.
    assert_eq!(
        range(&mut c, "", all().with_min_mod_revision(5), 7).await,
        (vec![a.clone(), b.clone(), d.clone()], 4, false)
    );
    assert_eq!(
        range(&mut c, "", all().with_max_mod_revision(5), 7).await,
        (vec![a.clone(), cc.clone()], 4, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_min_mod_revision(5).with_max_mod_revision(6),
            7
        )
        .await,
        (vec![a.clone(), d.clone()], 4, false)
    );
    assert_eq!(
        range(&mut c, "", all().with_min_create_revision(3), 7).await,
        (vec![b.clone(), cc.clone(), d.clone()], 4, false)
    );
    assert_eq!(
        range(&mut c, "", all().with_max_create_revision(3), 7).await,
        (vec![a.clone(), b.clone()], 4, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            all()
                .with_min_create_revision(3)
                .with_max_create_revision(4),
            7
        )
        .await,
        (vec![b.clone(), cc.clone()], 4, false)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_min_mod_revision(5).with_min_create_revision(3),
            7
        )
        .await,
        (vec![b.clone(), d.clone()], 4, false)
    );
    // Bounds are inclusive.
    assert_eq!(
        range_keys(
            &mut c,
            "",
            all().with_min_mod_revision(7).with_max_mod_revision(7),
            7
        )
        .await,
        (strs(&["b"]), 4, false)
    );
    // Nothing passes.
    assert_eq!(
        range(&mut c, "", all().with_min_mod_revision(8), 7).await,
        (vec![], 4, false)
    );

    // With a limit: the limit applies after filtering; `more` says whether filtered
    // key-values were left out; `count` is still the whole range.
    assert_eq!(
        range(&mut c, "", all().with_min_mod_revision(5).with_limit(2), 7).await,
        (vec![a.clone(), b.clone()], 4, true)
    );
    assert_eq!(
        range(&mut c, "", all().with_min_mod_revision(5).with_limit(3), 7).await,
        (vec![a.clone(), b.clone(), d.clone()], 4, false)
    );
    assert_eq!(
        range(&mut c, "", all().with_max_mod_revision(5).with_limit(1), 7).await,
        (vec![a.clone()], 4, true)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_min_create_revision(4).with_limit(1),
            7
        )
        .await,
        (vec![cc.clone()], 4, true)
    );
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_min_create_revision(4).with_limit(2),
            7
        )
        .await,
        (vec![cc.clone(), d.clone()], 4, false)
    );
    // With sort and limit.
    assert_eq!(
        range(
            &mut c,
            "",
            all()
                .with_min_mod_revision(5)
                .with_sort(SortTarget::Mod, SortOrder::Descend)
                .with_limit(2),
            7
        )
        .await,
        (vec![b.clone(), d.clone()], 4, true)
    );
    // With count_only: the count ignores the filters.
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_min_mod_revision(7).with_count_only(),
            7
        )
        .await,
        (vec![], 4, false)
    );
    // With keys_only.
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_max_create_revision(2).with_keys_only(),
            7
        )
        .await,
        (vec![kv("a", "", 2, 5, 2)], 4, false)
    );
    // At a historical revision (revision 5: a (2, 5), b (3, 3), c (4, 4)).
    assert_eq!(
        range(
            &mut c,
            "",
            all().with_revision(5).with_min_mod_revision(4),
            7
        )
        .await,
        (
            vec![kv("a", "a2", 2, 5, 2), kv("c", "c1", 4, 4, 1)],
            3,
            false
        )
    );
    // On a sub-range.
    assert_eq!(
        range(
            &mut c,
            "b",
            GetOptions::new().with_range("d").with_max_mod_revision(5),
            7
        )
        .await,
        (vec![cc.clone()], 2, false)
    );
}

// ---------------------------------------------------------------------------------------------
// Put
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_revisions_and_versions() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 2).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    put(&mut c, "a", "2", 3).await;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 3).await,
        (vec![kv("a", "2", 2, 3, 2)], 1, false)
    );
    // The same value again is still a new revision and version.
    put(&mut c, "a", "2", 4).await;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 4).await,
        (vec![kv("a", "2", 2, 4, 3)], 1, false)
    );
    put(&mut c, "b", "x", 5).await;
    let d = c.delete("a", None).await.unwrap();
    check_header(d.header(), 6);
    assert_eq!(d.deleted(), 1);
    // Re-created after delete: new create_revision, version starts over.
    put(&mut c, "a", "3", 7).await;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 7).await,
        (vec![kv("a", "3", 7, 7, 1)], 1, false)
    );
    put(&mut c, "a", "4", 8).await;
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 8).await,
        (vec![kv("a", "4", 7, 8, 2), kv("b", "x", 5, 5, 1)], 2, false)
    );
    // An empty value is allowed.
    put(&mut c, "a", "", 9).await;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 9).await,
        (vec![kv("a", "", 7, 9, 3)], 1, false)
    );
}

#[tokio::test]
async fn put_prev_kv() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let r = c
        .put("a", "1", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    check_header(r.header(), 2);
    assert!(r.prev_key().is_none(), "no prev_kv for a new key");

    let r = c
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    check_header(r.header(), 3);
    assert_eq!(r.prev_key().map(to_kv), Some(kv("a", "1", 2, 2, 1)));

    let r = c.put("a", "3", None).await.unwrap();
    check_header(r.header(), 4);
    assert!(r.prev_key().is_none(), "prev_kv only when asked");

    let r = c
        .put("a", "4", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    check_header(r.header(), 5);
    assert_eq!(r.prev_key().map(to_kv), Some(kv("a", "3", 2, 4, 3)));

    // After a delete there is no previous key-value.
    c.delete("a", None).await.unwrap();
    let r = c
        .put("a", "5", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    check_header(r.header(), 7);
    assert!(r.prev_key().is_none());
}

#[tokio::test]
async fn put_ignore_value_and_ignore_lease() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;

    // ignore_value keeps the value but is a new revision and version.
    let r = c
        .put(
            "a",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .unwrap();
    check_header(r.header(), 3);
    assert_eq!(r.prev_key().map(to_kv), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 3).await,
        (vec![kv("a", "1", 2, 3, 2)], 1, false)
    );

    // ignore_lease on a key without a lease: new value, still no lease.
    let r = c
        .put("a", "2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    check_header(r.header(), 4);
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 4).await,
        (vec![kv("a", "2", 2, 4, 3)], 1, false)
    );
    // both
    let r = c
        .put(
            "a",
            "",
            Some(PutOptions::new().with_ignore_lease().with_ignore_value()),
        )
        .await
        .unwrap();
    check_header(r.header(), 5);
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 5).await,
        (vec![kv("a", "2", 2, 5, 4)], 1, false)
    );

    // On a missing key both need a previous key-value.
    expect_status(
        c.put("zz", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        KEY_NOT_FOUND,
    );
    expect_status(
        c.put("zz", "v", Some(PutOptions::new().with_ignore_lease()))
            .await,
        Code::InvalidArgument,
        KEY_NOT_FOUND,
    );
    // Also on a deleted key.
    put(&mut c, "gone", "x", 6).await;
    c.delete("gone", None).await.unwrap();
    expect_status(
        c.put("gone", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        KEY_NOT_FOUND,
    );
    // The failed puts did not change anything.
    assert_eq!(
        range(&mut c, "zz", GetOptions::new(), 7).await,
        (vec![], 0, false)
    );
    assert_eq!(
        range(&mut c, "gone", GetOptions::new(), 7).await,
        (vec![], 0, false)
    );
}

#[tokio::test]
async fn put_errors() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;

    // a value with ignore_value
    expect_status(
        c.put("a", "x", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        VALUE_PROVIDED,
    );
    // a lease with ignore_lease
    expect_status(
        c.put(
            "a",
            "x",
            Some(PutOptions::new().with_ignore_lease().with_lease(123)),
        )
        .await,
        Code::InvalidArgument,
        LEASE_PROVIDED,
    );
    // an empty key
    expect_status(
        c.put("", "x", None).await,
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
    );
    expect_status(
        c.get("", None).await,
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
    );
    expect_status(
        c.delete("", None).await,
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
    );
    // a lease that does not exist
    expect_status(
        c.put("a", "x", Some(PutOptions::new().with_lease(0x1234_5678)))
            .await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
    expect_status(
        c.put("new", "x", Some(PutOptions::new().with_lease(42)))
            .await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
    // None of them changed the store.
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 2).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    put(&mut c, "a", "2", 3).await;
}

#[tokio::test]
async fn put_with_lease() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let lease = c.lease_grant(600, None).await.unwrap();
    let id = lease.id();
    assert_ne!(id, 0);

    let r = c
        .put("a", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    check_header(r.header(), 2);
    let mut want = kv("a", "1", 2, 2, 1);
    want.lease = id;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 2).await,
        (vec![want], 1, false)
    );

    // ignore_lease keeps the key's lease.
    let r = c
        .put("a", "2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    check_header(r.header(), 3);
    let mut want = kv("a", "2", 2, 3, 2);
    want.lease = id;
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 3).await,
        (vec![want], 1, false)
    );

    // ignore_value alone does not keep the lease: the key is detached from it.
    let r = c
        .put("a", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap();
    check_header(r.header(), 4);
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 4).await,
        (vec![kv("a", "2", 2, 4, 3)], 1, false)
    );

    // A plain put detaches the lease too.
    c.put("b", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    put(&mut c, "b", "2", 6).await;
    assert_eq!(
        range(&mut c, "b", GetOptions::new(), 6).await,
        (vec![kv("b", "2", 5, 6, 2)], 1, false)
    );

    // Txn compares on LEASE.
    c.put("l", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    assert!(holds(&mut c, Compare::lease("l", CompareOp::Equal, id), 7).await);
    assert!(!holds(&mut c, Compare::lease("l", CompareOp::NotEqual, id), 7).await);
    assert!(holds(&mut c, Compare::lease("l", CompareOp::Greater, id - 1), 7).await);
    assert!(holds(&mut c, Compare::lease("l", CompareOp::Less, id + 1), 7).await);
    assert!(!holds(&mut c, Compare::lease("l", CompareOp::Equal, 0), 7).await);
    assert!(holds(&mut c, Compare::lease("b", CompareOp::Equal, 0), 7).await);

    // Revoking the lease deletes its keys.
    c.lease_revoke(id).await.unwrap();
    let r = c.get("l", None).await.unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.header().unwrap().revision(), 8);
    expect_status(
        c.put("x", "1", Some(PutOptions::new().with_lease(id)))
            .await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
}

// ---------------------------------------------------------------------------------------------
// DeleteRange
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_single_and_missing() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "2", 3).await;

    let d = c.delete("a", None).await.unwrap();
    check_header(d.header(), 4);
    assert_eq!(d.deleted(), 1);
    assert!(d.prev_kvs().is_empty(), "prev_kvs only when asked");
    assert_eq!(
        range(&mut c, "a", GetOptions::new(), 4).await,
        (vec![], 0, false)
    );

    // Deleting a missing key (or a deleted one) does not bump the revision.
    for key in ["a", "nope"] {
        let d = c
            .delete(key, Some(DeleteOptions::new().with_prev_key()))
            .await
            .unwrap();
        check_header(d.header(), 4);
        assert_eq!(d.deleted(), 0);
        assert!(d.prev_kvs().is_empty());
    }
    let d = c
        .delete("x", Some(DeleteOptions::new().with_range("z")))
        .await
        .unwrap();
    check_header(d.header(), 4);
    assert_eq!(d.deleted(), 0);
    // ... and the next write takes the very next revision.
    put(&mut c, "c", "3", 5).await;
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 5).await,
        (vec![kv("b", "2", 3, 3, 1), kv("c", "3", 5, 5, 1)], 2, false)
    );
    // The deleted key is still visible at older revisions.
    assert_eq!(
        range(&mut c, "a", GetOptions::new().with_revision(3), 5).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
}

#[tokio::test]
async fn delete_range_prefix_from_key_all() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    load_range_keys(&mut c).await; // a b c ca d foo foo/a foo/b fop at revisions 2..=10

    // [b, d): one revision for all deleted keys
    let d = c
        .delete(
            "b",
            Some(DeleteOptions::new().with_range("d").with_prev_key()),
        )
        .await
        .unwrap();
    check_header(d.header(), 11);
    assert_eq!(d.deleted(), 3);
    assert_eq!(
        kvs(d.prev_kvs()),
        vec![
            kv("b", "v-b", 3, 3, 1),
            kv("c", "v-c", 4, 4, 1),
            kv("ca", "v-ca", 5, 5, 1)
        ]
    );
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), 11).await,
        (strs(&["a", "d", "foo", "foo/a", "foo/b", "fop"]), 6, false)
    );

    // prefix "foo/"
    let d = c
        .delete("foo/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    check_header(d.header(), 12);
    assert_eq!(d.deleted(), 2);
    assert!(d.prev_kvs().is_empty());
    // prefix "foo" (only foo itself is left under it)
    let d = c
        .delete(
            "foo",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    check_header(d.header(), 13);
    assert_eq!(d.deleted(), 1);
    assert_eq!(kvs(d.prev_kvs()), vec![kv("foo", "v-foo", 7, 7, 1)]);
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), 13).await,
        (strs(&["a", "d", "fop"]), 3, false)
    );

    // from-key "d"
    let d = c
        .delete("d", Some(DeleteOptions::new().with_from_key()))
        .await
        .unwrap();
    check_header(d.header(), 14);
    assert_eq!(d.deleted(), 2);
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), 14).await,
        (strs(&["a"]), 1, false)
    );

    // all keys
    put(&mut c, "z", "1", 15).await;
    let d = c
        .delete(
            "",
            Some(DeleteOptions::new().with_all_keys().with_prev_key()),
        )
        .await
        .unwrap();
    check_header(d.header(), 16);
    assert_eq!(d.deleted(), 2);
    assert_eq!(
        kvs(d.prev_kvs()),
        vec![kv("a", "v-a", 2, 2, 1), kv("z", "1", 15, 15, 1)]
    );
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 16).await,
        (vec![], 0, false)
    );
    // History is intact.
    assert_eq!(
        range_keys(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_revision(11),
            16
        )
        .await,
        (strs(&["a", "d", "foo", "foo/a", "foo/b", "fop"]), 6, false)
    );
    assert_eq!(
        range_keys(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_revision(10),
            16
        )
        .await,
        (
            strs(&["a", "b", "c", "ca", "d", "foo", "foo/a", "foo/b", "fop"]),
            9,
            false
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Txn
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn txn_compare_value() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "abc", 2).await;
    put(&mut c, "e", "", 3).await;
    let r = 3;
    use CompareOp::*;

    assert!(holds(&mut c, Compare::value("a", Equal, "abc"), r).await);
    assert!(!holds(&mut c, Compare::value("a", Equal, "abd"), r).await);
    assert!(!holds(&mut c, Compare::value("a", NotEqual, "abc"), r).await);
    assert!(holds(&mut c, Compare::value("a", NotEqual, "ab"), r).await);
    assert!(holds(&mut c, Compare::value("a", Greater, "abb"), r).await);
    assert!(holds(&mut c, Compare::value("a", Greater, "ab"), r).await); // longer is greater
    assert!(!holds(&mut c, Compare::value("a", Greater, "abc"), r).await);
    assert!(!holds(&mut c, Compare::value("a", Greater, "b"), r).await);
    assert!(holds(&mut c, Compare::value("a", Less, "abd"), r).await);
    assert!(holds(&mut c, Compare::value("a", Less, "abca"), r).await);
    assert!(!holds(&mut c, Compare::value("a", Less, "abc"), r).await);
    // An empty value compares as a value.
    assert!(holds(&mut c, Compare::value("e", Equal, ""), r).await);
    assert!(holds(&mut c, Compare::value("e", Less, "a"), r).await);
    // VALUE compares on a missing key always fail, whatever the operator.
    assert!(!holds(&mut c, Compare::value("zz", Equal, ""), r).await);
    assert!(!holds(&mut c, Compare::value("zz", NotEqual, "x"), r).await);
    assert!(!holds(&mut c, Compare::value("zz", Less, "x"), r).await);
    assert!(!holds(&mut c, Compare::value("zz", Greater, ""), r).await);
    // All compares must hold.
    assert!(
        holds_all(
            &mut c,
            vec![
                Compare::value("a", Equal, "abc"),
                Compare::value("e", Equal, "")
            ],
            r
        )
        .await
    );
    assert!(
        !holds_all(
            &mut c,
            vec![
                Compare::value("a", Equal, "abc"),
                Compare::value("e", Equal, "x")
            ],
            r
        )
        .await
    );
    // No compares at all: success.
    assert!(holds_all(&mut c, vec![], r).await);
}

#[tokio::test]
async fn txn_compare_version_create_mod() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "x", "0", 2).await;
    put(&mut c, "a", "1", 3).await; // a: create 3
    put(&mut c, "a", "2", 4).await; // a: mod 4, version 2
    let r = 4;
    use CompareOp::*;

    // VERSION
    assert!(holds(&mut c, Compare::version("a", Equal, 2), r).await);
    assert!(!holds(&mut c, Compare::version("a", Equal, 1), r).await);
    assert!(holds(&mut c, Compare::version("a", NotEqual, 1), r).await);
    assert!(!holds(&mut c, Compare::version("a", NotEqual, 2), r).await);
    assert!(holds(&mut c, Compare::version("a", Greater, 1), r).await);
    assert!(!holds(&mut c, Compare::version("a", Greater, 2), r).await);
    assert!(holds(&mut c, Compare::version("a", Less, 3), r).await);
    assert!(!holds(&mut c, Compare::version("a", Less, 2), r).await);
    // A missing key has version 0 (the usual "create if absent" compare).
    assert!(holds(&mut c, Compare::version("zz", Equal, 0), r).await);
    assert!(!holds(&mut c, Compare::version("zz", Greater, 0), r).await);
    assert!(holds(&mut c, Compare::version("zz", Less, 1), r).await);
    assert!(holds(&mut c, Compare::version("zz", NotEqual, 5), r).await);

    // CREATE
    assert!(holds(&mut c, Compare::create_revision("a", Equal, 3), r).await);
    assert!(!holds(&mut c, Compare::create_revision("a", Equal, 4), r).await);
    assert!(holds(&mut c, Compare::create_revision("a", NotEqual, 4), r).await);
    assert!(holds(&mut c, Compare::create_revision("a", Greater, 2), r).await);
    assert!(!holds(&mut c, Compare::create_revision("a", Greater, 3), r).await);
    assert!(holds(&mut c, Compare::create_revision("a", Less, 4), r).await);
    assert!(!holds(&mut c, Compare::create_revision("a", Less, 3), r).await);
    assert!(holds(&mut c, Compare::create_revision("zz", Equal, 0), r).await);
    assert!(holds(&mut c, Compare::create_revision("zz", Less, 1), r).await);

    // MOD
    assert!(holds(&mut c, Compare::mod_revision("a", Equal, 4), r).await);
    assert!(!holds(&mut c, Compare::mod_revision("a", Equal, 3), r).await);
    assert!(holds(&mut c, Compare::mod_revision("a", NotEqual, 3), r).await);
    assert!(!holds(&mut c, Compare::mod_revision("a", NotEqual, 4), r).await);
    assert!(holds(&mut c, Compare::mod_revision("a", Greater, 3), r).await);
    assert!(!holds(&mut c, Compare::mod_revision("a", Greater, 4), r).await);
    assert!(holds(&mut c, Compare::mod_revision("a", Less, 5), r).await);
    assert!(!holds(&mut c, Compare::mod_revision("a", Less, 4), r).await);
    assert!(holds(&mut c, Compare::mod_revision("zz", Equal, 0), r).await);

    // LEASE on keys without a lease (leases themselves: `put_with_lease`).
    assert!(holds(&mut c, Compare::lease("a", Equal, 0), r).await);
    assert!(!holds(&mut c, Compare::lease("a", NotEqual, 0), r).await);
    assert!(!holds(&mut c, Compare::lease("a", Greater, 0), r).await);
    assert!(holds(&mut c, Compare::lease("a", Less, 1), r).await);
    assert!(holds(&mut c, Compare::lease("zz", Equal, 0), r).await);

    // After a delete the key compares as missing.
    c.delete("a", None).await.unwrap();
    assert!(holds(&mut c, Compare::version("a", Equal, 0), 5).await);
    assert!(holds(&mut c, Compare::create_revision("a", Equal, 0), 5).await);
    assert!(holds(&mut c, Compare::mod_revision("a", Equal, 0), 5).await);
}

#[tokio::test]
async fn txn_compare_range() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a1", "1", 2).await;
    put(&mut c, "a2", "1", 3).await;
    put(&mut c, "a3", "2", 4).await;
    put(&mut c, "b", "1", 5).await;
    let r = 5;
    use CompareOp::*;

    // Every key in the range must satisfy the compare.
    assert!(holds(&mut c, Compare::value("a1", Equal, "1").with_range("a3"), r).await);
    assert!(!holds(&mut c, Compare::value("a1", Equal, "1").with_range("a4"), r).await);
    assert!(holds(&mut c, Compare::value("a", Less, "3").with_prefix(), r).await);
    assert!(holds(&mut c, Compare::version("a", Equal, 1).with_prefix(), r).await);
    assert!(
        holds(
            &mut c,
            Compare::create_revision("a", Greater, 1).with_prefix(),
            r
        )
        .await
    );
    assert!(
        !holds(
            &mut c,
            Compare::create_revision("a", Greater, 2).with_prefix(),
            r
        )
        .await
    );
    assert!(holds(&mut c, Compare::mod_revision("a", Less, 5).with_prefix(), r).await);
    assert!(!holds(&mut c, Compare::mod_revision("a", Less, 4).with_prefix(), r).await);
    assert!(
        holds(
            &mut c,
            Compare::mod_revision("a2", Greater, 2).with_range(vec![0u8]),
            r
        )
        .await
    );
    assert!(
        !holds(
            &mut c,
            Compare::mod_revision("a1", Greater, 2).with_range(vec![0u8]),
            r
        )
        .await
    );
    // An empty range compares like one missing key: version/create/mod 0 ...
    assert!(holds(&mut c, Compare::version("x", Equal, 0).with_range("y"), r).await);
    assert!(
        holds(
            &mut c,
            Compare::create_revision("x", Equal, 0).with_prefix(),
            r
        )
        .await
    );
    assert!(!holds(&mut c, Compare::version("x", Greater, 0).with_range("y"), r).await);
    // ... and a VALUE compare on an empty range fails.
    assert!(!holds(&mut c, Compare::value("x", Equal, "").with_range("y"), r).await);
    assert!(!holds(&mut c, Compare::value("x", NotEqual, "z").with_prefix(), r).await);
}

#[tokio::test]
async fn txn_success_and_failure_branches() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;

    // compare holds: then-branch
    let t = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([
            TxnOp::put("a", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("a", None),
        ])
        .or_else([TxnOp::put("b", "else", None)]);
    let r = c.txn(t.clone()).await.unwrap();
    check_header(r.header(), 3);
    assert!(r.succeeded());
    let ops = r.op_responses();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        as_put(&ops[0]).prev_key().map(to_kv),
        Some(kv("a", "1", 2, 2, 1))
    );
    assert_eq!(
        res(as_get(&ops[1])),
        (vec![kv("a", "2", 2, 3, 2)], 1, false)
    );

    // the same txn again: the compare fails now, else-branch
    let r = c.txn(t).await.unwrap();
    check_header(r.header(), 4);
    assert!(!r.succeeded());
    let ops = r.op_responses();
    assert_eq!(ops.len(), 1);
    assert!(as_put(&ops[0]).prev_key().is_none());
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 4).await,
        (
            vec![kv("a", "2", 2, 3, 2), kv("b", "else", 4, 4, 1)],
            2,
            false
        )
    );

    // a failing compare with an empty else-branch changes nothing
    let r = c
        .txn(
            Txn::new()
                .when([Compare::version("a", CompareOp::Equal, 0)])
                .and_then([TxnOp::put("a", "x", None)]),
        )
        .await
        .unwrap();
    check_header(r.header(), 4);
    assert!(!r.succeeded());
    assert!(r.op_responses().is_empty());

    // delete in a branch, with prev_kv
    let r = c
        .txn(
            Txn::new()
                .when([Compare::version("b", CompareOp::Greater, 0)])
                .and_then([TxnOp::delete(
                    "a",
                    Some(DeleteOptions::new().with_range("c").with_prev_key()),
                )]),
        )
        .await
        .unwrap();
    check_header(r.header(), 5);
    assert!(r.succeeded());
    let ops = r.op_responses();
    let d = as_delete(&ops[0]);
    assert_eq!(d.deleted(), 2);
    assert_eq!(
        kvs(d.prev_kvs()),
        vec![kv("a", "2", 2, 3, 2), kv("b", "else", 4, 4, 1)]
    );
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 5).await,
        (vec![], 0, false)
    );
}

#[tokio::test]
async fn txn_nested() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "flag", "on", 2).await;

    let inner = |v: &str| {
        Txn::new()
            .when([Compare::value("flag", CompareOp::Equal, "on")])
            .and_then([
                TxnOp::put("k", format!("then-{v}"), None),
                TxnOp::get("k", None),
            ])
            .or_else([TxnOp::put("k", format!("else-{v}"), None)])
    };
    let outer = Txn::new()
        .when([Compare::version("flag", CompareOp::Greater, 0)])
        .and_then([TxnOp::put("o", "1", None), TxnOp::txn(inner("1"))])
        .or_else([TxnOp::txn(inner("2"))]);
    let r = c.txn(outer).await.unwrap();
    check_header(r.header(), 3);
    assert!(r.succeeded());
    let ops = r.op_responses();
    assert_eq!(ops.len(), 2);
    as_put(&ops[0]);
    let t = as_txn(&ops[1]);
    assert!(t.succeeded());
    let inner_ops = t.op_responses();
    assert_eq!(inner_ops.len(), 2);
    as_put(&inner_ops[0]);
    assert_eq!(
        res(as_get(&inner_ops[1])),
        (vec![kv("k", "then-1", 3, 3, 1)], 1, false)
    );

    // Inner compare fails: the inner else-branch runs.
    put(&mut c, "flag", "off", 4).await;
    let outer = Txn::new()
        .when([Compare::version("flag", CompareOp::Greater, 0)])
        .and_then([TxnOp::txn(inner("3"))]);
    let r = c.txn(outer).await.unwrap();
    check_header(r.header(), 5);
    assert!(r.succeeded());
    let ops = r.op_responses();
    let t = as_txn(&ops[0]);
    assert!(!t.succeeded());
    assert_eq!(t.op_responses().len(), 1);
    as_put(&t.op_responses()[0]);

    // Outer compare fails: the outer else-branch's nested txn runs.
    let outer = Txn::new()
        .when([Compare::version("flag", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("o", "never", None)])
        .or_else([TxnOp::txn(inner("4")), TxnOp::get("k", None)]);
    let r = c.txn(outer).await.unwrap();
    check_header(r.header(), 6);
    assert!(!r.succeeded());
    let ops = r.op_responses();
    assert!(!as_txn(&ops[0]).succeeded());
    assert_eq!(
        res(as_get(&ops[1])),
        (vec![kv("k", "else-4", 3, 6, 3)], 1, false)
    );
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 6).await,
        (
            vec![
                kv("flag", "off", 2, 4, 2),
                kv("k", "else-4", 3, 6, 3),
                kv("o", "1", 3, 3, 1)
            ],
            3,
            false
        )
    );
}

#[tokio::test]
async fn txn_writes_share_one_revision() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "d1", "x", 2).await;
    put(&mut c, "d2", "x", 3).await;
    put(&mut c, "p", "old", 4).await;

    let r = c
        .txn(Txn::new().and_then([
            TxnOp::put("p", "new", None),
            TxnOp::put("q", "1", None),
            TxnOp::delete("d", Some(DeleteOptions::new().with_prefix())),
            TxnOp::put("r", "1", None),
        ]))
        .await
        .unwrap();
    check_header(r.header(), 5);
    assert!(r.succeeded());
    let d = as_delete(&r.op_responses()[2]).deleted();
    assert_eq!(d, 2);
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 5).await,
        (
            vec![
                kv("p", "new", 4, 5, 2),
                kv("q", "1", 5, 5, 1),
                kv("r", "1", 5, 5, 1)
            ],
            3,
            false
        )
    );
    // The next write is exactly one revision later.
    put(&mut c, "s", "1", 6).await;
    // The deletes happened at revision 5 too.
    assert_eq!(
        range_keys(
            &mut c,
            "d",
            GetOptions::new().with_prefix().with_revision(4),
            6
        )
        .await,
        (strs(&["d1", "d2"]), 2, false)
    );
    assert_eq!(
        range_keys(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_revision(5),
            6
        )
        .await,
        (strs(&["p", "q", "r"]), 3, false)
    );
}

#[tokio::test]
async fn txn_reads_see_earlier_writes() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "1", 3).await;

    let r = c
        .txn(Txn::new().and_then([
            TxnOp::get("a", None),
            TxnOp::put("a", "2", None),
            TxnOp::get("a", None),
            TxnOp::put("c", "1", None),
            TxnOp::get("", Some(GetOptions::new().with_all_keys())),
            TxnOp::delete("b", None),
            TxnOp::get(
                "",
                Some(GetOptions::new().with_all_keys().with_count_only()),
            ),
            TxnOp::get("a", Some(GetOptions::new().with_revision(2))),
        ]))
        .await
        .unwrap();
    check_header(r.header(), 4);
    let ops = r.op_responses();
    assert_eq!(ops.len(), 8);
    assert_eq!(
        res(as_get(&ops[0])),
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    assert_eq!(
        res(as_get(&ops[2])),
        (vec![kv("a", "2", 2, 4, 2)], 1, false)
    );
    assert_eq!(
        res(as_get(&ops[4])),
        (
            vec![
                kv("a", "2", 2, 4, 2),
                kv("b", "1", 3, 3, 1),
                kv("c", "1", 4, 4, 1)
            ],
            3,
            false
        )
    );
    assert_eq!(as_delete(&ops[5]).deleted(), 1);
    assert_eq!(res(as_get(&ops[6])), (vec![], 2, false));
    assert_eq!(
        res(as_get(&ops[7])),
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
}

/// Revisions in the headers of responses nested in a txn (etcd fills in only `revision` there:
/// the store revision as of that op, i.e. the txn's new revision once it has written).
#[tokio::test]
async fn txn_inner_response_revisions() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "1", 3).await;
    let r = c
        .txn(Txn::new().and_then([
            TxnOp::get("a", None),
            TxnOp::put("a", "2", None),
            TxnOp::get("a", None),
            TxnOp::delete("b", None),
            TxnOp::delete("zz", None),
        ]))
        .await
        .unwrap();
    check_header(r.header(), 4);
    let ops = r.op_responses();
    let rev =
        |h: Option<&etcd_client::ResponseHeader>| h.map(etcd_client::ResponseHeader::revision);
    assert_eq!(rev(as_get(&ops[0]).header()), Some(3));
    assert_eq!(rev(as_put(&ops[1]).header()), Some(4));
    assert_eq!(rev(as_get(&ops[2]).header()), Some(4));
    assert_eq!(rev(as_delete(&ops[3]).header()), Some(4));
    assert_eq!(rev(as_delete(&ops[4]).header()), Some(4));
}

#[tokio::test]
async fn txn_read_only_does_not_bump_revision() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;

    // an empty txn
    let r = c.txn(Txn::new()).await.unwrap();
    check_header(r.header(), 2);
    assert!(r.succeeded());
    // only reads
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("a", CompareOp::Equal, "1")])
                .and_then([
                    TxnOp::get("a", None),
                    TxnOp::get("", Some(GetOptions::new().with_all_keys())),
                ]),
        )
        .await
        .unwrap();
    check_header(r.header(), 2);
    assert_eq!(
        res(as_get(&r.op_responses()[0])),
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
    // a delete that deletes nothing
    let r = c
        .txn(Txn::new().and_then([
            TxnOp::delete("zz", None),
            TxnOp::get("a", None),
            TxnOp::txn(Txn::new().and_then([TxnOp::get("a", None)])),
        ]))
        .await
        .unwrap();
    check_header(r.header(), 2);
    assert_eq!(as_delete(&r.op_responses()[0]).deleted(), 0);
    // the next write still takes the next revision
    put(&mut c, "b", "1", 3).await;
}

#[tokio::test]
async fn txn_too_many_ops() {
    let s = TestServer::start(ServerOpts::new().arg("--max-txn-ops", "3")).await;
    let mut c = s.client().await;
    let puts = |n: usize| -> Vec<TxnOp> {
        (0..n)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect()
    };
    let cmps = |n: usize| -> Vec<Compare> {
        (0..n)
            .map(|i| Compare::version(format!("k{i}"), CompareOp::Equal, 0))
            .collect()
    };

    // up to the limit is fine
    let r = c
        .txn(Txn::new().when(cmps(3)).and_then(puts(3)).or_else(puts(3)))
        .await
        .unwrap();
    check_header(r.header(), 2);
    assert!(r.succeeded());
    // one too many in any of compare / success / failure
    expect_status(
        c.txn(Txn::new().and_then(puts(4))).await,
        Code::InvalidArgument,
        TOO_MANY_OPS,
    );
    expect_status(
        c.txn(Txn::new().or_else(puts(4))).await,
        Code::InvalidArgument,
        TOO_MANY_OPS,
    );
    expect_status(
        c.txn(Txn::new().when(cmps(4))).await,
        Code::InvalidArgument,
        TOO_MANY_OPS,
    );
    // ... also inside a nested txn
    expect_status(
        c.txn(Txn::new().and_then([TxnOp::txn(Txn::new().or_else(puts(4)))]))
            .await,
        Code::InvalidArgument,
        TOO_MANY_OPS,
    );
    // Nothing was applied.
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), 2).await,
        (strs(&["k0", "k1", "k2"]), 3, false)
    );
}

#[tokio::test]
async fn txn_duplicate_keys() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "0", 2).await;
    let p = |k: &str| TxnOp::put(k, "v", None);
    let del = |k: &str| TxnOp::delete(k, None);
    let del_range =
        |k: &str, end: &str| TxnOp::delete(k, Some(DeleteOptions::new().with_range(end)));

    let bad: Vec<(&str, Txn)> = vec![
        ("two puts", Txn::new().and_then([p("a"), p("a")])),
        (
            "two puts in else",
            Txn::new().or_else([p("b"), p("c"), p("b")]),
        ),
        ("put then delete", Txn::new().and_then([p("a"), del("a")])),
        ("delete then put", Txn::new().and_then([del("a"), p("a")])),
        (
            "put inside deleted range",
            Txn::new().and_then([del_range("a", "c"), p("b")]),
        ),
        (
            "put inside deleted prefix",
            Txn::new().and_then([
                TxnOp::delete("x", Some(DeleteOptions::new().with_prefix())),
                p("xyz"),
            ]),
        ),
        (
            "put and nested put",
            Txn::new().and_then([p("a"), TxnOp::txn(Txn::new().and_then([p("a")]))]),
        ),
        (
            "put and nested else put",
            Txn::new().and_then([p("a"), TxnOp::txn(Txn::new().or_else([p("a")]))]),
        ),
        (
            "delete and nested put",
            Txn::new().and_then([
                del_range("a", "c"),
                TxnOp::txn(Txn::new().and_then([p("b")])),
            ]),
        ),
        (
            "nested delete and put",
            Txn::new().and_then([TxnOp::txn(Txn::new().and_then([del("a")])), p("a")]),
        ),
        (
            "two nested txns",
            Txn::new().and_then([
                TxnOp::txn(Txn::new().and_then([p("a")])),
                TxnOp::txn(Txn::new().and_then([p("a")])),
            ]),
        ),
    ];
    for (what, txn) in bad {
        let r = c.txn(txn).await;
        match &r {
            Err(etcd_client::Error::GRpcStatus(st))
                if st.code() == Code::InvalidArgument && st.message() == DUPLICATE_KEY => {}
            other => panic!("{what}: expected duplicate key error, got {other:?}"),
        }
    }
    // Nothing was written.
    assert_eq!(current_rev(&mut c).await, 2);

    // Allowed: then/else of the same txn, then/else of a nested txn, repeated deletes,
    // puts next to a delete that does not cover them.
    let ok: Vec<(&str, Txn)> = vec![
        (
            "then and else",
            Txn::new().and_then([p("a")]).or_else([p("a")]),
        ),
        (
            "nested then and else",
            Txn::new().and_then([TxnOp::txn(
                Txn::new()
                    .when([Compare::version("a", CompareOp::Greater, 0)])
                    .and_then([p("n")])
                    .or_else([p("n")]),
            )]),
        ),
        ("two deletes", Txn::new().and_then([del("a"), del("a")])),
        (
            "put beside a range",
            Txn::new().and_then([del_range("a", "c"), p("c")]),
        ),
        (
            "put and get",
            Txn::new().and_then([p("g"), TxnOp::get("g", None)]),
        ),
    ];
    let mut rev = 2;
    for (what, txn) in ok {
        let r = c.txn(txn).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        rev += 1;
        check_header(r.header(), rev);
    }
    assert_eq!(
        range_keys(&mut c, "", GetOptions::new().with_all_keys(), rev).await,
        (strs(&["c", "g", "n"]), 3, false)
    );
}

#[tokio::test]
async fn txn_op_errors() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "b", "1", 3).await;

    // A put with a lease that does not exist, in the branch taken.
    expect_status(
        c.txn(Txn::new().and_then([
            TxnOp::put("x", "1", None),
            TxnOp::put("a", "2", Some(PutOptions::new().with_lease(777))),
        ]))
        .await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
    // ignore_value on a missing key.
    expect_status(
        c.txn(Txn::new().and_then([TxnOp::put(
            "zz",
            "",
            Some(PutOptions::new().with_ignore_value()),
        )]))
        .await,
        Code::InvalidArgument,
        KEY_NOT_FOUND,
    );
    // A read at a future revision.
    expect_status(
        c.txn(Txn::new().and_then([
            TxnOp::put("x", "1", None),
            TxnOp::get("a", Some(GetOptions::new().with_revision(100))),
        ]))
        .await,
        Code::OutOfRange,
        FUTURE_REV,
    );
    // An empty key.
    expect_status(
        c.txn(Txn::new().and_then([TxnOp::put("", "1", None)]))
            .await,
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
    );
    // The bad ops in the branch not taken do not matter.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("a", CompareOp::Equal, "1")])
                .and_then([TxnOp::put("x", "1", None)])
                .or_else([TxnOp::put(
                    "a",
                    "2",
                    Some(PutOptions::new().with_lease(777)),
                )]),
        )
        .await
        .unwrap();
    check_header(r.header(), 4);
    // None of the failed txns wrote anything.
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 4).await,
        (
            vec![
                kv("a", "1", 2, 2, 1),
                kv("b", "1", 3, 3, 1),
                kv("x", "1", 4, 4, 1)
            ],
            3,
            false
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Compact
// ---------------------------------------------------------------------------------------------

/// Snapshot of reads at each revision in `revs` (all keys, and key "a" alone).
async fn snapshot(c: &mut Client, revs: std::ops::RangeInclusive<i64>, cur: i64) -> Vec<String> {
    let mut out = Vec::new();
    for rev in revs {
        let all = range(
            c,
            "",
            GetOptions::new().with_all_keys().with_revision(rev),
            cur,
        )
        .await;
        let a = range(c, "a", GetOptions::new().with_revision(rev), cur).await;
        let cnt = range(
            c,
            "",
            GetOptions::new()
                .with_all_keys()
                .with_revision(rev)
                .with_count_only(),
            cur,
        )
        .await;
        out.push(format!("rev {rev}: all={all:?} a={a:?} count={cnt:?}"));
    }
    out
}

#[tokio::test]
async fn compact_errors_and_reads() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "a", "2", 3).await;
    put(&mut c, "b", "1", 4).await;
    let d = c.delete("a", None).await.unwrap();
    check_header(d.header(), 5);
    put(&mut c, "a", "3", 6).await;
    put(&mut c, "c", "1", 7).await;
    put(&mut c, "b", "2", 8).await;

    let before = snapshot(&mut c, 4..=8, 8).await;

    // A future revision cannot be compacted.
    expect_status(c.compact(9, None).await, Code::OutOfRange, FUTURE_REV);
    expect_status(c.compact(100, None).await, Code::OutOfRange, FUTURE_REV);

    let r = c.compact(4, None).await.unwrap();
    check_header(r.header(), 8);

    // Reads below the compaction revision fail; at and above it they answer as before.
    for rev in [1, 2, 3] {
        expect_status(
            c.get("a", Some(GetOptions::new().with_revision(rev))).await,
            Code::OutOfRange,
            COMPACTED,
        );
        expect_status(
            c.get(
                "",
                Some(GetOptions::new().with_all_keys().with_revision(rev)),
            )
            .await,
            Code::OutOfRange,
            COMPACTED,
        );
    }
    assert_eq!(snapshot(&mut c, 4..=8, 8).await, before);
    // Current reads are untouched (versions survive compaction).
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 8).await,
        (
            vec![
                kv("a", "3", 6, 6, 1),
                kv("b", "2", 4, 8, 2),
                kv("c", "1", 7, 7, 1)
            ],
            3,
            false
        )
    );
    // A future read.
    expect_status(
        c.get("a", Some(GetOptions::new().with_revision(9))).await,
        Code::OutOfRange,
        FUTURE_REV,
    );
    // Compacting the same or an older revision again.
    expect_status(c.compact(4, None).await, Code::OutOfRange, COMPACTED);
    expect_status(c.compact(3, None).await, Code::OutOfRange, COMPACTED);
    // A txn reading a compacted revision.
    expect_status(
        c.txn(Txn::new().and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(2)))]))
            .await,
        Code::OutOfRange,
        COMPACTED,
    );

    // Compaction does not bump the revision; writes go on.
    put(&mut c, "d", "1", 9).await;
    let r = c.compact(6, None).await.unwrap();
    check_header(r.header(), 9);
    expect_status(
        c.get("a", Some(GetOptions::new().with_revision(5))).await,
        Code::OutOfRange,
        COMPACTED,
    );
    let after = snapshot(&mut c, 6..=8, 9).await;
    assert_eq!(after[..], before[2..]);
    // Compacting the current revision is allowed.
    let r = c.compact(9, None).await.unwrap();
    check_header(r.header(), 9);
    assert_eq!(
        range(
            &mut c,
            "",
            GetOptions::new().with_all_keys().with_revision(9),
            9
        )
        .await,
        (
            vec![
                kv("a", "3", 6, 6, 1),
                kv("b", "2", 4, 8, 2),
                kv("c", "1", 7, 7, 1),
                kv("d", "1", 9, 9, 1)
            ],
            4,
            false
        )
    );
    // The key deleted before the compaction revision stays deleted; updates keep versions.
    put(&mut c, "b", "3", 10).await;
    assert_eq!(
        range(&mut c, "b", GetOptions::new(), 10).await,
        (vec![kv("b", "3", 4, 10, 3)], 1, false)
    );
}

#[tokio::test]
async fn compact_physical() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    for i in 0..20 {
        put(&mut c, &format!("k{}", i % 5), &format!("v{i}"), i + 2).await;
    }
    c.delete("k0", None).await.unwrap(); // 22
    put(&mut c, "k9", "x", 23).await;
    let before = snapshot(&mut c, 15..=23, 23).await;

    let r = c
        .compact(15, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    check_header(r.header(), 23);
    expect_status(
        c.get("k1", Some(GetOptions::new().with_revision(14))).await,
        Code::OutOfRange,
        COMPACTED,
    );
    assert_eq!(snapshot(&mut c, 15..=23, 23).await, before);
    expect_status(
        c.compact(15, Some(CompactionOptions::new().with_physical()))
            .await,
        Code::OutOfRange,
        COMPACTED,
    );
    expect_status(
        c.compact(24, Some(CompactionOptions::new().with_physical()))
            .await,
        Code::OutOfRange,
        FUTURE_REV,
    );
    let r = c
        .compact(23, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    check_header(r.header(), 23);
    assert_eq!(snapshot(&mut c, 23..=23, 23).await, before[8..]);
    assert_eq!(
        range(&mut c, "k1", GetOptions::new(), 23).await,
        (vec![kv("k1", "v16", 3, 18, 4)], 1, false)
    );
}

#[tokio::test]
async fn compact_survives_restart() {
    let mut s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "a", "1", 2).await;
    put(&mut c, "a", "2", 3).await;
    put(&mut c, "b", "1", 4).await;
    let before = snapshot(&mut c, 3..=4, 4).await;
    c.compact(3, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    drop(c);
    s.restart().await;
    let mut c = s.client().await;
    expect_status(
        c.get("a", Some(GetOptions::new().with_revision(2))).await,
        Code::OutOfRange,
        COMPACTED,
    );
    assert_eq!(snapshot(&mut c, 3..=4, 4).await, before);
    expect_status(c.compact(3, None).await, Code::OutOfRange, COMPACTED);
    put(&mut c, "c", "1", 5).await;
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn headers_on_every_response() {
    let mut s = TestServer::start_default().await;
    let mut c = s.client().await;

    let g = c.get("a", None).await.unwrap();
    check_header(g.header(), 1);
    let h0 = g.header().unwrap().clone();

    let p = c.put("a", "1", None).await.unwrap();
    check_header(p.header(), 2);
    let g = c.get("a", None).await.unwrap();
    check_header(g.header(), 2);
    let g = c
        .get("a", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    check_header(g.header(), 2);
    let t = c
        .txn(Txn::new().and_then([TxnOp::put("b", "1", None)]))
        .await
        .unwrap();
    check_header(t.header(), 3);
    let t = c.txn(Txn::new()).await.unwrap();
    check_header(t.header(), 3);
    let d = c.delete("b", None).await.unwrap();
    check_header(d.header(), 4);
    let d = c.delete("b", None).await.unwrap();
    check_header(d.header(), 4);
    let k = c.compact(3, None).await.unwrap();
    check_header(k.header(), 4);

    // One member, one cluster: the ids are the same on every response.
    for h in [p.header(), t.header(), d.header(), k.header()] {
        let h = h.unwrap();
        assert_eq!(h.cluster_id(), h0.cluster_id());
        assert_eq!(h.member_id(), h0.member_id());
        assert_eq!(h.raft_term(), h0.raft_term());
    }

    // ... and across a restart (the term may grow, the revision is kept).
    drop(c);
    s.restart().await;
    let mut c = s.client().await;
    let g = c.get("a", None).await.unwrap();
    check_header(g.header(), 4);
    let h = g.header().unwrap();
    assert_eq!(h.cluster_id(), h0.cluster_id());
    assert_eq!(h.member_id(), h0.member_id());
    assert!(h.raft_term() >= h0.raft_term());
    assert_eq!(
        range(&mut c, "", GetOptions::new().with_all_keys(), 4).await,
        (vec![kv("a", "1", 2, 2, 1)], 1, false)
    );
}
