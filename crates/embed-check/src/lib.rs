//! An embedder of the keyturn library built without its `daemon` feature. Its test resolves a
//! document through the root re-exports alone; `.ci/run` checks with `cargo tree` that the
//! daemon's dependencies (axum, hyper, prometheus-client) are not compiled in.
