//! `keyturn-backend`: built-in secret backends behind the Datadog secret backend protocol.
//!
//! STUB: being written.

fn main() {}
