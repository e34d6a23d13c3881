//! Hot reload of flag files.
//!
//! The directories that hold each environment's files are watched (not the
//! files: editors save by writing a new file and renaming it over the old
//! one). Events are debounced, then every environment is reloaded; one whose
//! files did not change keeps its snapshot and version, one whose files are
//! invalid keeps serving its last good snapshot and the errors are logged
//! with their file and line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::environment::{Environments, Reload};
use crate::loader;
use crate::metrics::Metrics;
use crate::ramp::controller::Controller;

/// Quiet period after the last file event before reloading: long enough to
/// cover an editor's write-and-rename or a `git checkout`.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// File watches on every environment's flag directories.
pub struct Watcher {
    environments: Arc<Environments>,
    metrics: Arc<Metrics>,
    ramps: Arc<Controller>,
    changed: mpsc::Receiver<()>,
    _debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Registers the watches now, before the server announces itself, so
    /// no edit made after start-up can be missed; a first reload pass then
    /// catches edits made between the initial load and the watches.
    pub fn start(environments: Arc<Environments>, metrics: Arc<Metrics>, ramps: Arc<Controller>) -> Watcher {
        let (events, changed) = mpsc::channel::<()>(1);
        let initial = events.clone();
        let debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
            // A full channel already means "reload pending".
            Ok(batch) if batch.iter().any(|event| is_change(event)) => {
                let _ = events.try_send(());
            }
            Ok(_) => {}
            Err(errors) => tracing::warn!(?errors, "file watcher error"),
        });
        let debouncer = match debouncer {
            Ok(mut debouncer) => {
                for (root, recursive) in watch_roots(&environments, &ramps) {
                    let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
                    match debouncer.watch(&root, mode) {
                        Ok(()) => tracing::debug!(root = %root.display(), recursive, "watching flag files"),
                        Err(error) => tracing::error!(
                            root = %root.display(), %error,
                            "cannot watch directory; its files will not be reloaded"
                        ),
                    }
                }
                Some(debouncer)
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch flag files; changes will not be reloaded");
                None
            }
        };
        let _ = initial.try_send(());
        Watcher { environments, metrics, ramps, changed, _debouncer: debouncer }
    }

    /// Reloads on every change until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(()) = self.changed.recv() => {
                    reload_all(&self.environments, &self.metrics).await;
                    // Ramps are checked against the flags just reloaded.
                    self.ramps.reload().await;
                }
            }
        }
    }
}

/// Reloads every environment, recording and logging the outcome.
pub async fn reload_all(environments: &Environments, metrics: &Metrics) {
    use tracing::Instrument;
    for environment in environments.iter() {
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "config.reload",
            environment = %environment.name,
            result = tracing::field::Empty,
        );
        let reloaded = environment.reload_files().instrument(span.clone()).await;
        span.record(
            "result",
            match &reloaded {
                Ok(Reload::Changed(_)) => "ok",
                Ok(Reload::Unchanged) => "unchanged",
                Err(_) => "failed",
            },
        );
        drop(span);
        match reloaded {
            Ok(Reload::Changed(version)) => {
                let snapshot = environment.snapshot();
                metrics.reloaded(&environment.name, "ok");
                tracing::info!(
                    environment = %environment.name,
                    version,
                    flags = snapshot.flags.len(),
                    invalid = snapshot.problems.len(),
                    "flag files reloaded"
                );
                crate::log_problems(environment, metrics);
            }
            Ok(Reload::Unchanged) => metrics.reloaded(&environment.name, "unchanged"),
            Err(errors) => {
                metrics.reloaded(&environment.name, "failed");
                metrics.rejected_load(&errors.0);
                let serving = environment.snapshot().version;
                for error in errors.iter() {
                    tracing::error!(
                        environment = %environment.name,
                        file = %error.file,
                        line = error.line,
                        flag = error.flag.as_deref(),
                        serving_version = serving,
                        "rejected flag files, still serving the last good version: {error}"
                    );
                }
            }
        }
    }
}

/// Whether an event can change what a file says: writes, creations,
/// renames and removals. Opening and reading a file (the server's own
/// reload does both) are not, so an idle server never reloads itself.
fn is_change(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
    }
}

/// Directories to watch, each once, recursive if any pattern needs it.
fn watch_roots(environments: &Environments, ramps: &Controller) -> Vec<(PathBuf, bool)> {
    let mut roots: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for environment in environments.iter() {
        for pattern in environment.flag_patterns.iter().chain(ramps.patterns(&environment.name)) {
            let (root, recursive) = loader::watch_root(pattern);
            *roots.entry(root).or_default() |= recursive;
        }
    }
    roots.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    use super::is_change;

    #[test]
    fn only_changes_reload() {
        let changes = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(notify::event::RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ];
        for kind in changes {
            assert!(is_change(&Event::new(kind)), "{kind:?}");
        }
        // What the server's own reload causes: opening and reading.
        let reads = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::AccessTime)),
        ];
        for kind in reads {
            assert!(!is_change(&Event::new(kind)), "{kind:?}");
        }
    }
}
