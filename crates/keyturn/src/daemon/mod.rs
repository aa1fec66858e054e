//! The daemon behind `keyturn serve`: keeps templates' destinations resolved and fresh, and
//! serves the HTTP API.
//!
//! Start reading at [`Daemon::start`]: it loads the API token, reads and parses every template
//! ([`template`]), resolves them all, writes every destination whose handles all resolved, and
//! sets up the [`schedule`]. [`serve`] then runs the HTTP API ([`crate::api`]) and the refresh
//! loop until its shutdown future completes. The caller owns the listener, signals and
//! shutdown: `keyturn serve` binds the socket, maps SIGHUP to [`Daemon::reload`] and SIGTERM or
//! SIGINT to shutdown.
//!
//! The resolver and the templates form a *generation*: a reload builds a new one (new resolver,
//! empty cache) and swaps it in only when it could be built; until then the old one keeps
//! serving. Every refresh — timer, retry, trigger or API — goes through [`Daemon::refresh`]:
//! refresh, then re-render the templates whose values changed (they are marked by the
//! resolver's change notifications), then run their `on_change` commands.
//!
//! Refreshes asked for from outside ([`Daemon::refresh`]) run in a task of their own, so a
//! caller that goes away never cancels a write or an `on_change` command half way. A template
//! whose destination changed keeps its `on_change` command due until a run of it completes
//! successfully: a failed, timed-out or interrupted run is reported in the status and runs
//! again on the next refresh.
//!
//! Invariants:
//! - Rendering and writing are serialized (one async mutex), and only the current generation
//!   writes, so an older render can never overwrite a newer one.
//! - Locks are never held across a backend run; the render mutex is the only one held across
//!   `.await` (it is a tokio mutex, held while files are written and hooks run).
//! - Statuses, logs and reports name handles, origins, paths and destinations, never values.

pub mod check;
pub mod config;
pub mod hook;
pub mod schedule;
pub mod server;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::Resolver;
use crate::api;
use crate::metrics::Metrics;
use crate::resolver::status::{self, DebugInfo};
use crate::resolver::{RefreshReport, ResolverOptions, Trigger};
use crate::token::{AuthToken, TokenError};
pub use config::{ApiConfig, ConfigError, DaemonConfig, OnChange, TemplateConfig};
use schedule::{Schedule, Scheduler, TriggerRefused};
pub use template::{Outcome, TemplateStatus};
use template::{Template, TemplateError, Written};

