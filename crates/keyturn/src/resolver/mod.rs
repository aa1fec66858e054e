//! The resolver: cache, origins, subscriptions, coalesced fetches and refreshes.
//!
//! A [`Resolver`] is a cheap handle (`Clone`) over shared state. [`Resolver::resolve`] registers
//! every handle of a document under its origin (before fetching, so a handle that fails now is
//! retried by the next refresh), serves cached handles at once, fetches the others in one batch
//! per backend, and renders the document. [`Resolver::refresh`] re-fetches every known handle.
//!
//! A resolve, step by step: `group_by_handle` (the document's uses, before the lock),
//! `Inner::register_and_plan` (register, and decide under one lock what is cached, joined or
//! fetched), `Inner::spawn_batch` (the batch task: `fetch_all` runs each backend, then
//! `State::apply_lookups` applies the answers), `wait_for`, `Inner::collect` (values and
//! failures), `cache_hit_notifications`, and the render.
//!
//! Invariants:
//! - The state mutex is never held across an `.await` or a backend run: a resolve that only needs
//!   cached handles returns at once even while a backend is slow.
//! - Concurrent resolves that need the same uncached handle share one backend run (the
//!   `inflight` map); concurrent refreshes (of all handles or of named ones) are coalesced
//!   into at most two runs (see [`refresh`]).
//! - Backend runs happen in spawned tasks, so a caller that gives up (drops its future) never
//!   strands the others waiting on the same run.
//! - Subscribers are called after the state lock is released, so they may call back into the
//!   resolver.
//! - Values only ever enter the cache from a successful backend answer, and live in [`Secret`]s.

mod failure;
pub mod observer;
pub mod refresh;
mod routing;
pub mod status;

use crate::printable::Printable;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use smallvec::SmallVec;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::audit::{AuditLimits, AuditWriter};
use crate::backend::{self, BackendSpec, FailureKind, FetchOptions};
use crate::document::{Document, KeyPath};
use crate::secret::Secret;
use crate::settings::{Routing, Settings};

pub use failure::{Failure, FailureGroup, LISTED_HANDLES, LISTED_PATHS, group_failures};
pub use observer::{Observer, RefreshOutcome};
pub use refresh::{ChangedHandle, HeldBack, HoldReason, Place, RefreshReport, Trigger};
use routing::MultiRun;
pub use routing::{BUILTIN_BACKEND_NAME, locate_builtin_backend};

/// Resolves handles in documents and keeps them fresh. Cloning shares the state.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

/// Options beyond the settings file, for programs that embed keyturn: start from
/// [`ResolverOptions::default`] and set what you need.
///
/// ```
/// use std::sync::Arc;
/// use keyturn::{Observer, ResolverOptions, RunRecord};
///
/// struct Runs;
/// impl Observer for Runs {
///     fn backend_run(&self, run: &RunRecord) {
///         eprintln!("backend run: exit {}, {:?}", run.exit, run.elapsed);
///     }
/// }
///
/// let options = ResolverOptions::default()
///     .observer(Arc::new(Runs))
///     .audit_file("/var/lib/myagent/secrets-audit.ndjson");
/// ```
#[derive(Default, Clone)]
#[non_exhaustive]
pub struct ResolverOptions {
    /// Told about backend runs, refreshes and the like (for metrics); nothing is recorded when
    /// `None`.
    pub observer: Option<Arc<dyn Observer>>,
    /// Path of `keyturn-backend` for `secret_backend_type` and `multi_secret_backends`. When
    /// `None`: `$KEYTURN_BUILTIN_BACKEND`, then the directory of the running executable, then
    /// `PATH`.
    pub builtin_backend: Option<PathBuf>,
    /// Where refreshes that change a value append an audit record (see [`crate::audit`]);
    /// no audit trail when `None`. Rotated at the settings' `secret_audit_file_max_size`.
    pub audit_file: Option<PathBuf>,
}

impl ResolverOptions {
    /// Reports backend runs, refreshes and the like to `observer`.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> ResolverOptions {
        self.observer = Some(observer);
        self
    }

    /// Runs this `keyturn-backend` for built-in backend types.
    pub fn builtin_backend(mut self, path: impl Into<PathBuf>) -> ResolverOptions {
        self.builtin_backend = Some(path.into());
        self
    }

    /// Appends an audit record to this file for every refresh that changes a value.
    pub fn audit_file(mut self, path: impl Into<PathBuf>) -> ResolverOptions {
        self.audit_file = Some(path.into());
        self
    }
}

impl fmt::Debug for ResolverOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverOptions")
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .field("builtin_backend", &self.builtin_backend)
            .field("audit_file", &self.audit_file)
            .finish()
    }
}

/// What a resolve produced: the rendered document and every handle that failed.
#[non_exhaustive]
pub struct Resolution {
    /// The document with every resolved handle replaced. Failed handles stay as written.
    pub output: Zeroizing<String>,
    /// Handles that could not be resolved, in first-seen order.
    pub failures: Vec<Failure>,
}

impl Resolution {
    /// Whether every handle resolved.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Debug for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolution")
            .field("output", &"<redacted>")
            .field("failures", &self.failures)
            .finish()
    }
}

