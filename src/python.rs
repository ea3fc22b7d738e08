//! The Python binding (cargo feature `python`): the native module
//! `onnx_align._native` that `python/onnx_align/__init__.py` wraps.
//!
//! Thin by design: every function decodes its input, calls the same library
//! code as the CLI ([`pipeline::align_model`], [`report::build`],
//! [`report::check`], [`verify::verify`], [`cli::main_from`]) with the GIL
//! released, and hands back protobuf bytes and JSON text; the Python side
//! turns those into `onnx.ModelProto` and dicts. Errors become
//! `InputError` / `VerificationError` (both `AlignError`) carrying the CLI's
//! one-line message, file name first when a path was given.

use crate::ir::Model;
use crate::onnx::{self, ModelProto};
use crate::passes::{Options, Pass};
use crate::pipeline::{self, Config};
use crate::verify::{self, Tolerance, VerifyOptions};
use crate::{cli, report, Error, ErrorKind};
use prost::Message;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

create_exception!(
    _native,
    AlignError,
    PyException,
    "An align failure; `str(e)` is the CLI's one-line message (file first when a path was given)."
);
create_exception!(
    _native,
    InputError,
    AlignError,
    "The model could not be read or align cannot handle it (the CLI's exit code 2)."
);
create_exception!(
    _native,
    VerificationError,
    AlignError,
    "The rewritten model's outputs differ from the original's (the CLI's exit code 1)."
);

/// A model handed in from Python: a path, or serialized protobuf bytes.
enum Source<'a> {
    Path(PathBuf),
    Bytes(&'a [u8]),
}

impl<'a> Source<'a> {
    fn from_py(obj: &'a Bound<'_, PyAny>) -> PyResult<Source<'a>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Source::Bytes(b.as_bytes()));
        }
        match obj.extract::<PathBuf>() {
            Ok(p) => Ok(Source::Path(p)),
            Err(_) => Err(InputError::new_err(format!(
                "model must be an onnx.ModelProto, a path or bytes, not {}",
                obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "this type".into())
            ))),
        }
    }

    /// The file name prefix of error messages, as the CLI prints it.
    fn path(&self) -> Option<&Path> {
        match self {
            Source::Path(p) => Some(p),
            Source::Bytes(_) => None,
        }
    }

    /// Decodes the model; external data is resolved for paths.
    fn load(&self) -> Result<ModelProto, Error> {
        match self {
            Source::Path(p) => onnx::load(p).map(|(m, _)| m),
            Source::Bytes(b) => onnx::decode_in_memory(bytes::Bytes::copy_from_slice(b)),
        }
    }
}

/// An error for Python: kind decides the class (`None`: a limit of the
/// binding, plain `AlignError`), the message is the CLI's.
struct Failure {
    kind: Option<ErrorKind>,
    msg: String,
}

impl Failure {
    fn new(file: Option<&Path>, e: Error) -> Failure {
        let msg = match file {
            Some(f) => format!("{}: {e}", f.display()),
            None => e.to_string(),
        };
        Failure { kind: Some(e.kind), msg }
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f.kind {
            Some(ErrorKind::Input) => InputError::new_err(f.msg),
            Some(ErrorKind::Verify) => VerificationError::new_err(f.msg),
            None => AlignError::new_err(f.msg),
        }
    }
}

fn options(
    multiple: u32,
    input_shapes: Option<HashMap<String, Vec<i64>>>,
    slice_pinned: bool,
    max_growth: Option<f64>,
) -> PyResult<Options> {
    let opts = Options {
        multiple: multiple as usize,
        input_shapes: input_shapes.unwrap_or_default(),
        deconv: true,
        slice_pinned,
        max_growth: max_growth.unwrap_or(Options::DEFAULT_MAX_GROWTH),
    };
    opts.validate().map_err(|e| PyErr::from(Failure::new(None, e)))?;
    Ok(opts)
}

fn verify_options(
    atol: Option<f64>,
    rtol: Option<f64>,
    trials: Option<u32>,
    seed: Option<u64>,
    strict: bool,
) -> PyResult<VerifyOptions> {
    let d = VerifyOptions::default();
    // the CLI's defaults: strict mode has its own elementwise tolerances
    let tol = if strict { Tolerance::STRICT_DEFAULT } else { d.tolerance };
    // None: as many trials as the input size calls for (the CLI's default)
    let trials = trials.map(|t| t as usize).unwrap_or(d.trials);
    let opts = VerifyOptions {
        tolerance: Tolerance { atol: atol.unwrap_or(tol.atol), rtol: rtol.unwrap_or(tol.rtol) },
        strict,
        trials,
        seed: seed.unwrap_or(d.seed),
        ..d
    };
    opts.validate().map_err(|e| PyErr::from(Failure::new(None, e)))?;
    Ok(opts)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("align's results serialise")
}

