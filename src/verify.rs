//! Proof that a rewrite changed no output: the only module that knows tract.
//!
//! tract loads the original and the rewritten ("candidate") model from
//! memory; both run on the same seeded inputs, and every output is compared.
//! The default criterion is grounded in fp32 arithmetic (see
//! `docs/verify.md`): the original also runs on the same inputs moved by one
//! ulp, which measures how much this network, in this engine, moves its
//! outputs when nothing but fp32 rounding changes — its *noise floor*. The
//! candidate's deviation from the original, per output and per slice of
//! comparable elements, must stay within [`NOISE_MULTIPLE`] times that floor
//! (plus [`ULPS`] ulps of the slice's magnitude). `strict` mode instead holds
//! every element to `|a − b| ≤ atol + rtol·|a|` (`a` from the original).
//! NaN agrees only with NaN in the same place.
//!
//! Outputs selected by TopK / ArgMax / ArgMin / NonMaxSuppression are not
//! compared by value (fp32 noise reorders near-ties); the tensors that feed
//! those ops are compared instead.

use crate::error::{Error, Result};
use crate::ir::{value_info_elem, value_info_shape};
use crate::onnx::{GraphProto, ModelProto, ValueInfoProto};
use prost::Message;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// The candidate's deviation may be this many times the original's own fp32
/// noise (calibrated in `docs/verify.md`).
pub const NOISE_MULTIPLE: f64 = 16.0;

/// Whatever the measured noise, a deviation of this many fp32 ulps
/// (ε₃₂ = 2⁻²³) of the slice's magnitude is accepted.
pub const ULPS: f64 = 16.0;

/// Automatic trials keep about this many input elements in play in total
/// (see [`auto_trials`]).
pub const AUTO_TRIAL_ELEMENTS: usize = 1 << 20;

/// The number of random trials when none is asked for: enough inputs to
/// reach [`AUTO_TRIAL_ELEMENTS`] input elements in total, 1 to 8. A 640×640
/// image is one trial, 320×320 four, a 64×64 fixture eight. A conv sees
/// every spatial position of every trial, so this keeps the evidence per
/// channel about constant while the cost stays about one 640×640 run.
pub fn auto_trials(specs: &[InputSpec]) -> usize {
    let elements: usize = specs.iter().map(|s| s.shape.iter().product::<usize>()).sum();
    AUTO_TRIAL_ELEMENTS.div_ceil(elements.max(1)).clamp(1, 8)
}

/// Slices along an axis are compared separately only when each holds at
/// least this many elements over all trials.
const MIN_SLICE: usize = 32;

/// ... and when the axis has at most this many indices: channels, columns
/// of a detection output, rows of a feature map are kinds of element; the
/// box index of a [1, 4032, 85] output is a sample index, and the largest of
/// thousands of per-box ratios of four dominant elements is noise.
const MAX_SLICES: usize = 1024;

/// Ops whose outputs are a discrete selection of their inputs.
const SELECTION_OPS: [&str; 4] = ["TopK", "ArgMax", "ArgMin", "NonMaxSuppression"];

/// Tolerances of an elementwise comparison.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (of the original's value).
    pub rtol: f64,
}

impl Tolerance {
    /// The tolerances of `--strict` when none are given.
    pub const STRICT_DEFAULT: Tolerance = Tolerance { atol: 1e-4, rtol: 1e-4 };
}

impl Default for Tolerance {
    /// Zero: in the default (noise) criterion no element is accepted merely
    /// for being close.
    fn default() -> Tolerance {
        Tolerance { atol: 0.0, rtol: 0.0 }
    }
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Elementwise tolerances. With `strict`, the whole test; otherwise an
    /// element within `atol + rtol·|a|` counts as equal before the noise
    /// bound is applied (so they can only loosen it).
    pub tolerance: Tolerance,
    /// Hold every element to `tolerance` instead of the fp32-noise bound.
    pub strict: bool,
    /// Random input trials (ignored when `inputs` is given); 0 = automatic,
    /// see [`auto_trials`].
    pub trials: usize,
    /// Seed of the random inputs.
    pub seed: u64,
    /// Range of the uniform random float inputs; `None`: [0, 1) for
    /// ultralytics exports (metadata `imgsz`), [−1, 1) otherwise.
    pub input_range: Option<(f64, f64)>,
    /// A `.npy` (single-input models) or `.npz` (arrays named by input) of
    /// real inputs, used instead of random ones.
    pub inputs: Option<PathBuf>,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions {
            tolerance: Tolerance::default(),
            strict: false,
            trials: 0,
            seed: 0x5EED,
            input_range: None,
            inputs: None,
        }
    }
}

/// How one compared tensor (a graph output, or the input of a selection op)
/// came out over all trials.
#[derive(Debug, Clone, Serialize)]
pub struct OutputDiff {
    /// Tensor name.
    pub name: String,
    /// What was compared: `"values"` for a graph output, or e.g.
    /// `"input of TopK '/m/TopK'"` for a tensor compared in place of a
    /// selected output.
    pub compared: String,
    /// The deviation the verdict rests on: the candidate's largest |a − b|
    /// (or RMS of a − b, see `statistic`) in the worst slice.
    pub deviation: f64,
    /// What that deviation was allowed to be.
    pub allowed: f64,
    /// `deviation / allowed`: at most 1 passes; the closer to 0, the safer.
    pub margin: f64,
    /// `"max"` (largest |a − b|) or `"rms"` (root mean square of a − b),
    /// whichever was closer to its bound; `"elementwise"` in strict mode.
    pub statistic: String,
    /// The original's own fp32 noise in that slice, same statistic
    /// (null in strict mode).
    pub noise: Option<f64>,
    /// The original's magnitude in that slice, same statistic (max |a| or
    /// RMS of a).
    pub scale: f64,
    /// The slice: e.g. `"[:, :, 4]"`, or `"all"`.
    pub slice: String,
    /// Elements compared per trial.
    pub elements: usize,
    /// Elements over their slice's bound (strict: over the tolerance),
    /// over all trials.
    pub mismatches: usize,
    /// Largest |a − b| anywhere in the tensor.
    pub max_abs: f64,
    /// Largest |a − b| / |a| over elements with a ≠ 0 (information only: near-zero
    /// elements make it large for no fault).
    pub max_rel: f64,
    /// Largest |a| anywhere in the tensor.
    pub max_value: f64,
    /// This tensor passed.
    pub passed: bool,
}

/// A graph output that is a discrete selection and was not compared by value.
#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    /// Graph output name.
    pub name: String,
    /// The selection ops it depends on, e.g. `TopK '/m/TopK'`.
    pub via: Vec<String>,
    /// The tensors compared instead (inputs of those ops).
    pub compared_instead: Vec<String>,
}

