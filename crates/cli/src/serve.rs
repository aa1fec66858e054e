//! `keyturn serve`: the daemon. Wiring only: settings, listener, signals, shutdown; the
//! behaviour is `keyturn::daemon`.
//!
//! SIGHUP reloads the settings and templates (a bad reload is logged and the daemon keeps
//! serving); SIGUSR1 asks for a refresh like `keyturn refresh` (trigger `signal`); SIGTERM and
//! SIGINT stop it (exit 0); SIGXFSZ is caught, so that a write past the file-size limit fails
//! with EFBIG instead of killing the daemon.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set) the daemon reports its state: `READY=1`
//! once every template had its first render and the API listens (with the bound address in
//! `STATUS=`), `RELOADING=1` when a SIGHUP reload starts and `READY=1` when it ended (well or
//! not), and `STOPPING=1` when it starts to stop. Without `NOTIFY_SOCKET` nothing is sent.

use std::path::PathBuf;

use anyhow::Context as _;
use keyturn::daemon::{self, Daemon, DaemonConfig, DaemonError};
use keyturn::resolver::Trigger;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Settings file (YAML): secret_* keys, api and templates.
    #[arg(
        long,
        env = "KEYTURN_CONFIG",
        value_name = "SETTINGS",
        default_value = "keyturn.yaml"
    )]
    pub(crate) config: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    let config = DaemonConfig::load(&args.config).map_err(Failure::input)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::operational)?;
    runtime.block_on(serve(config, args.config))
}

async fn serve(config: DaemonConfig, path: PathBuf) -> Result<Outcome, Failure> {
    let listen = config.api.listen;
    let signals = |kind: SignalKind, name: &str| {
        signal(kind)
            .with_context(|| format!("cannot handle {name}"))
            .map_err(Failure::operational)
    };
    let mut hangup = signals(SignalKind::hangup(), "SIGHUP")?;
    let mut terminate = signals(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = signals(SignalKind::interrupt(), "SIGINT")?;
    let mut user1 = signals(SignalKind::user_defined1(), "SIGUSR1")?;
    // A write past RLIMIT_FSIZE (a file-size limit from the service manager, a full audit file)
    // must fail with EFBIG, not kill the daemon: SIGXFSZ terminates by default. A handler (not
    // SIG_IGN, which children would inherit) is reset to the default in backends and hooks.
    let _file_size = signals(SignalKind::from_raw(libc::SIGXFSZ), "SIGXFSZ")?;

    // Before any secret is in memory: no core dumps, and the optional memory lock.
    let hardening = keyturn::hygiene::harden(config.settings.memory_lock());
    for warning in &hardening.warnings {
        tracing::warn!("{warning}");
    }
    // Descriptors in reserve for backend runs and file writes (see keyturn::daemon::server).
    match daemon::server::raise_open_files_limit() {
        Ok(limit) if limit.after > limit.before => tracing::info!(
            before = limit.before,
            after = limit.after,
            "raised the open files limit"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
        .map_err(Failure::operational)?;
    let daemon = Daemon::start(config, Some(path))
        .await
        .map_err(|e| match e {
            DaemonError::Token(_) | DaemonError::NotPrivate(_) | DaemonError::RunPath { .. } => {
                Failure::operational(e)
            }
            _ => Failure::input(e),
        })?;
    daemon
        .metrics()
        .set_memory_lock_failed(hardening.memory == keyturn::hygiene::MemoryLock::Degraded);
    // The bound address: with port 0 the system chose the port.
    let address = listener.local_addr().map_or(listen, |address| address);
    tracing::info!(%address, "serving the API");
    let status = format!("STATUS=serving the API on {address}");
    notify(&[NotifyState::Ready, NotifyState::Custom(&status)]);

    let reloader = daemon.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading settings and templates");
            let reloading = NotifyState::monotonic_usec_now();
            let mut states = vec![NotifyState::Reloading];
            states.extend(reloading.ok());
            notify(&states);
            if let Err(e) = reloader.reload().await {
                tracing::error!("reload failed, still serving the previous settings: {e}");
            }
            notify(&[NotifyState::Ready]);
        }
    });
    let refresher = daemon.clone();
    tokio::spawn(async move {
        while user1.recv().await.is_some() {
            tracing::info!("SIGUSR1: refreshing");
            let report = refresher.refresh(Trigger::Signal, None).await;
            match report.error_text() {
                None => tracing::info!(changed = report.changed.len(), "refresh done"),
                Some(error) => tracing::warn!("refresh failed: {error}"),
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        notify(&[NotifyState::Stopping]);
    };
    daemon::serve(listener, daemon, shutdown)
        .await
        .context("the API server failed")
        .map_err(Failure::operational)?;
    Ok(Outcome::Success)
}

/// Tells the service manager about the daemon's state, when it listens (`NOTIFY_SOCKET`).
/// A failure is logged, never fatal.
fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("could not notify the service manager: {e}");
    }
}
