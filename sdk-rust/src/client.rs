//! The client: local evaluation, status, change listeners.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rampart_engine::{Context, ErrorCode, FlagSet, Reason, Source, Typed};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::pending::{Outcome, UsageShard};
use crate::state::{Config, State, Status, unix_now};
use crate::sync;

/// One evaluation with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    pub value: T,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
}

/// A Rampart client. Cheap to clone; the background sync stops when the
/// last clone is dropped (or on [`Client::close`]).
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    config: Config,
    bootstrap: Option<PathBuf>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            config: Config {
                endpoint: None,
                sdk_key: None,
                reporter_key: None,
                connect_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(65),
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                outcome_interval: Duration::from_secs(1),
                usage_interval: Some(Duration::from_secs(60)),
            },
            bootstrap: None,
        }
    }
}

impl ClientBuilder {
    /// How often outcomes recorded with [`Client::record_outcome`] are sent
    /// (default 1 s). Ramps read only closed buckets, so a shorter interval
    /// mostly means more requests.
    pub fn outcome_interval(mut self, interval: Duration) -> Self {
        self.config.outcome_interval = interval.max(Duration::from_millis(50));
        self
    }

    /// How often the client reports how often it evaluated each flag (the
    /// flag's usage on the server: "last evaluated", "ready to remove"),
    /// default every 60 s; `None` turns it off. Counting costs one
    /// uncontended lock and a map lookup per evaluation (docs/benchmarks.md).
    pub fn usage_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.usage_interval = interval.map(|i| i.max(Duration::from_millis(50)));
        self
    }

    /// The server's sync listener, e.g. `http://127.0.0.1:8015`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.endpoint = Some(endpoint.into());
        self
    }

    /// The environment's SDK key (when the server has keys configured).
    pub fn sdk_key(mut self, key: impl Into<String>) -> Self {
        self.config.sdk_key = Some(key.into());
        self
    }

    /// A reporter key for outcome reports (an environment with
    /// `reporterKeys` accepts outcomes only from those). Keep it on
    /// servers: unlike an SDK key it is a secret.
    pub fn reporter_key(mut self, key: impl Into<String>) -> Self {
        self.config.reporter_key = Some(key.into());
        self
    }

    /// A flag file (flagd format, JSON or YAML) served until the first sync
    /// succeeds, so the application starts with sensible values even when
    /// the server is down.
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some(path.into());
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a silent stream (no heartbeat) is trusted before reconnecting.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Reconnection backoff: doubles from `initial` up to `max`, with jitter.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max.max(initial);
        self
    }

    /// Starts the client (and its background sync, on the current Tokio
    /// runtime). Fails only on configuration errors.
    pub fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        if self.config.endpoint.is_none() && self.bootstrap.is_none() {
            return Err(Error::NothingToServe);
        }
        if let Some(endpoint) = &self.config.endpoint {
            check_endpoint(endpoint)?;
        }
        let (flags, status) = match &self.bootstrap {
            Some(path) => (load_bootstrap(path)?, Status::Stale),
            None => (FlagSet::default(), Status::NotReady),
        };
        static NEXT_CLIENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let state = Arc::new(State {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            flags: ArcSwap::from_pointee(flags),
            generation: AtomicU64::new(0),
            status: watch::channel(status).0,
            position: Mutex::new((String::new(), 0)),
            listeners: Mutex::new(Vec::new()),
            now: AtomicI64::new(unix_now()),
            config: self.config,
            outcomes: crate::pending::Pending::default(),
            tracks: crate::pending::PendingTracks::default(),
            usage: Mutex::new(Vec::new()),
        });
        let stop = CancellationToken::new();
        runtime.spawn(sync::run(state.clone(), stop.clone()));
        let interval = state.config.outcome_interval;
        runtime.spawn(crate::outcomes::run(state.clone(), interval, stop.clone()));
        Ok(Client { handle: Arc::new(Handle { state, stop }) })
    }
}

/// An endpoint is an `http://` or `https://` URI with a host: caught here,
/// at build time, rather than as endless reconnect attempts.
fn check_endpoint(endpoint: &str) -> Result<(), Error> {
    let invalid = || Error::Endpoint(endpoint.to_owned());
    let uri: tonic::transport::Uri = endpoint.parse().map_err(|_| invalid())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(invalid()),
    }
}

fn load_bootstrap(path: &PathBuf) -> Result<FlagSet, Error> {
    let name = path.to_string_lossy().into_owned();
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Bootstrap { path: name.clone(), message: e.to_string() })?;
    FlagSet::load(&[Source::from_path(&name, &text)])
        .map_err(|e| Error::Bootstrap { path: name, message: e.to_string() })
}

