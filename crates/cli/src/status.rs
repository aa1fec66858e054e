//! `keyturn status`: asks a running `keyturn serve` for its status and prints it.

use std::path::PathBuf;
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::client::Client;
use crate::{Failure, Outcome};

/// How long to wait for the answer.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Settings file of the daemon (for api.listen and the token file).
    #[arg(
        long,
        env = "KEYTURN_CONFIG",
        value_name = "SETTINGS",
        default_value = "keyturn.yaml"
    )]
    config: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    let client = Client::from_settings(&args.config)?;
    let answer =
        crate::runtime()?.block_on(client.send(Method::GET, "/secrets", args.json, TIMEOUT))?;
    if answer.status != StatusCode::OK {
        return Err(answer.failure());
    }
    crate::print(&answer.body)?;
    Ok(Outcome::Success)
}