/// Aligns a model; returns the rewritten model's protobuf bytes and the
/// summary as JSON. Verification failure raises `VerificationError` with the
/// summary (as JSON text) in its `summary_json` attribute.
#[pyfunction]
#[pyo3(name = "align", signature = (model, *, multiple, passes, verify, atol, rtol, trials, seed, input_shapes, slice_pinned, strict, max_growth))]
#[allow(clippy::too_many_arguments)]
fn py_align<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    multiple: u32,
    passes: Option<String>,
    verify: bool,
    atol: Option<f64>,
    rtol: Option<f64>,
    trials: Option<u32>,
    seed: Option<u64>,
    input_shapes: Option<HashMap<String, Vec<i64>>>,
    slice_pinned: bool,
    strict: bool,
    max_growth: Option<f64>,
) -> PyResult<(Bound<'py, PyBytes>, String)> {
    let src = Source::from_py(model)?;
    let file = src.path().map(Path::to_path_buf);
    let fail = |e: Error| Failure::new(file.as_deref(), e);
    let passes = match passes {
        Some(p) => Pass::parse_list(&p).map_err(fail)?,
        None => Pass::all(),
    };
    let cfg = Config {
        options: options(multiple, input_shapes, slice_pinned, max_growth)?,
        passes,
        verify: if verify { Some(verify_options(atol, rtol, trials, seed, strict)?) } else { None },
    };
    let outcome = py.detach(|| -> Result<_, Failure> {
        let proto = src.load().map_err(fail)?;
        let mut out = pipeline::align_model(proto, &cfg, &|_| {}).map_err(fail)?;
        out.summary.input = file.as_ref().map(|f| f.display().to_string());
        if let Some(why) = out.failure() {
            return Ok(Err((why, out.summary)));
        }
        let len = out.model.encoded_len();
        if len > onnx::PROTOBUF_LIMIT {
            return Err(Failure {
                kind: None,
                msg: format!(
                    "{}the aligned model is {len} bytes, over protobuf's 2 GiB limit for one message, so it cannot be \
                     an onnx.ModelProto; use the align command, which writes large weights as external data",
                    file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default()
                ),
            });
        }
        Ok(Ok((out.model.encode_to_vec(), to_json(&out.summary))))
    })?;
    match outcome {
        Ok((bytes, summary)) => Ok((PyBytes::new(py, &bytes), summary)),
        Err((why, summary)) => {
            let err = VerificationError::new_err(format!(
                "{}verification failed: {why}",
                file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(),
            ));
            err.value(py).setattr("summary_json", to_json(&summary))?;
            Err(err)
        }
    }
}

/// `align report` of a model, as JSON.
#[pyfunction]
#[pyo3(name = "report", signature = (model, *, multiple, input_shapes, slice_pinned, max_growth))]
fn py_report(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    multiple: u32,
    input_shapes: Option<HashMap<String, Vec<i64>>>,
    slice_pinned: bool,
    max_growth: Option<f64>,
) -> PyResult<String> {
    let src = Source::from_py(model)?;
    let opts = options(multiple, input_shapes, slice_pinned, max_growth)?;
    Ok(py.detach(|| -> Result<_, Failure> { Ok(to_json(&report_of(&src, &opts)?)) })?)
}

/// `align check` of a model, as JSON.
#[pyfunction]
#[pyo3(name = "check", signature = (model, *, multiple, strict, input_shapes, slice_pinned, max_growth))]
fn py_check(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    multiple: u32,
    strict: bool,
    input_shapes: Option<HashMap<String, Vec<i64>>>,
    slice_pinned: bool,
    max_growth: Option<f64>,
) -> PyResult<String> {
    let src = Source::from_py(model)?;
    let opts = options(multiple, input_shapes, slice_pinned, max_growth)?;
    Ok(py.detach(|| -> Result<_, Failure> { Ok(to_json(&report::check(&report_of(&src, &opts)?, strict))) })?)
}

fn report_of(src: &Source<'_>, opts: &Options) -> Result<report::Report, Failure> {
    let fail = |e: Error| Failure::new(src.path(), e);
    let m = Model::import(src.load().map_err(fail)?).map_err(fail)?;
    report::build(&m, opts).map_err(fail)
}

/// Runs two models on the same seeded inputs and compares every output; the
/// verification as JSON (`passed` false when an element differs).
#[pyfunction]
#[pyo3(name = "verify", signature = (original, candidate, *, atol, rtol, trials, seed, input_shapes, strict))]
#[allow(clippy::too_many_arguments)]
fn py_verify(
    py: Python<'_>,
    original: &Bound<'_, PyAny>,
    candidate: &Bound<'_, PyAny>,
    atol: Option<f64>,
    rtol: Option<f64>,
    trials: Option<u32>,
    seed: Option<u64>,
    input_shapes: Option<HashMap<String, Vec<i64>>>,
    strict: bool,
) -> PyResult<String> {
    let (a, b) = (Source::from_py(original)?, Source::from_py(candidate)?);
    let opts = verify_options(atol, rtol, trials, seed, strict)?;
    let shapes = options(8, input_shapes, false, None)?.input_shapes;
    Ok(py.detach(|| -> Result<_, Failure> {
        let ma = a.load().map_err(|e| Failure::new(a.path(), e))?;
        let mb = b.load().map_err(|e| Failure::new(b.path(), e))?;
        let v = verify::verify(&ma, &mb, &shapes, &opts).map_err(|e| {
            // the message says which model; name both files where there are files
            let pair = match (a.path(), b.path()) {
                (Some(x), Some(y)) => Some(PathBuf::from(format!("{} vs {}", x.display(), y.display()))),
                (x, y) => x.or(y).map(Path::to_path_buf),
            };
            Failure::new(pair.as_deref(), e)
        })?;
        Ok(to_json(&v))
    })?)
}

/// The `align` command line with `argv` (program name first); returns the
/// exit code. Output goes to the process's stdout and stderr.
#[pyfunction]
#[pyo3(name = "main")]
fn py_main(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| cli::main_from(argv))
}

/// The native module `onnx_align._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AlignError", py.get_type::<AlignError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("VerificationError", py.get_type::<VerificationError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(py_align, m)?)?;
    m.add_function(wrap_pyfunction!(py_report, m)?)?;
    m.add_function(wrap_pyfunction!(py_check, m)?)?;
    m.add_function(wrap_pyfunction!(py_verify, m)?)?;
    m.add_function(wrap_pyfunction!(py_main, m)?)?;
    Ok(())
}
