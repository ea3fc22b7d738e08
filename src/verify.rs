//! Proof that a rewrite changed no output: the only module that knows tract.
//!
//! tract loads the original and the rewritten model from memory, both run
//! on the same seeded random inputs (several trials), and every output is
//! compared element by element: an element agrees when
//! `|a − b| ≤ atol + rtol·|a|` (`a` from the original). NaN agrees only with
//! NaN in the same place.

use crate::error::{Error, Result};
use crate::ir::{value_info_elem, value_info_shape};
use crate::onnx::ModelProto;
use prost::Message;
use std::collections::{HashMap, HashSet};
use tract_onnx::prelude::*;

/// Tolerances of the comparison.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (of the original's value).
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Tolerance {
        Tolerance { atol: 1e-4, rtol: 1e-4 }
    }
}

/// How to verify: tolerances, trials and the seed of the random inputs.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Tolerances of the comparison.
    pub tolerance: Tolerance,
    /// Random input trials.
    pub trials: usize,
    /// Seed of the random inputs.
    pub seed: u64,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions { tolerance: Tolerance::default(), trials: 3, seed: 0x5EED }
    }
}

/// How one output compared over all trials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutputDiff {
    /// Output name.
    pub name: String,
    /// Largest |a − b|.
    pub max_abs: f64,
    /// Largest |a − b| / |a| (over elements with a ≠ 0).
    pub max_rel: f64,
    /// Elements compared per trial.
    pub elements: usize,
    /// Elements outside tolerance, over all trials.
    pub mismatches: usize,
    /// Largest |a| seen: how big the values are.
    pub max_value: f64,
}

/// The result of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    /// Trials run.
    pub trials: usize,
    /// Tolerances used.
    pub tolerance: Tolerance,
    /// Per output.
    pub outputs: Vec<OutputDiff>,
    /// Every element of every output agreed.
    pub passed: bool,
    /// Time to load and optimise both models (ms).
    pub load_millis: f64,
    /// Time running all trials (ms).
    pub run_millis: f64,
}

