//! The write path on its own — no HTTP — against the embedded store.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_engine::FlagState;
use serde_json::{Value, json};

use super::*;
use crate::cli::ServeArgs;
use crate::config::ServerConfig;
use crate::environment::{Environment, Environments};
use crate::store::embedded::EmbeddedStore;

const FILE_FLAGS: &str =
    r#"{"flags": {"from-file": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#;

struct Setup {
    _dir: tempfile::TempDir,
    environments: Environments,
    writes: Writes,
}

impl Setup {
    /// Two environments over the same file flag, each with an SDK key.
    fn new(max_api_flags: usize) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("flags.json"), FILE_FLAGS).expect("flags");
        let config_file = dir.path().join("rampart.yaml");
        std::fs::write(
            &config_file,
            "environments:\n  staging:\n    flags: [flags.json]\n    sdkKeys: [{value: staging-key-1}]\n  \
             production:\n    flags: [flags.json]\n    sdkKeys: [{value: production-key-1}]\n",
        )
        .expect("config");
        let args =
            ServeArgs { config: Some(config_file), data_dir: Some(dir.path().join("data")), ..Default::default() };
        let config = ServerConfig::resolve(&args, &|_| None).expect("config");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.data_dir).expect("store"));
        let environments =
            Environments::load(&config, BTreeMap::new(), crate::time::Clock::system()).expect("environments");
        Setup { _dir: dir, environments, writes: Writes::new(store, max_api_flags, crate::time::Clock::system()) }
    }

    fn staging(&self) -> &Environment {
        self.environments.get("staging").expect("staging")
    }

    fn production(&self) -> &Environment {
        self.environments.get("production").expect("production")
    }
}

fn definition(key: &str, default: &str) -> Definition {
    let value = json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": default});
    Definition::compile(key, value).expect("compiles")
}

fn served_default(environment: &Environment, key: &str) -> Option<Value> {
    environment.snapshot().flags.get(key).map(|flag| flag.definition()["defaultVariant"].clone())
}

#[tokio::test]
async fn a_put_answers_with_its_own_version_and_preconditions_hold() {
    let setup = Setup::new(10);
    let staging = setup.staging();
    let created =
        setup.writes.put(staging, "ana".into(), "banner", None, definition("banner", "a")).await.expect("create");
    assert!(created.created);
    assert_eq!(version_tag(&created.snapshot, "banner").as_deref(), Some("\"v1\""));

    let stale = setup.writes.put(staging, "bo".into(), "banner", Some("\"v0\""), definition("banner", "b")).await;
    assert!(matches!(stale, Err(WriteError::Precondition { .. })), "{stale:?}");
    assert_eq!(served_default(staging, "banner"), Some(json!("a")), "a refused write changes nothing");

    let updated = setup.writes.put(staging, "bo".into(), "banner", Some("\"v1\""), definition("banner", "b")).await;
    let updated = updated.expect("update");
    assert!(!updated.created);
    assert_eq!(version_tag(&updated.snapshot, "banner").as_deref(), Some("\"v2\""));
    assert_eq!(served_default(staging, "banner"), Some(json!("b")));

    // The same definition again is not a new version.
    let same = setup.writes.put(staging, "bo".into(), "banner", None, definition("banner", "b")).await.expect("same");
    assert_eq!(version_tag(&same.snapshot, "banner").as_deref(), Some("\"v2\""));
}

#[tokio::test]
async fn file_owned_flags_take_only_the_kill_switch() {
    let setup = Setup::new(10);
    let staging = setup.staging();
    let replaced = setup.writes.put(staging, "ana".into(), "from-file", None, definition("from-file", "a")).await;
    assert!(matches!(replaced, Err(WriteError::FileOwned { ref file, .. }) if file.ends_with("flags.json")));
    assert!(matches!(
        setup.writes.delete(staging, "ana".into(), "from-file", None).await,
        Err(WriteError::FileOwned { .. })
    ));

    setup.writes.set_state(staging, "ana".into(), "from-file", None, FlagState::Disabled).await.expect("disable");
    let snapshot = staging.snapshot();
    assert_eq!(snapshot.flags.get("from-file").map(|f| f.state()), Some(FlagState::Disabled));
    assert_eq!(snapshot.overrides.get("from-file").map(|o| o.state), Some(FlagState::Disabled));
    // Back to the file's own state: the override is gone.
    setup.writes.set_state(staging, "ana".into(), "from-file", None, FlagState::Enabled).await.expect("enable");
    assert!(staging.snapshot().overrides.is_empty());
    assert_eq!(
        setup.production().snapshot().flags.get("from-file").map(|f| f.state()),
        Some(FlagState::Enabled),
        "another environment is untouched"
    );
}