/// The values [`Resolver::fetch_once`] fetched for a document, and every handle that failed.
/// Render them into that document. `Debug` shows no value.
#[non_exhaustive]
pub struct OnceValues<'d> {
    /// One lookup per distinct handle, in first-seen order (its uses, when the single backend
    /// was given every use).
    lookups: Vec<(&'d str, Lookup)>,
    /// Handles that could not be resolved, in first-seen order, each with every path.
    pub failures: Vec<Failure>,
}

impl OnceValues<'_> {
    /// Whether every handle resolved.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// `document` with every resolved handle replaced ([`Document::render`]); failed handles
    /// stay as written.
    pub fn render(&self, document: &Document) -> Zeroizing<String> {
        let mut values = InOrder::new(&self.lookups);
        document.render(|handle| values.value(handle))
    }

    /// [`OnceValues::render`] written to `out` as it is made ([`Document::render_to`]): the
    /// output is never held whole.
    pub fn write_to(
        &self,
        document: &Document,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut values = InOrder::new(&self.lookups);
        document.render_to(|handle| values.value(handle), out)
    }
}

impl fmt::Debug for OnceValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceValues")
            .field("values", &"<redacted>")
            .field("failures", &self.failures)
            .finish()
    }
}

/// One change delivered to subscribers: a value used at `path` of `origin` changed.
#[non_exhaustive]
pub struct Change<'a> {
    /// The handle.
    pub handle: &'a str,
    /// The origin (document) that uses it.
    pub origin: &'a str,
    /// Where in that document.
    pub path: &'a KeyPath,
    /// The previous value: `""` when never resolved, the raw `ENC[...]` text on a cache hit.
    pub old: &'a str,
    /// The new value.
    pub new: &'a str,
}

impl fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("handle", &self.handle)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("old", &"<redacted>")
            .field("new", &"<redacted>")
            .finish()
    }
}