/// How long in-flight API requests may still run after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the daemon could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The settings file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A template's source is unreadable or invalid.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The templates' files clash on disk (a destination that is a source, seen through links).
    #[error(transparent)]
    Templates(#[from] crate::settings::SettingsError),
    /// The API token could not be read or created.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `run_path` or the audit file in it could be read, written or swapped by someone else.
    #[error(transparent)]
    NotPrivate(#[from] crate::trusted_path::NotPrivate),
    /// `run_path` does not exist and could not be created.
    #[error("cannot create run directory {}: {cause}", path.display())]
    RunPath {
        /// `run_path`.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Reload was asked for but the daemon was not started from a file.
    #[error("there is no settings file to reload")]
    NoSettingsFile,
}

/// The running daemon: a cheap handle (`Clone`) over shared state.
#[derive(Clone)]
pub struct Daemon {
    shared: Arc<Shared>,
}

/// A daemon whose resolver is built but which has resolved and written nothing yet (see
/// [`Daemon::prepare`]).
pub struct Starting {
    settings_file: Option<PathBuf>,
    token: AuthToken,
    metrics: Arc<Metrics>,
    generation: Generation,
}

impl Starting {
    /// The resolver the daemon will use.
    pub fn resolver(&self) -> &Resolver {
        &self.generation.resolver
    }

    /// Resolves every template, writes every destination whose handles all resolved and sets
    /// up the schedule. Handles that fail are logged and show in the status.
    pub async fn start(self) -> Daemon {
        let (generation, schedule, success) = self.generation.start(Trigger::Startup).await;
        let daemon = Daemon {
            shared: Arc::new(Shared {
                settings_file: self.settings_file,
                api: generation.config.api.clone(),
                token: self.token,
                metrics: self.metrics,
                current: Mutex::new(generation.clone()),
                scheduler: Scheduler::new(schedule),
                render: tokio::sync::Mutex::new(()),
                refreshed: tokio::sync::watch::Sender::new(0),
            }),
        };
        daemon.render(&generation).await;
        daemon.shared.scheduler.completed(success);
        daemon
    }
}

impl std::fmt::Debug for Starting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starting")
            .field("settings_file", &self.settings_file)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// The settings file, for reloads.
    settings_file: Option<PathBuf>,
    /// The `api` section the daemon started with (changes need a restart).
    api: ApiConfig,
    token: AuthToken,
    metrics: Arc<Metrics>,
    current: Mutex<Arc<Generation>>,
    scheduler: Scheduler,
    /// Serializes rendering and writing (see the module invariants).
    render: tokio::sync::Mutex<()>,
    /// How many refreshes (of any trigger) have completed, rendering included.
    refreshed: tokio::sync::watch::Sender<u64>,
}

/// A resolver and the templates it resolves.
struct Generation {
    config: DaemonConfig,
    resolver: Resolver,
    templates: Vec<Arc<Template>>,
}

/// The daemon's status: the resolver's (with the keys of the Datadog Agent's secrets status) and every template's.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DaemonStatus {
    /// What the resolver knows.
    #[serde(flatten)]
    pub resolver: DebugInfo,
    /// Every template, in settings order.
    pub templates: Vec<TemplateStatus>,
}

impl Daemon {
    /// Reads the settings file at `path` and starts from it (see [`Daemon::start`]); SIGHUP
    /// reloads re-read that file.
    pub async fn load(path: PathBuf) -> Result<Daemon, DaemonError> {
        let config = DaemonConfig::load(&path)?;
        Daemon::start(config, Some(path)).await
    }

    /// Loads (or creates) the API token, reads every template, resolves them and writes every
    /// destination whose handles all resolved. Handles that fail are logged and show in the
    /// status; they do not stop the start. `settings_file` is what [`Daemon::reload`] re-reads.
    pub async fn start(
        config: DaemonConfig,
        settings_file: Option<PathBuf>,
    ) -> Result<Daemon, DaemonError> {
        let token = AuthToken::load_or_create(&config.api.auth_token_file)?;
        Ok(Daemon::prepare(config, settings_file, token)?.start().await)
    }

    /// Reads every template and builds the resolver, without resolving or writing anything
    /// yet: the caller may resolve documents of its own with [`Starting::resolver`] first
    /// (`keyturn exec` resolves its child's environment), then [`Starting::start`].
    pub fn prepare(
        config: DaemonConfig,
        settings_file: Option<PathBuf>,
        token: AuthToken,
    ) -> Result<Starting, DaemonError> {
        let metrics = Arc::new(Metrics::new());
        let generation = Generation::build(config, &metrics)?;
        Ok(Starting {
            settings_file,
            token,
            metrics,
            generation,
        })
    }

    /// Re-reads the settings file and the templates and swaps in a new resolver. On any error
    /// the current state keeps serving and the error is returned. Changes to the `api` section
    /// take effect at the next start.
    pub async fn reload(&self) -> Result<(), DaemonError> {
        let reloaded = self.reload_inner().await;
        self.shared
            .metrics
            .record_reload(if reloaded.is_ok() { "ok" } else { "failed" });
        reloaded
    }

