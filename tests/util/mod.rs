//! Test harness: runs the built `align` binary and reads fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the repository's fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every model fixture: generated ones, the dynamo one with external data,
/// third-party ones, and the real-world set when present.
pub fn all_fixtures() -> Vec<PathBuf> {
    let mut v = vec![];
    for dir in [fixtures(), fixtures().join("third_party"), fixtures().join("realworld")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "onnx") {
                    v.push(p);
                }
            }
        }
    }
    v.push(fixtures().join("dynamo_op18/model.onnx"));
    v.sort();
    v
}

/// Fixtures that onnxruntime/tract can run and that carry real weights
/// (the third-party "light" models compute a constant).
pub fn generated_fixtures() -> Vec<PathBuf> {
    all_fixtures()
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("third_party") && !tract_cannot_run(p))
        .collect()
}

/// Fixtures with an op tract has no translation for (opset-9 Upsample, a
/// custom-domain op): align can align them only with `--no-verify`.
pub fn tract_cannot_run(p: &Path) -> bool {
    ["opset9_resize.onnx", "unknown_op.onnx"].iter().any(|n| p.ends_with(n))
}

/// Runs `align` with `args`.
pub fn align(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).args(args).output().expect("align runs")
}

/// Runs `align` with path arguments.
pub fn align_p<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).args(args).output().expect("align runs")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Stdout parsed as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// Asserts an input error: exit 2, one line on stderr naming `file`, no
/// files left behind in `dir`.
pub fn assert_input_error(o: &Output, file: &str, dir: Option<&Path>, before: usize) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(file), "'{file}' not named in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    if let Some(d) = dir {
        assert_eq!(std::fs::read_dir(d).unwrap().count(), before, "files were left behind in {}", d.display());
    }
}

/// Everything align does to a model except running tract: decode (external
/// data relative to `dir`), report, every pass, export, and the same again on
/// its own output. Errors are fine; a panic is the bug these tests look for.
pub fn pipeline(bytes: &[u8], dir: &Path) {
    use prost::Message;
    let Ok((proto, _)) = align::onnx::decode(bytes, dir) else { return };
    let Ok(mut m) = align::ir::Model::import(proto) else { return };
    let opts = align::passes::Options::default();
    let _ = align::report::build(&m, &opts);
    if align::passes::run(&mut m, &align::passes::Pass::all(), &opts).is_ok() {
        let out = m.export();
        let back = align::onnx::ModelProto::decode(&out.encode_to_vec()[..]).expect("own output decodes");
        let m2 = align::ir::Model::import(back).expect("own output imports");
        let _ = align::report::build(&m2, &opts);
    }
}
