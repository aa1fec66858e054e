//! `keyturn completions` and `keyturn man`: shell completions and manual pages, generated from
//! the same argument definitions that parse the command line.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::CommandFactory;

use crate::{Cli, Failure, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn completions(args: CompletionsArgs) -> Result<Outcome, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "keyturn", &mut script);
    crate::print(&script)?;
    Ok(Outcome::Success)
}

pub(crate) fn man(args: ManArgs) -> Result<Outcome, Failure> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
        .map_err(|e| {
            Failure::operational(anyhow!("cannot write man pages to {}: {e}", dir.display()))
        })?;
    Ok(Outcome::Success)
}