    async fn reload_inner(&self) -> Result<(), DaemonError> {
        let path = self
            .shared
            .settings_file
            .as_ref()
            .ok_or(DaemonError::NoSettingsFile)?;
        let config = DaemonConfig::load(path)?;
        if config.api != self.current().config.api {
            tracing::warn!("changes to the api section take effect after a restart");
        }
        let generation = Generation::build(config, &self.shared.metrics)?;
        let (generation, schedule, success) = generation.start(Trigger::Signal).await;
        let held_back = {
            let _render = self.shared.render.lock().await;
            let previous = std::mem::replace(&mut *self.lock_current(), generation.clone());
            previous.held_back_uses()
        };
        self.shared.scheduler.replace(schedule);
        self.render(&generation).await;
        self.shared.scheduler.completed(success);
        tracing::info!(templates = generation.templates.len(), "settings reloaded");
        // A reload is a restart: every use gets the current value, those a refresh allowlist
        // held back too.
        if held_back > 0 {
            tracing::info!("reload applied {held_back} held-back uses");
        }
        Ok(())
    }

    /// Refreshes every refreshable handle, or only `handles` (coalesced with concurrent
    /// refreshes either way), re-renders the templates whose values changed and runs their
    /// `on_change` commands. Write and `on_change` failures are added to the report's `error`.
    ///
    /// The work runs in a task of its own: a caller that goes away (an HTTP client that
    /// disconnects) does not cancel a write or an `on_change` command half way.
    pub async fn refresh(
        &self,
        trigger: Trigger,
        handles: Option<&[String]>,
    ) -> Arc<RefreshReport> {
        let daemon = self.clone();
        let handles = handles.map(<[String]>::to_vec);
        let work = tokio::spawn(async move {
            let (report, success) = daemon.refresh_and_render(trigger, handles.as_deref()).await;
            if handles.is_none() {
                daemon.shared.scheduler.completed(success);
            }
            report
        });
        work.await.unwrap_or_else(|_| {
            Arc::new(RefreshReport {
                error: Some("the refresh task failed".to_owned()),
                ..RefreshReport::default()
            })
        })
    }

