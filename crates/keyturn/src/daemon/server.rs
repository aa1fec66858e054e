//! The HTTP server under the API: accepts connections and serves the router over HTTP/1.1,
//! within limits that keep any local user from exhausting the daemon's file descriptors (a
//! daemon out of descriptors cannot start a backend, write a destination or the audit file).
//!
//! - **Connections are limited.** [`run`] takes a permit before each `accept`; while every
//!   permit is taken, new connections wait in the kernel's listen backlog and cost the daemon
//!   no descriptor. The limit ([`connection_limit`]) is `api.max_connections`, and never more
//!   than half of the descriptors that were free at start, so the other half stays in reserve
//!   for backend runs (executable, pipes), file writes and hooks.
//! - **Header reads time out.** A client must send a request's whole header within
//!   `api.header_read_timeout` of connecting, or of the end of its previous response (hyper's
//!   header-read timer, which so also closes idle keep-alive connections); the API reads a body
//!   within the same time or answers 408 (see `api`).
//! - **The descriptor limit is raised at start** ([`raise_open_files_limit`]): the soft
//!   `RLIMIT_NOFILE` to the hard one (bounded), so that the reserve is large.
//! - An `accept` that fails for lack of descriptors or memory is retried after a pause, without
//!   spinning.
//!
//! Shutdown: once the `stop` channel says so, no connection is accepted, every open one is
//! asked to finish its request in progress and close, and [`run`] returns when all are closed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The most the soft `RLIMIT_NOFILE` is raised to (the kernel's default `fs.nr_open`).
pub const MAX_OPEN_FILES: u64 = 1 << 20;
/// How long the accept loop pauses after an `accept` failed for lack of resources.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How many connections the server holds open at once, and how long a client may take to send
/// a request's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// At most this many connections are open at once.
    pub max_connections: usize,
    /// A request's header must arrive within this time (from the connection's start, or the
    /// end of the previous response); its body too.
    pub header_read_timeout: Duration,
}

/// The soft `RLIMIT_NOFILE` before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenFilesLimit {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit now.
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, at most [`MAX_OPEN_FILES`]. Never
/// lowers it. Children (backends, hooks) inherit the raised limit.
pub fn raise_open_files_limit() -> io::Result<OpenFilesLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = hard.min(MAX_OPEN_FILES);
    if target <= soft {
        return Ok(OpenFilesLimit {
            before: soft,
            after: soft,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    Ok(OpenFilesLimit {
        before: soft,
        after: target,
    })
}

/// The connection limit for `configured` connections when the soft descriptor limit is
/// `open_files_limit` and `open` descriptors are in use: at most half of the free ones, so
/// that the other half stays in reserve for backend runs and file writes; at least one.
pub fn connection_limit(configured: usize, open_files_limit: u64, open: u64) -> usize {
    let half_free = open_files_limit.saturating_sub(open) / 2;
    configured
        .min(usize::try_from(half_free).unwrap_or(usize::MAX))
        .max(1)
}

/// The connection limit of this process now (see [`connection_limit`]).
pub fn connection_limit_now(configured: usize) -> usize {
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    // Linux lists open descriptors in /proc/self/fd; elsewhere assume a few dozen.
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |entries| entries.count() as u64);
    connection_limit(configured, limit, open)
}

/// Serves `router` on `listener` within `limits` until `stop` turns true, then lets open
/// connections finish their request in progress and returns once all are closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let max_connections = limits.max_connections.clamp(1, MAX_OPEN_FILES as usize);
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            () = stopped(&mut stop) => break,
            permit = permits.clone().acquire_owned() => permit.map_err(io::Error::other)?,
        };
        let stream = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if is_resource_exhaustion(&e) {
                        tracing::warn!("cannot accept a connection: {e}; pausing");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    } else {
                        tracing::debug!("accept failed: {e}");
                    }
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    // Every connection holds a permit until it is closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Whether an `accept` error means the process or system is out of descriptors or memory.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_keep_half_of_the_free_descriptors_in_reserve() {
        assert_eq!(connection_limit(512, 1 << 20, 30), 512);
        assert_eq!(connection_limit(512, 1024, 24), 500);
        assert_eq!(connection_limit(512, 64, 20), 22);
        assert_eq!(connection_limit(512, 16, 20), 1, "always at least one");
        assert_eq!(connection_limit(0, 1024, 20), 1);
    }
}
