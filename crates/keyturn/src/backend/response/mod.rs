//! What a backend answered, as pure functions over bytes: decoding and per-handle
//! classification, the texts of per-handle failures (the Agent's wording), and the scrubbing of
//! values out of anything the backend said besides them (its per-handle error texts and its
//! stderr).
//!
//! - `decode`: the answer's bytes to one slot per requested handle (a fast scanner for the
//!   common shape, serde_json for everything else), and parse errors described without input.
//! - `classify`: each requested handle's outcome from its slot (missing, error, empty or its
//!   value), with the Agent's texts, scrubbed.
//! - `values`: every value of a valid answer, for scrubbing the backend's other texts.
//!
//! Invariant: no text built here contains a value the backend returned in the same answer, nor
//! a value keyturn already holds and passes in (see [`classify_pending()`]). Parse errors are described
//! from their category and position only, never with serde's text for data errors (which
//! quotes the offending input, e.g. a value given as a bare string).

mod classify;
mod decode;
#[cfg(test)]
mod tests;
mod values;

pub(crate) use classify::{
    Classified, Pending, classify_early, classify_pending, classify_without_error_texts,
};
pub(crate) use decode::{Requested, describe_parse_error};
pub(crate) use values::answer_values;
