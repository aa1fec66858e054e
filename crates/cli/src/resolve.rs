//! `keyturn resolve`: one document in, the resolved document out.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use keyturn::{Document, Format, Resolver, Settings};

use crate::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Settings file (YAML). Without it, the top-level secret_* keys of FILE are used.
    #[arg(long, env = "KEYTURN_CONFIG", value_name = "SETTINGS")]
    config: Option<PathBuf>,
    /// Syntax of FILE; by default from its extension (.json is JSON, anything else YAML).
    /// Required when FILE is `-`.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Write the resolved document to PATH (atomically, mode 0600) instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Write the document even when some handles failed (they stay as written); still exit 1.
    #[arg(long)]
    allow_partial: bool,
    /// The document to resolve; `-` reads it from stdin.
    file: PathBuf,
}

/// The syntaxes `--format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    Yaml,
    Json,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Format {
        match format {
            FormatArg::Yaml => Format::Yaml,
            FormatArg::Json => Format::Json,
        }
    }
}

pub(crate) fn run(args: Args) -> Result<Outcome, Failure> {
    raise_mmap_threshold();
    let stdin = args.file.as_os_str() == "-";
    // Errors and the origin of handles name stdin in words.
    let file = &if stdin {
        PathBuf::from("<stdin>")
    } else {
        args.file.clone()
    };
    let format = match args.format {
        Some(format) => Format::from(format),
        None if stdin => {
            return Err(Failure::input(anyhow!(
                "reading the document from stdin (`-`) needs --format yaml or --format json"
            )));
        }
        None => Format::from_path(file).unwrap_or(Format::Yaml),
    };
    let text = if stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    }
    .with_context(|| format!("cannot read {}", file.display()))
    .map_err(Failure::input)?;
    let settings = match &args.config {
        Some(path) => crate::read_settings(path)?,
        None => {
            let tree = match format {
                // Only the settings keys are built: the rest of the document costs nothing.
                Format::Json => keyturn::settings::json_to_settings_tree(&text),
                Format::Yaml => keyturn::settings::yaml_to_settings_tree(&text)
                    .with_context(|| file.display().to_string())
                    .map_err(Failure::input)?,
                other => {
                    return Err(Failure::input(anyhow::anyhow!(
                        "{}: cannot read settings from a {other:?} document; pass --config",
                        file.display()
                    )));
                }
            };
            // The document is its own settings file: its directory is theirs.
            let settings = Settings::from_tree(&tree)
                .with_context(|| file.display().to_string())
                .map_err(Failure::input)?
                .relative_to(crate::directory_of(file));
            crate::log_warnings(&settings);
            settings
        }
    };
    let document = Document::parse(text, format)
        .with_context(|| file.display().to_string())
        .map_err(Failure::input)?;
    if !settings.is_enabled() && !document.sites().is_empty() {
        return Err(Failure::input(anyhow!(
            "{} uses {} secret handle(s) but no secret backend is configured: set \
             secret_backend_command or secret_backend_type in {}",
            file.display(),
            document.sites().len(),
            args.config.as_ref().unwrap_or(file).display()
        )));
    }

    // Before any secret is in memory: no core dumps, and the optional memory lock.
    let hardening = keyturn::hygiene::harden(settings.memory_lock());
    for warning in &hardening.warnings {
        tracing::warn!("{warning}");
    }

    // One resolve and done: nothing to register for later refreshes.
    let fetched = crate::runtime()?.block_on(async {
        let resolver = Resolver::new(settings);
        resolver.fetch_once(&document).await
    });

    // Each cause once: a failed backend run is one line naming every handle it affects.
    for cause in keyturn::resolver::group_failures(&fetched.failures) {
        eprintln!("keyturn: {}: {cause}", file.display());
    }
    let complete = fetched.is_complete();
    if complete || args.allow_partial {
        // Written as it is rendered: the output is never held whole.
        write_output(args.output.as_ref(), |out| fetched.write_to(&document, out))?;
    }
    if complete {
        Ok(Outcome::Success)
    } else {
        eprintln!(
            "keyturn: {} of the handles in {} could not be resolved",
            fetched.failures.len(),
            file.display()
        );
        Ok(Outcome::Incomplete)
    }
}

/// Writes what `render` writes to PATH (atomically, mode 0600) or to stdout (straight to its
/// file descriptor: a buffer of the standard library would keep pieces of values).
fn write_output(
    output: Option<&PathBuf>,
    render: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Failure> {
    match output {
        Some(path) => keyturn::atomic_file::write_atomic_with(path, 0o600, render)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::operational),
        None => {
            let stdout = std::io::stdout();
            let written = stdout
                .as_fd()
                .try_clone_to_owned()
                .and_then(|fd| render(&mut std::fs::File::from(fd)));
            written
                .context("cannot write to stdout")
                .map_err(Failure::operational)
        }
    }
}

/// The size of the block [`raise_mmap_threshold`] frees.
const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Lets a one-off resolve reuse the memory it frees. glibc's malloc gives each block of 128 KiB
/// or more a mapping of its own and unmaps it when the block is freed, so every such block's
/// pages are faulted in anew; at 10,000 handles a resolve makes a dozen of them (the document's
/// lists, the payload, the answer, the results), and those page faults were a fifth of its CPU
/// time. Freeing a mapped block raises that threshold to the block's size (mallopt(3): the
/// "dynamic mmap threshold"), so this maps and frees one untouched block of
/// [`MMAP_THRESHOLD`] bytes (no page of it is touched: a pair of system calls): blocks below that
/// size then come from the heap and reuse each other's pages. Other allocators ignore it.
fn raise_mmap_threshold() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(
        MMAP_THRESHOLD,
    )));
}
