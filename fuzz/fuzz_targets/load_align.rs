//! Fuzz target: arbitrary bytes → `onnx::decode` → `ir::Model::import` →
//! report → every pass → `export` → protobuf encode → decode → import →
//! report (see `common::run`).
//!
//! Any `Err` is an accepted outcome (bad input). A panic, abort, stack
//! overflow, hang or huge allocation is a bug.
//!
//! External data: `decode` resolves external-data locations relative to the
//! folder it is given. The target passes a sandbox folder under the system
//! temp dir (`align-fuzz-sandbox`), holding a single synthetic file `w.bin`
//! (4 KiB of a fixed byte pattern) that the target wrote itself, so a
//! fuzzed model can exercise offset/length handling but never reads any real
//! file: `..`, absolute paths and links out of the folder are refused by
//! `resolve_location`, and nothing else is in there.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::run_guarded(data);
});
