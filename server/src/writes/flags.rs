//! One flag at a time: create or replace an API-owned flag, delete it,
//! flip its state (for a file-owned flag, a stored override), revert it to
//! an earlier version.

use rampart_engine::FlagState;
use serde_json::Value;

use super::{
    Actor, Definition, FlagAction, WriteError, Writes, Written, check_expected, check_not_file_owned,
    describe::describe,
};
use crate::environment::{Environment, Inputs};
use crate::store::{Change, ChangeKind, Commit, Expect, FlagRecord, StateOverride};

/// A change to an API-owned flag, applied to its current definition under
/// the environment's lock (so a concurrent write is never lost).
#[derive(Debug)]
pub enum Edit {
    Replace(Definition),
    SetState(FlagState),
    Delete,
}

impl Writes {
    /// Creates or replaces an API-owned flag.
    pub async fn put(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
        definition: Definition,
    ) -> Result<Written, WriteError> {
        self.admit(&actor)?;
        self.edit(environment, actor, key, expected, Edit::Replace(definition), None).await
    }

    /// Deletes an API-owned flag.
    pub async fn delete(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
    ) -> Result<Written, WriteError> {
        self.admit(&actor)?;
        self.edit(environment, actor, key, expected, Edit::Delete, None).await
    }

    /// The kill switch, on any flag: an API-owned flag's own state, or a
    /// stored override of a file-owned flag's (removed when the wanted state
    /// is the file's own).
    pub async fn set_state(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
        wanted: FlagState,
    ) -> Result<Written, WriteError> {
        self.admit(&actor)?;
        if environment.snapshot().api.contains_key(key) {
            let action = FlagAction::of_state(wanted);
            self.edit(environment, actor, key, expected, Edit::SetState(wanted), Some(action)).await
        } else {
            self.set_override(environment, actor, key, expected, wanted).await
        }
    }