/// One client's flag set as a thread last saw it.
struct Cached {
    id: u64,
    /// Dead once the client is gone: the entry is then dropped.
    owner: std::sync::Weak<State>,
    generation: u64,
    flags: Arc<FlagSet>,
    /// This thread's usage counters for the client (`None`: it reports none).
    usage: Option<Arc<Mutex<UsageShard>>>,
}

/// Counts one evaluation of `key` for the flag's usage, when the flag exists.
fn count(usage: Option<&Mutex<UsageShard>>, key: &str, error: Option<ErrorCode>, variant: Option<&str>) {
    if let Some(usage) = usage
        && error != Some(ErrorCode::FlagNotFound)
    {
        usage.lock().unwrap_or_else(|e| e.into_inner()).count(key, variant);
    }
}

thread_local! {
    /// Per thread: the flag sets of the clients this thread evaluated with.
    static CURRENT: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

/// Flag sets this thread keeps for clients (for tests of the eviction).
#[cfg(test)]
pub(crate) fn cached_sets() -> usize {
    CURRENT.with(|cache| cache.borrow().len())
}

impl Client {
    /// Runs `f` with the current flag set. The hot path is one atomic load
    /// and a thread-local lookup; the shared `ArcSwap` is read only when
    /// the set changed since this thread last looked.
    fn with_flags<R>(&self, f: impl FnOnce(&FlagSet, Option<&Mutex<UsageShard>>) -> R) -> R {
        let state = &self.handle.state;
        let generation = state.generation.load(Ordering::Acquire);
        CURRENT.with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = match cache.iter().position(|entry| entry.id == state.id) {
                Some(index) if cache[index].generation == generation => index,
                found => {
                    // A miss or a new set (rare): drop what dropped clients
                    // left behind on this thread, then refresh (keeping this
                    // thread's usage counters for the client).
                    let usage = match found {
                        Some(index) => cache.remove(index).usage,
                        None => state.usage_shard(),
                    };
                    let fresh = Cached {
                        id: state.id,
                        owner: Arc::downgrade(state),
                        generation,
                        flags: state.flags.load_full(),
                        usage,
                    };
                    cache.retain(|entry| entry.owner.strong_count() > 0);
                    cache.push(fresh);
                    cache.len() - 1
                }
            };
            let entry = &cache[index];
            f(&entry.flags, entry.usage.as_deref())
        })
    }

    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub fn status(&self) -> Status {
        self.handle.state.status.borrow().clone()
    }

    /// Waits until the client is connected and up to date.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut status = self.handle.state.status.subscribe();
        let ready = status.wait_for(|s| *s == Status::Ready);
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Calls `listener` with the keys of the flags that changed, after each
    /// change is applied (from the sync task: keep it short).
    pub fn on_change(&self, listener: impl Fn(&[String]) + Send + Sync + 'static) {
        self.handle.state.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::new(listener));
    }

    /// Stops the background sync; evaluation keeps answering from the last
    /// flags.
    pub fn close(&self) {
        self.handle.stop.cancel();
    }

    /// Records how a request served with a flag's variant went, for the
    /// flag's ramp guard. Evaluations without a variant (defaults, errors)
    /// are not counted: they say nothing about a variant.
    pub fn record_outcome<T>(&self, flag: &str, details: &Details<T>, outcome: Outcome) {
        self.record(flag, details, None, outcome, None);
    }

    /// As [`Client::record_outcome`], with how long the request took, for
    /// a ramp's latency guard (`spec.latency`). Durations are sent rounded
    /// up to the server's latency ladder (`rampart_proto::latency`), so
    /// counts stay aggregated however many requests there are.
    pub fn record_timed_outcome<T>(&self, flag: &str, details: &Details<T>, outcome: Outcome, took: Duration) {
        self.record(flag, details, None, outcome, Some(took));
    }

    /// As [`Client::record_outcome`], attributed to the context's targeting
    /// key, for ramps that count contexts (`unit: context`) rather than
    /// requests, so one noisy client cannot fake a regression.
    pub fn record_context_outcome<T>(&self, flag: &str, details: &Details<T>, context: &Context, outcome: Outcome) {
        let key = context.get(rampart_engine::TARGETING_KEY).and_then(Value::as_str).map(str::to_owned);
        self.record(flag, details, key, outcome, None);
    }

    fn record<T>(
        &self,
        flag: &str,
        details: &Details<T>,
        key: Option<String>,
        outcome: Outcome,
        took: Option<Duration>,
    ) {
        let Some(variant) = &details.variant else { return };
        let (ok, error) = match outcome {
            Outcome::Ok => (1, 0),
            Outcome::Error => (0, 1),
        };
        let slot = took.map(|took| rampart_proto::latency::slot_of(took.as_secs_f64() * 1000.0) as u8);
        self.handle.state.outcomes.add((flag.to_owned(), variant.clone(), key, slot), ok, error);
    }

    /// Runs `work` and records its result as the outcome of the request
    /// served with `details`: `Err` counts as an error, and how long it
    /// took feeds the ramp's latency guard.
    pub fn with_outcome<T, R, E>(
        &self,
        flag: &str,
        details: &Details<T>,
        work: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, E> {
        let started = std::time::Instant::now();
        let result = work();
        let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Error };
        self.record_timed_outcome(flag, details, outcome, started.elapsed());
        result
    }

    /// OpenFeature's `track(trackingEventName, context)`: the context did
    /// something worth counting (a checkout, a sign-up). A ramp whose
    /// conversion guard names the event compares conversions per exposed
    /// user between its arms; the server counts one per targeting key and
    /// event a step. Sent in the background with the outcomes; a context
    /// without a targeting key cannot be attributed and is not sent.
    pub fn track(&self, event: &str, context: &Context) {
        let Some(key) = context.get(rampart_engine::TARGETING_KEY).and_then(Value::as_str) else { return };
        if event.is_empty() || key.is_empty() {
            return;
        }
        self.handle.state.tracks.add(event.to_owned(), key.to_owned());
    }

    /// Sends the recorded outcomes now (they are also sent in the background).
    pub async fn flush_outcomes(&self) -> Result<(), Error> {
        let state = &self.handle.state;
        let channel = crate::outcomes::channel(state).ok_or(Error::NothingToServe)?;
        crate::outcomes::flush(state, &channel).await
    }

    /// The current flag set (for inspection and bulk use).
    pub fn flags(&self) -> Arc<FlagSet> {
        self.handle.state.flags.load_full()
    }

    fn details<'a, T: Typed<'a>, U>(
        (flags, usage): (&'a FlagSet, Option<&Mutex<UsageShard>>),
        key: &str,
        context: &'a Context,
        now: i64,
        default: U,
        convert: impl FnOnce(T) -> U,
    ) -> Details<U> {
        let typed = flags.resolve::<T>(key, context, now);
        count(usage, key, typed.error_code, typed.variant);
        Details {
            value: typed.value.map(convert).unwrap_or(default),
            variant: typed.variant.map(str::to_owned),
            reason: typed.reason,
            error_code: typed.error_code,
            error_message: typed.error_message,
        }
    }

    fn now(&self) -> i64 {
        self.handle.state.now.load(Ordering::Relaxed)
    }

    pub fn bool_details(&self, key: &str, context: &Context, default: bool) -> Details<bool> {
        let now = self.now();
        self.with_flags(|flags, usage| Client::details::<bool, bool>((flags, usage), key, context, now, default, |v| v))
    }

    pub fn string_details(&self, key: &str, context: &Context, default: &str) -> Details<String> {
        let now = self.now();
        self.with_flags(|flags, usage| {
            Client::details::<&str, String>((flags, usage), key, context, now, default.to_owned(), str::to_owned)
        })
    }

    pub fn int_details(&self, key: &str, context: &Context, default: i64) -> Details<i64> {
        let now = self.now();
        self.with_flags(|flags, usage| Client::details::<i64, i64>((flags, usage), key, context, now, default, |v| v))
    }

    pub fn float_details(&self, key: &str, context: &Context, default: f64) -> Details<f64> {
        let now = self.now();
        self.with_flags(|flags, usage| Client::details::<f64, f64>((flags, usage), key, context, now, default, |v| v))
    }

    /// Any flag's value as JSON, whatever its type: never `TYPE_MISMATCH`.
    pub fn json_details(&self, key: &str, context: &Context, default: Value) -> Details<Value> {
        let now = self.now();
        self.with_flags(|flags, usage| {
            Client::details::<&Value, Value>((flags, usage), key, context, now, default, Value::clone)
        })
    }

    /// An object flag's value (OpenFeature's structure type): a flag of
    /// another type is `TYPE_MISMATCH`.
    pub fn object_details(&self, key: &str, context: &Context, default: Value) -> Details<Value> {
        let now = self.now();
        self.with_flags(|flags, usage| {
            Client::details::<&Map<String, Value>, Value>((flags, usage), key, context, now, default, |m| {
                Value::Object(m.clone())
            })
        })
    }

    /// How long [`Client::wait_ready`] is worth waiting at start-up.
    pub fn connect_timeout(&self) -> Duration {
        self.handle.state.config.connect_timeout
    }

    /// The flag's boolean value, or `default` when it has none for this
    /// context (missing, disabled, failed, not a boolean).
    pub fn bool_value(&self, key: &str, context: &Context, default: bool) -> bool {
        let now = self.now();
        self.with_flags(|flags, usage| {
            let typed = flags.resolve::<bool>(key, context, now);
            count(usage, key, typed.error_code, typed.variant);
            typed.value.unwrap_or(default)
        })
    }

    pub fn string_value(&self, key: &str, context: &Context, default: &str) -> String {
        self.string_details(key, context, default).value
    }

    pub fn int_value(&self, key: &str, context: &Context, default: i64) -> i64 {
        let now = self.now();
        self.with_flags(|flags, usage| {
            let typed = flags.resolve::<i64>(key, context, now);
            count(usage, key, typed.error_code, typed.variant);
            typed.value.unwrap_or(default)
        })
    }

    pub fn float_value(&self, key: &str, context: &Context, default: f64) -> f64 {
        let now = self.now();
        self.with_flags(|flags, usage| {
            let typed = flags.resolve::<f64>(key, context, now);
            count(usage, key, typed.error_code, typed.variant);
            typed.value.unwrap_or(default)
        })
    }

    pub fn json_value(&self, key: &str, context: &Context, default: Value) -> Value {
        self.json_details(key, context, default).value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bootstrap_serves_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.yaml");
        std::fs::write(
            &path,
            "flags:\n  banner:\n    state: ENABLED\n    variants: {a: hello, b: bye}\n    defaultVariant: a\n",
        )
        .unwrap();
        let client = Client::builder().bootstrap_file(&path).build().unwrap();
        assert_eq!(client.status(), Status::Stale);
        let context = Context::new();
        assert_eq!(client.string_value("banner", &context, "x"), "hello");
        let details = client.bool_details("banner", &context, true);
        assert_eq!((details.value, details.error_code), (true, Some(ErrorCode::TypeMismatch)));
        assert_eq!(client.int_details("missing", &context, 7).error_code, Some(ErrorCode::FlagNotFound));
        assert!(client.wait_ready(Duration::from_millis(50)).await.is_err());
    }

    #[test]
    fn a_new_client_never_sees_a_dropped_clients_flags() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for (round, value) in ["first", "second", "third"].into_iter().enumerate() {
                let path = dir.path().join(format!("flags-{round}.yaml"));
                std::fs::write(
                    &path,
                    format!(
                        "flags:\n  banner:\n    state: ENABLED\n    variants: {{v: {value}}}\n    defaultVariant: v\n"
                    ),
                )
                .unwrap();
                let client = Client::builder().bootstrap_file(&path).build().unwrap();
                assert_eq!(client.string_value("banner", &Context::new(), "x"), value, "round {round}");
                drop(client);
                // Let the client's tasks end so its state is freed.
                tokio::task::yield_now().await;
            }
            // Dropped clients' sets are swept when the thread next misses.
            assert!(cached_sets() <= 2, "{} sets kept", cached_sets());
        });
    }

    #[test]
    fn invalid_endpoints_fail_at_build_time() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for endpoint in ["localhost:8015", "ftp://host:1", "not a uri", "http://"] {
                let built = Client::builder().endpoint(endpoint).build();
                assert!(matches!(built, Err(Error::Endpoint(_))), "{endpoint}: {built:?}");
            }
            assert!(Client::builder().endpoint("http://127.0.0.1:8015").build().is_ok());
        });
    }

    #[test]
    fn json_takes_any_type_and_object_only_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.yaml");
        std::fs::write(&path, "flags:\n  count:\n    state: ENABLED\n    variants: {n: 3}\n    defaultVariant: n\n")
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let client = Client::builder().bootstrap_file(&path).build().unwrap();
            let any = client.json_details("count", &Context::new(), Value::Null);
            assert_eq!((any.value, any.error_code), (serde_json::json!(3), None));
            let object = client.object_details("count", &Context::new(), Value::Null);
            assert_eq!(object.error_code, Some(ErrorCode::TypeMismatch));
        });
    }

    #[test]
    fn build_needs_a_runtime_and_something_to_serve() {
        assert!(matches!(Client::builder().endpoint("http://127.0.0.1:1").build(), Err(Error::NoRuntime)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            assert!(matches!(Client::builder().build(), Err(Error::NothingToServe)));
            let missing = Client::builder().bootstrap_file("/nonexistent/flags.json").build();
            assert!(matches!(missing, Err(Error::Bootstrap { .. })));
        });
    }
}