impl Verification {
    /// The verification as the summary prints it.
    pub fn text(&self) -> String {
        let mut t = format!(
            "verification ({} trials, atol {:e}, rtol {:e}): {}\n",
            self.trials,
            self.tolerance.atol,
            self.tolerance.rtol,
            if self.passed { "passed" } else { "FAILED" }
        );
        for o in &self.outputs {
            t += &format!(
                "  {}: max abs {:.3e}, max rel {:.3e} (|values| up to {:.3e})\n",
                o.name, o.max_abs, o.max_rel, o.max_value
            );
        }
        t
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
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Concrete shapes and element types of the model's real inputs.
pub fn input_specs(m: &ModelProto, overrides: &HashMap<String, Vec<i64>>) -> Result<Vec<(String, Vec<usize>, i32)>> {
    let g = m.graph.as_ref().ok_or_else(|| Error::model("no graph"))?;
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let mut out = vec![];
    for vi in g.input.iter().filter(|vi| !inits.contains(vi.name())) {
        let name = vi.name().to_string();
        let elem = value_info_elem(vi).unwrap_or(1);
        let shape: Vec<usize> = match overrides.get(&name) {
            Some(s) => s.iter().map(|&d| d as usize).collect(),
            None => {
                let s = value_info_shape(vi).ok_or_else(|| {
                    Error::model(format!("graph input '{name}' has no shape; pass --input-shape {name}=1x3x640x640"))
                })?;
                s.iter().map(|d| d.map(|v| v as usize)).collect::<Option<_>>().ok_or_else(|| {
                    Error::model(format!(
                        "graph input '{name}' has a symbolic dim; pass --input-shape {name}=1x3x640x640"
                    ))
                })?
            }
        };
        out.push((name, shape, elem));
    }
    Ok(out)
}

fn load(
    m: &ModelProto,
    specs: &[(String, Vec<usize>, i32)],
    which: &str,
) -> Result<std::sync::Arc<TypedRunnableModel>> {
    let bytes = m.encode_to_vec();
    let fail = |e: anyhow::Error| {
        Error::model(format!(
            "tract cannot run the {which} model, so it cannot be verified (--no-verify writes it unverified): {}",
            one_line(&e)
        ))
    };
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(fail)?;
    for (i, (_, shape, elem)) in specs.iter().enumerate() {
        let dt = datum(*elem).ok_or_else(|| {
            Error::model(format!("input type {} is not supported for verification", crate::tensor::dtype_name(*elem)))
        })?;
        model = model.with_input_fact(i, InferenceFact::dt_shape(dt, shape.clone())).map_err(fail)?;
    }
    model.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
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

fn random_input(shape: &[usize], elem: i32, rng: &mut Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.unit() as f32).collect();
    let t = Tensor::from_shape(shape, &v).map_err(|e| Error::model(e.to_string()))?;
    let dt = datum(elem).unwrap_or(DatumType::F32);
    if dt.is_float() {
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(|e| Error::model(e.to_string()))
    } else {
        // integer inputs (indices, sizes): zeros are valid everywhere
        Ok(Tensor::zero_dt(dt, shape).map_err(|e| Error::model(e.to_string()))?)
    }
}

/// An output's values as f64, converted element by element (f32 outputs,
/// the common case, without an intermediate cast tensor).
fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    if let Ok(v) = t.to_plain_array_view::<f32>() {
        return Ok(v.iter().map(|&x| x as f64).collect());
    }
    let c = t.cast_to::<f64>().map_err(|e| Error::model(e.to_string()))?;
    Ok(c.to_plain_array_view::<f64>().map_err(|e| Error::model(e.to_string()))?.iter().copied().collect())
}

/// Runs both models on `trials` seeded inputs and compares every output.
pub fn verify(
    original: &ModelProto,
    rewritten: &ModelProto,
    overrides: &HashMap<String, Vec<i64>>,
    opts: &VerifyOptions,
) -> Result<Verification> {
    let VerifyOptions { tolerance: tol, trials, seed } = *opts;
    if !(tol.atol.is_finite() && tol.rtol.is_finite() && tol.atol >= 0.0 && tol.rtol >= 0.0) {
        return Err(Error::model("tolerances must be finite and not negative"));
    }
    let specs = input_specs(original, overrides)?;
    let t0 = std::time::Instant::now();
    // the two models load, optimise and run on two threads
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| load(rewritten, &specs, "rewritten"));
        let a = load(original, &specs, "original");
        (a, b.join().expect("tract load thread"))
    });
    let (a, b) = (a?, b?);
    let load_millis = t0.elapsed().as_secs_f64() * 1e3;
    let names: Vec<String> = original.graph.as_ref().unwrap().output.iter().map(|o| o.name().to_string()).collect();
    let mut outs: Vec<OutputDiff> = names
        .iter()
        .map(|n| OutputDiff { name: n.clone(), max_abs: 0.0, max_rel: 0.0, elements: 0, mismatches: 0, max_value: 0.0 })
        .collect();
    let mut rng = Rng(seed);
    let t1 = std::time::Instant::now();
    for _ in 0..trials {
        let inputs: TVec<TValue> =
            specs.iter().map(|(_, s, e)| random_input(s, *e, &mut rng).map(|t| t.into())).collect::<Result<_>>()?;
        let (ra, rb) = std::thread::scope(|s| {
            let rb = s.spawn(|| b.run(inputs.clone()));
            (a.run(inputs.clone()), rb.join().expect("tract run thread"))
        });
        let ra = ra.map_err(|e| Error::model(format!("tract failed running the original model: {}", one_line(&e))))?;
        let rb =
            rb.map_err(|e| Error::verify(format!("tract failed running the rewritten model: {}", one_line(&e))))?;
        if ra.len() != rb.len() || ra.len() != outs.len() {
            return Err(Error::verify(format!("the models have {} and {} outputs", ra.len(), rb.len())));
        }
        for (i, d) in outs.iter_mut().enumerate() {
            if ra[i].shape() != rb[i].shape() {
                return Err(Error::verify(format!(
                    "output '{}' has shape {:?} in the original but {:?} after rewriting",
                    d.name,
                    ra[i].shape(),
                    rb[i].shape()
                )));
            }
            let (x, y) = (to_f64(&ra[i])?, to_f64(&rb[i])?);
            d.elements = x.len();
            for (&p, &q) in x.iter().zip(&y) {
                if p.is_nan() || q.is_nan() {
                    if p.is_nan() != q.is_nan() {
                        d.mismatches += 1;
                        d.max_abs = f64::INFINITY;
                    }
                    continue;
                }
                let diff = if p == q { 0.0 } else { (p - q).abs() };
                d.max_value = d.max_value.max(p.abs());
                d.max_abs = d.max_abs.max(diff);
                if p != 0.0 {
                    d.max_rel = d.max_rel.max(diff / p.abs());
                }
                if diff > tol.atol + tol.rtol * p.abs() {
                    d.mismatches += 1;
                }
            }
        }
    }
    let passed = outs.iter().all(|d| d.mismatches == 0);
    Ok(Verification {
        trials,
        tolerance: tol,
        outputs: outs,
        passed,
        load_millis,
        run_millis: t1.elapsed().as_secs_f64() * 1e3,
    })
}