type Subscriber = Arc<dyn Fn(&Change<'_>) + Send + Sync>;

/// The maps keyed by handles. Handles come from config files and backend answers, so whoever
/// writes those chooses the keys: the hasher is foldhash (fast on short strings) with a random
/// seed per map, never a fixed one, so collisions cannot be precomputed.
pub(crate) type HandleMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set keyed by handles, seeded like [`HandleMap`].
type HandleSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Where a handle is used in one origin: every key path, in document order. Shared (cheap to
/// clone) so that registering a document under the state lock costs one step per distinct
/// handle, whatever the number of uses.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) origin: Arc<str>,
    pub(crate) paths: Paths,
}

/// The contexts of one handle, one per origin. Most handles have one origin: it is held
/// inline, so a handle costs no allocation of its own here.
pub(crate) type Contexts = SmallVec<[Context; 1]>;

/// The key paths of one handle in one origin, in document order: one path held inline (a
/// handle used once, the common case, costs no allocation), or several shared.
#[derive(Debug, Clone)]
pub(crate) enum Paths {
    One(KeyPath),
    Many(Arc<[KeyPath]>),
}

impl Paths {
    /// The paths of `paths`, shared when there are several.
    fn from_slice(paths: &[KeyPath]) -> Paths {
        match paths {
            [one] => Paths::One(one.clone()),
            many => Paths::Many(Arc::from(many)),
        }
    }

    /// Whether both are the same list: shared, or equal path by path.
    fn same(&self, other: &Paths) -> bool {
        match (self, other) {
            (Paths::Many(a), Paths::Many(b)) if Arc::ptr_eq(a, b) => true,
            _ => **self == **other,
        }
    }
}

impl Deref for Paths {
    type Target = [KeyPath];

    fn deref(&self) -> &[KeyPath] {
        match self {
            Paths::One(path) => std::slice::from_ref(path),
            Paths::Many(paths) => paths,
        }
    }
}

struct Inner {
    settings: Settings,
    routing: Routing,
    options: FetchOptions,
    observer: Arc<dyn Observer>,
    /// Delay of the first periodic refresh (scattered), when periodic refresh is on.
    first_refresh_delay: Option<Duration>,
    /// The audit trail; appended from a blocking task, one record per changing refresh.
    audit: Option<Arc<Mutex<AuditWriter>>>,
    state: Mutex<State>,
    refresh: refresh::Coordinator,
}

#[derive(Default)]
struct State {
    /// handle -> its value. Keys share the documents' handle text.
    cache: HandleMap<Arc<str>, Secret>,
    /// handle -> one context per origin, in registration order; a handle with no context is
    /// removed. Keys share the documents' handle text. Unordered: where the order shows (a
    /// refresh's payload, an audit record) the handles are sorted.
    contexts: HandleMap<Arc<str>, Contexts>,
    /// handle -> its last failure; cleared by the next successful lookup.
    failures: HandleMap<Arc<str>, (FailureKind, String)>,
    /// handle -> the batch that is fetching it now.
    inflight: HandleMap<Arc<str>, Arc<Batch>>,
    subscribers: Vec<Subscriber>,
    /// origin -> refresh allowlist of path segments; absent means everything is refreshable.
    allowlists: HashMap<String, Vec<String>>,
}

/// A backend run shared by every resolve that needs one of its handles.
struct Batch {
    done: watch::Sender<bool>,
    /// Whether any requester asked for notifications.
    notify: AtomicBool,
}

/// Ends a batch however its task ends: takes its handles that still point to it out of
/// `inflight` and marks it done, so its waiters never hang (a handle it did not publish then
/// reads as interrupted) and later resolves start a new batch.
struct BatchEnd {
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    handles: Vec<Arc<str>>,
    released: bool,
}

impl BatchEnd {
    /// Takes the batch's handles out of `inflight` (those that still point to it), once: the
    /// task does it under the lock that applies its results, `drop` if the task ended first.
    /// When the batch's handles are most of `inflight`, one pass over it that hashes nothing;
    /// otherwise one lookup per handle (so the cost stays within twice the batch's size).
    fn release(&mut self, state: &mut State) {
        if self.released {
            return;
        }
        self.released = true;
        if self.handles.len() * 2 >= state.inflight.len() {
            state
                .inflight
                .retain(|_, batch| !Arc::ptr_eq(batch, &self.batch));
            return;
        }
        for handle in &self.handles {
            if state
                .inflight
                .get(handle)
                .is_some_and(|batch| Arc::ptr_eq(batch, &self.batch))
            {
                state.inflight.remove(handle);
            }
        }
    }
}

impl Drop for BatchEnd {
    fn drop(&mut self) {
        if !self.released {
            let inner = Arc::clone(&self.inner);
            self.release(&mut inner.lock());
        }
        self.batch.done.send_replace(true);
    }
}

/// The outcome of looking up one handle.
pub(crate) type Lookup = Result<Secret, (FailureKind, String)>;

/// A notification collected under the lock, delivered after it is released. The handle and
/// both values are shared by every use of the handle.
struct Notification {
    handle: Arc<str>,
    origin: Arc<str>,
    path: KeyPath,
    old: Arc<Zeroizing<String>>,
    new: Secret,
}

/// What every notification of one changed handle shares: the handle and both values, once.
struct SharedChange {
    handle: Arc<str>,
    old: Arc<Zeroizing<String>>,
    new: Secret,
}

impl SharedChange {
    fn new(handle: &Arc<str>, old: Zeroizing<String>, new: &Secret) -> SharedChange {
        SharedChange {
            handle: Arc::clone(handle),
            old: Arc::new(old),
            new: new.clone(),
        }
    }

    /// The notification of the use at `path` of `origin`.
    fn at(&self, origin: &Arc<str>, path: &KeyPath) -> Notification {
        Notification {
            handle: Arc::clone(&self.handle),
            origin: Arc::clone(origin),
            path: path.clone(),
            old: Arc::clone(&self.old),
            new: self.new.clone(),
        }
    }
}

impl Resolver {
    /// A resolver for `settings`.
    pub fn new(settings: Settings) -> Resolver {
        Resolver::with_options(settings, ResolverOptions::default())
    }

    /// A resolver for `settings` with embedding options.
    pub fn with_options(settings: Settings, options: ResolverOptions) -> Resolver {
        let builtin = options
            .builtin_backend
            .unwrap_or_else(locate_builtin_backend);
        let routing = settings.routing(&builtin);
        let fetch_options = FetchOptions::new(settings.timeout(), settings.output_max_size())
            .with_remove_trailing_line_break(settings.remove_trailing_line_break());
        let first_refresh_delay = settings.refresh_interval().map(|interval| {
            if settings.refresh_scatter() {
                refresh::scatter(interval, &mut rand::rng())
            } else {
                interval
            }
        });
        let audit = options.audit_file.map(|path| {
            let limits = AuditLimits {
                max_size: settings.audit_file_max_size(),
                ..AuditLimits::default()
            };
            Arc::new(Mutex::new(AuditWriter::new(path, limits)))
        });
        Resolver {
            inner: Arc::new(Inner {
                first_refresh_delay,
                audit,
                settings,
                routing,
                options: fetch_options,
                observer: options
                    .observer
                    .unwrap_or_else(|| Arc::new(observer::Unobserved)),
                state: Mutex::new(State::default()),
                refresh: refresh::Coordinator::new(),
            }),
        }
    }

    /// The settings this resolver was built with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// When the first periodic refresh is due after start-up: uniform in
    /// `[1 s, interval + 1 s)` with `secret_refresh_scatter`, else the interval. `None` when
    /// periodic refresh is off.
    pub fn first_refresh_delay(&self) -> Option<Duration> {
        self.inner.first_refresh_delay
    }

    /// Whether a backend is configured. Without one, documents are returned unchanged.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.routing, Routing::None)
    }

    /// Resolves every handle of `document`, registering each use under `origin`.
    ///
    /// Cached handles are served from the cache; the others are fetched in one batch per
    /// backend. With `notify`, subscribers hear about every use of a value this call obtained
    /// (old value `""` or the previous one) and about every cached use in this document (old
    /// value the raw `ENC[...]` text).
    pub async fn resolve(&self, document: &Document, origin: &str, notify: bool) -> Resolution {
        if !self.is_enabled() || document.sites().is_empty() {
            return Resolution {
                output: Zeroizing::new(document.text().to_owned()),
                failures: Vec::new(),
            };
        }
        // The uses of each handle, grouped before taking the lock (one pass over the sites).
        let (uses, index) = group_by_handle(document);
        let origin: Arc<str> = Arc::from(origin);
        let Plan {
            cached_at_start,
            mut waits,
            own,
        } = self.inner.register_and_plan(&uses, &origin, notify);
        if let Some((batch, handles)) = own {
            waits.push(Arc::clone(&batch));
            self.inner.spawn_batch(batch, handles);
        }
        wait_for(waits).await;
        let (values, failures) = self.inner.collect(&uses, index);
        if notify {
            let notifications =
                cache_hit_notifications(document, &origin, &cached_at_start, &values);
            self.inner.deliver(notifications);
        }
        let output = document.render(|handle| values.get(handle).map(|value| value.expose()));
        Resolution { output, failures }
    }

    /// Resolves every handle of `document` once, for a caller that renders it and is done
    /// (`keyturn resolve`, a program reading its configuration at start-up): nothing is
    /// registered, so no refresh will fetch these handles again and no subscriber hears of
    /// them, and the values are not cached. Every handle is fetched, cached or not, in one
    /// batch per backend; the output and the failures are those [`Resolver::resolve`] gives.
    ///
    /// It costs less than [`Resolver::resolve`]: no map of the document's uses is built, and
    /// nothing is left behind in the resolver. [`Resolver::fetch_once`] does the same without
    /// rendering, for a caller that writes the output as it renders it.
    pub async fn resolve_once(&self, document: &Document) -> Resolution {
        let fetched = self.fetch_once(document).await;
        let output = fetched.render(document);
        Resolution {
            output,
            failures: fetched.failures,
        }
    }

    /// What [`Resolver::resolve_once`] fetches for `document`, not rendered yet: render it
    /// ([`OnceValues::render`]) or write it out as it renders ([`OnceValues::write_to`]), which
    /// never holds the whole output.
    pub async fn fetch_once<'d>(&self, document: &'d Document) -> OnceValues<'d> {
        let sites = document.sites();
        if !self.is_enabled() || sites.is_empty() {
            return OnceValues {
                lookups: Vec::new(),
                failures: Vec::new(),
            };
        }
        // One lookup per distinct handle, in first-seen order.
        let lookups = match &self.inner.routing {
            Routing::Single(spec) => {
                // A run de-duplicates the handles it is given: every use is passed as it is.
                let handles: Vec<&str> = sites.map(|site| site.handle()).collect();
                match self.inner.fetch_group(spec, &handles).await {
                    Ok(lookups) => lookups,
                    Err(failure) => distinct_names(document)
                        .into_iter()
                        .map(|handle| (handle, Err(failure.clone())))
                        .collect(),
                }
            }
            _ => {
                let names = distinct_names(document);
                let handles: Vec<Arc<str>> = names.iter().map(|&name| Arc::from(name)).collect();
                let fetched = self.inner.fetch_all(&handles).await;
                // `fetch_all` answers in the order it was asked.
                names
                    .into_iter()
                    .zip(fetched)
                    .map(|(name, (_, lookup))| (name, lookup))
                    .collect()
            }
        };
        let failures = once_failures(document, &lookups);
        OnceValues { lookups, failures }
    }

    /// Calls `subscriber` for every change of a value at a place where it is used.
    pub fn subscribe(&self, subscriber: impl Fn(&Change<'_>) + Send + Sync + 'static) {
        self.inner.lock().subscribers.push(Arc::new(subscriber));
    }

    /// Forgets every use registered under `origin`; handles left unused are dropped from the
    /// refresh candidates (their cached values stay). Unknown origins are a no-op.
    pub fn remove_origin(&self, origin: &str) {
        let mut state = self.inner.lock();
        let mut emptied = Vec::new();
        for (handle, contexts) in state.contexts.iter_mut() {
            contexts.retain(|c| *c.origin != *origin);
            if contexts.is_empty() {
                emptied.push(Arc::clone(handle));
            }
        }
        for handle in emptied {
            state.contexts.remove(&handle);
            state.failures.remove(&*handle);
        }
        state.allowlists.remove(origin);
        self.inner.observer.handles_known(state.contexts.len());
    }

    /// Restricts which uses under `origin` a refresh may change: a use is refreshable when one
    /// of its path segments equals one of `segments` (whole segment, case-sensitive). `None`
    /// makes every use under `origin` refreshable.
    pub fn set_refresh_allowlist(&self, origin: &str, segments: Option<Vec<String>>) {
        let mut state = self.inner.lock();
        match segments {
            Some(segments) => state.allowlists.insert(origin.to_owned(), segments),
            None => state.allowlists.remove(origin),
        };
    }

    /// Every known handle and where it is used: `(origin, path joined with "/")`, handles
    /// sorted, uses in registration order.
    pub fn handles(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.handles_where(|_, _| true)
    }

    /// Like [`Resolver::handles`], for the handles whose last lookup succeeded.
    pub fn resolved_handles(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.handles_where(|state, handle| {
            state.cache.contains_key(handle) && !state.failures.contains_key(handle)
        })
    }

    fn handles_where(
        &self,
        keep: impl Fn(&State, &str) -> bool,
    ) -> BTreeMap<String, Vec<(String, String)>> {
        let state = self.inner.lock();
        state
            .contexts
            .iter()
            .filter(|(handle, _)| keep(&state, handle))
            .map(|(handle, contexts)| {
                (
                    handle.to_string(),
                    contexts
                        .iter()
                        .flat_map(|c| {
                            c.paths
                                .iter()
                                .map(|path| (c.origin.to_string(), path.join("/")))
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// Every handle whose last lookup failed, with every place it is used.
    pub fn failures(&self) -> Vec<Failure> {
        let state = self.inner.lock();
        let mut failures: Vec<Failure> = state
            .failures
            .iter()
            .filter_map(|(handle, (kind, message))| {
                let contexts = state.contexts.get(handle)?;
                Some(Failure {
                    handle: handle.to_string(),
                    kind: *kind,
                    message: message.clone(),
                    paths: contexts
                        .iter()
                        .flat_map(|c| c.paths.iter().cloned())
                        .collect(),
                })
            })
            .collect();
        failures.sort_by(|a, b| a.handle.cmp(&b.handle));
        failures
    }

    /// Those of `handles` that no origin uses (a refresh cannot know them), in the order given.
    pub fn unknown_handles<'a>(&self, handles: &'a [String]) -> Vec<&'a str> {
        let state = self.inner.lock();
        handles
            .iter()
            .filter(|handle| !state.contexts.contains_key(handle.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The cached value of `handle`, if any.
    pub fn cached(&self, handle: &str) -> Option<Secret> {
        self.inner.lock().cache.get(handle).cloned()
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping would; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers every use of a resolve under `origin` and decides, under one lock, what each
    /// handle needs: its cached value, the batch already fetching it (joined), or a new batch
    /// of the resolve's own for every handle nobody fetches.
    fn register_and_plan<'u>(
        &self,
        uses: &'u [Use<'u>],
        origin: &Arc<str>,
        notify: bool,
    ) -> Plan<'u> {
        let mut state = self.lock();
        // At most this many handles are new: sized once, the maps do not rehash here.
        let new = uses.len().saturating_sub(state.contexts.len());
        state.contexts.reserve(new);
        for (handle, paths) in uses {
            state.register(handle, origin, paths);
        }
        let mut plan = Plan {
            cached_at_start: HandleSet::default(),
            waits: Vec::new(),
            own: None,
        };
        let mut to_fetch = Vec::new();
        let mut batch = None;
        for (at, &(name, _)) in uses.iter().enumerate() {
            if state.cache.contains_key(name) {
                // Only notifications need to know which values were cached.
                if notify {
                    plan.cached_at_start.insert(name);
                }
            } else {
                if to_fetch.is_empty() {
                    // The first handle not cached: room for it and every one after it, once
                    // (a resolve served from the cache reserves nothing).
                    to_fetch.reserve(uses.len() - at);
                    state.inflight.reserve(uses.len() - at);
                }
                // Registered above: the resolver's own name for the handle, shared by its maps.
                let Some(handle) = state
                    .contexts
                    .get_key_value(name)
                    .map(|(h, _)| Arc::clone(h))
                else {
                    continue;
                };
                // One lookup joins the batch fetching the handle or records ours.
                match state.inflight.entry(Arc::clone(&handle)) {
                    Entry::Occupied(fetching) => {
                        let fetching = fetching.get();
                        if notify {
                            fetching.notify.store(true, Ordering::Relaxed);
                        }
                        plan.waits.push(Arc::clone(fetching));
                    }
                    Entry::Vacant(slot) => {
                        let batch = batch.get_or_insert_with(|| {
                            Arc::new(Batch {
                                done: watch::Sender::new(false),
                                notify: AtomicBool::new(notify),
                            })
                        });
                        slot.insert(Arc::clone(batch));
                        to_fetch.push(handle);
                    }
                }
            }
        }
        plan.own = batch.map(|batch| (batch, to_fetch));
        self.observer.handles_known(state.contexts.len());
        plan
    }

    /// Runs `batch` for `handles` in a task of its own (a caller that gives up does not cancel
    /// the run others wait for): fetches them, applies the answers to the cache, ends the
    /// batch, then tells subscribers.
    fn spawn_batch(self: &Arc<Self>, batch: Arc<Batch>, handles: Vec<Arc<str>>) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            // Wakes the waiters even if this task panics or is dropped before publishing.
            let mut end = BatchEnd {
                inner: Arc::clone(&inner),
                batch: Arc::clone(&batch),
                handles,
                released: false,
            };
            let results = inner.fetch_all(&end.handles).await;
            let notifications = {
                let mut state = inner.lock();
                let notify = batch.notify.load(Ordering::Relaxed);
                let notifications = state.apply_lookups(results, notify);
                end.release(&mut state);
                notifications
            };
            drop(end);
            inner.deliver(notifications);
        });
    }

    /// The value of every handle of `uses` that has one (clones share the cached buffers) and
    /// the failure of every other, in first-seen order. The failures are built after the lock
    /// is released: that work grows with the number of uses.
    fn collect<'u>(
        &self,
        uses: &'u [Use<'u>],
        index: HandleMap<&'u str, usize>,
    ) -> (Values<'u>, Vec<Failure>) {
        let mut values = Vec::with_capacity(uses.len());
        let mut failed = Vec::new();
        {
            let state = self.lock();
            for &(name, ref paths) in uses {
                let value = state.cache.get(name).cloned();
                if value.is_none() {
                    let failure = state.failures.get(name).cloned();
                    failed.push((name, paths, failure));
                }
                values.push(value);
            }
        }
        let values = Values { index, values };
        let failures = failed
            .into_iter()
            .map(|(handle, paths, failure)| {
                let (kind, message) = failure.unwrap_or_else(|| {
                    (
                        FailureKind::BackendError,
                        format!("resolving '{}' was interrupted", Printable(handle)),
                    )
                });
                Failure {
                    handle: handle.to_owned(),
                    kind,
                    message,
                    paths: paths.to_vec(),
                }
            })
            .collect();
        (values, failures)
    }

    /// Fetches `handles` from their backends: one run per backend group, groups concurrently.
    /// Returns one lookup per handle, in the order given.
    async fn fetch_all(self: &Arc<Self>, handles: &[Arc<str>]) -> Vec<(Arc<str>, Lookup)> {
        match &self.routing {
            Routing::None => handles
                .iter()
                .map(|h| {
                    (
                        Arc::clone(h),
                        Err((
                            FailureKind::BackendError,
                            "no secret backend is configured".to_owned(),
                        )),
                    )
                })
                .collect(),
            Routing::Single(spec) => match self.fetch_group(spec, handles).await {
                Ok(lookups) => lookups,
                Err(failure) => handles
                    .iter()
                    .map(|handle| (Arc::clone(handle), Err(failure.clone())))
                    .collect(),
            },
            Routing::Multi(backends) => {
                let (runs, mut results) = routing::group_by_backend(backends, handles);
                let mut tasks = tokio::task::JoinSet::new();
                for run in runs {
                    let inner = Arc::clone(self);
                    tasks.spawn(async move { inner.fetch_multi(run).await });
                }
                while let Some(joined) = tasks.join_next().await {
                    if let Ok(group) = joined {
                        results.extend(group);
                    }
                }
                handles
                    .iter()
                    .map(|h| {
                        let lookup = results.remove(h).unwrap_or_else(|| {
                            Err((
                                FailureKind::BackendError,
                                format!("handle \"{h}\": backend run was interrupted"),
                            ))
                        });
                        (Arc::clone(h), lookup)
                    })
                    .collect()
            }
        }
    }

    /// One run of a multi backend for its handles: each distinct key asked once, each handle
    /// given the lookup of its key.
    async fn fetch_multi(&self, run: MultiRun) -> Vec<(Arc<str>, Lookup)> {
        let MultiRun {
            name,
            spec,
            members,
        } = run;
        let mut seen = HashSet::new();
        let keys: Vec<Arc<str>> = members
            .iter()
            .filter(|(_, key)| seen.insert(Arc::clone(key)))
            .map(|(_, key)| Arc::clone(key))
            .collect();
        let fetched: HashMap<Arc<str>, Lookup> = match self.fetch_group(&spec, &keys).await {
            Ok(lookups) => lookups.into_iter().collect(),
            // One cause, one message: every handle of the run gets the same text, so that it
            // is reported once for all of them.
            Err((kind, message)) => {
                let failure = Err((kind, format!("backend \"{name}\": {message}")));
                return members
                    .into_iter()
                    .map(|(full, _)| (full, failure.clone()))
                    .collect();
            }
        };
        members
            .into_iter()
            .map(|(full, key)| {
                let lookup = match fetched.get(&key) {
                    Some(Ok(value)) => Ok(value.clone()),
                    Some(Err((kind, message))) => {
                        Err((*kind, format!("handle \"{full}\": {message}")))
                    }
                    None => Err((
                        FailureKind::BackendError,
                        format!("handle \"{full}\": backend run was interrupted"),
                    )),
                };
                (full, lookup)
            })
            .collect()
    }

    /// One backend run for `keys` (distinct): one lookup per key, in order, or the failure of
    /// the whole run. When the backend's texts need it (it failed, or gave error texts), they
    /// are scrubbed of every cached value too (it may repeat an old value): the values are
    /// taken from the cache once the run has ended, so that values cached meanwhile count.
    async fn fetch_group<S: AsRef<str> + Clone>(
        &self,
        spec: &BackendSpec,
        keys: &[S],
    ) -> Result<Vec<(S, Lookup)>, (FailureKind, String)> {
        let ran = backend::run(spec, &self.options, keys).await;
        let held: Vec<Secret> = if ran.scrubs_held() {
            self.lock().cache.values().cloned().collect()
        } else {
            Vec::new()
        };
        let (record, result) = ran.finish(&held);
        self.observer.backend_run(&record);
        match result {
            Ok(fetched) => Ok(fetched
                .into_iter()
                .map(|(handle, result)| (handle, result.map_err(|e| (e.kind, e.message))))
                .collect()),
            Err(error) => Err((error.kind, error.message)),
        }
    }

    fn deliver(&self, notifications: Vec<Notification>) {
        if notifications.is_empty() {
            return;
        }
        let subscribers = self.lock().subscribers.clone();
        for n in &notifications {
            let change = Change {
                handle: &n.handle,
                origin: &n.origin,
                path: &n.path,
                old: n.old.as_str(),
                new: n.new.expose(),
            };
            for subscriber in &subscribers {
                subscriber(&change);
            }
        }
    }
}

