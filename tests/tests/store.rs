//! The `Store` contract, run against both implementations: the embedded
//! one and the Redis one on a real `redis-server`. Same calls, same
//! answers — plus what only a shared store does: revisions, published
//! changes, leases and fencing tokens.

use std::sync::Arc;
use std::time::Duration;

use rampart_server::config::RedisOptions;
use rampart_server::model::{Latency, Run};
use rampart_server::ramp::spec;
use rampart_server::store::embedded::EmbeddedStore;
use rampart_server::store::redis::{Notice, RedisStore};
use rampart_server::store::{
    AuditQuery, Change, ChangeKind, Commit, ContextOutcome, Conversion, Delivery, Expect, Fence, OutcomeCount,
    RampWrite, Store, StoreError,
};
use rampart_tests::redis::Redis;
use serde_json::json;

fn put(flag: &str, expect: Expect, value: i64) -> Change {
    Change {
        environment: "prod".into(),
        flag: flag.into(),
        expect,
        kind: ChangeKind::Put(
            json!({"state": "ENABLED", "variants": {"v": value, "big": 12345678901234567u64, "empty": {}}, "defaultVariant": "v"}),
        ),
        action: "update".into(),
        changes: vec![format!("v → {value}")],
    }
}

fn commit(actor: &str, at: u64, changes: Vec<Change>) -> Commit {
    Commit { actor: actor.into(), at, changes }
}

fn run(id: &str, seq: u64) -> Run {
    let text = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: { name: r }\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  steps:\n    - { percent: 5, hold: 1m }\n    - { percent: 100, hold: 1m }\n";
    let spec = spec::parse("r.yaml", text).expect("spec");
    let mut run = spec.new_run("off", id.into(), 1000);
    run.seq = seq;
    run
}

fn ramp_write(expect: Option<(&str, u64)>, run: Run, fence: Option<Fence>) -> RampWrite {
    RampWrite {
        environment: "prod".into(),
        ramp: "r".into(),
        expect: expect.map(|(id, seq)| (id.to_owned(), seq)),
        run,
        record: None,
        audit: vec![("controller".into(), "ramp.advanced".into(), vec!["step 2".into()])],
        outbox: vec![Delivery {
            id: 0,
            dedup_key: "r:run:1:advanced".into(),
            url: "http://127.0.0.1:1/hook".into(),
            secret_ref: None,
            event: "advanced".into(),
            body: "{}".into(),
            attempts: 0,
            next_attempt_at: 5,
            last_error: None,
        }],
        fence,
    }
}

