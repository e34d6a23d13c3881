//! Promotion: API-owned flags of one environment copied into another as
//! one atomic, audited change (or, dry, the difference it would make).

use std::collections::BTreeMap;

use super::{Actor, Definition, WriteError, Writes, describe::describe};
use crate::environment::{Environment, Inputs};
use crate::store::{Change, ChangeKind, Commit, Expect, FlagRecord};

/// What a promotion does to one flag of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotionAction {
    Create,
    Update,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionItem {
    pub flag: String,
    pub action: PromotionAction,
    /// What changes, in words.
    pub changes: Vec<String>,
    /// The version written in the target (absent on a dry run or when unchanged).
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub items: Vec<PromotionItem>,
    /// Whether the target changed.
    pub applied: bool,
}

impl Writes {
    /// Copies `keys` (all API-owned flags of `from` when `None`) into `to`.
    pub async fn promote(
        &self,
        from: &Environment,
        to: &Environment,
        actor: Actor<'_>,
        keys: Option<&[String]>,
        dry_run: bool,
    ) -> Result<Promotion, WriteError> {
        if !dry_run {
            self.admit(&actor)?;
        }
        if from.name == to.name {
            return Err(WriteError::SameEnvironment);
        }
        let source = from.snapshot();
        let keys: Vec<String> = match keys {
            Some(keys) => keys.to_vec(),
            None => source.api.keys().cloned().collect(),
        };
        // Each source definition with its version, compiled once for the target.
        let mut definitions: BTreeMap<String, (Definition, u64)> = BTreeMap::new();
        for key in &keys {
            match (source.api.get(key).map(|r| &**r), source.file_of(key)) {
                (Some(FlagRecord { definition: Some(definition), version, .. }), _) => {
                    definitions.insert(key.clone(), (Definition::compile(key, definition.clone())?, *version));
                }
                (_, Some(file)) => {
                    return Err(WriteError::SourceFileOwned {
                        environment: from.name.clone(),
                        flag: key.clone(),
                        file: file.to_owned(),
                    });
                }
                _ => return Err(WriteError::NotFound { environment: from.name.clone(), flag: key.clone() }),
            }
        }
        let (items, _) = to
            .change(async |inputs: &Inputs| {
                let target = to.snapshot();
                let mut items = Vec::with_capacity(definitions.len());
                for (key, (definition, _)) in &definitions {
                    super::check_not_file_owned(&target, key)?;
                    let current = inputs.api.get(key).and_then(|r| r.definition.as_ref());
                    let action = match current {
                        None => PromotionAction::Create,
                        Some(current) if current == definition.value() => PromotionAction::Unchanged,
                        Some(_) => PromotionAction::Update,
                    };
                    let changes = describe(current, Some(definition.value()));
                    items.push(PromotionItem { flag: key.clone(), action, changes, version: None });
                }
                let creates = items.iter().filter(|i| i.action == PromotionAction::Create).count();
                if inputs.api.len() + creates > self.max_api_flags {
                    return Err(WriteError::TooManyFlags { environment: to.name.clone(), max: self.max_api_flags });
                }
                if dry_run || items.iter().all(|i| i.action == PromotionAction::Unchanged) {
                    return Ok((None, items));
                }
                let at = self.clock.now_millis();
                let mut next = inputs.clone();
                let mut batch = Vec::new();
                for item in items.iter().filter(|i| i.action != PromotionAction::Unchanged) {
                    let (definition, source_version) = &definitions[&item.flag];
                    let record =
                        FlagRecord { version: 0, definition: Some(definition.value.clone()), at, by: actor.name.into() };
                    next.put_api_compiled(&item.flag, record, definition.flag.clone());
                    let mut lines = vec![format!("promoted from '{}' version {source_version}", from.name)];
                    lines.extend(item.changes.iter().cloned());
                    batch.push(Change {
                        environment: to.name.clone(),
                        flag: item.flag.clone(),
                        expect: inputs.api.get(&item.flag).map_or(Expect::Absent, |r| Expect::Version(r.version)),
                        kind: ChangeKind::Put(definition.value.clone()),
                        action: super::FlagAction::Promote.to_string(),
                        changes: actor.describe(lines),
                    });
                }
                let built = next.compose().map_err(WriteError::Invalid)?;
                let committed = self.store.commit(Commit { actor: actor.name.to_owned(), at, changes: batch }).await?;
                next.committed(&to.name, &committed);
                for entry in committed.entries {
                    if let Some(version) = entry.version {
                        next.set_api_version(&entry.flag, version);
                    }
                    if let Some(item) = items.iter_mut().find(|i| i.flag == entry.flag) {
                        item.version = entry.version;
                    }
                }
                tracing::info!(from = %from.name, to = %to.name, flags = definitions.len(), actor = actor.name, "promotion");
                Ok((Some((next, built)), items))
            })
            .await?;
        let applied = !dry_run && items.iter().any(|i| i.action != PromotionAction::Unchanged);
        Ok(Promotion { items, applied })
    }
}
