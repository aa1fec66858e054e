//! `keyturn exec`: run a program with its secrets in its environment. Wiring only: settings,
//! env files, the first resolve, signals and the exit status; the supervision is
//! `keyturn::exec`.
//!
//! Every signal of [`keyturn::exec::FORWARDED`] is caught and handed to the supervisor, which
//! forwards it to the program; SIGXFSZ is caught as in `serve`. keyturn exits with the
//! program's status (128 + N when it died of signal N); before the program starts, with its
//! own codes (1 an unresolved handle in the environment or a template not written, 2 bad
//! input, 3 operational, 126/127 the program could not be started).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use keyturn::daemon::{Daemon, DaemonError, Outcome as TemplateOutcome};
use keyturn::exec::{self, ExecError, ExecSettings, Program, env};
use keyturn::token::AuthToken;
use tokio::signal::unix::{SignalKind, signal};

use crate::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Settings file (YAML): secret_* keys, and optionally templates, api and exec.
    #[arg(long, env = "KEYTURN_CONFIG", value_name = "SETTINGS")]
    config: Option<PathBuf>,
    /// Env file (dotenv syntax) whose variables are added to keyturn's own; repeatable, later
    /// files win.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Start the program even when some handles failed (their variables keep the handle as
    /// written).
    #[arg(long)]
    allow_partial: bool,
    /// The program and its arguments (no shell), after `--`.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    let settings = match &args.config {
        Some(path) => ExecSettings::load(path).map_err(Failure::input)?,
        None => {
            let cwd = std::env::current_dir()
                .context("cannot read the current directory")
                .map_err(Failure::operational)?;
            ExecSettings::empty(&cwd).map_err(Failure::input)?
        }
    };
    crate::log_warnings(&settings.daemon.settings);
    let mut environment = env::current();
    for file in &args.env_files {
        environment.merge_env_file(file).map_err(Failure::input)?;
    }
    let handle_vars = environment.handle_vars();
    if !settings.daemon.settings.is_enabled() && !handle_vars.is_empty() {
        let names: Vec<&str> = handle_vars.iter().map(|v| v.name).collect();
        return Err(Failure::input(anyhow!(
            "the environment has secret handles ({}) but no secret backend is configured: {}",
            names.join(", "),
            match &args.config {
                Some(path) => format!(
                    "set secret_backend_command or secret_backend_type in {}",
                    path.display()
                ),
                None => "pass --config SETTINGS".to_owned(),
            }
        )));
    }

    // Before any secret is in memory: no core dumps, and the optional memory lock.
    let hardening = keyturn::hygiene::harden(settings.daemon.settings.memory_lock());
    for warning in &hardening.warnings {
        tracing::warn!("{warning}");
    }
    let program = Program::new(args.command, environment);
    crate::runtime()?.block_on(supervise(
        settings,
        args.config,
        program,
        args.allow_partial,
    ))
}

async fn supervise(
    settings: ExecSettings,
    settings_file: Option<PathBuf>,
    program: Program,
    allow_partial: bool,
) -> Result<Outcome, Failure> {
    exec::track_children_as_init();
    // Signals are caught from here on, so that one arriving while secrets are resolved is
    // forwarded to the program once it runs instead of killing keyturn.
    let (forward, forwarded) = tokio::sync::mpsc::unbounded_channel();
    for sig in exec::FORWARDED {
        let mut stream = signal(SignalKind::from_raw(sig as i32))
            .with_context(|| format!("cannot handle {}", sig.as_str()))
            .map_err(Failure::operational)?;
        let forward = forward.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if forward.send(sig).is_err() {
                    return;
                }
            }
        });
    }
    drop(forward);
    // As in `serve`: a write past RLIMIT_FSIZE fails with EFBIG instead of killing keyturn.
    let _file_size = signal(SignalKind::from_raw(libc::SIGXFSZ))
        .context("cannot handle SIGXFSZ")
        .map_err(Failure::operational)?;

    let ExecSettings {
        daemon: config,
        api,
        exec: exec_config,
        ..
    } = settings;
    let (token, listener) = if api {
        let token =
            AuthToken::load_or_create(&config.api.auth_token_file).map_err(Failure::operational)?;
        let listen = config.api.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))
            .map_err(Failure::operational)?;
        (token, Some(listener))
    } else {
        (AuthToken::generate(), None)
    };
    let starting = Daemon::prepare(config, settings_file, token).map_err(|e| match e {
        DaemonError::Token(_) | DaemonError::NotPrivate(_) | DaemonError::RunPath { .. } => {
            Failure::operational(e)
        }
        _ => Failure::input(e),
    })?;

    let document = program.environment.document().map_err(Failure::input)?;
    let resolution = starting
        .resolver()
        .resolve(&document, env::ORIGIN, false)
        .await;
    for failure in &resolution.failures {
        let names: Vec<String> = failure
            .paths
            .iter()
            .map(|p| keyturn::printable::printable(&p.join("/")))
            .collect();
        eprintln!(
            "keyturn: environment variable {}: handle '{}' ({}): {}",
            names.join(", "),
            keyturn::printable::Printable(&failure.handle),
            failure.kind.as_str(),
            failure.message
        );
    }
    if !resolution.is_complete() && !allow_partial {
        eprintln!(
            "keyturn: {} of the handles in the environment could not be resolved; the program \
             was not started",
            resolution.failures.len()
        );
        return Ok(Outcome::Incomplete);
    }
    drop(resolution);

    let daemon = starting.start().await;
    // The program's files count like its environment: it does not start without them.
    let mut unwritten = 0;
    for template in daemon.templates() {
        let problem = match &template.outcome {
            TemplateOutcome::Unresolved { handles } => format!(
                "unresolved handles {}",
                handles
                    .iter()
                    .map(|h| format!("'{}'", keyturn::printable::Printable(h)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TemplateOutcome::WriteFailed { error } => error.clone(),
            TemplateOutcome::Pending | TemplateOutcome::Written => continue,
        };
        unwritten += 1;
        eprintln!(
            "keyturn: template {} -> {} was not written: {problem}",
            template.source, template.destination
        );
    }
    if unwritten > 0 && !allow_partial {
        eprintln!(
            "keyturn: {unwritten} template(s) could not be written; the program was not started"
        );
        return Ok(Outcome::Incomplete);
    }
    match exec::run(daemon, listener, program, exec_config, forwarded).await {
        Ok(exit) => Ok(Outcome::Exit(exit.exit_code())),
        Err(e @ ExecError::Start { .. }) => {
            let not_found = matches!(&e, ExecError::Start { error, .. }
                if error.kind() == std::io::ErrorKind::NotFound);
            Err(Failure::with_code(if not_found { 127 } else { 126 }, e))
        }
        Err(e) => Err(Failure::operational(e)),
    }
}
