//! `GET /ui/events`: server-sent events telling an open dashboard page that
//! something it may show changed — a flag in any environment (files, API,
//! kill switch, replication, ramp exposure), a ramp tick, a reload.
//!
//! The stream looks at a fingerprint of that state per scope (an
//! environment, a ramp) every [`LOOK_EVERY`] and sends `change` with the
//! scopes that differ; a page whose live regions watch one of them fetches
//! itself and swaps those regions. A page therefore follows a change
//! within about half a second, at the cost of a few atomic reads per open
//! page. Open streams are bounded ([`MAX_STREAMS`]); a stream ends with its
//! session and when the server shuts down.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use super::{COOKIE, viewer};
use crate::http::AppState;

/// How often a stream compares the fingerprint.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most dashboard event streams open at once (every open page has one).
pub(crate) const MAX_STREAMS: usize = 256;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Counts an open stream; dropped with it.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

fn take_slot() -> Option<Slot> {
    let previous = OPEN.fetch_add(1, Ordering::Relaxed);
    if previous >= MAX_STREAMS {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Slot)
}

/// A fingerprint of what a page may show live, per scope: `env:<name>`
/// (the environment's flags, revision and last reload) and
/// `ramp:<environment>/<name>` (the ramp's persisted state and checks).
async fn fingerprints(state: &AppState) -> BTreeMap<String, u64> {
    let mut scopes = BTreeMap::new();
    for environment in state.environments.iter() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        environment.snapshot().version.hash(&mut hasher);
        environment.revision().hash(&mut hasher);
        environment.last_reload().map(|r| r.at).hash(&mut hasher);
        scopes.insert(super::scope_of_environment(&environment.name), hasher.finish());
    }
    for entry in state.ramps.entries() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        entry.change_mark().await.hash(&mut hasher);
        scopes.insert(super::scope_of_ramp(&entry.environment, &entry.name), hasher.finish());
    }
    scopes
}

/// The scopes whose fingerprint differs (or that came or went).
fn changed(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> Vec<String> {
    let mut scopes: Vec<String> =
        now.iter().filter(|(scope, value)| before.get(*scope) != Some(value)).map(|(scope, _)| scope.clone()).collect();
    scopes.extend(before.keys().filter(|scope| !now.contains_key(*scope)).cloned());
    scopes
}

struct Feed {
    state: web::Data<AppState>,
    /// The session's cookie value (`None` without sign-in).
    session: Option<String>,
    last: BTreeMap<String, u64>,
    look: tokio::time::Interval,
    quiet_since: tokio::time::Instant,
    _slot: Slot,
}

pub(crate) async fn stream(state: web::Data<AppState>, request: HttpRequest) -> super::Page {
    viewer(&state, &request)?;
    let Some(slot) = take_slot() else {
        state.metrics.rejected(crate::limits::Rejection::Connections);
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .content_type("text/plain")
            .body("too many dashboard pages are open"));
    };
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        last: fingerprints(&state).await,
        session: request.cookie(COOKIE).map(|c| c.value().to_owned()),
        state,
        look,
        quiet_since: tokio::time::Instant::now(),
        _slot: slot,
    };
    let shutdown = feed.state.shutdown.clone();
    let events = futures_util::stream::unfold(feed, move |mut feed| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    _ = feed.look.tick() => {}
                }
                if let Some(session) = &feed.session
                    && feed.state.dashboard.sessions.get(session).is_none()
                {
                    return None;
                }
                let now = fingerprints(&feed.state).await;
                let scopes = changed(&feed.last, &now);
                if !scopes.is_empty() {
                    feed.last = now;
                    feed.quiet_since = tokio::time::Instant::now();
                    let event = Bytes::from(format!("event: change\ndata: {}\n\n", scopes.join(" ")));
                    return Some((Ok::<_, actix_web::Error>(event), feed));
                }
                if feed.quiet_since.elapsed() >= KEEP_ALIVE {
                    feed.quiet_since = tokio::time::Instant::now();
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), feed));
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events))
}

/// Streams open now (for tests of the bound).
#[cfg(test)]
pub(crate) fn open() -> usize {
    OPEN.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn only_changed_scopes_are_named() {
        let before: BTreeMap<String, u64> = [("env:a".into(), 1), ("env:b".into(), 2), ("ramp:a/r".into(), 3)].into();
        let now: BTreeMap<String, u64> = [("env:a".into(), 1), ("env:b".into(), 5), ("ramp:a/s".into(), 4)].into();
        assert_eq!(super::changed(&before, &now), ["env:b", "ramp:a/s", "ramp:a/r"]);
        assert!(super::changed(&now, &now).is_empty());
    }

    #[test]
    fn streams_are_bounded() {
        let slots: Vec<_> = std::iter::from_fn(super::take_slot).take(super::MAX_STREAMS + 10).collect();
        assert_eq!(slots.len(), super::MAX_STREAMS);
        assert!(super::take_slot().is_none());
        drop(slots);
        assert_eq!(super::open(), 0);
        assert!(super::take_slot().is_some());
    }
}
