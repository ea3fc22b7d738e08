//! Generates the ONNX protobuf types from `proto/onnx.proto` with prost.
//!
//! protox compiles the schema in pure Rust, so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto/"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
