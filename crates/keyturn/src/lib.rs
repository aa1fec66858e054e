//! keyturn: resolve `ENC[handle]` secrets in configuration documents through a secret backend,
//! speaking the Datadog Agent's secrets protocol.
//!
//! Start at [`Resolver`]: it takes a parsed [`Document`], asks the configured backend for every
//! handle it does not have cached (one batch per backend), and hands back the document with the
//! handles replaced plus the list of handles that failed. The items an embedder needs are
//! re-exported here; the modules hold the rest.
//!
//! # Resolve a document
//!
//! ```no_run
//! use keyturn::{Document, Format, Resolver, Settings};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::from_yaml_str("secret_backend_command: /usr/local/bin/fetch-secrets\n")?;
//! let resolver = Resolver::new(settings);
//! let document = Document::parse("password: ENC[db_password]\n".to_owned(), Format::Yaml)?;
//! let resolution = resolver.resolve(&document, "app.yaml", false).await;
//! for failure in &resolution.failures {
//!     // Failures name the handle and where it is used, never a value.
//!     eprintln!("{}: {} (at {})", failure.handle, failure.message, failure.paths_text());
//! }
//! if resolution.is_complete() {
//!     std::fs::write("app.resolved.yaml", resolution.output.as_bytes())?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Subscribe to changes
//!
//! ```no_run
//! use keyturn::{Change, Resolver, Settings};
//!
//! # fn example() -> Result<(), keyturn::SettingsError> {
//! let resolver = Resolver::new(Settings::from_yaml_str("secret_backend_command: fetch-secrets\n")?);
//! resolver.subscribe(|change: &Change<'_>| {
//!     // Where a value changed; `change.new` is the value itself: use it, never log it.
//!     println!("{} changed at {}/{}", change.handle, change.origin, change.path.join("/"));
//! });
//! # Ok(())
//! # }
//! ```
//!
//! # Refresh
//!
//! ```no_run
//! use keyturn::{Resolver, Trigger};
//!
//! # async fn example(resolver: Resolver) {
//! // Re-fetches every handle the resolver knows; subscribers hear of every changed use.
//! let report = resolver.refresh(Trigger::Api).await;
//! for changed in &report.changed {
//!     println!("{} changed in {} places", changed.handle, changed.places.len());
//! }
//! for failure in &report.failures {
//!     eprintln!("{} kept its last value: {}", failure.handle, failure.message);
//! }
//! # }
//! ```
//!
//! # Modules
//! - [`secret`]: the [`Secret`] type, which redacts itself and zeroizes on drop.
//! - [`handle`]: what counts as an `ENC[...]` handle.
//! - [`document`]: YAML and JSON documents, the handles in them, format-preserving substitution.
//! - [`settings`]: the settings file, parsed once into validated types.
//! - [`backend`]: the only code that starts backends: permission check, spawn, timeout, output
//!   caps, response parsing.
//! - [`resolver`]: cache, origins, subscriptions, coalesced fetches and refreshes.
//! - [`audit`]: the audit trail of refreshes (NDJSON, rotated, never a plain value).
//! - [`trusted_path`]: whether anyone but root and the user can change what a path names.
//!
//! With the default `daemon` feature, what `keyturn serve` and `keyturn exec` are made of:
//! `daemon` (templates kept resolved, refresh schedule, reloads), `exec` (a program run with
//! its secrets in its environment), `api` (the HTTP API behind the bearer token of `token`),
//! `metrics` (Prometheus), `hygiene` (process hardening) and `atomic_file` (files never seen
//! half-written).
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

pub use backend::{FailureKind, RunRecord};
pub use document::{Document, DocumentError, Format, HandleSite, KeyPath, Segment};
pub use resolver::{
    Change, ChangedHandle, Failure, HeldBack, HoldReason, Observer, OnceValues, Place,
    RefreshOutcome, RefreshReport, Resolution, Resolver, ResolverOptions, Trigger,
};
pub use secret::Secret;
pub use settings::{BackendSelection, BuiltinBackend, Settings, SettingsError};

/// Where error messages send users for the protocol and troubleshooting.
pub const DOCS_URL: &str = "https://github.com/keyturn/keyturn#troubleshooting";
