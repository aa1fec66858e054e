//! The `keyturn` command: a thin layer of argument parsing, logging and exit codes over the
//! `keyturn` library.
//!
//! Every command returns `Result<ExitCode>`-like outcomes to [`main`], which is the one place
//! that maps errors to the documented exit codes (`exec` exits with its program's status once
//! the program ran, and with 126 or 127 when it could not be started):
//! - 0: success;
//! - 1: the job ran but did not fully succeed (a handle unresolved, the executable check failed,
//!   a refresh failed);
//! - 2: bad invocation, unreadable or unparsable input, invalid settings;
//! - 3: an operational failure (output could not be written, daemon could not start, API
//!   unreachable or refusing the token).
//!
//! Logs go to stderr, data to stdout. `keyturn serve` logs at `info` (JSON with
//! `--log-format json`), the other commands at `warn`; `KEYTURN_LOG` overrides the filter.

// Doc comments double as `--help` text, where `ENC[handle]` is literal, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod check;
mod client;
mod exec;
mod refresh;
mod resolve;
mod serve;
mod status;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Resolve ENC[handle] secrets in configuration files through a secret backend.
#[derive(Debug, Parser)]
#[command(name = "keyturn", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve every ENC[handle] in FILE and print the resolved document.
    Resolve(resolve::Args),
    /// Check the backend executable's permissions and print a report.
    Check(check::Args),
    /// Run the daemon: keep templates resolved and fresh, serve the HTTP API.
    Serve(serve::Args),
    /// Print the status of a running daemon.
    Status(status::Args),
    /// Ask a running daemon to refresh now and print the report.
    Refresh(refresh::Args),
    /// Run COMMAND with the secrets of its environment resolved, and keep them fresh.
    Exec(exec::Args),
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad invocation, input or settings: exit 2.
    pub(crate) fn input(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 2,
            error: error.into(),
        }
    }

    /// An error with an exit code of its own (126 and 127 for `exec`).
    pub(crate) fn with_code(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }

    /// Could not write, start or reach something: exit 3.
    pub(crate) fn operational(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 3,
            error: error.into(),
        }
    }
}

/// The outcome of a command that ran: success (0) or incomplete (1).
pub(crate) enum Outcome {
    Success,
    Incomplete,
    /// `exec`: the program's own exit status.
    Exit(u8),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => init_logging("info", args.log_format),
        _ => init_logging("warn", serve::LogFormat::Human),
    }
    let result = match cli.command {
        Command::Resolve(args) => resolve::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Status(args) => status::run(args),
        Command::Refresh(args) => refresh::run(args),
        Command::Exec(args) => exec::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(1),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("keyturn: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(default_level: &str, format: serve::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYTURN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false);
    match format {
        serve::LogFormat::Human => builder.init(),
        serve::LogFormat::Json => builder.json().init(),
    }
}

/// Whether logs may carry ANSI colour: only on a terminal, and never with `NO_COLOR` set to a
/// non-empty value (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Writes data to stdout.
pub(crate) fn print(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
        .map_err(Failure::operational)
}

/// Reads a settings file, with its name in every error. Relative paths in it are taken from
/// its directory, where backends also run ([`keyturn::Settings::relative_to`]).
pub(crate) fn read_settings(path: &Path) -> Result<keyturn::Settings, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings file {}", path.display()))
        .map_err(Failure::input)?;
    let settings = keyturn::Settings::from_yaml_str(&text)
        .with_context(|| path.display().to_string())
        .map_err(Failure::input)?
        .relative_to(directory_of(path));
    log_warnings(&settings);
    Ok(settings)
}

/// The directory of the file at `path` (`.` for a bare file name).
pub(crate) fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

pub(crate) fn log_warnings(settings: &keyturn::Settings) {
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
}

/// A current-thread runtime for one-shot commands.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::operational)
}
