//! The `keyturn` command.
//!
//! STUB: being written.

fn main() {}
