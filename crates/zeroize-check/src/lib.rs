//! Test-only crate: [`Recording`], a global allocator that can watch one heap buffer and record,
//! when that buffer is freed, whether its bytes were zeroed first. `tests/zeroize.rs` installs
//! it to prove that keyturn's secret-holding types wipe their values when dropped.
//!
//! This is the one place in the workspace with `unsafe` code (the workspace forbids it; this
//! crate only denies it and allows it here): `GlobalAlloc` is an unsafe trait, and checking a
//! buffer as it is freed means reading it through a raw pointer. The allocator itself is the
//! system allocator; the read happens before the memory is handed back, and covers only bytes
//! the watched value had initialized.
//!
//! One buffer is watched at a time: [`check`] serializes callers.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// What happened to the watched buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was not freed (yet).
    NotFreed,
    /// It was freed, and every watched byte was zero.
    Zeroed,
    /// It was freed with at least one watched byte not zero: the value was left in freed memory.
    NotZeroed,
}

/// The system allocator, plus the check on the watched buffer in `dealloc` (and in `realloc`,
/// which frees the old buffer: a buffer that grows must not leave its old bytes behind).
#[derive(Debug)]
pub struct Recording;

static WATCHED: AtomicUsize = AtomicUsize::new(0);
static WATCHED_LEN: AtomicUsize = AtomicUsize::new(0);
static OUTCOME: AtomicU8 = AtomicU8::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const NOT_FREED: u8 = 0;
const ZEROED: u8 = 1;
const NOT_ZEROED: u8 = 2;

unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let watched = WATCHED.load(Ordering::SeqCst);
        // The watched bytes may start inside the block (a value sharing a buffer with others).
        let offset = watched.wrapping_sub(ptr as usize);
        let len = WATCHED_LEN.load(Ordering::SeqCst);
        if !ptr.is_null()
            && watched != 0
            && watched >= ptr as usize
            && offset.saturating_add(len) <= layout.size()
        {
            // SAFETY: `ptr` is a live allocation of `layout.size()` bytes until the
            // `System.dealloc` below, `offset + len` lies within it, and those bytes were
            // initialized by the watched value (zeroing keeps them initialized).
            let zeroed =
                (offset..offset + len).all(|at| unsafe { ptr.add(at).read_volatile() } == 0);
            OUTCOME.store(if zeroed { ZEROED } else { NOT_ZEROED }, Ordering::SeqCst);
            WATCHED.store(0, Ordering::SeqCst);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Makes a value with `make`, watches the heap bytes `buffer` points at (`buffer.len()` bytes, at
/// the start of their allocation or inside it), drops the value, and tells what happened to the buffer. Callers are
/// serialized, so tests may run in parallel threads.
pub fn check<T>(make: impl FnOnce() -> T, buffer: impl FnOnce(&T) -> &[u8]) -> Outcome {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let value = make();
    let bytes = buffer(&value);
    assert!(
        !bytes.is_empty(),
        "an empty value has no heap buffer to watch"
    );
    OUTCOME.store(NOT_FREED, Ordering::SeqCst);
    WATCHED_LEN.store(bytes.len(), Ordering::SeqCst);
    WATCHED.store(bytes.as_ptr() as usize, Ordering::SeqCst);
    drop(value);
    WATCHED.store(0, Ordering::SeqCst);
    match OUTCOME.load(Ordering::SeqCst) {
        ZEROED => Outcome::Zeroed,
        NOT_ZEROED => Outcome::NotZeroed,
        _ => Outcome::NotFreed,
    }
}