/// What a resolve's registration decided: which of its handles were cached (for
/// notifications, only when asked), the batches it waits for, and its own batch with the
/// handles it fetches.
struct Plan<'u> {
    cached_at_start: HandleSet<&'u str>,
    waits: Vec<Arc<Batch>>,
    own: Option<(Arc<Batch>, Vec<Arc<str>>)>,
}

/// Waits until every batch in `batches` is done.
async fn wait_for(batches: Vec<Arc<Batch>>) {
    for batch in batches {
        let mut done = batch.done.subscribe();
        // An error means the task was dropped (runtime shutting down); its handles then show
        // up as interrupted.
        let _ = done.wait_for(|done| *done).await;
    }
}

/// The notifications of a resolve's cache hits: every use in `document` of a handle that was
/// cached when the resolve registered, with the raw `ENC[...]` text as the old value (shared
/// by every use of the handle).
fn cache_hit_notifications(
    document: &Document,
    origin: &Arc<str>,
    cached_at_start: &HandleSet<&str>,
    values: &Values<'_>,
) -> Vec<Notification> {
    let mut notifications = Vec::new();
    let mut handles: HandleMap<&str, (Arc<str>, Arc<Zeroizing<String>>)> = HandleMap::default();
    for site in document.sites() {
        let name = site.handle();
        if !cached_at_start.contains(name) {
            continue;
        }
        if let Some(value) = values.get(name) {
            let (handle, old) = handles.entry(name).or_insert_with(|| {
                let old = Zeroizing::new(format!("ENC[{name}]"));
                (Arc::from(name), Arc::new(old))
            });
            notifications.push(Notification {
                handle: Arc::clone(handle),
                origin: Arc::clone(origin),
                path: site.path().clone(),
                old: Arc::clone(old),
                new: value.clone(),
            });
        }
    }
    notifications
}