    /// Puts back the definition an API-owned flag had at `version`.
    pub async fn revert(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
        version: u64,
    ) -> Result<Written, WriteError> {
        self.admit(&actor)?;
        let history = self.store.history(&environment.name, key, version.saturating_sub(1), 1).await?;
        let target = history
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| WriteError::VersionNotFound { flag: key.to_owned(), version })?;
        let value = target.definition.ok_or_else(|| WriteError::VersionDeleted { flag: key.to_owned(), version })?;
        let definition = Definition::compile(key, value)?;
        let action = FlagAction::Revert { to: version };
        self.edit(environment, actor, key, expected, Edit::Replace(definition), Some(action)).await
    }

    /// Applies an [`Edit`] to an API-owned flag: checks ownership, the
    /// precondition and the flag limit, compiles the environment with the
    /// change, writes it durably, then publishes it.
    async fn edit(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
        edit: Edit,
        action: Option<FlagAction>,
    ) -> Result<Written, WriteError> {
        let (created, snapshot) = environment
            .change(async |inputs: &Inputs| {
                let snapshot = environment.snapshot();
                check_not_file_owned(&snapshot, key)?;
                check_expected(&snapshot, key, expected)?;
                let current = inputs.api.get(key);
                let not_found = || WriteError::NotFound { environment: environment.name.clone(), flag: key.to_owned() };
                let definition = match edit {
                    Edit::Replace(definition) => Some(definition),
                    Edit::Delete => {
                        current.ok_or_else(not_found)?;
                        None
                    }
                    Edit::SetState(wanted) => {
                        let mut value = current.and_then(|r| r.definition.clone()).ok_or_else(not_found)?;
                        if let Some(fields) = value.as_object_mut() {
                            fields.insert("state".into(), Value::String(wanted.as_str().into()));
                        }
                        Some(Definition::compile(key, value)?)
                    }
                };
                if definition.is_some() && current.is_none() && inputs.api.len() >= self.max_api_flags {
                    return Err(WriteError::TooManyFlags {
                        environment: environment.name.clone(),
                        max: self.max_api_flags,
                    });
                }
                let old = current.and_then(|r| r.definition.as_ref());
                let new = definition.as_ref().map(Definition::value);
                if new == old {
                    return Ok((None, false));
                }
                let at = self.clock.now_millis();
                let mut next = inputs.clone();
                match &definition {
                    Some(definition) => {
                        let record =
                            FlagRecord { version: 0, definition: Some(definition.value.clone()), at, by: actor.name.into() };
                        next.put_api_compiled(key, record, definition.flag.clone());
                    }
                    None => next.remove_api(key),
                }
                let built = next.compose().map_err(WriteError::Invalid)?;
                let action = action.unwrap_or(match (&definition, current) {
                    (None, _) => FlagAction::Delete,
                    (Some(_), None) => FlagAction::Create,
                    (Some(_), Some(_)) => FlagAction::Update,
                })
                .to_string();
                let change = Change {
                    environment: environment.name.clone(),
                    flag: key.to_owned(),
                    expect: current.map_or(Expect::Absent, |r| Expect::Version(r.version)),
                    kind: new.cloned().map_or(ChangeKind::Delete, ChangeKind::Put),
                    action: action.clone(),
                    changes: actor.describe(describe(old, new)),
                };
                let committed =
                    self.store.commit(Commit { actor: actor.name.to_owned(), at, changes: vec![change] }).await?;
                next.committed(&environment.name, &committed);
                let version = committed.entries.first().and_then(|e| e.version);
                if let Some(version) = version {
                    next.set_api_version(key, version);
                }
                tracing::info!(environment = %environment.name, flag = key, action, version, actor = actor.name, "flag changed");
                Ok((Some((next, built)), current.is_none() && definition.is_some()))
            })
            .await?;
        Ok(Written { created, snapshot })
    }

    /// Sets or clears the state override of a file-owned flag.
    async fn set_override(
        &self,
        environment: &Environment,
        actor: Actor<'_>,
        key: &str,
        expected: Option<&str>,
        wanted: FlagState,
    ) -> Result<Written, WriteError> {
        let ((), snapshot) = environment
            .change(async |inputs: &Inputs| {
                let snapshot = environment.snapshot();
                let Some(flag) = snapshot.flags.get(key) else {
                    return Err(WriteError::NotFound { environment: environment.name.clone(), flag: key.to_owned() });
                };
                check_expected(&snapshot, key, expected)?;
                let file_state = snapshot.file_states.get(key).copied().unwrap_or(flag.state());
                let served = flag.state();
                let new_override = (wanted != file_state).then_some(wanted);
                let current_override = inputs.overrides.get(key).map(|o| o.state);
                if new_override == current_override && served == wanted {
                    return Ok((None, ()));
                }
                let at = self.clock.now_millis();
                let mut next = inputs.clone();
                match new_override {
                    Some(state) => {
                        let record = StateOverride { state, at, by: actor.name.to_owned() };
                        next.overrides_mut().insert(key.to_owned(), record);
                    }
                    None => {
                        next.overrides_mut().remove(key);
                    }
                }
                let built = next.compose().map_err(WriteError::Invalid)?;
                let action = FlagAction::of_state(wanted).to_string();
                let mut lines = vec![format!("state: {} → {}", served.as_str(), wanted.as_str())];
                lines.push(match new_override {
                    Some(_) => format!("overrides the file's state ({})", file_state.as_str()),
                    None => "override removed: the file's state applies".to_owned(),
                });
                let change = Change {
                    environment: environment.name.clone(),
                    flag: key.to_owned(),
                    expect: Expect::Anything,
                    kind: ChangeKind::Override(new_override),
                    action: action.clone(),
                    changes: actor.describe(lines),
                };
                let committed =
                    self.store.commit(Commit { actor: actor.name.to_owned(), at, changes: vec![change] }).await?;
                next.committed(&environment.name, &committed);
                tracing::info!(environment = %environment.name, flag = key, action, actor = actor.name, "kill switch");
                Ok((Some((next, built)), ()))
            })
            .await?;
        Ok(Written { created: false, snapshot })
    }
}
