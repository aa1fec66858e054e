//! keyturn: resolve `ENC[handle]` secrets in configuration documents through a secret backend.
//!
//! Start reading at [`Resolver`]: it takes a parsed [`Document`], asks the configured backend
//! for every handle it does not have cached (one batch per backend), and hands back the
//! document with the handles replaced plus the list of handles that failed.
//!
//! Module map:
//! - [`secret`]: the [`Secret`] type, which redacts itself and zeroizes on drop.
//! - [`handle`]: what counts as an `ENC[...]` handle.
//! - [`document`]: YAML and JSON documents, the handles in them, format-preserving substitution.
//! - [`settings`]: the settings file, parsed once into validated types.
//! - [`backend`]: the only code that starts backends (the daemon's `on_change` commands are
//!   the one other process, started by [`daemon::hook`]): permission check, spawn, timeout,
//!   output caps, response parsing.
//! - [`resolver`]: cache, origins, subscriptions, coalesced fetches and refreshes.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`hygiene`]: process hardening at start (not dumpable, optionally memory locked).
//! - [`audit`]: the audit trail of refreshes (NDJSON, rotated, never a plain value).
//! - [`atomic_file`]: writing files that are never seen half-written.
//! - [`daemon`]: `keyturn serve`: templates kept resolved, refresh schedule, reloads.
//! - [`exec`]: `keyturn exec`: a program run with its secrets in its environment, supervised.
//! - [`api`]: the daemon's HTTP API (status, refresh, metrics) behind a bearer token.
//! - [`trusted_path`]: whether anyone but root and the user can change what a path names.
//!
//! Invariant: no secret value reaches a log line, an error message, or a `Debug` print.

#![warn(missing_docs)]

#[cfg(feature = "daemon")]
pub mod api;
#[cfg(feature = "daemon")]
pub mod atomic_file;
pub mod audit;
pub mod backend;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod document;
#[cfg(feature = "daemon")]
pub mod exec;
pub mod handle;
#[cfg(feature = "daemon")]
pub mod hygiene;
#[cfg(feature = "daemon")]
pub mod metrics;
pub mod printable;
pub mod resolver;
pub mod secret;
pub mod settings;
#[cfg(feature = "daemon")]
pub mod token;
pub mod trusted_path;

pub use document::{Document, Format, HandleSite};
pub use resolver::{Resolution, Resolver};
pub use secret::Secret;
pub use settings::Settings;

/// Where error messages send users for the protocol and troubleshooting.
pub const DOCS_URL: &str = "https://github.com/keyturn/keyturn#troubleshooting";