    /// Counts completed refreshes (of any trigger): it changes once each refresh has applied
    /// its values, written its destinations and run their `on_change` commands.
    pub fn refreshed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.refreshed.subscribe()
    }

    /// Runs the refresh loop (schedule, retries, triggers) until `shutdown` completes; a
    /// refresh in progress then is cancelled. [`serve`] runs it beside the API; run it alone
    /// when there is no API. Only one loop runs per daemon.
    pub async fn run_refreshes(&self, shutdown: impl Future<Output = ()>) {
        let refresher = self.clone();
        self.shared
            .scheduler
            .run(
                move |scheduled| {
                    let daemon = refresher.clone();
                    async move {
                        let trigger = if scheduled {
                            Trigger::Timer
                        } else {
                            Trigger::Api
                        };
                        daemon.refresh_and_render(trigger, None).await.1
                    }
                },
                shutdown,
            )
            .await;
    }

    /// Queues a throttled refresh (like the Agent's refresh after an API key failure) without
    /// waiting for it.
    pub fn trigger(&self) -> Result<(), TriggerRefused> {
        self.shared.scheduler.trigger()
    }

    /// Those of `handles` that no template uses, in the order given.
    pub fn unknown_handles<'a>(&self, handles: &'a [String]) -> Vec<&'a str> {
        self.current().resolver.unknown_handles(handles)
    }

    /// The current resolver.
    pub fn resolver(&self) -> Resolver {
        self.current().resolver.clone()
    }

    /// The `api` section the daemon started with.
    pub fn api_config(&self) -> &ApiConfig {
        &self.shared.api
    }

    /// The API token clients must present.
    pub fn token(&self) -> &AuthToken {
        &self.shared.token
    }

    /// The metrics of every resolver this daemon ran (they survive reloads).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Every template's status, in settings order.
    pub fn templates(&self) -> Vec<TemplateStatus> {
        self.current()
            .templates
            .iter()
            .map(|t| t.status())
            .collect()
    }

    /// The status as JSON-ready data, with the backend's version when it tells (its
    /// `--version`, as the Agent asks).
    pub async fn status(&self) -> DaemonStatus {
        let generation = self.current();
        let report = status::executable_report_with_version(&generation.resolver).await;
        DaemonStatus {
            resolver: DebugInfo::from_report(&generation.resolver, report),
            templates: generation.templates.iter().map(|t| t.status()).collect(),
        }
    }

    /// The status as text: the resolver's (the Agent's status text, with the backend's version when
    /// it tells), byte for byte as the Agent writes it, then after a blank line one line per
    /// template.
    pub async fn status_text(&self) -> String {
        let generation = self.current();
        let report = status::executable_report_with_version(&generation.resolver).await;
        let mut text = status::render_status(&generation.resolver, report);
        // The Agent's text ends with zero, one or two newlines: end it with exactly one blank
        // line without touching it.
        let newlines = text.len() - text.trim_end_matches('\n').len();
        text.push_str(&"\n\n"[newlines.min(2)..]);
        text.push_str("=== Templates ===\n");
        if generation.templates.is_empty() {
            text.push_str("No templates configured\n");
        }
        for template in &generation.templates {
            let status = template.status();
            let state = match &status.outcome {
                Outcome::Pending => "pending".to_owned(),
                Outcome::Written => "written".to_owned(),
                Outcome::Unresolved { handles } => format!(
                    "not written, unresolved handles: {}",
                    handles
                        .iter()
                        .map(|h| format!("'{h}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Outcome::WriteFailed { error } => format!("write failed: {error}"),
            };
            text.push_str(&format!(
                "- {} -> {}: {state}\n",
                status.source, status.destination
            ));
            if let Some(error) = &status.on_change_error {
                text.push_str(&format!("  on_change failed: {error}\n"));
            }
            if status.on_change_pending {
                text.push_str("  on_change runs again on the next refresh\n");
            }
        }
        text
    }

    /// The refresh run by the loop and by [`Daemon::refresh`]. Returns the report and whether
    /// the schedule should count it a success: every handle refreshed, every destination
    /// written and every `on_change` command completed (a failed one runs again on the next
    /// refresh).
    async fn refresh_and_render(
        &self,
        trigger: Trigger,
        handles: Option<&[String]>,
    ) -> (Arc<RefreshReport>, bool) {
        let generation = self.current();
        // Full refreshes share their report with every coalesced caller: it is copied only
        // when render errors must be added to it.
        let mut report = match handles {
            None => generation.resolver.refresh(trigger).await,
            Some(handles) => Arc::new(generation.resolver.refresh_handles(handles, trigger).await),
        };
        let rendered = self.render(&generation).await;
        let success =
            report.is_success() && rendered.write_failures == 0 && rendered.hook_failures == 0;
        if !rendered.errors.is_empty() {
            let report = Arc::make_mut(&mut report);
            let mut errors: Vec<String> = report.error.take().into_iter().collect();
            errors.extend(rendered.errors);
            report.error = Some(errors.join("\n"));
        }
        if let Some(error) = report.error_text() {
            tracing::warn!(
                trigger = trigger.as_str(),
                "error with refreshing secrets: {error}"
            );
        }
        self.shared
            .refreshed
            .send_modify(|n| *n = n.wrapping_add(1));
        (report, success)
    }

    /// Renders and writes every dirty template of `generation` (when it is still the current
    /// one) and runs the `on_change` commands of those whose content changed, or whose last
    /// `on_change` run did not complete.
    async fn render(&self, generation: &Arc<Generation>) -> Rendered {
        let _render = self.shared.render.lock().await;
        let mut rendered = Rendered::default();
        if !Arc::ptr_eq(generation, &self.current()) {
            return rendered;
        }
        for template in &generation.templates {
            let writer = template.clone();
            let written = tokio::task::spawn_blocking(move || writer.render_and_write())
                .await
                .unwrap_or_else(|e| Written::Failed(format!("rendering was interrupted: {e}")));
            let destination = template.config.destination.display();
            match written {
                Written::Clean => {}
                Written::Unchanged => {
                    tracing::debug!(%destination, "destination already up to date");
                }
                Written::Unresolved(handles) => {
                    tracing::warn!(
                        %destination,
                        ?handles,
                        "destination not written: some handles are unresolved"
                    );
                }
                Written::Failed(error) => {
                    self.shared.metrics.record_template_write("failed");
                    tracing::error!("{error}");
                    rendered.write_failures += 1;
                    rendered.errors.push(error);
                }
                Written::Changed => {
                    self.shared.metrics.record_template_write("ok");
                    tracing::info!(%destination, "destination written");
                    template.on_change_due();
                }
            }
            let Some(on_change) = &template.config.on_change else {
                continue;
            };
            if !template.begin_on_change() {
                continue;
            }
            // Until it completes, the status says it was interrupted (a shutdown may drop it).
            let outcome = hook::run(on_change).await;
            self.shared.metrics.record_on_change(match &outcome {
                Ok(()) => "ok",
                Err(hook::HookError::Failed { .. }) => "failed",
                Err(hook::HookError::Timeout { .. }) => "timeout",
                Err(hook::HookError::Spawn { .. }) => "spawn_error",
            });
            let error = outcome.err().map(|e| format!("{destination}: {e}"));
            if let Some(error) = &error {
                tracing::warn!("{error}; it runs again on the next refresh");
                rendered.hook_failures += 1;
                rendered.errors.push(error.clone());
            }
            template.end_on_change(error);
        }
        rendered
    }

    fn current(&self) -> Arc<Generation> {
        self.lock_current().clone()
    }

    fn lock_current(&self) -> MutexGuard<'_, Arc<Generation>> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("settings_file", &self.shared.settings_file)
            .finish_non_exhaustive()
    }
}

/// What one render pass did.
#[derive(Default)]
struct Rendered {
    write_failures: usize,
    /// `on_change` commands that did not succeed.
    hook_failures: usize,
    /// Write and `on_change` errors.
    errors: Vec<String>,
}

impl Generation {
    /// How many uses in the templates hold a value other than the cached one: uses a refresh
    /// allowlist held back.
    fn held_back_uses(&self) -> usize {
        self.templates
            .iter()
            .map(|template| template.stale_uses(|handle| self.resolver.cached(handle)))
            .sum()
    }

    /// Reads every template and builds the resolver, subscribed to feed the templates.
    fn build(config: DaemonConfig, metrics: &Arc<Metrics>) -> Result<Generation, DaemonError> {
        config::check_distinct_on_disk(&config.templates)?;
        let audit_file = crate::audit::audit_path(&config.run_path);
        check_run_path(&config.run_path, &audit_file)?;
        let templates = config
            .templates
            .iter()
            .map(|t| Template::load(t.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let options = ResolverOptions {
            observer: Some(metrics.clone()),
            audit_file: Some(audit_file),
            ..ResolverOptions::default()
        };
        let resolver = Resolver::with_options(config.settings.clone(), options);
        let by_origin: HashMap<String, Arc<Template>> = templates
            .iter()
            .map(|t| (t.origin.clone(), t.clone()))
            .collect();
        resolver.subscribe(move |change| {
            if let Some(template) = by_origin.get(change.origin) {
                template.record(change);
            }
        });
        for template in &templates {
            resolver
                .set_refresh_allowlist(&template.origin, template.config.refresh_allowlist.clone());
        }
        for warning in config.settings.warnings() {
            tracing::warn!("{warning}");
        }
        Ok(Generation {
            config,
            resolver,
            templates,
        })
    }

    /// Resolves every template concurrently (values arrive through the subscription) and
    /// builds the schedule. Returns whether every handle resolved.
    async fn start(self, trigger: Trigger) -> (Arc<Generation>, Schedule, bool) {
        let generation = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for template in &generation.templates {
            let resolver = generation.resolver.clone();
            let template = template.clone();
            tasks.spawn(async move {
                let resolution = resolver
                    .resolve(template.document(), &template.origin, true)
                    .await;
                for cause in crate::resolver::group_failures(&resolution.failures) {
                    tracing::warn!(template = template.origin, "could not resolve: {cause}");
                }
                resolution.is_complete()
            });
        }
        let mut success = true;
        while let Some(joined) = tasks.join_next().await {
            success &= joined.unwrap_or(false);
        }
        // The whole resolution is audited and counted like a refresh, under `trigger`.
        if generation.resolver.is_enabled() {
            success &= generation.resolver.record_resolution(trigger).await.is_ok();
        }
        let settings = generation.resolver.settings();
        // Without a backend there is nothing to refresh: no schedule, no triggers.
        let enabled = generation.resolver.is_enabled();
        let interval = settings.refresh_interval().filter(|_| enabled);
        let first_delay = generation
            .resolver
            .first_refresh_delay()
            .filter(|_| enabled);
        if let Some(delay) = first_delay {
            tracing::info!(
                "periodic refresh is on: the first in {:.2}s, then every {}",
                delay.as_secs_f64(),
                status::go_duration(settings.refresh_interval().unwrap_or_default())
            );
        }
        let schedule = Schedule::new(
            Instant::now(),
            interval,
            first_delay,
            settings.refresh_trigger_interval().filter(|_| enabled),
            schedule::os_rng(),
        );
        (generation, schedule, success)
    }
}

/// Creates `run_path` (mode 0700) when it is missing, and checks that it and the audit file in
/// it are private to this user ([`crate::trusted_path`]): a run directory others may write, or
/// an audit file another user created or others can read, is refused.
fn check_run_path(
    run_path: &std::path::Path,
    audit_file: &std::path::Path,
) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;

    if !run_path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(run_path)
            .map_err(|source| DaemonError::RunPath {
                path: run_path.to_owned(),
                cause: source,
            })?;
    }
    crate::trusted_path::check_private_dir("run directory", run_path)?;
    crate::trusted_path::check_private_file("audit file", audit_file)?;
    Ok(())
}

/// Serves the HTTP API on `listener` and runs the refresh loop until `shutdown` completes.
/// Then the loop stops (a refresh in progress is cancelled; destinations are only ever
/// replaced atomically) and in-flight requests get [`SHUTDOWN_GRACE`] to finish. Run it once
/// per daemon. Connections are limited and header reads time out (see [`server`]).
pub async fn serve(
    listener: TcpListener,
    daemon: Daemon,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let api = daemon.api_config();
    let limits = server::Limits {
        max_connections: server::connection_limit_now(api.max_connections),
        header_read_timeout: api.header_read_timeout,
    };
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        "API connection limits"
    );
    let server = server::run(listener, api::router(daemon.clone()), limits, stopped);
    let mut server = tokio::spawn(server);
    let reaper = tokio::spawn(reap_orphans(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::child(),
    )?));
    let refresh_loop = daemon.run_refreshes(shutdown);
    tokio::select! {
        joined = &mut server => {
            reaper.abort();
            return flatten(joined);
        }
        () = refresh_loop => {}
    }
    reaper.abort();
    tracing::info!("shutting down");
    let _ = stop.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(joined) => flatten(joined),
        Err(_) => {
            server.abort();
            tracing::warn!("requests still running after {SHUTDOWN_GRACE:?} were dropped");
            Ok(())
        }
    }
}

/// From its first backend run the daemon is a child subreaper: every orphan among its
/// descendants (a backend's, an `on_change` command's) becomes its child. Each is reaped as
/// soon as it ends, on the `SIGCHLD` that says so, rather than at the next backend run's sweep;
/// the processes tokio waits for are left to tokio.
async fn reap_orphans(mut children: tokio::signal::unix::Signal) {
    while children.recv().await.is_some() {
        // Off the async workers: the record of tokio's children is locked across each spawn.
        let _ = tokio::task::spawn_blocking(crate::backend::spawn::reap_ended_orphans).await;
    }
}

fn flatten(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    joined.map_err(std::io::Error::other)?
}