/// A handle of a document and its paths there.
type Use<'d> = (&'d str, Paths);

/// The value of each handle a resolve found, by the handle's place among its uses.
struct Values<'u> {
    /// Handle to its place (from [`group_by_handle`]).
    index: HandleMap<&'u str, usize>,
    values: Vec<Option<Secret>>,
}

impl Values<'_> {
    fn get(&self, handle: &str) -> Option<&Secret> {
        let at = *self.index.get(handle)?;
        self.values.get(at)?.as_ref()
    }
}

/// The sites of `document` grouped by handle: handles in first-seen order, each with its key
/// paths in document order, and the place of each handle in that list. The paths are shared,
/// not copied; a handle used once holds its path inline, and a longer list is one allocation
/// of its final size.
fn group_by_handle(document: &Document) -> (Vec<Use<'_>>, HandleMap<&str, usize>) {
    let sites = document.sites();
    let mut index: HandleMap<&str, usize> =
        HandleMap::with_capacity_and_hasher(sites.len(), Default::default());
    let mut handles: Vec<&str> = Vec::with_capacity(sites.len());
    // Each site's path with the number of its handle (in first-seen order), then sorted by that
    // number: a stable sort keeps document order within a handle, and costs one pass when the
    // handles are all distinct (already in order).
    let mut paths: Vec<(usize, &KeyPath)> = sites
        .map(|site| {
            let handle = site.handle();
            let group = *index.entry(handle).or_insert_with(|| {
                handles.push(handle);
                handles.len() - 1
            });
            (group, site.path())
        })
        .collect();
    paths.sort_by_key(|(group, _)| *group);
    let uses = handles
        .into_iter()
        .zip(paths.chunk_by(|a, b| a.0 == b.0))
        .map(|(handle, group)| {
            let paths = match group {
                [(_, one)] => Paths::One((*one).clone()),
                many => Paths::Many(many.iter().map(|(_, path)| (*path).clone()).collect()),
            };
            (handle, paths)
        })
        .collect();
    (uses, index)
}

