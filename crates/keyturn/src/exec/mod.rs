//! `keyturn exec` without the CLI: run a program with its secrets in its environment (and in
//! the rendered templates), stay its parent, and keep it fresh.
//!
//! Start reading at [`run`]. The caller has built a [`Daemon`] (templates, resolver, refresh
//! schedule, optionally the API) and resolved the child's [`Environment`] with it (origin
//! [`env::ORIGIN`], so refreshes, status, reports and the audit trail cover it like any
//! template). [`run`] then:
//! - starts the program (`backend::spawn` starts it, with `std::process`, in
//!   keyturn's process group with stdio inherited) with the environment rendered from the
//!   resolver's cache;
//! - forwards every signal the caller hands it, and on `SIGCHLD` reaps the program and, as PID
//!   1 or a child subreaper, every orphan re-parented to keyturn (never a process tokio waits
//!   for: see `spawn`);
//! - runs the refresh loop (and the API, given a listener); after each refresh that changed a
//!   value used in the environment it restarts the program (`stop_signal`, then `SIGKILL`
//!   after `stop_timeout`), signals it, or does nothing, per [`ExecConfig::on_change`];
//! - returns how the program ended, for keyturn to exit with (128 + N for a death by signal
//!   N), unless [`ExecConfig::restart_on_exit`] starts it again (with backoff).
//!
//! Invariants:
//! - Values reach only the program's environment: never its command line, a log line, an
//!   error, or keyturn's own environment (so backends and `on_change` hooks, which inherit
//!   keyturn's, never see them).
//! - A signal that asks to stop (SIGTERM, SIGINT, SIGQUIT) is forwarded and ends the
//!   supervision when the program exits: it is never restarted after one.
//! - No lock is held across an `.await`; the set of changed variables is behind a short-held
//!   mutex filled by the resolver's change notifications.

pub mod config;
pub mod env;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::spawn::{self, Exit};
use crate::daemon::schedule::{backoff, os_rng};
use crate::daemon::{self, Daemon};
pub use config::{ChangeAction, ExecConfig, ExecSettings, RestartOnExit};
pub use env::Environment;

/// The signals `keyturn exec` forwards to its program.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Without periodic refresh, the ceiling of the delay before a restart is retried.
pub const DEFAULT_RESTART_CEILING: Duration = Duration::from_secs(60);

/// A program that ran at least this long before exiting is started again without delay
/// (`restart_on_exit`): the backoff only grows across quick successive exits.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// How the program ended.
// Exhaustive on purpose: a process ends by an exit or a signal, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ChildExit {
    /// The status keyturn exits with: the program's own, or 128 + N for a death by signal N.
    pub fn exit_code(self) -> u8 {
        let code = match self {
            ChildExit::Code(code) => code,
            ChildExit::Signal(signal) => 128 + signal,
        };
        (code & 0xff) as u8
    }

    fn success(self) -> bool {
        self == ChildExit::Code(0)
    }
}

impl From<Exit> for ChildExit {
    fn from(exit: Exit) -> ChildExit {
        match exit {
            Exit::Code(code) => ChildExit::Code(code),
            Exit::Signal(signal) => ChildExit::Signal(signal),
        }
    }
}

/// Why the program could not be supervised. Names the program, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program could not be started the first time.
    #[error("cannot start '{program}': {error}")]
    Start {
        /// `argv[0]`.
        program: String,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// keyturn could not watch its children.
    #[error("cannot watch the program: {0}")]
    Watch(std::io::Error),
}

/// As PID 1, starts recording the processes tokio waits for, so that reaping orphans never
/// takes one of theirs (see `backend::spawn`); returns whether keyturn is PID 1. Call it before
/// the first backend runs; [`run`] calls it too.
pub fn track_children_as_init() -> bool {
    let init = nix::unistd::getpid().as_raw() == 1;
    if init {
        spawn::track_children();
    }
    init
}

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Program {
    /// The program and its arguments (no shell).
    pub argv: Vec<OsString>,
    /// Its environment, with handles as written.
    pub environment: Environment,
}

impl Program {
    /// `argv` (the program and its arguments, run without a shell) with `environment`.
    pub fn new(argv: Vec<OsString>, environment: Environment) -> Program {
        Program { argv, environment }
    }
}

