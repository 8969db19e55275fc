//! Lease table bookkeeping with time passed in: grants, attachments, expiry order, renewal,
//! promotion and demotion.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn primary(now: Instant) -> LeaseTable {
    let mut t = LeaseTable::new(2);
    t.promote(now, Duration::ZERO);
    t
}

#[test]
fn grant_checks_like_etcd() {
    let now = Instant::now();
    let mut t = primary(now);
    assert_eq!(t.grant(1, 10, now), Ok(10));
    assert_eq!(t.grant(2, 1, now), Ok(2), "raised to the minimum TTL");
    assert_eq!(t.grant(3, 0, now), Ok(2));
    assert_eq!(t.grant(4, -5, now), Ok(2));
    assert_eq!(t.grant(1, 10, now), Err(EtcdError::LeaseExist));
    assert_eq!(t.grant(0, 10, now), Err(EtcdError::LeaseNotFound));
    assert_eq!(
        t.grant(5, MAX_LEASE_TTL + 1, now),
        Err(EtcdError::LeaseTtlTooLarge)
    );
    assert_eq!(t.grant(5, MAX_LEASE_TTL, now), Ok(MAX_LEASE_TTL));
    assert!(
        t.get(5).and_then(Lease::expiry).is_some(),
        "saturates, no overflow"
    );
    assert_eq!(t.len(), 5);
    assert_eq!(t.get(1).map(|l| l.remaining_secs(now)), Some(10));
    // Remaining time truncates to whole seconds, as etcd's TimeToLive does.
    assert_eq!(
        t.get(1)
            .map(|l| l.remaining_secs(now + Duration::from_millis(100))),
        Some(9)
    );
    assert_eq!(t.get(1).map(|l| l.remaining_secs(now + 20 * SEC)), Some(0));
}

#[test]
fn attach_and_detach_bookkeeping() {
    let now = Instant::now();
    let mut t = primary(now);
    t.grant(1, 10, now).unwrap();
    t.grant(2, 10, now).unwrap();
    assert!(t.attach(1, b"b"));
    assert!(t.attach(1, b"a"));
    assert!(t.attach(1, b"a"), "attaching twice is harmless");
    assert!(!t.attach(9, b"a"), "no such lease");
    let keys = |t: &LeaseTable, id| -> Vec<Vec<u8>> {
        t.get(id)
            .map(|l| l.keys().map(<[u8]>::to_vec).collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&t, 1), vec![b"a".to_vec(), b"b".to_vec()], "key order");
    // Moving a key to another lease.
    assert!(t.detach(1, b"a"));
    assert!(t.attach(2, b"a"));
    assert!(!t.detach(1, b"a"), "already detached");
    assert!(!t.detach(9, b"a"));
    assert_eq!(keys(&t, 1), vec![b"b".to_vec()]);
    assert_eq!(keys(&t, 2), vec![b"a".to_vec()]);
    let revoked = t.revoke(1).unwrap();
    assert_eq!(revoked.key_count(), 1);
    assert!(!t.contains(1));
    assert!(t.revoke(1).is_none());
    assert_eq!(t.ids_by_expiry(), vec![2]);
}

#[test]
fn leases_expire_in_deadline_order() {
    let now = Instant::now();
    let mut t = primary(now);
    t.grant(30, 30, now).unwrap();
    t.grant(10, 10, now).unwrap();
    t.grant(20, 20, now).unwrap();
    t.grant(11, 10, now).unwrap();
    assert_eq!(t.ids_by_expiry(), vec![10, 11, 20, 30]);
    assert_eq!(t.next_due(), Some(now + 10 * SEC));
    assert!(t.pop_expired(now + 9 * SEC, 100).is_empty());
    // Due at exactly the deadline; ties by id.
    assert_eq!(t.pop_expired(now + 10 * SEC, 100), vec![10, 11]);
    // Both stay listed for a retry, three seconds on.
    assert_eq!(t.next_due(), Some(now + 13 * SEC));
    assert_eq!(t.pop_expired(now + 12 * SEC, 100), Vec::<i64>::new());
    assert_eq!(t.pop_expired(now + 25 * SEC, 1), vec![10], "the limit");
    assert_eq!(t.pop_expired(now + 25 * SEC, 100), vec![11, 20]);
    t.revoke(10);
    t.revoke(11);
    t.revoke(20);
    assert_eq!(t.pop_expired(now + 40 * SEC, 100), vec![30]);
}

