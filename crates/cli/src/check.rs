//! `keyturn check`: the executable report, exit 0 when the backend executable passes.

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
