//! The `keyturn` command: a thin layer of argument parsing, logging and exit codes over the
//! `keyturn` library.
//!
//! Every command returns `Result<ExitCode>`-like outcomes to [`main`], which is the one place
//! that maps errors to the documented exit codes (`exec` exits with its program's status once
//! the program ran, and with 126 or 127 when it could not be started):
//! - 0: success;
//! - 1: the job ran but did not fully succeed (a handle unresolved, a refresh failed);
//! - 2: bad invocation, unreadable or unparsable input, invalid settings, anything `check`
//!   finds;
//! - 3: an operational failure (output could not be written, daemon could not start, API
//!   unreachable or refusing the token).
//!
//! Logs go to stderr, data to stdout. `keyturn serve` logs at `info`, the other commands at
//! `warn`; every command takes the global `--log-level`, `-v`/`-q` (one level up or down per
//! use) and `--log-format` (`json` for one JSON object per event). Without `--log-level`,
//! `-v` or `-q`, `KEYTURN_LOG` (a `tracing` filter) overrides the default.

// Doc comments double as `--help` text, where `ENC[handle]` is literal, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod check;
mod client;
mod exec;
mod generate;
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
#[command(
    name = "keyturn",
    version = env!("KEYTURN_VERSION"),
    about,
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

/// Logging options, accepted by every command.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log level on stderr [default: info for serve, warn otherwise; KEYTURN_LOG when set].
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    /// Log format on stderr: human (one line per event) or json (one object per event).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log more: one level up per use (-v info, -vv debug, ...).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Log less: one level down per use (-q error, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,
}

/// Log levels, from the quietest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// How logs are written: `human`, one line of text per event, or `json`, one JSON object per
/// event. (Plain comments on the variants: documented values would switch every command's
/// `--help` to the long layout.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve every ENC[handle] in FILE and print the resolved document.
    Resolve(resolve::Args),
    /// Validate everything `serve` would load, without fetching a secret or creating anything.
    Check(check::Args),
    /// Run the daemon: keep templates resolved and fresh, serve the HTTP API.
    Serve(serve::Args),
    /// Print the status of a running daemon.
    Status(status::Args),
    /// Ask a running daemon to refresh now and print the report.
    Refresh(refresh::Args),
    /// Run COMMAND with the secrets of its environment resolved, and keep them fresh.
    Exec(exec::Args),
    /// Print a shell completion script for SHELL to stdout.
    Completions(generate::CompletionsArgs),
    /// Write the manual pages (keyturn.1 and one per command) into DIR.
    Man(generate::ManArgs),
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
    let default_level = match &cli.command {
        Command::Serve(_) => LogLevel::Info,
        _ => LogLevel::Warn,
    };
    init_logging(&cli.log, default_level);
    let result = match cli.command {
        Command::Resolve(args) => resolve::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Status(args) => status::run(args),
        Command::Refresh(args) => refresh::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
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

fn init_logging(args: &LogArgs, default_level: LogLevel) {
    let filter = match log_level(args, default_level) {
        Some(level) => tracing_subscriber::EnvFilter::new(level.as_filter()),
        None => tracing_subscriber::EnvFilter::try_from_env("KEYTURN_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level.as_filter())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false);
    match args.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The level the command line asks for: `--log-level`, moved up by `-v` and down by `-q`
/// (from the command's default when `--log-level` is absent); `None` when it asks nothing.
fn log_level(args: &LogArgs, default_level: LogLevel) -> Option<LogLevel> {
    if args.log_level.is_none() && args.verbose == 0 && args.quiet == 0 {
        return None;
    }
    let levels = [
        LogLevel::Off,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];
    let base = args.log_level.unwrap_or(default_level);
    let index = levels.iter().position(|l| *l == base).unwrap_or(2);
    let index = (index + usize::from(args.verbose))
        .saturating_sub(usize::from(args.quiet))
        .min(levels.len() - 1);
    levels.get(index).copied()
}

impl LogLevel {
    fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Whether logs may carry ANSI colour: only on a terminal, and never with `NO_COLOR` set to a
/// non-empty value (the `NO_COLOR` convention).
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
    for warning in settings.warnings() {
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