/// The distinct handles of `document`, in first-seen order.
fn distinct_names(document: &Document) -> Vec<&str> {
    let mut seen: HandleSet<&str> = HandleSet::default();
    document
        .sites()
        .map(|site| site.handle())
        .filter(|handle| seen.insert(handle))
        .collect()
}

/// The values of [`Resolver::resolve_once`]'s lookups (distinct handles, first-seen order) by
/// handle, for a render, which asks in text order: the lookup after the last one found is tried
/// first, so a document whose handles come in order (each used once, say) costs no hashing;
/// at the first one out of order, an index of every handle is built, once.
struct InOrder<'l> {
    lookups: &'l [(&'l str, Lookup)],
    next: usize,
    index: Option<HandleMap<&'l str, usize>>,
}

impl<'l> InOrder<'l> {
    fn new(lookups: &'l [(&'l str, Lookup)]) -> InOrder<'l> {
        InOrder {
            lookups,
            next: 0,
            index: None,
        }
    }

    fn value(&mut self, handle: &str) -> Option<&'l str> {
        let lookups = self.lookups;
        let at = match lookups.get(self.next) {
            Some((next, _)) if *next == handle => self.next,
            _ => {
                let index = self.index.get_or_insert_with(|| {
                    let mut index =
                        HandleMap::with_capacity_and_hasher(lookups.len(), Default::default());
                    for (at, (handle, _)) in lookups.iter().enumerate() {
                        index.entry(*handle).or_insert(at);
                    }
                    index
                });
                *index.get(handle)?
            }
        };
        self.next = at + 1;
        lookups.get(at)?.1.as_ref().ok().map(Secret::expose)
    }
}

