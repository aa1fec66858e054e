//! `keyturn check`: validates everything `keyturn serve` would load (settings, the daemon's
//! sections, templates and their handles, destinations' directories, the run directory and
//! token file when they exist, the backend executable) without fetching a secret and without
//! creating anything. Prints the executable report; exit 0 when a start would load everything,
//! 2 with every problem on stderr otherwise.

use std::path::PathBuf;

use keyturn::daemon::DaemonConfig;
use keyturn::resolver::status::DISABLED_MESSAGE;

use crate::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Settings file (YAML).
    #[arg(
        long,
        env = "KEYTURN_CONFIG",
        value_name = "SETTINGS",
        default_value = "keyturn.yaml"
    )]
    config: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    let config = DaemonConfig::load(&args.config).map_err(Failure::input)?;
    let report = keyturn::daemon::check::check(&config);
    // A full or closed stdout is an operational failure (exit 3), not a panic.
    match &report.executable {
        Some(executable) => crate::print(executable.to_text().as_bytes())?,
        None => crate::print(format!("{DISABLED_MESSAGE}\n").as_bytes())?,
    }
    if report.passes() {
        Ok(Outcome::Success)
    } else {
        let problems = report.to_string();
        Err(Failure::input(anyhow::anyhow!("{}", problems.trim_end())))
    }
}