#[test]
fn renewal_moves_the_deadline_and_saves_the_lease() {
    let now = Instant::now();
    let mut t = primary(now);
    t.grant(1, 5, now).unwrap();
    t.grant(2, 5, now).unwrap();
    assert_eq!(t.renew(1, now + 4 * SEC), Renewal::Renewed(5));
    assert_eq!(t.get(1).and_then(Lease::expiry), Some(now + 9 * SEC));
    assert_eq!(t.pop_expired(now + 5 * SEC, 100), vec![2]);
    // An expired lease cannot be renewed any more: its revocation is under way.
    assert_eq!(t.renew(2, now + 5 * SEC), Renewal::Expired);
    assert_eq!(t.renew(3, now), Renewal::NotFound);
    // Lease 2 was not revoked: handed out again 3 s later, before lease 1.
    assert_eq!(t.pop_expired(now + 9 * SEC, 100), vec![2, 1]);
}

#[test]
fn renewed_after_being_queued_is_not_handed_out() {
    let now = Instant::now();
    let mut t = primary(now);
    t.grant(1, 5, now).unwrap();
    // Renewed just before its deadline: the queue entry moves with it.
    assert_eq!(
        t.renew(1, now + 5 * SEC - Duration::from_millis(1)),
        Renewal::Renewed(5)
    );
    assert!(t.pop_expired(now + 5 * SEC, 100).is_empty());
}

#[test]
fn restored_leases_wait_for_promotion() {
    let now = Instant::now();
    let mut t = LeaseTable::new(2);
    t.restore(7, 3, now);
    t.restore(8, 60, now);
    assert!(t.attach(7, b"k"));
    assert!(!t.is_primary());
    assert_eq!(t.get(7).and_then(Lease::expiry), None);
    assert_eq!(t.get(7).map(|l| l.remaining_secs(now)), Some(3));
    assert_eq!(t.renew(7, now), Renewal::NotPrimary);
    assert!(t.pop_expired(now + 100 * SEC, 100).is_empty());
    assert_eq!(t.next_due(), None);
    // A grant on a non-primary member never expires either.
    t.grant(9, 5, now).unwrap();
    assert_eq!(t.get(9).and_then(Lease::expiry), None);

    // Promotion: TTL plus the extension, from the moment of promotion.
    let later = now + 50 * SEC;
    t.promote(later, SEC);
    assert_eq!(t.get(7).and_then(Lease::expiry), Some(later + 4 * SEC));
    assert_eq!(t.get(8).and_then(Lease::expiry), Some(later + 61 * SEC));
    assert_eq!(t.pop_expired(later + 3 * SEC, 100), Vec::<i64>::new());
    assert_eq!(t.pop_expired(later + 4 * SEC, 100), vec![7]);
    assert_eq!(t.get(7).map(Lease::key_count), Some(1));

    t.demote();
    assert_eq!(t.get(8).and_then(Lease::expiry), None);
    assert!(t.pop_expired(later + 1000 * SEC, 100).is_empty());
}

#[test]
fn promotion_spreads_a_pile_of_deadlines() {
    let now = Instant::now();
    let mut t = LeaseTable::new(2);
    let count = 2 * REVOKE_RATE_PER_SEC;
    for id in 1..=i64::try_from(count).unwrap() {
        t.restore(id, 10, now);
    }
    t.promote(now, SEC);
    let first = now + 11 * SEC;
    let per_window = 3 * REVOKE_RATE_PER_SEC / 4;
    let mut buckets = std::collections::BTreeMap::<u64, usize>::new();
    for id in t.ids_by_expiry() {
        let expiry = t.get(id).and_then(Lease::expiry).unwrap();
        assert!(expiry >= first, "spreading only extends leases");
        *buckets
            .entry(expiry.duration_since(first).as_secs())
            .or_default() += 1;
    }
    assert!(buckets.values().all(|&n| n <= per_window), "{buckets:?}");
    assert_eq!(buckets.values().sum::<usize>(), count);
    assert_eq!(buckets.len(), count.div_ceil(per_window));
    // Each window releases its share once its second comes.
    assert_eq!(t.pop_expired(first, usize::MAX).len(), per_window);
}

#[tokio::test]
async fn keep_alive_of_an_expired_lease_waits_for_its_revocation() {
    let lessor = std::sync::Arc::new(Lessor::new(LeaseTable::new(1)));
    lessor.promote(Duration::ZERO);
    lessor.lock().grant(1, 1, Instant::now()).unwrap();
    assert_eq!(
        lessor.renew(1, Duration::from_secs(5)).await,
        Renewal::Renewed(1)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revoker = {
        let lessor = std::sync::Arc::clone(&lessor);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            lessor.lock().revoke(1);
            lessor.revoked();
        })
    };
    assert_eq!(
        lessor.renew(1, Duration::from_secs(5)).await,
        Renewal::NotFound
    );
    revoker.await.unwrap();
    // Without a revocation the wait is bounded.
    lessor.lock().grant(2, 1, Instant::now()).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        lessor.renew(2, Duration::from_millis(50)).await,
        Renewal::Expired
    );
}