/// The failures among `lookups` (in their order), each with every path of its handle in
/// `document`. Costs nothing beyond one scan of `lookups` when every handle resolved.
fn once_failures(document: &Document, lookups: &[(&str, Lookup)]) -> Vec<Failure> {
    let mut failures: Vec<Failure> = Vec::new();
    let mut index: HandleMap<&str, usize> = HandleMap::default();
    for (handle, lookup) in lookups {
        if let Err((kind, message)) = lookup
            && let Entry::Vacant(slot) = index.entry(handle)
        {
            slot.insert(failures.len());
            failures.push(Failure {
                handle: handle.to_string(),
                kind: *kind,
                message: message.clone(),
                paths: Vec::new(),
            });
        }
    }
    if !failures.is_empty() {
        for site in document.sites() {
            if let Some(failure) = index
                .get(site.handle())
                .and_then(|&at| failures.get_mut(at))
            {
                failure.paths.push(site.path().clone());
            }
        }
    }
    failures
}

impl State {
    /// Records that `origin` uses `handle` at `paths` (distinct, as a document's are). The first
    /// registration of an origin shares `paths` (one step, whatever their number); registering
    /// an origin again adds the paths it did not have, in one pass over both lists.
    fn register(&mut self, handle: &str, origin: &Arc<str>, paths: &Paths) {
        // A handle already known costs one lookup and no copy of its name; a new one, one
        // `Arc<str>` that the resolver's other maps then share.
        let contexts = match self.contexts.get_mut(handle) {
            Some(contexts) => contexts,
            None => self.contexts.entry(Arc::from(handle)).or_default(),
        };
        match contexts.iter_mut().find(|c| c.origin == *origin) {
            None => contexts.push(Context {
                origin: Arc::clone(origin),
                paths: paths.clone(),
            }),
            Some(context) => {
                if context.paths.same(paths) {
                    return;
                }
                let known: HandleSet<&KeyPath> = context.paths.iter().collect();
                let added: Vec<KeyPath> = paths
                    .iter()
                    .filter(|path| !known.contains(path))
                    .cloned()
                    .collect();
                if !added.is_empty() {
                    let all: Vec<KeyPath> = context.paths.iter().cloned().chain(added).collect();
                    context.paths = Paths::from_slice(&all);
                }
            }
        }
    }

