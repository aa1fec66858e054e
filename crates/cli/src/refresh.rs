//! `keyturn refresh`: asks a running `keyturn serve` to refresh now and prints the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use hyper::{Method, StatusCode};

use crate::client::{Client, encode_query_value};
use crate::{Failure, Outcome};

/// How long to wait for the refresh (backend runs, writes and on_change commands included).
const TIMEOUT: Duration = Duration::from_secs(600);

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
    /// Refresh only this handle (repeatable); by default every refreshable handle.
    #[arg(long, value_name = "HANDLE")]
    handle: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    let client = Client::from_settings(&args.config)?;
    let mut uri = String::from("/secret/refresh?trigger=cli");
    for handle in &args.handle {
        uri.push_str("&handle=");
        uri.push_str(&encode_query_value(handle));
    }
    let answer = crate::runtime()?.block_on(client.send(Method::POST, &uri, true, TIMEOUT))?;
    if answer.status == StatusCode::NOT_FOUND && !args.handle.is_empty() {
        // A `--handle` that no template uses: bad input, nothing ran.
        return Err(Failure::input(anyhow!("{}", answer.error())));
    }
    if answer.status != StatusCode::OK && answer.status != StatusCode::INTERNAL_SERVER_ERROR {
        return Err(answer.failure());
    }
    let body = answer.json()?;
    let text = body.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
        Failure::operational(anyhow!("unexpected answer from keyturn serve: no report"))
    })?;
    crate::print(text.as_bytes())?;
    if answer.status == StatusCode::OK {
        Ok(Outcome::Success)
    } else {
        eprintln!("keyturn: refresh failed: {}", answer.error());
        Ok(Outcome::Incomplete)
    }
}