/// One graph input as it was fed.
#[derive(Debug, Clone, Serialize)]
pub struct InputSpec {
    /// Input name.
    pub name: String,
    /// Concrete shape used.
    pub shape: Vec<usize>,
    /// ONNX element type code.
    pub elem: i32,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// `"fp32-noise"` (default) or `"elementwise"` (strict).
    pub criterion: String,
    /// Noise multiple and ulp floor of the fp32-noise bound (null in strict mode).
    pub bound: Option<Bound>,
    /// Trials run (input sets).
    pub trials: usize,
    /// Elementwise tolerances (strict mode: the test; otherwise accepted as equal).
    pub tolerance: Tolerance,
    /// The inputs: e.g. `"uniform [-1, 1)"` or `"file x.npz"`.
    pub inputs: String,
    /// The input shapes used.
    pub input_shapes: Vec<InputSpec>,
    /// Per compared tensor.
    pub outputs: Vec<OutputDiff>,
    /// Graph outputs compared through the inputs of their selection ops.
    pub selected: Vec<Selected>,
    /// Every compared tensor passed.
    pub passed: bool,
    /// The largest margin over all compared tensors.
    pub margin: f64,
    /// Time to load and optimise both models (ms).
    pub load_millis: f64,
    /// Time running all trials (ms).
    pub run_millis: f64,
}

/// The constants of the fp32-noise bound.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bound {
    /// [`NOISE_MULTIPLE`].
    pub noise_multiple: f64,
    /// [`ULPS`].
    pub ulps: f64,
}

fn sci(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.1e}")
    }
}