    /// Applies a resolve's lookups: caches values, records failures, and with `notify`
    /// collects a notification for every use of every value that changed.
    fn apply_lookups(
        &mut self,
        results: Vec<(Arc<str>, Lookup)>,
        notify: bool,
    ) -> Vec<Notification> {
        let mut notifications = Vec::new();
        let new = results.len().saturating_sub(self.cache.len());
        self.cache.reserve(new);
        for (handle, lookup) in results {
            match lookup {
                Ok(value) => {
                    if notify {
                        let old = Zeroizing::new(
                            self.cache
                                .get(&handle)
                                .map(|s| s.expose().to_owned())
                                .unwrap_or_default(),
                        );
                        if *old != value.expose() {
                            let change = SharedChange::new(&handle, old, &value);
                            for context in self.contexts.get(&handle).into_iter().flatten() {
                                for path in context.paths.iter() {
                                    notifications.push(change.at(&context.origin, path));
                                }
                            }
                        }
                    }
                    self.failures.remove(&handle);
                    // Kept for long: in a buffer of its own, not its whole answer's.
                    self.cache.insert(handle, value.compact());
                }
                Err(failure) => {
                    self.failures.insert(handle, failure);
                }
            }
        }
        notifications
    }

    /// Whether a refresh may change the use of `origin` at `path` (its allowlist).
    fn use_matches(&self, origin: &str, path: &KeyPath) -> bool {
        match self.allowlists.get(origin) {
            None => true,
            Some(allowed) => path
                .segments()
                .into_iter()
                .any(|segment| allowed.iter().any(|entry| segment.is(entry))),
        }
    }

    /// Whether a refresh may change any use in `context`.
    fn context_matches(&self, context: &Context) -> bool {
        !self.allowlists.contains_key(&*context.origin)
            || context
                .paths
                .iter()
                .any(|path| self.use_matches(&context.origin, path))
    }
}
