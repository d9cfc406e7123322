//! `cargo fuzz run decoder` (nightly): the check itself lives in `decoder_check.rs`, which
//! `tests/fuzz_decoder.rs` also runs on stable (corpus replay plus a random-input driver).
//!
//! Input layout: byte 0 selects the framing (and delimiter), bytes 1..3 the maximum message
//! size, byte 3 seeds the chunk sizes; the rest is the stream. `fuzz/corpus/decoder/` holds
//! hand-made seeds (kept in git) covering every framing selector.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "decoder_check.rs"]
mod decoder_check;

fuzz_target!(|data: &[u8]| decoder_check::check(data));
