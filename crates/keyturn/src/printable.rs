//! Text from documents and backends (handles, key paths, a backend's words) as it is printed in
//! a log line, an error or the status, with the characters that could change how it reads
//! escaped. It lives in `keyturn-protocol`, so that both executables print backend text alike.
//!
//! Invariant: every error text and log line that quotes a handle or a key path formats it
//! through [`Printable`].

pub use keyturn_protocol::printable::{Printable, printable};
