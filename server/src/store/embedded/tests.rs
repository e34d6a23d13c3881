//! The embedded store's own behaviour (the shared contract is in tests/tests/store.rs).

use serde_json::json;

use super::*;
use crate::store::Change;

fn put(flag: &str, expect: Expect, value: i64) -> Change {
    Change {
        environment: "prod".into(),
        flag: flag.into(),
        expect,
        kind: ChangeKind::Put(json!({"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"})),
        action: "update".into(),
        changes: vec![],
    }
}

fn commit_of(actor: &str, at: u64, changes: Vec<Change>) -> Commit {
    Commit { actor: actor.into(), at, changes }
}

#[tokio::test]
async fn versions_history_audit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.commit(commit_of("ana", 10, vec![put("a", Expect::Absent, 1)])).await.unwrap();
    store
        .commit(commit_of("bo", 20, vec![put("a", Expect::Version(1), 2), put("b", Expect::Absent, 3)]))
        .await
        .unwrap();

    // A stale precondition fails the whole batch.
    let stale = store.commit(commit_of("cy", 30, vec![put("b", Expect::Anything, 9), put("a", Expect::Version(1), 4)]));
    assert!(matches!(stale.await, Err(StoreError::Conflict { .. })));

    let delete = Change { kind: ChangeKind::Delete, action: "delete".into(), ..put("b", Expect::Version(1), 0) };
    store.commit(commit_of("ana", 40, vec![delete])).await.unwrap();
    let state = store.load().await.unwrap();
    assert_eq!(state["prod"].flags.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(state["prod"].flags["a"].version, 2);

    // Re-creating continues the version count.
    store.commit(commit_of("ana", 50, vec![put("b", Expect::Absent, 5)])).await.unwrap();
    let history = store.history("prod", "b", 0, 100).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(history[1].definition.is_none());

    let all = store.audit(AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let by_actor =
        store.audit(AuditQuery { actor: Some("ana".into()), limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(by_actor.len(), 3);
    let page = store.audit(AuditQuery { after: Some(2), limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    let window =
        store.audit(AuditQuery { since: Some(20), until: Some(41), limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);

    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load().await.unwrap()["prod"].flags["b"].version, 3);
}

#[tokio::test]
async fn overrides_are_set_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let set = Change {
        environment: "prod".into(),
        flag: "file-flag".into(),
        expect: Expect::Anything,
        kind: ChangeKind::Override(Some(rampart_engine::FlagState::Disabled)),
        action: "disable".into(),
        changes: vec!["state: ENABLED → DISABLED".into()],
    };
    let entries = store.commit(commit_of("ops", 1, vec![set.clone()])).await.unwrap().entries;
    assert_eq!(entries[0].version, None);
    assert_eq!(store.load().await.unwrap()["prod"].overrides["file-flag"].state, rampart_engine::FlagState::Disabled);
    let clear = Change { kind: ChangeKind::Override(None), action: "enable".into(), ..set };
    store.commit(commit_of("ops", 2, vec![clear])).await.unwrap();
    assert!(store.load().await.unwrap().get("prod").is_none_or(|s| s.overrides.is_empty()));
}

/// Pruned history gives its space back at the next start (compaction), and
/// the page cache stays within its bound whatever was written.
#[tokio::test]
async fn space_of_pruned_history_is_reclaimed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rampart.redb");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.retain_versions(1000);
    let wide = |round: i64| Change {
        kind: ChangeKind::Put(
            json!({"state": "ENABLED", "variants": {"v": format!("{round}{}", "x".repeat(200_000))}, "defaultVariant": "v"}),
        ),
        ..put("wide", Expect::Anything, 0)
    };
    for round in 0..60 {
        store.commit(commit_of("ana", round as u64, vec![wide(round)])).await.unwrap();
    }
    // Retention lowered: the next write prunes all but two versions.
    store.retain_versions(2);
    store.commit(commit_of("ana", 60, vec![wide(60)])).await.unwrap();
    let grown = std::fs::metadata(&file).unwrap().len();
    assert!(grown > 10_000_000, "60 versions of 200 KB were kept for a while: {grown} bytes");
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let compacted = std::fs::metadata(&file).unwrap().len();
    // Two versions of 200 KB are kept; the file keeps some slack.
    assert!(compacted < grown / 3, "{grown} -> {compacted} bytes");
    assert_eq!(store.history("prod", "wide", 0, 10).await.unwrap().len(), 2);
}
