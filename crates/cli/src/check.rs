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
            print!("{}", report.to_text());
            if report.passes() {
                Ok(Outcome::Success)
            } else {
                Ok(Outcome::Incomplete)
            }
        }
        None => {
            println!("{DISABLED_MESSAGE}");
            Ok(Outcome::Incomplete)
        }
    }
}