/// Supervises `program` until it ends for good (see the module doc). `signals` carries the
/// signals keyturn received that are to be forwarded ([`FORWARDED`]). With `listener`, the API
/// is served on it.
pub async fn run(
    daemon: Daemon,
    listener: Option<TcpListener>,
    program: Program,
    config: ExecConfig,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<ChildExit, ExecError> {
    let init = track_children_as_init();
    let changed = Arc::new(Mutex::new(BTreeSet::new()));
    let recorder = changed.clone();
    daemon.resolver().subscribe(move |change| {
        if change.origin == env::ORIGIN {
            lock(&recorder).insert(change.path.join("/"));
        }
    });
    let children = signal(SignalKind::child()).map_err(ExecError::Watch)?;
    let interval = daemon.resolver().settings().refresh_interval();
    let mut supervisor = Supervisor {
        daemon: daemon.clone(),
        program,
        config,
        init,
        changed,
        restart_ceiling: interval.unwrap_or(DEFAULT_RESTART_CEILING),
        child: None,
        kill_at: None,
        start_at: None,
        restart_after_stop: false,
        exiting: false,
        failures: 0,
        last_exit: None,
        rng: os_rng(),
    };
    supervisor.start().map_err(|error| ExecError::Start {
        program: supervisor.program_name(),
        error,
    })?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let background = match listener {
        Some(listener) => tokio::spawn(async move {
            if let Err(e) = daemon::serve(listener, daemon, shutdown).await {
                tracing::error!("the API server failed: {e}");
            }
        }),
        None => tokio::spawn(async move { daemon.run_refreshes(shutdown).await }),
    };
    let exit = supervisor.supervise(children, signals).await;
    let _ = stop.send(true);
    background.abort();
    Ok(exit)
}

/// The supervision state.
struct Supervisor {
    daemon: Daemon,
    program: Program,
    config: ExecConfig,
    /// Whether keyturn is PID 1 (reaps orphans, kills on SIGTERM after the stop timeout).
    init: bool,
    /// Variables whose value changed since the program last started.
    changed: Arc<Mutex<BTreeSet<String>>>,
    restart_ceiling: Duration,
    /// The running program and when it started.
    child: Option<(Pid, Instant)>,
    /// When to `SIGKILL` the stopping program.
    kill_at: Option<Instant>,
    /// When to start the program again.
    start_at: Option<Instant>,
    /// The program is being stopped to start again with a new environment.
    restart_after_stop: bool,
    /// A stop was asked for (SIGTERM, SIGINT, SIGQUIT): end when the program ends.
    exiting: bool,
    /// Consecutive failed starts or quick exits.
    failures: u32,
    last_exit: Option<ChildExit>,
    rng: rand::rngs::StdRng,
}

impl Supervisor {
    async fn supervise(
        &mut self,
        mut children: tokio::signal::unix::Signal,
        mut signals: mpsc::UnboundedReceiver<Signal>,
    ) -> ChildExit {
        let mut refreshed = self.daemon.refreshed();
        let mut signals_closed = false;
        loop {
            // An exit may have been missed between the start and the first wait.
            if let Some(exit) = self.reap() {
                return exit;
            }
            let deadline = match (self.kill_at, self.start_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: an exit is handled before anything else, and a refresh that completed
            // before a signal arrived is acted on before that signal is forwarded.
            tokio::select! {
                biased;
                _ = children.recv() => {}
                Ok(()) = refreshed.changed() => self.on_refresh(),
                received = signals.recv(), if !signals_closed => {
                    // The caller stopped forwarding: treat it as a last SIGTERM.
                    let signal = received.unwrap_or(Signal::SIGTERM);
                    signals_closed |= received.is_none();
                    if let Some(exit) = self.forward(signal) {
                        return exit;
                    }
                }
                () = sleep => self.on_deadline(),
            }
        }
    }

    /// Reaps the program (and orphans, as PID 1); returns the final exit when supervision ends.
    fn reap(&mut self) -> Option<ChildExit> {
        // Orphans come to keyturn as PID 1, and as the child subreaper it becomes on its first
        // backend run.
        if self.init || spawn::is_subreaper() {
            reap_orphans(self.child.map(|(pid, _)| pid));
        }
        let (pid, started) = self.child?;
        let exit = match spawn::reap(pid) {
            Ok(Some(exit)) => ChildExit::from(exit),
            Ok(None) => return None,
            Err(e) => {
                tracing::error!("cannot wait for the program: {e}");
                return Some(ChildExit::Code(1));
            }
        };
        self.child = None;
        self.kill_at = None;
        self.last_exit = Some(exit);
        tracing::debug!(?exit, "the program ended");
        if self.exiting {
            return Some(exit);
        }
        if self.restart_after_stop {
            self.restart_after_stop = false;
            self.start_or_retry();
            return None;
        }
        let restart = match self.config.restart_on_exit {
            RestartOnExit::Never => false,
            RestartOnExit::OnFailure => !exit.success(),
            RestartOnExit::Always => true,
        };
        if !restart {
            return Some(exit);
        }
        if started.elapsed() >= HEALTHY_RUN {
            self.failures = 0;
        }
        let delay = backoff(self.failures, self.restart_ceiling, &mut self.rng);
        self.failures = self.failures.saturating_add(1);
        tracing::warn!(
            "{} {}; starting it again in {:.1}s",
            self.program_name(),
            describe(exit),
            delay.as_secs_f64()
        );
        self.start_at = Some(Instant::now() + delay);
        None
    }

    /// Forwards `signal`; returns the final exit when supervision ends now.
    fn forward(&mut self, signal: Signal) -> Option<ChildExit> {
        let stop = matches!(signal, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT);
        if stop {
            self.exiting = true;
            self.start_at = None;
        }
        match self.child {
            Some((pid, _)) => {
                tracing::debug!(signal = signal.as_str(), "forwarding to the program");
                let _ = kill(pid, signal);
                if self.init && signal == Signal::SIGTERM && self.kill_at.is_none() {
                    self.kill_at = Some(Instant::now() + self.config.stop_timeout);
                }
                None
            }
            // Between a stop and a start: nothing to forward to.
            None if stop => Some(self.last_exit.unwrap_or(ChildExit::Signal(signal as i32))),
            None => None,
        }
    }

    /// After a refresh: act on the variables whose value changed.
    fn on_refresh(&mut self) {
        let changed: Vec<String> = std::mem::take(&mut *lock(&self.changed))
            .into_iter()
            .collect();
        if changed.is_empty() || self.exiting {
            return;
        }
        let names = changed.join(", ");
        let Some((pid, _)) = self.child else {
            // Waiting to start again: the next start takes the new values.
            return;
        };
        match self.config.on_change {
            ChangeAction::Restart if !self.restart_after_stop => {
                tracing::info!(
                    "the value of {names} changed: stopping {} with {} to start it again",
                    self.program_name(),
                    self.config.stop_signal.as_str()
                );
                self.restart_after_stop = true;
                let _ = kill(pid, self.config.stop_signal);
                self.kill_at = Some(Instant::now() + self.config.stop_timeout);
            }
            ChangeAction::Restart => {}
            ChangeAction::Signal => {
                tracing::info!(
                    "the value of {names} changed: sending {} to {}",
                    self.config.reload_signal.as_str(),
                    self.program_name()
                );
                let _ = kill(pid, self.config.reload_signal);
            }
            ChangeAction::Never => {
                tracing::info!("the value of {names} changed; the program keeps running");
            }
        }
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        if self.kill_at.is_some_and(|at| at <= now) {
            self.kill_at = None;
            if let Some((pid, _)) = self.child {
                tracing::warn!(
                    "{} did not stop within {:?}: sending SIGKILL",
                    self.program_name(),
                    self.config.stop_timeout
                );
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if self.start_at.is_some_and(|at| at <= now) {
            self.start_at = None;
            self.start_or_retry();
        }
    }

    /// Starts the program; on failure, schedules a retry with backoff.
    fn start_or_retry(&mut self) {
        if let Err(e) = self.start() {
            let delay = backoff(self.failures, self.restart_ceiling, &mut self.rng);
            self.failures = self.failures.saturating_add(1);
            tracing::error!(
                "cannot start '{}': {e}; retrying in {:.1}s",
                self.program_name(),
                delay.as_secs_f64()
            );
            self.start_at = Some(Instant::now() + delay);
        }
    }

    /// Starts the program with the environment rendered from the resolver's cache now.
    fn start(&mut self) -> std::io::Result<()> {
        // Changes recorded before this point are in the environment rendered below.
        lock(&self.changed).clear();
        let resolver = self.daemon.resolver();
        let environment = self
            .program
            .environment
            .render(|handle| resolver.cached(handle));
        let pid = spawn::start_program(&self.program.argv, environment.vars())?;
        tracing::debug!(pid = pid.as_raw(), "the program started");
        self.child = Some((pid, Instant::now()));
        Ok(())
    }

    fn program_name(&self) -> String {
        self.program
            .argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

fn describe(exit: ChildExit) -> String {
    match exit {
        ChildExit::Code(code) => format!("exited with status {code}"),
        ChildExit::Signal(signal) => format!("was killed by signal {signal}"),
    }
}

/// As PID 1: reaps every zombie child but `program` (reaped by its own wait) and the
/// processes tokio waits for.
fn reap_orphans(program: Option<Pid>) {
    let me = nix::unistd::getpid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if program.is_some_and(|p| p.as_raw() == pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if state == "Z" && ppid.parse::<i32>() == Ok(me) && spawn::reap_orphan(Pid::from_raw(pid)) {
            tracing::debug!(pid, "reaped an orphan");
        }
    }
    spawn::forget_reaped();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_programs_or_128_plus_the_signal() {
        assert_eq!(ChildExit::Code(0).exit_code(), 0);
        assert_eq!(ChildExit::Code(7).exit_code(), 7);
        assert_eq!(ChildExit::Code(255).exit_code(), 255);
        assert_eq!(ChildExit::Signal(15).exit_code(), 143);
        assert_eq!(ChildExit::Signal(9).exit_code(), 137);
    }
}