impl Verification {
    /// The verification as the summary prints it.
    pub fn text(&self) -> String {
        let shapes: Vec<String> = self
            .input_shapes
            .iter()
            .map(|s| format!("{}={}", s.name, s.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")))
            .collect();
        let how = if self.criterion == "elementwise" {
            format!("elementwise |a−b| ≤ {:e} + {:e}·|a|", self.tolerance.atol, self.tolerance.rtol)
        } else {
            format!("within {}× the original's fp32 noise", NOISE_MULTIPLE)
        };
        let mut t = format!(
            "verification ({how}; {} trial{} of {} {}): {}, closest margin {:.2}\n",
            self.trials,
            if self.trials == 1 { "" } else { "s" },
            self.inputs,
            shapes.join(" "),
            if self.passed { "passed" } else { "FAILED" },
            self.margin
        );
        for o in &self.outputs {
            let what = if o.compared == "values" { String::new() } else { format!(" ({})", o.compared) };
            if o.max_abs == 0.0 && o.passed {
                t += &format!("  {}{what}: identical to the original, bit for bit\n", o.name);
                continue;
            }
            let stat = if o.statistic == "rms" { " RMS" } else { "" };
            let at = if o.slice == "all" { String::new() } else { format!(" at {}{}", o.name, o.slice) };
            t += &format!(
                "  {}{what}: off by up to {}{stat} where {}{stat} is allowed (margin {:.2}{})",
                o.name,
                sci(o.deviation),
                sci(o.allowed),
                o.margin,
                if o.passed { "" } else { ", FAILED" }
            );
            let what = if o.statistic == "rms" { "RMS" } else { "largest" };
            match o.noise {
                Some(n) => {
                    t += &format!(
                        "{at}; there the original's own fp32 noise is {} and its {what} value {}",
                        sci(n),
                        sci(o.scale)
                    )
                }
                None => t += &format!("{at}; values up to {}", sci(o.max_value)),
            }
            if o.mismatches > 0 {
                t += &format!("; {} element(s) over", o.mismatches);
            }
            t += "\n";
        }
        for s in &self.selected {
            t += &format!(
                "  {}: not compared by value: it is selected by {}, which fp32 noise can reorder; compared instead: {}\n",
                s.name,
                s.via.join(", "),
                s.compared_instead.join(", ")
            );
        }
        t
    }

    /// The compared tensor with the largest margin.
    pub fn worst(&self) -> Option<&OutputDiff> {
        self.outputs.iter().max_by(|x, y| x.margin.total_cmp(&y.margin))
    }
}

/// splitmix64: a tiny deterministic generator for test inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn graph(m: &ModelProto) -> Result<&GraphProto> {
    m.graph.as_ref().ok_or_else(|| Error::model("no graph"))
}

/// The model's real inputs (graph inputs that are not initializers).
fn real_inputs(g: &GraphProto) -> Vec<&ValueInfoProto> {
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    g.input.iter().filter(|vi| !inits.contains(vi.name())).collect()
}

/// The spatial size an ultralytics export records in its metadata
/// (`imgsz`, e.g. `"[640, 640]"` or `"640"`).
fn metadata_imgsz(m: &ModelProto) -> Option<Vec<usize>> {
    let v = m.metadata_props.iter().find(|p| p.key() == "imgsz")?.value();
    let dims: Vec<usize> = v
        .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()?;
    match dims.len() {
        1 => Some(vec![dims[0], dims[0]]),
        2 => Some(dims),
        _ => None,
    }
}

/// The concrete shape and element type of every real graph input: an
/// override from `overrides` (`--input-shape`) first; otherwise the declared
/// shape, with a symbolic batch dim (axis 0) set to 1 and symbolic spatial
/// dims (axes 2, 3 of a rank-4 input) taken from the model's `imgsz`
/// metadata where it has one. Any other symbolic dim is an input error
/// asking for `--input-shape`.
pub fn resolve_inputs(m: &ModelProto, overrides: &HashMap<String, Vec<i64>>) -> Result<Vec<InputSpec>> {
    let g = graph(m)?;
    let inputs = real_inputs(g);
    for name in overrides.keys() {
        if !inputs.iter().any(|vi| vi.name() == name) {
            let names: Vec<&str> = inputs.iter().map(|vi| vi.name()).collect();
            return Err(Error::model(format!(
                "--input-shape names '{name}', which is not a graph input (inputs: {})",
                names.join(", ")
            )));
        }
    }
    let imgsz = metadata_imgsz(m);
    let mut out = vec![];
    for vi in inputs {
        let name = vi.name().to_string();
        let elem = value_info_elem(vi).unwrap_or(1);
        let declared = value_info_shape(vi);
        let hint = |what: String| {
            Error::model(format!(
                "graph input '{name}' {what}; pass --input-shape {name}=DIMS, e.g. {name}=1x3x640x640"
            ))
        };
        let shape: Vec<usize> = match overrides.get(&name) {
            Some(s) => {
                if let Some(d) = &declared {
                    if d.len() != s.len() {
                        return Err(Error::model(format!(
                            "--input-shape gives '{name}' {} dims, the model declares {}",
                            s.len(),
                            d.len()
                        )));
                    }
                    for (i, (&want, have)) in s.iter().zip(d).enumerate() {
                        if let Some(h) = have {
                            if *h != want {
                                return Err(Error::model(format!(
                                    "--input-shape gives '{name}' dim {i} = {want}, the model fixes it at {h}"
                                )));
                            }
                        }
                    }
                }
                s.iter().map(|&d| d as usize).collect()
            }
            None => {
                let d = declared.ok_or_else(|| hint("has no shape".into()))?;
                let mut s = vec![];
                for (i, dim) in d.iter().enumerate() {
                    s.push(match (dim, i) {
                        (Some(v), _) => *v as usize,
                        (None, 0) => 1,
                        (None, 2 | 3) if d.len() == 4 && imgsz.is_some() => imgsz.as_ref().unwrap()[i - 2],
                        (None, _) => {
                            return Err(hint(format!(
                                "has a symbolic dim at axis {i} and the model records no input size (metadata 'imgsz')"
                            )))
                        }
                    });
                }
                s
            }
        };
        out.push(InputSpec { name, shape, elem });
    }
    Ok(out)
}

/// The input range used when none is given: ultralytics exports (metadata
/// `imgsz`) take images scaled to [0, 1]; anything else gets [−1, 1).
pub fn default_input_range(m: &ModelProto) -> (f64, f64) {
    if metadata_imgsz(m).is_some() {
        (0.0, 1.0)
    } else {
        (-1.0, 1.0)
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn datum(elem: i32) -> Option<DatumType> {
    Some(match elem {
        1 => DatumType::F32,
        10 => DatumType::F16,
        11 => DatumType::F64,
        7 => DatumType::I64,
        6 => DatumType::I32,
        _ => return None,
    })
}

/// `m` as tract's protobuf types, with `extra` tensors appended as graph
/// outputs. The model is encoded without its initializers' `raw_data`
/// (small) and decoded as tract's types; each weight is then copied into
/// tract's tensor once, straight from our bytes, whose mapped pages are
/// handed back. No encoding of the whole model is ever held.
fn tract_proto(
    m: &ModelProto,
    extra: &[String],
) -> std::result::Result<tract_onnx::pb::ModelProto, prost::DecodeError> {
    let mut light = m.clone(); // shares the weights' bytes
    let mut weights = Vec::new();
    if let Some(g) = light.graph.as_mut() {
        for (i, t) in g.initializer.iter_mut().enumerate() {
            if let Some(raw) = t.raw_data.take_if(|r| !r.is_empty()) {
                weights.push((i, raw));
            }
        }
    }
    let mut proto = tract_onnx::pb::ModelProto::decode(&light.encode_to_vec()[..])?;
    drop(light);
    if let Some(g) = proto.graph.as_mut() {
        for (i, raw) in weights {
            g.initializer[i].raw_data = raw.to_vec();
            crate::onnx::mapped::release(&raw);
        }
        g.output.extend(extra.iter().map(|n| tract_onnx::pb::ValueInfoProto { name: n.clone(), ..Default::default() }));
    }
    Ok(proto)
}

/// Loads `m` with `extra` tensors appended as graph outputs. `order` gives,
/// for each of the model's real inputs in its own order, the index into
/// `specs`.
fn load(
    m: &ModelProto,
    extra: &[String],
    specs: &[InputSpec],
    order: &[usize],
    which: &str,
) -> Result<std::sync::Arc<TypedRunnableModel>> {
    let fail = |e: anyhow::Error| {
        Error::model(format!(
            "tract cannot run the {which} model, so it cannot be verified (--no-verify writes it unverified): {}",
            one_line(&e)
        ))
    };
    let proto = tract_proto(m, extra).map_err(|e| fail(e.into()))?;
    let mut model = tract_onnx::onnx().model_for_proto_model(&proto).map_err(fail)?;
    drop(proto); // tract's graph has the weights now
                 // Intermediate value_info of dynamic exports (dynamo, onnxslim) names
                 // symbolic dims ('batch', 's53'); with the inputs made concrete those
                 // would contradict them. Keep their types, let tract infer their shapes.
    let inputs: HashSet<usize> = model.input_outlets().map_err(fail)?.iter().map(|o| o.node).collect();
    for node in model.nodes.iter_mut().filter(|n| !inputs.contains(&n.id)) {
        for o in &mut node.outputs {
            if o.fact.shape.dims().any(|d| Factoid::concretize(d).is_some_and(|t| t.to_i64().is_err())) {
                o.fact.shape = InferenceFact::default().shape;
            }
        }
    }
    for (i, &k) in order.iter().enumerate() {
        let s = &specs[k];
        let dt = datum(s.elem).ok_or_else(|| {
            Error::model(format!("input type {} is not supported for verification", crate::tensor::dtype_name(s.elem)))
        })?;
        model = model.with_input_fact(i, InferenceFact::dt_shape(dt, s.shape.clone())).map_err(fail)?;
    }
    model.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
}

fn terr(e: impl std::fmt::Display) -> Error {
    Error::model(e.to_string())
}

/// A tensor of `spec`'s type from f64 values.
fn tensor_of(spec: &InputSpec, values: &[f64]) -> Result<Tensor> {
    let dt = datum(spec.elem).unwrap_or(DatumType::F32);
    if dt.is_float() {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
        if dt == DatumType::F64 {
            let v: Vec<f64> = values.to_vec();
            return Tensor::from_shape(&spec.shape, &v).map_err(terr);
        }
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    } else {
        let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
        let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    }
}

fn random_input(spec: &InputSpec, range: (f64, f64), rng: &mut Rng) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let dt = datum(spec.elem).unwrap_or(DatumType::F32);
    if !dt.is_float() {
        // integer inputs (indices, sizes): zeros are valid everywhere
        return Tensor::zero_dt(dt, &spec.shape).map_err(terr);
    }
    let v: Vec<f32> = (0..n).map(|_| (range.0 + (range.1 - range.0) * rng.unit()) as f32).collect();
    let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
    if dt == DatumType::F32 {
        Ok(t)
    } else {
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    }
}

/// Every element of `t` moved to one of its two neighbours (`step` gives
/// them; None keeps the element), chosen by `rng`.
fn nudged<T: Datum + Copy>(t: &Tensor, rng: &mut Rng, step: impl Fn(T) -> Option<(T, T)>) -> Result<Tensor> {
    let v: Vec<T> = t
        .to_plain_array_view::<T>()
        .map_err(terr)?
        .iter()
        .map(|&x| match step(x) {
            Some((up, down)) => {
                if rng.next() & 1 == 0 {
                    up
                } else {
                    down
                }
            }
            None => x,
        })
        .collect();
    Tensor::from_shape(t.shape(), &v).map_err(terr)
}

/// The input moved by one ulp of its own type per element, in a random
/// direction (zeros and integers stay).
fn perturbed(t: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    match t.datum_type() {
        DatumType::F32 => nudged(t, rng, |x: f32| (x != 0.0 && x.is_finite()).then(|| (x.next_up(), x.next_down()))),
        DatumType::F64 => nudged(t, rng, |x: f64| (x != 0.0 && x.is_finite()).then(|| (x.next_up(), x.next_down()))),
        DatumType::F16 => {
            // one f16 ulp is 2⁻¹⁰ relative: scale in f32, round back to f16
            let f = t.cast_to::<f32>().map_err(terr)?;
            let v: Vec<f32> = f
                .to_plain_array_view::<f32>()
                .map_err(terr)?
                .iter()
                .map(|&x| x * if rng.next() & 1 == 0 { 1.0 + 1.0 / 1024.0 } else { 1.0 - 1.0 / 1024.0 })
                .collect();
            let p = Tensor::from_shape(t.shape(), &v).map_err(terr)?;
            p.cast_to_dt(DatumType::F16).map(|c| c.into_owned()).map_err(terr)
        }
        _ => Ok(t.clone()),
    }
}

/// An output's values: f32 outputs (the common case) read in place, others
/// converted to f64.
enum Vals<'a> {
    F32(&'a [f32]),
    F64(Vec<f64>),
}

impl<'a> Vals<'a> {
    fn of(t: &'a Tensor) -> Result<Vals<'a>> {
        if t.datum_type() == DatumType::F32 {
            if let Some(v) = t.to_plain_array_view::<f32>().map_err(terr)?.to_slice() {
                return Ok(Vals::F32(v));
            }
        }
        let c = t.cast_to::<f64>().map_err(terr)?;
        Ok(Vals::F64(c.to_plain_array_view::<f64>().map_err(terr)?.iter().copied().collect()))
    }
    fn len(&self) -> usize {
        match self {
            Vals::F32(v) => v.len(),
            Vals::F64(v) => v.len(),
        }
    }
    #[inline]
    fn get(&self, i: usize) -> f64 {
        match self {
            Vals::F32(v) => v[i] as f64,
            Vals::F64(v) => v[i],
        }
    }
}

/// Graph outputs that depend on a selection op, the ops, and the tensors
/// that feed them.
struct Selections {
    /// graph output → selection ops it depends on (`TopK '/m/TopK'`)
    tainted: HashMap<String, Vec<String>>,
    /// tensors to compare instead, with what they feed
    feeders: Vec<(String, String)>,
    /// feeder → the selection ops it feeds
    feeds: HashMap<String, Vec<String>>,
}

fn selections(g: &GraphProto) -> Selections {
    let mut constants: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    constants.extend(g.input.iter().map(|v| v.name()));
    for n in g.node.iter().filter(|n| n.op_type() == "Constant") {
        constants.extend(n.output.iter().map(|s| s.as_str()));
    }
    // tensor → the selection ops it depends on; a fixpoint, so node order does not matter
    let mut via: HashMap<&str, Vec<String>> = HashMap::new();
    loop {
        let mut changed = false;
        for n in &g.node {
            let mut ops: Vec<String> = vec![];
            if SELECTION_OPS.contains(&n.op_type()) {
                ops.push(format!(
                    "{} '{}'",
                    n.op_type(),
                    if n.name().is_empty() { n.output[0].as_str() } else { n.name() }
                ));
            }
            for i in &n.input {
                if let Some(v) = via.get(i.as_str()) {
                    ops.extend(v.iter().cloned());
                }
            }
            ops.sort();
            ops.dedup();
            if ops.is_empty() {
                continue;
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                let e = via.entry(o.as_str()).or_default();
                if *e != ops {
                    *e = ops.clone();
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    let mut feeders: Vec<(String, String)> = vec![];
    let mut feeds: HashMap<String, Vec<String>> = HashMap::new();
    for n in g.node.iter().filter(|n| SELECTION_OPS.contains(&n.op_type())) {
        let label =
            format!("input of {} '{}'", n.op_type(), if n.name().is_empty() { n.output[0].as_str() } else { n.name() });
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if constants.contains(i.as_str()) || via.contains_key(i.as_str()) || outputs.contains(i.as_str()) {
                continue;
            }
            feeds.entry(i.clone()).or_default().push(label["input of ".len()..].to_string());
            match feeders.iter_mut().find(|(t, _)| t == i) {
                Some((_, l)) => *l += &format!(", {}", &label["input of ".len()..]),
                None => feeders.push((i.clone(), label.clone())),
            }
        }
    }
    let tainted =
        g.output.iter().filter_map(|o| via.get(o.name()).map(|v| (o.name().to_string(), v.clone()))).collect();
    Selections { tainted, feeders, feeds }
}

/// Statistics of one slice of a compared tensor.
#[derive(Clone, Copy, Default)]
struct Acc {
    n: u64,
    sum_d2: f64,
    max_d: f64,
    sum_n2: f64,
    max_n: f64,
    n_noise: u64,
    sum_a2: f64,
    max_a: f64,
}

impl Acc {
    fn rms(sum: f64, n: u64) -> f64 {
        if n == 0 {
            0.0
        } else {
            (sum / n as f64).sqrt()
        }
    }
    /// (margin, deviation, allowed, noise, scale, statistic) of this slice.
    fn judge(&self, n_total: u64) -> (f64, f64, f64, f64, f64, &'static str) {
        let eps = f32::EPSILON as f64;
        let ratio = |d: f64, a: f64| {
            if d == 0.0 {
                0.0
            } else if a == 0.0 {
                f64::INFINITY
            } else {
                d / a
            }
        };
        let (rd, rn, ra) =
            (Self::rms(self.sum_d2, self.n), Self::rms(self.sum_n2, self.n_noise), Self::rms(self.sum_a2, self.n));
        let r_allowed = NOISE_MULTIPLE * rn + ULPS * eps * ra;
        let m_allowed = self.element_bound(n_total);
        let (rm, mm) = (ratio(rd, r_allowed), ratio(self.max_d, m_allowed));
        if rm > mm {
            (rm, rd, r_allowed, rn, ra, "rms")
        } else {
            (mm, self.max_d, m_allowed, self.max_noise(n_total), self.max_a, "max")
        }
    }
    /// The element bound of this slice (its `max` statistic).
    /// The largest noise of one run is a noisy estimate of the largest
    /// noise the slice can show, and the worst of many slices is judged; it
    /// is taken as at least what the slice's RMS noise predicts for the
    /// largest of all `n_total` elements compared (√(2·ln n_total) RMS, the
    /// expected maximum of that many Gaussian samples).
    fn max_noise(&self, n_total: u64) -> f64 {
        let rn = Self::rms(self.sum_n2, self.n_noise);
        self.max_n.max(rn * (2.0 * (n_total.max(2) as f64).ln()).sqrt())
    }
    fn element_bound(&self, n_total: u64) -> f64 {
        NOISE_MULTIPLE * self.max_noise(n_total) + ULPS * f32::EPSILON as f64 * self.max_a
    }
}

/// The outputs of one trial: original, candidate, original on the perturbed input.
struct TrialOut {
    a: Vec<Tensor>,
    b: Vec<Tensor>,
    n: Option<Vec<Tensor>>,
}

fn slice_label(rank: usize, axis: Option<usize>, index: usize) -> String {
    match axis {
        None => "all".into(),
        Some(ax) => {
            let parts: Vec<String> = (0..rank).map(|i| if i == ax { index.to_string() } else { ":".into() }).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// Compares one tensor (position `k` in the original's outputs, `kb` in the
/// candidate's) over all trials.
fn compare(
    name: &str,
    compared: &str,
    k: usize,
    kb: usize,
    trials: &[TrialOut],
    opts: &VerifyOptions,
) -> Result<OutputDiff> {
    let tol = opts.tolerance;
    let shape = trials[0].a[k].shape().to_vec();
    let rank = shape.len();
    let numel: usize = shape.iter().product();
    let is_float = trials[0].a[k].datum_type().is_float();
    let strides: Vec<usize> = (0..rank).map(|i| shape[i + 1..].iter().product()).collect();
    // candidate axes: slices of comparable elements
    let axes: Vec<usize> = (1..rank)
        .filter(|&ax| shape[ax] >= 2 && shape[ax] <= MAX_SLICES && numel / shape[ax] * trials.len() >= MIN_SLICE)
        .collect();
    for t in trials {
        if t.a[k].shape() != t.b[kb].shape() {
            return Err(Error::verify(format!(
                "'{name}' has shape {:?} in the original but {:?} in the candidate",
                t.a[k].shape(),
                t.b[kb].shape()
            )));
        }
    }
    // outputs whose shape varies from trial to trial are judged whole
    let axes = if trials.iter().all(|t| t.a[k].shape() == &shape[..]) { axes } else { vec![] };
    let mut accs: Vec<Vec<Acc>> = axes.iter().map(|&ax| vec![Acc::default(); shape[ax]]).collect();
    let mut whole = Acc::default();
    let mut d = OutputDiff {
        name: name.to_string(),
        compared: compared.to_string(),
        deviation: 0.0,
        allowed: 0.0,
        margin: 0.0,
        statistic: String::new(),
        noise: None,
        scale: 0.0,
        slice: "all".into(),
        elements: numel,
        mismatches: 0,
        max_abs: 0.0,
        max_rel: 0.0,
        max_value: 0.0,
        passed: true,
    };
    let mut strict_worst = (0.0f64, 0.0f64, 0.0f64); // margin, deviation, allowed
    for t in trials {
        let (x, y) = (Vals::of(&t.a[k])?, Vals::of(&t.b[kb])?);
        let z = match &t.n {
            Some(n) if is_float && !opts.strict => Some(Vals::of(&n[k])?),
            _ => None,
        };
        // the slice index along each candidate axis, advanced element by element
        let mut cur = vec![0usize; axes.len()];
        let mut left: Vec<usize> = axes.iter().map(|&ax| strides[ax]).collect();
        for i in 0..x.len() {
            if i > 0 {
                for (j, &ax) in axes.iter().enumerate() {
                    left[j] -= 1;
                    if left[j] == 0 {
                        left[j] = strides[ax];
                        cur[j] = if cur[j] + 1 == shape[ax] { 0 } else { cur[j] + 1 };
                    }
                }
            }
            let (p, q) = (x.get(i), y.get(i));
            let mut diff = if p.is_nan() || q.is_nan() {
                if p.is_nan() == q.is_nan() {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else if p == q {
                0.0
            } else {
                (p - q).abs()
            };
            if diff.is_nan() {
                diff = f64::INFINITY; // inf − inf of opposite signs
            }
            let mag = if p.is_finite() { p.abs() } else { 0.0 };
            d.max_abs = d.max_abs.max(diff);
            d.max_value = d.max_value.max(mag);
            if diff > 0.0 && p != 0.0 && p.is_finite() {
                d.max_rel = d.max_rel.max(diff / p.abs());
            }
            let bound = tol.atol + tol.rtol * mag;
            if opts.strict || !is_float {
                let b = if is_float { bound } else { 0.0 };
                if diff > b {
                    d.mismatches += 1;
                }
                let m = if diff == 0.0 {
                    0.0
                } else if b == 0.0 {
                    f64::INFINITY
                } else {
                    diff / b
                };
                if m > strict_worst.0 {
                    strict_worst = (m, diff, b);
                }
                continue;
            }
            let dv = if diff <= bound { 0.0 } else { diff };
            let nz = z.as_ref().map(|z| z.get(i)).filter(|n| n.is_finite() && p.is_finite()).map(|n| (n - p).abs());
            let add = |acc: &mut Acc| {
                acc.n += 1;
                acc.sum_d2 += dv * dv;
                acc.max_d = acc.max_d.max(dv);
                acc.sum_a2 += mag * mag;
                acc.max_a = acc.max_a.max(mag);
                if let Some(n) = nz {
                    acc.n_noise += 1;
                    acc.sum_n2 += n * n;
                    acc.max_n = acc.max_n.max(n);
                }
            };
            if axes.is_empty() {
                add(&mut whole);
            }
            for (j, &c) in cur.iter().enumerate() {
                add(&mut accs[j][c]);
            }
        }
    }
    if opts.strict || !is_float {
        d.statistic = "elementwise".into();
        (d.margin, d.deviation, d.allowed) = strict_worst;
        d.scale = d.max_value;
        d.passed = d.mismatches == 0;
        return Ok(d);
    }
    // every way of slicing the tensor along one axis (each box coordinate
    // apart from each class score; each channel apart from the others) is
    // judged, and the worst slice of any decides: a bug that shows in one
    // kind of element is not drowned by the noise of a bigger kind
    let n_total = (numel * trials.len()) as u64;
    let mut partitions: Vec<(Option<usize>, Vec<Acc>)> = axes.iter().copied().map(Some).zip(accs).collect();
    if partitions.is_empty() {
        partitions.push((None, vec![whole]));
    }
    let mut worst = (-1.0, 0usize, 0usize);
    for (p, (_, slices)) in partitions.iter().enumerate() {
        for (g, acc) in slices.iter().enumerate() {
            let (m, ..) = acc.judge(n_total);
            if m > worst.0 {
                worst = (m, p, g);
            }
        }
    }
    let (axis, slices) = partitions.swap_remove(worst.1);
    let worst = (worst.0, worst.2);
    let (m, dev, allowed, noise, scale, stat) = slices[worst.1].judge(n_total);
    d.margin = m;
    d.deviation = dev;
    d.allowed = allowed;
    d.noise = Some(noise);
    d.scale = scale;
    d.statistic = stat.into();
    d.slice = slice_label(rank, axis, worst.1);
    d.passed = m <= 1.0;
    if !d.passed {
        // count the elements over their slice's bound
        for t in trials {
            let (x, y) = (Vals::of(&t.a[k])?, Vals::of(&t.b[kb])?);
            for i in 0..x.len() {
                let g = axis.map_or(0, |ax| (i / strides[ax]) % shape[ax]);
                let (p, q) = (x.get(i), y.get(i));
                let diff = if p.is_nan() && q.is_nan() { 0.0 } else { (p - q).abs() };
                let mag = if p.is_finite() { p.abs() } else { 0.0 };
                if !(diff <= tol.atol + tol.rtol * mag || diff <= slices[g].element_bound(n_total)) {
                    d.mismatches += 1;
                }
            }
        }
    }
    Ok(d)
}

/// Runs both models on the same inputs and compares every output.
///
/// `overrides` are `--input-shape` values (see [`resolve_inputs`]). Input
/// errors (a model tract cannot run, inputs that do not match) are
/// [`crate::ErrorKind::Input`]; a candidate whose outputs differ in name or
/// shape is [`crate::ErrorKind::Verify`]; a candidate that runs but deviates
/// too much returns `passed: false`.
pub fn verify(
    original: &ModelProto,
    candidate: &ModelProto,
    overrides: &HashMap<String, Vec<i64>>,
    opts: &VerifyOptions,
) -> Result<Verification> {
    let tol = opts.tolerance;
    if !(tol.atol.is_finite() && tol.rtol.is_finite() && tol.atol >= 0.0 && tol.rtol >= 0.0) {
        return Err(Error::model("tolerances must be finite and not negative"));
    }
    let range = opts.input_range.unwrap_or_else(|| default_input_range(original));
    if !(range.0.is_finite() && range.1.is_finite() && range.0 < range.1) {
        return Err(Error::model(format!("input range [{}, {}) is empty or not finite", range.0, range.1)));
    }
    let specs = resolve_inputs(original, overrides)?;
    let (ga, gb) = (graph(original)?, graph(candidate)?);
    // the candidate must take the same inputs, by name and type
    let cand_inputs = real_inputs(gb);
    let mut order_b = vec![];
    for vi in &cand_inputs {
        let k = specs.iter().position(|s| s.name == vi.name()).ok_or_else(|| {
            Error::model(format!("the candidate has an input '{}' the original does not have", vi.name()))
        })?;
        if value_info_elem(vi).unwrap_or(1) != specs[k].elem {
            return Err(Error::model(format!("input '{}' has another element type in the candidate", vi.name())));
        }
        order_b.push(k);
    }
    if let Some(s) = specs.iter().find(|s| !cand_inputs.iter().any(|vi| vi.name() == s.name)) {
        return Err(Error::model(format!("the candidate has no input '{}'", s.name)));
    }
    // ... and give the same outputs, by name
    let names_a: Vec<String> = ga.output.iter().map(|o| o.name().to_string()).collect();
    let names_b: Vec<String> = gb.output.iter().map(|o| o.name().to_string()).collect();
    for n in &names_a {
        if !names_b.contains(n) {
            return Err(Error::verify(format!("the candidate has no output '{n}'")));
        }
    }
    if let Some(n) = names_b.iter().find(|n| !names_a.contains(n)) {
        return Err(Error::verify(format!("the candidate has an output '{n}' the original does not have")));
    }
    for (g, which) in [(ga, "original"), (gb, "candidate")] {
        let mut known: HashSet<&str> = g.input.iter().map(|v| v.name()).collect();
        known.extend(g.initializer.iter().map(|t| t.name()));
        known.extend(g.node.iter().flat_map(|n| n.output.iter().map(|s| s.as_str())));
        if let Some(o) = g.output.iter().find(|o| !known.contains(o.name())) {
            return Err(Error::model(format!("the {which} model's output '{}' is produced by nothing", o.name())));
        }
    }
    let sel = selections(ga);
    let produced_b: HashSet<&str> = gb.node.iter().flat_map(|n| n.output.iter().map(|s| s.as_str())).collect();
    for (t, label) in &sel.feeders {
        if !produced_b.contains(t.as_str()) {
            return Err(Error::model(format!(
                "the candidate has no tensor '{t}' ({label}), which is compared instead of a selected output"
            )));
        }
    }
    let extra: Vec<String> = sel.feeders.iter().map(|(t, _)| t.clone()).collect();
    // inputs: from a file, or seeded random in the range
    let mut rng = Rng(opts.seed);
    let (sets, inputs_label): (Vec<Vec<Tensor>>, String) = match &opts.inputs {
        Some(p) => (read_inputs(p, &specs)?, format!("inputs from {}", p.display())),
        None => {
            let mut sets = vec![];
            let n = if opts.trials == 0 { auto_trials(&specs) } else { opts.trials };
            for _ in 0..n {
                sets.push(specs.iter().map(|s| random_input(s, range, &mut rng)).collect::<Result<Vec<_>>>()?);
            }
            (sets, format!("uniform [{}, {}) inputs", range.0, range.1))
        }
    };
    let noisy = !opts.strict;
    let pert: Vec<Vec<Tensor>> = if noisy {
        sets.iter()
            .map(|s| s.iter().map(|t| perturbed(t, &mut rng)).collect::<Result<Vec<_>>>())
            .collect::<Result<_>>()?
    } else {
        vec![]
    };
    let order_a: Vec<usize> = (0..specs.len()).collect();
    let t0 = std::time::Instant::now();
    // the two models load, optimise and run on two threads
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| load(candidate, &extra, &specs, &order_b, "candidate"));
        let a = load(original, &extra, &specs, &order_a, "original");
        (a, b.join().expect("tract load thread"))
    });
    let (a, b) = (a?, b?);
    let load_millis = t0.elapsed().as_secs_f64() * 1e3;
    // jobs: per trial the original, the candidate and the original on the perturbed input
    let per = if noisy { 3 } else { 2 };
    let jobs = sets.len() * per;
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Vec<Tensor>>>>> = (0..jobs).map(|_| Mutex::new(None)).collect();
    let t1 = std::time::Instant::now();
    let worker = || loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        if j >= jobs {
            break;
        }
        let (t, w) = (j / per, j % per);
        let r = match w {
            0 => a
                .run(sets[t].iter().map(|x| x.clone().into()).collect())
                .map_err(|e| Error::model(format!("tract failed running the original model: {}", one_line(&e)))),
            1 => b
                .run(order_b.iter().map(|&k| sets[t][k].clone().into()).collect())
                .map_err(|e| Error::verify(format!("tract failed running the candidate model: {}", one_line(&e)))),
            _ => a
                .run(pert[t].iter().map(|x| x.clone().into()).collect())
                .map_err(|e| Error::model(format!("tract failed running the original model: {}", one_line(&e)))),
        }
        .map(|v| v.into_iter().map(|x| x.into_tensor()).collect());
        *results[j].lock().expect("no panics while locked") = Some(r);
    };
    std::thread::scope(|s| {
        s.spawn(worker);
        worker();
    });
    let run_millis = t1.elapsed().as_secs_f64() * 1e3;
    let mut results = results.into_iter().map(|m| m.into_inner().expect("not poisoned").expect("every job ran"));
    let mut trials = vec![];
    for _ in 0..sets.len() {
        let a = results.next().expect("job")?;
        let b = results.next().expect("job")?;
        let n = if noisy { Some(results.next().expect("job")?) } else { None };
        trials.push(TrialOut { a, b, n });
    }
    // compare: graph outputs by name (selected ones through their inputs), then the feeders
    let mut outputs = vec![];
    for (k, name) in names_a.iter().enumerate() {
        let kb = names_b.iter().position(|n| n == name).expect("checked above");
        let (sa, sb) = (trials[0].a[k].shape(), trials[0].b[kb].shape());
        if sel.tainted.contains_key(name) {
            // a selection may keep one box more or less: only the rank must agree
            if sa.len() != sb.len() {
                return Err(Error::verify(format!(
                    "output '{name}' has rank {} in the original but {} in the candidate",
                    sa.len(),
                    sb.len()
                )));
            }
            continue;
        }
        if sa != sb {
            return Err(Error::verify(format!(
                "output '{name}' has shape {sa:?} in the original but {sb:?} in the candidate"
            )));
        }
        outputs.push(compare(name, "values", k, kb, &trials, opts)?);
    }
    for (j, (t, label)) in sel.feeders.iter().enumerate() {
        let (k, kb) = (names_a.len() + j, names_b.len() + j);
        let (sa, sb) = (trials[0].a[k].shape(), trials[0].b[kb].shape());
        if sa != sb {
            return Err(Error::verify(format!(
                "'{t}' ({label}) has shape {sa:?} in the original but {sb:?} in the candidate"
            )));
        }
        outputs.push(compare(t, label, k, kb, &trials, opts)?);
    }
    let selected = names_a
        .iter()
        .filter_map(|n| {
            sel.tainted.get(n).map(|via| Selected {
                name: n.clone(),
                via: via.clone(),
                compared_instead: sel
                    .feeders
                    .iter()
                    .filter(|(t, _)| sel.feeds.get(t).is_some_and(|ops| ops.iter().any(|o| via.contains(o))))
                    .map(|(t, _)| t.clone())
                    .collect(),
            })
        })
        .collect();
    let passed = outputs.iter().all(|d| d.passed);
    let margin = outputs.iter().map(|d| d.margin).fold(0.0, f64::max);
    Ok(Verification {
        criterion: if opts.strict { "elementwise" } else { "fp32-noise" }.into(),
        bound: (!opts.strict).then_some(Bound { noise_multiple: NOISE_MULTIPLE, ulps: ULPS }),
        trials: sets.len(),
        tolerance: tol,
        inputs: inputs_label,
        input_shapes: specs,
        outputs,
        selected,
        passed,
        margin,
        load_millis,
        run_millis,
    })
}

// ---------------------------------------------------------------- .npy / .npz

/// One array from a `.npy` file: shape and values.
fn parse_npy(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let bad = |m: &str| Error::model(format!("{what}: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes.get(start..start.saturating_add(hlen)).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[i..].trim_start().strip_prefix(':')?.trim_start())
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("no dtype"))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported (use np.ascontiguousarray)"));
    }
    let shape_s = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let data = &bytes[start + hlen..];
    let size = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" => 2,
        "|u1" | "|i1" | "|b1" => 1,
        d => return Err(bad(&format!("dtype '{d}' is not supported (use float32)"))),
    };
    if data.len() != n.checked_mul(size).ok_or_else(|| bad("shape overflows"))? {
        return Err(bad("data length does not match the shape"));
    }
    let v: Vec<f64> = match descr {
        "<f4" => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<f8" => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        "<i4" => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<i8" => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<f2" => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        "|i1" => data.iter().map(|&x| x as i8 as f64).collect(),
        _ => data.iter().map(|&x| x as f64).collect(),
    };
    Ok((shape, v))
}

/// The stored (uncompressed) members of a zip archive, as `np.savez` writes it.
fn unzip(bytes: &[u8], what: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |m: &str| Error::model(format!("{what}: {m}"));
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let u64_at = |i: usize| bytes.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let eocd = (0..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(i) == Some(0x0605_4b50))
        .ok_or_else(|| bad("not a .npz (zip) file"))?;
    let count = u16_at(eocd + 10).ok_or_else(|| bad("truncated"))?;
    let mut p = u32_at(eocd + 16).ok_or_else(|| bad("truncated"))? as usize;
    let mut out = vec![];
    for _ in 0..count {
        if u32_at(p) != Some(0x0201_4b50) {
            return Err(bad("broken zip directory"));
        }
        let trunc = || bad("truncated");
        let method = u16_at(p + 10).ok_or_else(trunc)?;
        let mut csize = u32_at(p + 20).ok_or_else(trunc)?;
        let mut usize_ = u32_at(p + 24).ok_or_else(trunc)?;
        let (nlen, elen, clen) =
            (u16_at(p + 28).ok_or_else(trunc)?, u16_at(p + 30).ok_or_else(trunc)?, u16_at(p + 32).ok_or_else(trunc)?);
        let mut off = u32_at(p + 42).ok_or_else(trunc)?;
        let name = String::from_utf8_lossy(bytes.get(p + 46..p + 46 + nlen).ok_or_else(trunc)?).to_string();
        // zip64 extra field: the 0xFFFFFFFF fields, in order
        let mut e = p + 46 + nlen;
        let end = e + elen;
        while e + 4 <= end {
            let (id, len) = (u16_at(e).ok_or_else(trunc)?, u16_at(e + 2).ok_or_else(trunc)?);
            if id == 1 {
                let mut q = e + 4;
                for f in [&mut usize_, &mut csize, &mut off] {
                    if *f == 0xFFFF_FFFF {
                        *f = u64_at(q).ok_or_else(trunc)?;
                        q += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(bad("compressed .npz (np.savez_compressed) is not supported; write it with np.savez"));
        }
        let off = off as usize;
        if u32_at(off) != Some(0x0403_4b50) {
            return Err(bad("broken zip entry"));
        }
        let data_at = off + 30 + u16_at(off + 26).ok_or_else(trunc)? + u16_at(off + 28).ok_or_else(trunc)?;
        let data = bytes.get(data_at..data_at.saturating_add(csize as usize)).ok_or_else(trunc)?;
        out.push((name, data.to_vec()));
        p += 46 + nlen + elen + clen;
    }
    Ok(out)
}

/// Input sets from a `.npy` / `.npz` file: an array of the input's shape is
/// one set; one with an extra leading axis of K is K sets.
pub fn read_inputs(path: &Path, specs: &[InputSpec]) -> Result<Vec<Vec<Tensor>>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::model(format!("{what}: {e}")))?;
    let arrays: Vec<(String, Vec<usize>, Vec<f64>)> = if bytes.starts_with(b"\x93NUMPY") {
        if specs.len() != 1 {
            return Err(Error::model(format!(
                "{what}: the model has {} inputs; give an .npz with one array per input name",
                specs.len()
            )));
        }
        let (s, v) = parse_npy(&bytes, &what)?;
        vec![(specs[0].name.clone(), s, v)]
    } else {
        unzip(&bytes, &what)?
            .into_iter()
            .map(|(n, b)| {
                let n = n.strip_suffix(".npy").unwrap_or(&n).to_string();
                let (s, v) = parse_npy(&b, &format!("{what}: '{n}'"))?;
                Ok((n, s, v))
            })
            .collect::<Result<_>>()?
    };
    let mut sets: Vec<Vec<Tensor>> = vec![];
    let mut k_sets: Option<usize> = None;
    for (i, spec) in specs.iter().enumerate() {
        let (_, shape, v) = arrays.iter().find(|(n, ..)| *n == spec.name).ok_or_else(|| {
            Error::model(format!(
                "{what} has no array named '{}' (arrays: {})",
                spec.name,
                arrays.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let k = if *shape == spec.shape {
            1
        } else if shape.len() == spec.shape.len() + 1 && shape[1..] == spec.shape[..] {
            shape[0]
        } else {
            return Err(Error::model(format!(
                "{what}: '{}' has shape {shape:?}; the model takes {:?} (or K sets of it: [K, ...])",
                spec.name, spec.shape
            )));
        };
        if k == 0 || k_sets.is_some_and(|n| n != k) {
            return Err(Error::model(format!("{what}: the arrays hold different numbers of input sets")));
        }
        k_sets = Some(k);
        let per = v.len() / k;
        for s in 0..k {
            if i == 0 {
                sets.push(vec![]);
            }
            sets[s].push(tensor_of(spec, &v[s * per..(s + 1) * per])?);
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn npy_arrays_parse_and_bad_ones_are_refused() {
        let data: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0, 0.0, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let (s, v) = parse_npy(&npy("<f4", "(2, 3)", &data), "x.npy").unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![1.5, -2.0, 0.25, 8.0, 0.0, 1.0]);
        assert!(parse_npy(&npy("<f4", "(2, 4)", &data), "x.npy").unwrap_err().msg.contains("does not match"));
        assert!(parse_npy(&npy(">f4", "(2, 3)", &data), "x.npy").unwrap_err().msg.contains("not supported"));
        assert!(parse_npy(b"garbage", "x.npy").is_err());
    }

    /// A zip with stored (uncompressed) members, as `np.savez` writes it.
    fn zip(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let (mut out, mut dir) = (vec![], vec![]);
        for (name, data) in members {
            let off = out.len() as u32;
            let head = |sig: u32, central: bool| {
                let mut h = sig.to_le_bytes().to_vec();
                if central {
                    h.extend(20u16.to_le_bytes()); // version made by
                }
                h.extend(20u16.to_le_bytes()); // version needed
                h.extend([0u8; 4]); // flags, method 0 (stored)
                h.extend([0u8; 4]); // time, date
                h.extend([0u8; 4]); // crc (not checked)
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes()); // extra
                if central {
                    h.extend([0u8; 6]); // comment length, disk, internal attributes
                    h.extend([0u8; 4]); // external attributes
                    h.extend(off.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            out.extend(head(0x0403_4b50, false));
            out.extend(data);
            dir.extend(head(0x0201_4b50, true));
        }
        let at = out.len() as u32;
        out.extend(&dir);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((dir.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn npz_members_are_input_sets_by_name() {
        let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let specs = vec![
            InputSpec { name: "a".into(), shape: vec![1, 2], elem: 1 },
            InputSpec { name: "b".into(), shape: vec![3], elem: 1 },
        ];
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.npz");
        // two sets: a leading axis of 2 on both arrays
        let z = zip(&[
            ("b.npy", npy("<f4", "(2, 3)", &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))),
            ("a.npy", npy("<f4", "(2, 1, 2)", &f32s(&[0.5, -0.5, 0.25, -0.25]))),
        ]);
        std::fs::write(&p, &z).unwrap();
        let sets = read_inputs(&p, &specs).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            sets[1][0].to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![0.25, -0.25]
        );
        assert_eq!(
            sets[1][1].to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![4.0, 5.0, 6.0]
        );
        // a missing array and a mismatched set count are input errors naming the file
        std::fs::write(&p, zip(&[("a.npy", npy("<f4", "(1, 2)", &f32s(&[0.5, -0.5])))])).unwrap();
        let e = read_inputs(&p, &specs).unwrap_err();
        assert!(e.msg.contains("x.npz") && e.msg.contains("no array named 'b'"), "{e}");
        std::fs::write(
            &p,
            zip(&[
                ("a.npy", npy("<f4", "(2, 1, 2)", &f32s(&[0.5, -0.5, 0.25, -0.25]))),
                ("b.npy", npy("<f4", "(3,)", &f32s(&[1.0, 2.0, 3.0]))),
            ]),
        )
        .unwrap();
        assert!(read_inputs(&p, &specs).unwrap_err().msg.contains("different numbers of input sets"));
        std::fs::write(&p, b"PK not really").unwrap();
        assert!(read_inputs(&p, &specs).is_err());
    }

    #[test]
    fn symbolic_batch_is_1_and_spatial_dims_come_from_imgsz() {
        use crate::onnx::{tensor_shape_proto, type_proto, StringStringEntryProto, TensorShapeProto, TypeProto};
        let dim = |v: Option<i64>| tensor_shape_proto::Dimension {
            value: Some(match v {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                None => tensor_shape_proto::dimension::Value::DimParam("s".into()),
            }),
            ..Default::default()
        };
        let vi = ValueInfoProto {
            name: Some("images".into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto { dim: vec![dim(None), dim(Some(3)), dim(None), dim(None)] }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut m =
            ModelProto { graph: Some(GraphProto { input: vec![vi], ..Default::default() }), ..Default::default() };
        let e = resolve_inputs(&m, &HashMap::new()).unwrap_err();
        assert!(e.msg.contains("--input-shape images=") && e.msg.contains("axis 2"), "{e}");
        m.metadata_props.push(StringStringEntryProto { key: Some("imgsz".into()), value: Some("[320, 256]".into()) });
        assert_eq!(resolve_inputs(&m, &HashMap::new()).unwrap()[0].shape, vec![1, 3, 320, 256]);
        assert_eq!(default_input_range(&m), (0.0, 1.0));
        let o = HashMap::from([("images".to_string(), vec![2, 3, 64, 64])]);
        assert_eq!(resolve_inputs(&m, &o).unwrap()[0].shape, vec![2, 3, 64, 64]);
        let o = HashMap::from([("images".to_string(), vec![1, 4, 64, 64])]);
        assert!(resolve_inputs(&m, &o).unwrap_err().msg.contains("fixes it at 3"));
        let o = HashMap::from([("nope".to_string(), vec![1])]);
        assert!(resolve_inputs(&m, &o).unwrap_err().msg.contains("not a graph input"));
    }
}
