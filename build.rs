//! Generates the ONNX protobuf types from `proto/onnx.proto` with prost.
//!
//! protox compiles the schema in pure Rust, so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto/"])?;
    // weights as `bytes::Bytes`: decoding from a memory map then slices the
    // map instead of copying every tensor (see src/onnx/mod.rs)
    prost_build::Config::new().bytes([".onnx.TensorProto.raw_data"]).compile_fds(fds)?;
    Ok(())
}