#[tokio::test]
async fn deletes_limits_and_invalid_definitions_say_why() {
    let setup = Setup::new(1);
    let staging = setup.staging();
    assert!(matches!(
        setup.writes.delete(staging, "ana".into(), "ghost", None).await,
        Err(WriteError::NotFound { .. })
    ));
    setup.writes.put(staging, "ana".into(), "one", None, definition("one", "a")).await.expect("first");
    let second = setup.writes.put(staging, "ana".into(), "two", None, definition("two", "a")).await;
    assert!(matches!(second, Err(WriteError::TooManyFlags { max: 1, .. })), "{second:?}");
    let invalid = Definition::compile("bad", json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"}));
    assert!(matches!(invalid, Err(WriteError::Invalid(_))), "{invalid:?}");
    setup.writes.delete(staging, "ana".into(), "one", None).await.expect("delete");
    assert!(staging.snapshot().flags.get("one").is_none());
}

#[tokio::test]
async fn revert_puts_back_an_earlier_version() {
    let setup = Setup::new(10);
    let staging = setup.staging();
    setup.writes.put(staging, "ana".into(), "banner", None, definition("banner", "a")).await.expect("v1");
    setup.writes.put(staging, "ana".into(), "banner", None, definition("banner", "b")).await.expect("v2");
    let reverted = setup.writes.revert(staging, "bo".into(), "banner", None, 1).await.expect("revert");
    assert_eq!(version_tag(&reverted.snapshot, "banner").as_deref(), Some("\"v3\""));
    assert_eq!(served_default(staging, "banner"), Some(json!("a")));
    let missing = setup.writes.revert(staging, "bo".into(), "banner", None, 99).await;
    assert!(matches!(missing, Err(WriteError::VersionNotFound { version: 99, .. })), "{missing:?}");
    setup.writes.delete(staging, "bo".into(), "banner", None).await.expect("v4 deletes");
    let deleted = setup.writes.revert(staging, "bo".into(), "banner", None, 4).await;
    assert!(matches!(deleted, Err(WriteError::VersionDeleted { version: 4, .. })), "{deleted:?}");
}

#[tokio::test]
async fn promotion_copies_api_flags_and_refuses_file_owned_ones() {
    let setup = Setup::new(10);
    let (staging, production) = (setup.staging(), setup.production());
    setup.writes.put(staging, "ana".into(), "banner", None, definition("banner", "b")).await.expect("staging flag");

    let dry = setup.writes.promote(staging, production, "ana".into(), None, true).await.expect("dry run");
    assert_eq!(
        dry.items.iter().map(|i| (i.flag.as_str(), i.action)).collect::<Vec<_>>(),
        [("banner", PromotionAction::Create)]
    );
    assert!(!dry.applied && served_default(production, "banner").is_none(), "a dry run changes nothing");

    let done = setup.writes.promote(staging, production, "ana".into(), None, false).await.expect("promote");
    assert!(done.applied);
    assert_eq!(done.items[0].version, Some(1));
    assert_eq!(served_default(production, "banner"), Some(json!("b")));
    let again = setup.writes.promote(staging, production, "ana".into(), None, false).await.expect("again");
    assert!(!again.applied && again.items[0].action == PromotionAction::Unchanged);

    let file_owned = setup.writes.promote(staging, production, "ana".into(), Some(&["from-file".into()]), false).await;
    assert!(matches!(file_owned, Err(WriteError::SourceFileOwned { .. })), "{file_owned:?}");
    let same = setup.writes.promote(staging, staging, "ana".into(), None, false).await;
    assert!(matches!(same, Err(WriteError::SameEnvironment)));
}

#[test]
fn flag_actions_keep_their_stored_names() {
    use super::FlagAction;
    let names: Vec<String> = [
        FlagAction::Create,
        FlagAction::Update,
        FlagAction::Delete,
        FlagAction::Revert { to: 3 },
        FlagAction::Promote,
        FlagAction::Disable,
        FlagAction::Enable,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(names, ["create", "update", "delete", "revert to 3", "promote", "disable", "enable"]);
}