/// What every store must do alike.
async fn contract(store: Arc<dyn Store>) {
    let written = store.commit(commit("ana", 10, vec![put("a", Expect::Absent, 1)])).await.expect("create");
    assert_eq!(written.entries[0].version, Some(1));
    store
        .commit(commit("bo", 20, vec![put("a", Expect::Version(1), 2), put("b", Expect::Absent, 3)]))
        .await
        .expect("batch");
    // A stale precondition fails the whole batch; nothing of it is written.
    let stale =
        store.commit(commit("cy", 30, vec![put("c", Expect::Absent, 9), put("a", Expect::Version(1), 4)])).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    let delete = Change { kind: ChangeKind::Delete, action: "delete".into(), ..put("b", Expect::Version(1), 0) };
    store.commit(commit("ana", 40, vec![delete])).await.expect("delete");
    store.commit(commit("ana", 50, vec![put("b", Expect::Absent, 5)])).await.expect("re-create");
    let set = Change {
        kind: ChangeKind::Override(Some(rampart_engine::FlagState::Disabled)),
        action: "disable".into(),
        expect: Expect::Anything,
        ..put("file-flag", Expect::Anything, 0)
    };
    store.commit(commit("ops", 60, vec![set])).await.expect("override");

    let state = store.load().await.expect("load");
    let prod = &state["prod"];
    assert_eq!(prod.flags.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(prod.flags["a"].version, 2);
    assert_eq!(prod.flags["b"].version, 3);
    // Definitions pass through byte for byte (no float rounding, {} stays {}).
    assert_eq!(prod.flags["a"].definition.as_ref().expect("live")["variants"]["big"], json!(12345678901234567u64));
    assert_eq!(prod.flags["a"].definition.as_ref().expect("live")["variants"]["empty"], json!({}));
    assert_eq!(prod.overrides["file-flag"].state, rampart_engine::FlagState::Disabled);
    assert!(!state.contains_key("c"));

    let history = store.history("prod", "b", 0, 100).await.expect("history");
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(history[1].definition.is_none());
    let page = store.history("prod", "b", 1, 1).await.expect("page");
    assert_eq!(page.iter().map(|v| v.version).collect::<Vec<_>>(), [2]);
    assert!(store.history("prod", "b", 3, 10).await.expect("past the end").is_empty());
    let all = store.audit(AuditQuery { limit: 100, ..Default::default() }).await.expect("audit");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(all[5].version, None);
    let page = store.audit(AuditQuery { after: Some(2), limit: 2, ..Default::default() }).await.expect("page");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    let by_actor = store.audit(AuditQuery { actor: Some("ana".into()), limit: 100, ..Default::default() }).await;
    assert_eq!(by_actor.expect("by actor").len(), 3);
    // Newest first, paged backwards with `before` (the dashboard's audit page).
    let newest = store.audit(AuditQuery { newest_first: true, limit: 4, ..Default::default() }).await;
    assert_eq!(newest.expect("newest").iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 5, 4, 3]);
    let older = AuditQuery { newest_first: true, before: Some(3), limit: 4, ..Default::default() };
    assert_eq!(store.audit(older).await.expect("older").iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
    let window = AuditQuery { before: Some(5), after: Some(1), limit: 10, ..Default::default() };
    assert_eq!(store.audit(window).await.expect("window").iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
    let mine = AuditQuery { actor: Some("ana".into()), newest_first: true, limit: 1, ..Default::default() };
    let mine = store.audit(mine).await.expect("newest of one actor");
    assert_eq!((mine.len(), mine[0].actor.as_str()), (1, "ana"));

    // Ramp runs: compare-and-set on (run, seq), with audit and outbox.
    store.write_ramp(ramp_write(None, run("run-1", 1), None)).await.expect("first run");
    let again = store.write_ramp(ramp_write(None, run("run-1", 1), None)).await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");
    store.write_ramp(ramp_write(Some(("run-1", 1)), run("run-1", 2), None)).await.expect("advance");
    let lost = store.write_ramp(ramp_write(Some(("run-1", 1)), run("run-1", 2), None)).await;
    assert!(matches!(lost, Err(StoreError::Conflict { .. })), "the same step twice: {lost:?}");
    let runs = store.ramp_runs().await.expect("runs");
    assert_eq!((runs.len(), runs[0].run.seq), (1, 2));
    assert_eq!(store.pending_deliveries().await.expect("pending"), 2);
    let due = store.due_deliveries(5, 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
    store.finish_delivery(1, None).await.expect("delivered");
    store
        .finish_delivery(2, Some(Delivery { attempts: 1, next_attempt_at: 99, ..due[1].clone() }))
        .await
        .expect("retry");
    assert!(store.due_deliveries(5, 10).await.expect("due").is_empty());
    assert_eq!(store.due_deliveries(99, 10).await.expect("due")[0].attempts, 1);

    // Outcome buckets: summed per second, read by range, pruned.
    let count = |second, variant: &str, ok, error| OutcomeCount {
        flag: "f".into(),
        variant: variant.into(),
        second,
        ok,
        error,
        latency: Latency::default(),
    };
    let context =
        |second, context, error| ContextOutcome { flag: "f".into(), variant: "on".into(), second, context, error };
    store
        .record_outcomes("prod", vec![count(10, "on", 5, 1), count(10, "off", 7, 0)], vec![context(10, 1, false)])
        .await
        .expect("record");
    store
        .record_outcomes(
            "prod",
            vec![count(10, "on", 1, 1), count(12, "on", 3, 0)],
            vec![context(10, 1, true), context(10, 2, false)],
        )
        .await
        .expect("record");
    let read = store.outcomes("prod", "f", 10, 12).await.expect("outcomes");
    assert_eq!(read, vec![count(10, "off", 7, 0), count(10, "on", 6, 2)]);
    let contexts = store.context_outcomes("prod", "f", 0, 100).await.expect("contexts");
    assert_eq!(contexts, vec![context(10, 1, true), context(10, 2, false)]);
    store.prune_outcomes("prod", "f", 11).await.expect("prune");
    assert_eq!(store.outcomes("prod", "f", 0, 100).await.expect("outcomes"), vec![count(12, "on", 3, 0)]);
    assert!(store.context_outcomes("prod", "f", 0, 100).await.expect("contexts").is_empty());
    // Ranges and pruning across minutes (Redis keeps a hash per minute).
    store
        .record_outcomes(
            "prod",
            vec![count(59, "on", 1, 0), count(60, "on", 2, 0), count(119, "off", 4, 1), count(185, "on", 8, 0)],
            vec![context(60, 3, true), context(185, 4, false)],
        )
        .await
        .expect("record");
    let read = store.outcomes("prod", "f", 59, 186).await.expect("outcomes");
    let seconds: Vec<u64> = read.iter().map(|c| c.second).collect();
    assert_eq!(seconds, vec![59, 60, 119, 185]);
    assert_eq!(store.outcomes("prod", "f", 60, 120).await.expect("outcomes").len(), 2);
    assert_eq!(store.context_outcomes("prod", "f", 61, 200).await.expect("contexts"), vec![context(185, 4, false)]);
    store.prune_outcomes("prod", "f", 119).await.expect("prune");
    let kept: Vec<u64> =
        store.outcomes("prod", "f", 0, 1000).await.expect("outcomes").iter().map(|c| c.second).collect();
    assert_eq!(kept, vec![119, 185]);
    assert_eq!(store.context_outcomes("prod", "f", 0, 1000).await.expect("contexts"), vec![context(185, 4, false)]);

    // Durations ride with the counts, summed per latency slot.
    let mut timed = count(300, "on", 2, 0);
    timed.latency.add(3, 2);
    store.record_outcomes("prod", vec![timed.clone()], vec![]).await.expect("record");
    store.record_outcomes("prod", vec![timed.clone(), count(300, "on", 1, 0)], vec![]).await.expect("record");
    let read = store.outcomes("prod", "f", 300, 301).await.expect("outcomes");
    let mut expected = count(300, "on", 5, 0);
    expected.latency.add(3, 4);
    assert_eq!(read, vec![expected]);

    // Conversions: stored once per (second, event, key), read by range,
    // pruned with the flag's outcomes.
    let conversion =
        |second, event: &str, context| Conversion { flag: "f".into(), event: event.into(), second, context };
    store
        .record_conversions(
            "prod",
            vec![conversion(300, "checkout", 1), conversion(300, "checkout", 1), conversion(301, "signup", 2)],
        )
        .await
        .expect("conversions");
    store.record_conversions("prod", vec![conversion(400, "checkout", 3)]).await.expect("conversions");
    let read = store.conversions("prod", "f", 300, 302).await.expect("conversions");
    assert_eq!(read, vec![conversion(300, "checkout", 1), conversion(301, "signup", 2)]);
    assert!(store.conversions("prod", "other", 0, 1000).await.expect("conversions").is_empty());
    store.prune_outcomes("prod", "f", 400).await.expect("prune");
    assert_eq!(
        store.conversions("prod", "f", 0, 1000).await.expect("conversions"),
        vec![conversion(400, "checkout", 3)]
    );

    // Flag usage: counts add up per source, variant, hour and day; the last
    // evaluation is the latest whoever writes; other flags and environments
    // are apart; what left the window is gone from a later write.
    {
        use rampart_server::store::usage::{UsageCount, UsageSource};
        let day = 86_400_000u64;
        let at = 20_000 * day + 3_600_000;
        let count = |flag: &str, source, variant: &str, count, last| UsageCount {
            flag: flag.into(),
            source,
            variant: variant.into(),
            count,
            last,
        };
        store
            .record_usage(
                "prod",
                at,
                vec![
                    count("u", UsageSource::Evaluated, "on", 5, at - 10),
                    count("u", UsageSource::Bulk, "on", 2, at - 5),
                    count("v", UsageSource::Sdk, "", 1, at - 1),
                ],
            )
            .await
            .expect("record usage");
        store
            .record_usage("prod", at + 1_000, vec![count("u", UsageSource::Evaluated, "on", 3, at - 20)])
            .await
            .expect("record usage");
        store.record_usage("staging", at, vec![count("u", UsageSource::Evaluated, "off", 9, at)]).await.expect("usage");
        let u = store.usage("prod", Some("u"), at + 2_000).await.expect("usage of u");
        assert_eq!(u.len(), 1);
        let evaluated_on = (UsageSource::Evaluated, "on".to_owned());
        assert_eq!(u[0].last_day(at + 2_000).get(&evaluated_on), Some(&8));
        assert_eq!(u[0].last_month(at + 2_000).get(&(UsageSource::Bulk, "on".to_owned())), Some(&2));
        assert_eq!(u[0].last, at - 5, "the latest evaluation, not the latest write");
        let all = store.usage("prod", None, at + 2_000).await.expect("all usage");
        assert_eq!(all.iter().map(|u| u.flag.as_str()).collect::<Vec<_>>(), ["u", "v"]);
        assert!(store.usage("prod", Some("w"), at).await.expect("none").is_empty());
        let later = at + 40 * day;
        store
            .record_usage("prod", later, vec![count("u", UsageSource::Evaluated, "on", 1, later)])
            .await
            .expect("usage");
        let u = store.usage("prod", Some("u"), later).await.expect("usage of u");
        assert_eq!(u[0].last_month(later).values().sum::<u64>(), 1, "forty days on, only the new count");
        assert!(u[0].periods.len() <= 2, "the old periods were dropped: {:?}", u[0].periods);
    }

    // One secret per installation, created once.
    let secret = store.installation_secret().await.expect("secret");
    assert_ne!(secret, [0; 32]);
    assert_eq!(store.installation_secret().await.expect("secret"), secret);

    // Retention: the newest versions per flag, and audit entries by age.
    for value in 0..5 {
        store
            .commit(commit("ana", 10_000 + value as u64, vec![put("kept", Expect::Anything, value)]))
            .await
            .expect("put");
    }
    store.retain_versions(3);
    store.commit(commit("ana", 20_000, vec![put("kept", Expect::Anything, 9)])).await.expect("put");
    let kept = store.history("prod", "kept", 0, 100).await.expect("history");
    assert_eq!(kept.iter().map(|v| v.version).collect::<Vec<_>>(), [4, 5, 6], "the newest three");
    let paged = store.history("prod", "kept", 1, 2).await.expect("page from a pruned version");
    assert_eq!(paged.iter().map(|v| v.version).collect::<Vec<_>>(), [4, 5]);
    let removed = store.prune(10_003).await.expect("prune");
    let kept = store.history("prod", "kept", 0, 100).await.expect("history");
    assert_eq!(kept.iter().map(|v| v.version).collect::<Vec<_>>(), [4, 5, 6]);
    // Flags written before the retention was lowered are trimmed by prune.
    let b = store.history("prod", "b", 0, 100).await.expect("history");
    assert_eq!(b.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    let audit = store.audit(AuditQuery { limit: 1000, ..Default::default() }).await.expect("audit");
    assert!(audit.iter().all(|e| e.at >= 10_003), "{audit:?}");
    assert!(removed >= 10, "{removed}");
}

#[tokio::test]
async fn the_embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    assert_eq!(store.acquire_lease("any", "me", Duration::from_secs(1)).await.expect("lease"), Some(0));
    contract(Arc::new(store)).await;
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    let first = reopened.installation_secret().await.expect("secret");
    drop(reopened);
    let again = EmbeddedStore::open(dir.path()).expect("reopen").installation_secret().await.expect("secret");
    assert_eq!(first, again, "the secret survives restarts");
}

fn options(redis: &Redis) -> RedisOptions {
    RedisOptions {
        url: redis.url.clone(),
        password: None,
        prefix: "contract".into(),
        timeout: Duration::from_secs(2),
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_store_keeps_the_contract_and_publishes_every_change() {
    let redis = Redis::start();
    let (store, mut notices) = RedisStore::connect(&options(&redis)).await.expect("connect");
    let store = Arc::new(store);
    contract(store.clone()).await;

    // Revisions: one per commit of the environment, published in order
    // with the records written (five, then six for the retention checks).
    let state = store.load_environment("prod").await.expect("state");
    assert_eq!(state.revision, 11);
    let mut revisions = Vec::new();
    while revisions.len() < 11 {
        let notice =
            tokio::time::timeout(Duration::from_secs(5), notices.recv()).await.expect("a notice").expect("open");
        if let Notice::Environment { revision, flags, .. } = notice {
            if revision == 1 {
                assert_eq!(flags["a"].as_ref().expect("record").version, 1);
            }
            revisions.push(revision);
        }
    }
    assert_eq!(revisions, (1..=11).collect::<Vec<u64>>());
    let (ramps_revision, runs) = store.load_ramps().await.expect("ramps");
    assert_eq!((ramps_revision, runs.len()), (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lease_holder_cannot_write() {
    let redis = Redis::start();
    let (store, _notices) = RedisStore::connect(&options(&redis)).await.expect("connect");
    let lease = "ramp:prod/r";
    let ttl = Duration::from_millis(300);
    let first = store.acquire_lease(lease, "replica-a", ttl).await.expect("acquire").expect("free");
    assert_eq!(store.acquire_lease(lease, "replica-b", ttl).await.expect("acquire"), None, "held by a");
    assert_eq!(
        store.acquire_lease(lease, "replica-a", ttl).await.expect("renew"),
        Some(first),
        "renewal keeps the token"
    );
    let fence = |token| Some(Fence { lease: lease.into(), token });
    store.write_ramp(ramp_write(None, run("run-1", 1), fence(first))).await.expect("holder writes");

    // a pauses past its lease; b takes over with a larger token and writes.
    let second = rampart_tests::eventually(Duration::from_secs(5), || {
        let acquired = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(store.acquire_lease(lease, "replica-b", ttl))
        });
        acquired.expect("acquire").ok_or_else(|| "a still holds it".to_owned())
    });
    assert!(second > first);
    store.write_ramp(ramp_write(Some(("run-1", 1)), run("run-1", 2), fence(second))).await.expect("b writes");
    // a wakes up and writes what it decided before: refused by the token,
    // even where compare-and-set alone would have let it through.
    let late = store.write_ramp(ramp_write(Some(("run-1", 2)), run("run-1", 3), fence(first))).await;
    assert!(
        matches!(late, Err(StoreError::Fenced { token, current, .. }) if token == first && current == second),
        "{late:?}"
    );
    assert_eq!(store.ramp_runs().await.expect("runs")[0].run.seq, 2);
    // Released at shutdown: another replica takes it at once.
    store.release_lease(lease, "replica-b").await.expect("release");
    assert!(store.acquire_lease(lease, "replica-c", Duration::from_secs(10)).await.expect("acquire").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_is_required_and_never_shown() {
    let redis = Redis::start_with(&["--requirepass", "s3cret-redis-pass"]);
    let wrong = RedisOptions { password: Some("wrong-password".into()), ..options(&redis) };
    let error = RedisStore::connect(&wrong).await.expect_err("a wrong password is refused").to_string();
    assert!(!error.contains("wrong-password"), "{error}");
    let in_url =
        RedisOptions { url: format!("redis://:s3cret-redis-pass@127.0.0.1:{}/0", redis.port), ..options(&redis) };
    assert!(!format!("{in_url:?}").contains("s3cret"), "the password is redacted from Debug");
    let (store, _) = RedisStore::connect(&in_url).await.expect("password in the URL");
    assert!(store.load().await.expect("load").is_empty());
    let separate = RedisOptions { password: Some("s3cret-redis-pass".into()), ..options(&redis) };
    let (store, _) = RedisStore::connect(&separate).await.expect("password given separately");
    assert!(store.load().await.expect("load").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca() {
    let (redis, ca) = Redis::start_tls();
    let trusted = RedisOptions { ca_file: Some(ca), ..options(&redis) };
    let (store, _) = RedisStore::connect(&trusted).await.expect("TLS with the CA");
    store.commit(commit("ana", 1, vec![put("a", Expect::Absent, 1)])).await.expect("write over TLS");
    assert_eq!(store.load().await.expect("load")["prod"].flags["a"].version, 1);
    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisOptions { ca_file: None, ..options(&redis) };
    assert!(RedisStore::connect(&untrusted).await.is_err(), "an unknown CA must be refused");
}
