//! Structure-aware fuzz target: the fuzzer's bytes drive a small generator
//! that builds a *plausible* CNN graph (Conv, ConvTranspose, BN, activations,
//! pooling, element-wise ops with per-channel constants, Concat, Split,
//! Slice, Resize, Pad, Flatten→Gemm, Reshape→MatMul, unknown ops…) whose
//! weights, dims, attributes and wiring are mostly consistent but sometimes
//! off, encodes it to ONNX bytes and runs the same pipeline as `load_align`
//! (`common::run`). Byte-level mutation of protobuf rarely produces a graph
//! that reaches the passes; this target gets there on almost every input.
#![no_main]

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod gen;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// `ALIGN_FUZZ_DUMP=file.onnx`: write the generated model there before
/// running it, to turn a crash input into an ONNX reproducer (run the target
/// on that one input: `cargo fuzz run graph_align -a crash-…`). When the path
/// is an existing folder, every model goes there as `<hash>.onnx` (to turn a
/// graph_align corpus into seeds for load_align).
fn dump_path() -> Option<&'static std::path::Path> {
    static P: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    P.get_or_init(|| std::env::var_os("ALIGN_FUZZ_DUMP").map(Into::into)).as_deref()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(model) = gen::build(&mut u) else {
        return;
    };
    let bytes = model.encode_to_vec();
    if let Some(p) = dump_path() {
        let file = if p.is_dir() {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            p.join(format!("{:016x}.onnx", h.finish()))
        } else {
            p.to_path_buf()
        };
        std::fs::write(file, &bytes).expect("write ALIGN_FUZZ_DUMP");
    }
    common::run_guarded(&bytes);
});
