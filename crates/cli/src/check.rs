//! `keyturn check`: the executable report, exit 0 when the backend executable passes, 1 when
//! its permissions are refused, 2 when it is a `#!` script whose interpreter is missing or not
//! executable.

use std::path::PathBuf;

use keyturn::resolver::status::{self, DISABLED_MESSAGE};

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
    let settings = crate::read_settings(&args.config)?;
    let resolver = keyturn::Resolver::new(settings);
    match status::executable_report(&resolver) {
        Some(report) => {
            // A full or closed stdout is an operational failure (exit 3), not a panic.
            crate::print(report.to_text().as_bytes())?;
            // A script that cannot start is a settings problem, as a run reports it.
            if let Some(problem) = report.interpreter_problem {
                return Err(Failure::input(anyhow::anyhow!(
                    "{}: {problem}",
                    report.path
                )));
            }
            if report.passes() {
                Ok(Outcome::Success)
            } else {
                Ok(Outcome::Incomplete)
            }
        }
        None => {
            crate::print(format!("{DISABLED_MESSAGE}\n").as_bytes())?;
            Ok(Outcome::Incomplete)
        }
    }
}
