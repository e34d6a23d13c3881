//! Group commit of outcome reports: every report is durable before its
//! reply, but reports arriving while a commit is under way wait for the
//! next one and share its write transaction and fsync. One commit costs
//! the same for one report or a thousand, so the rate the store sustains
//! grows with the load instead of being one fsync per request.
//!
//! The first report to arrive while no commit runs starts a committer
//! task; it commits whatever has queued, hands each report its result, and
//! goes on while more queued meanwhile. A batch is bounded
//! ([`MAX_BATCH`] reports), so one commit's time stays bounded too.

use std::sync::{Arc, Mutex};

use redb::Database;
use tokio::sync::oneshot;

use super::super::{ContextOutcome, OutcomeCount, StoreError};

/// Most reports committed in one transaction.
pub(super) const MAX_BATCH: usize = 1024;

/// One report waiting for its commit.
struct Job {
    environment: String,
    counts: Vec<OutcomeCount>,
    contexts: Vec<ContextOutcome>,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A committer task is running (and will look at the queue again).
    committing: bool,
}

/// The outcome writer of one database.
#[derive(Clone, Default)]
pub(super) struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Records one report; returns when it is durable (or failed with its batch).
    pub(super) async fn record(
        &self,
        db: &Arc<Database>,
        environment: String,
        counts: Vec<OutcomeCount>,
        contexts: Vec<ContextOutcome>,
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.jobs.push(Job { environment, counts, contexts, done });
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            tokio::spawn(committer(self.queue.clone(), db.clone()));
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::unavailable("the embedded store", message)),
            Err(_) => Err(StoreError::unavailable("the embedded store", "the outcome committer stopped")),
        }
    }
}

/// Commits queued reports, batch after batch, until the queue is empty.
async fn committer(queue: Arc<Mutex<Queue>>, db: Arc<Database>) {
    loop {
        let batch: Vec<Job> = {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.jobs.is_empty() {
                queue.committing = false;
                return;
            }
            let take = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..take).collect()
        };
        let db = db.clone();
        let (results, batch) = tokio::task::spawn_blocking(move || {
            let reports: Vec<(&str, &[OutcomeCount], &[ContextOutcome])> =
                batch.iter().map(|job| (job.environment.as_str(), &job.counts[..], &job.contexts[..])).collect();
            let result = super::ramps::record_outcome_batch(&db, &reports).map_err(|e| e.to_string());
            (result, batch)
        })
        .await
        .unwrap_or_else(|error| (Err(error.to_string()), Vec::new()));
        for job in batch {
            let _ = job.done.send(results.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn count(second: u64) -> OutcomeCount {
        OutcomeCount { flag: "f".into(), variant: "on".into(), second, ok: 1, error: 0, ..Default::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reports_share_commits_and_all_are_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("t.redb")).expect("db"));
        let txn = db.begin_write().expect("txn");
        txn.open_table(super::super::OUTCOMES).expect("table");
        txn.open_table(super::super::CONTEXT_OUTCOMES).expect("table");
        txn.commit().expect("commit");
        let writer = GroupCommit::default();
        let tasks: Vec<_> = (0..500u64)
            .map(|i| {
                let (writer, db) = (writer.clone(), db.clone());
                tokio::spawn(async move { writer.record(&db, "prod".into(), vec![count(i % 5)], Vec::new()).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("recorded");
        }
        let kept = super::super::ramps::outcomes(&db, "prod", "f", 0, 10).expect("read");
        assert_eq!(kept.iter().map(|c| c.ok).sum::<u64>(), 500, "every acknowledged report is stored");
        assert_eq!(kept.len(), 5);
        assert!(!writer.queue.lock().expect("lock").committing, "the committer stops when idle");
    }
}
