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

mod computed;
mod criterion;
mod inputs;
mod npy;
mod probe;
mod report;
mod run;
mod select;
mod tap;
mod upcast;

pub use computed::WeightCheck;
pub use criterion::{NOISE_MULTIPLE, ULPS};
pub use inputs::{auto_trials, default_input_range, resolve_inputs, AUTO_TRIAL_ELEMENTS};
pub use npy::read_inputs;
pub use report::{Bound, Criterion, Departure, InputSpec, OutputDiff, Selected, Statistic, TensorCheck, Verification};
pub use tap::IN_FLIGHT;

use crate::error::{Error, Result};
use crate::ir::{value_info_elem, value_info_shape};
use crate::layout::Layout;
use crate::onnx::{GraphProto, ModelProto, ValueInfoProto};
use criterion::{compare, TrialOut};
use inputs::{perturbed, random_input, Rng};
use probe::{Candidate, Tracked};
use prost::Message;
use run::{load_typed, one_line, optimise, output_facts, unoptimised, Runnable};
use select::{selections, Selections};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use upcast::Precision;

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
    /// Range of the uniform random float inputs; `None`: see
    /// [`default_input_range`] ([0, 1) for image models).
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

impl VerifyOptions {
    /// The most random input trials a verification runs.
    pub const MAX_TRIALS: usize = 1000;

    /// Checks settings a front end was given, with the message every front
    /// end shows: tolerances finite and not negative, at most
    /// [`VerifyOptions::MAX_TRIALS`] trials (0: automatic).
    pub fn validate(&self) -> Result<()> {
        let tol = self.tolerance;
        if !(tol.atol.is_finite() && tol.rtol.is_finite() && tol.atol >= 0.0 && tol.rtol >= 0.0) {
            return Err(Error::model("tolerances must be finite and not negative"));
        }
        if self.trials > Self::MAX_TRIALS {
            return Err(Error::model(format!("trials must be 1–{}, not {}", Self::MAX_TRIALS, self.trials)));
        }
        Ok(())
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

fn terr(e: impl std::fmt::Display) -> Error {
    Error::model(e.to_string())
}

/// Runs both models on the same inputs and compares every output and every
/// intermediate tensor they share.
///
/// The candidate is taken for a padding of the original when align's
/// layout, re-derived from the original, explains its channel widths
/// ([`crate::layout::derive`]); otherwise shared tensors are matched by name
/// and shape. `overrides` are `--input-shape` values (see
/// [`resolve_inputs`]). Input errors (a model tract cannot run, inputs that
/// do not match) are [`crate::ErrorKind::Input`]; a candidate whose outputs
/// differ in name or shape is [`crate::ErrorKind::Verify`]; a candidate that
/// runs but deviates too much returns `passed: false`.
pub fn verify(
    original: &ModelProto,
    candidate: &ModelProto,
    overrides: &HashMap<String, Vec<i64>>,
    opts: &VerifyOptions,
) -> Result<Verification> {
    verify_with(original, candidate, overrides, opts, None)
}

/// Told how many of a verification's comparisons are done, out of how many
/// (`done`, `total`), from the threads that run the models: for a progress
/// bar.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// [`verify`] with the rewrite's own layout when it is known (align's
/// pipeline passes the one its pad pass produced).
pub fn verify_with(
    original: &ModelProto,
    candidate: &ModelProto,
    overrides: &HashMap<String, Vec<i64>>,
    opts: &VerifyOptions,
    layout: Option<&Layout>,
) -> Result<Verification> {
    verify_observed(original, candidate, overrides, opts, layout, &|_, _| {})
}

/// [`verify_with`], telling `progress` as the comparisons go.
pub fn verify_observed(
    original: &ModelProto,
    candidate: &ModelProto,
    overrides: &HashMap<String, Vec<i64>>,
    opts: &VerifyOptions,
    layout: Option<&Layout>,
    progress: Progress,
) -> Result<Verification> {
    let (range, range_why) = check_options(original, opts)?;
    // weights the original computes from constants: each compared with
    // tract's, then the outputs with the original holding them (computed.rs)
    let normalised = computed::normalise(original)?;
    if normalised.is_some() {
        // what crashes tract is refused as the user's model has it (the
        // reference renames what it folds; loading checks the others)
        run::refuse_tract_crashers(original).map_err(|e| run::cannot_run("original", anyhow::anyhow!(e)))?;
    }
    let computed_weights = match &normalised {
        Some((reference, evaluated)) => Some(computed::check(original, reference, evaluated)?),
        None => None,
    };
    let original = normalised.as_ref().map_or(original, |(reference, _)| reference);
    // half-precision models run in f32, on up-cast copies of both
    let precision = upcast::precision(original).max(upcast::precision(candidate));
    let copies = match precision {
        Precision::F32 => None,
        _ => Some((upcast::upcast(original)?, upcast::upcast(candidate)?)),
    };
    let (given, given_candidate) = (original, candidate);
    let (original, candidate) = copies.as_ref().map_or((original, candidate), |(a, b)| (a, b));
    let specs = resolve_inputs(original, overrides)?;
    let (ga, gb) = (graph(original)?, graph(candidate)?);
    let order_b = check_interfaces(ga, gb, &specs)?;
    let sel = selections(ga);
    check_feeders(gb, &sel)?;
    let mut rng = Rng(opts.seed);
    let (sets, inputs_label) = input_sets(opts, &specs, range, &mut rng)?;
    let noisy = !opts.strict;
    let perturb = |rng: &mut Rng, eps: f64| -> Result<Vec<Vec<Tensor>>> {
        match noisy {
            true => sets.iter().map(|s| s.iter().map(|t| perturbed(t, rng, eps)).collect()).collect(),
            false => Ok(vec![]),
        }
    };
    let mut pert = if precision == Precision::F32 { perturb(&mut rng, precision.eps())? } else { vec![] };
    let t0 = std::time::Instant::now();
    let mut loaded = load_pair(original, candidate, &specs, &order_b, &sel, layout, overrides, noisy)?;
    if precision != Precision::F32 {
        // the up-cast copies differ by f32 rounding only, unless the
        // candidate rounded new constants into the half type (a folded
        // BatchNormalization), or is not align's padding (another tool's
        // rewrite may have): then the noise is the model's own precision's
        loaded.precision = if rounds_into_half(ga, gb, &loaded.layout) { precision } else { Precision::F32 };
        pert = perturb(&mut rng, loaded.precision.eps())?;
    }
    let load_millis = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = std::time::Instant::now();
    let (trials, probes) = run_trials(&loaded, &sets, &pert, &order_b, opts, progress)?;
    let run_millis = t1.elapsed().as_secs_f64() * 1e3;
    let outputs = compare_outputs(ga, gb, &sel, &trials, opts, loaded.precision.eps())?;
    let tensors = noisy.then(|| probe::summarise(probes, loaded.shared, loaded.skipped.clone(), &loaded.layout));
    let selected = selected_outputs(ga, &sel);
    // a candidate recognised as align's padding (the layout was re-derived
    // here and explains its widths) gets the certificate too
    let certificate = if layout.is_none() && !loaded.layout.maps.is_empty() {
        Some(crate::certify::certify(given, given_candidate, &loaded.layout)?)
    } else {
        None
    };
    let passed = outputs.iter().all(|d| d.passed)
        && tensors.as_ref().is_none_or(|t| t.passed)
        && certificate.as_ref().is_none_or(|c| c.passed)
        && computed_weights.as_ref().is_none_or(|w| w.passed);
    let margin = outputs
        .iter()
        .map(|d| d.margin)
        .chain(tensors.iter().filter_map(|t| t.worst.as_ref().map(|w| w.margin)))
        .fold(0.0, f64::max);
    let tol = opts.tolerance;
    Ok(Verification {
        criterion: match (opts.strict, loaded.precision) {
            (true, _) => Criterion::Elementwise,
            (false, Precision::F32) => Criterion::Fp32Noise,
            (false, Precision::F16) => Criterion::Fp16Noise,
            (false, Precision::BF16) => Criterion::Bf16Noise,
        },
        precision: precision.name().into(),
        bound: (!opts.strict).then_some(Bound { noise_multiple: NOISE_MULTIPLE, ulps: ULPS }),
        trials: sets.len(),
        tolerance: tol,
        inputs: inputs_label,
        inputs_why: if opts.inputs.is_some() {
            "given".into()
        } else if opts.input_range.is_some() {
            "--input-range".into()
        } else {
            range_why
        },
        input_shapes: specs,
        outputs,
        selected,
        tensors,
        certificate,
        computed_weights,
        tract: loaded.tract.clone(),
        passed,
        margin,
        load_millis,
        run_millis,
    })
}

/// Whether the candidate of a half-precision original may hold constants
/// it rounded into the half type itself: it folded a BatchNormalization
/// (fewer of them than the original), or it is not recognised as align's
/// padding of the original (no layout), so nothing is known of it.
fn rounds_into_half(ga: &GraphProto, gb: &GraphProto, layout: &Layout) -> bool {
    let bns = |g: &GraphProto| g.node.iter().filter(|n| n.op_type() == "BatchNormalization").count();
    bns(ga) != bns(gb) || (layout.maps.is_empty() && layout.source.is_empty())
}

/// Validates the tolerances and the input range; the range to use and why.
fn check_options(original: &ModelProto, opts: &VerifyOptions) -> Result<((f64, f64), String)> {
    opts.validate()?;
    let (range, why) = match opts.input_range {
        Some(r) => (r, "--input-range".to_string()),
        None => default_input_range(original),
    };
    if !(range.0.is_finite() && range.1.is_finite() && range.0 < range.1) {
        return Err(Error::model(format!("input range [{}, {}) is empty or not finite", range.0, range.1)));
    }
    Ok((range, why))
}

/// The candidate takes the same inputs (by name and type) and gives the
/// same outputs (by name) as the original, and both models produce their
/// outputs. Returns, for each of the candidate's inputs, its index in `specs`.
fn check_interfaces(ga: &GraphProto, gb: &GraphProto, specs: &[InputSpec]) -> Result<Vec<usize>> {
    let cand_inputs = real_inputs(gb);
    let mut order_b = vec![];
    for vi in &cand_inputs {
        let k = specs.iter().position(|s| s.name == vi.name()).ok_or_else(|| {
            Error::model(format!("the candidate has an input '{}' the original does not have", vi.name()))
        })?;
        if value_info_elem(vi).unwrap_or(1) != specs[k].elem {
            return Err(Error::model(format!("input '{}' has another element type in the candidate", vi.name())));
        }
        if order_b.contains(&k) {
            return Err(Error::model(format!("the candidate declares input '{}' twice", vi.name())));
        }
        order_b.push(k);
    }
    if let Some(s) = specs.iter().find(|s| !cand_inputs.iter().any(|vi| vi.name() == s.name)) {
        return Err(Error::model(format!("the candidate has no input '{}'", s.name)));
    }
    let names_a: Vec<&str> = ga.output.iter().map(|o| o.name()).collect();
    let names_b: Vec<&str> = gb.output.iter().map(|o| o.name()).collect();
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
        let mut seen = HashSet::new();
        if let Some(o) = g.output.iter().find(|o| !seen.insert(o.name())) {
            return Err(Error::model(format!("the {which} model lists output '{}' twice", o.name())));
        }
    }
    Ok(order_b)
}

/// The candidate makes every tensor compared instead of a selected output.
fn check_feeders(gb: &GraphProto, sel: &Selections) -> Result<()> {
    let produced_b: HashSet<&str> = gb.node.iter().flat_map(|n| n.output.iter().map(|s| s.as_str())).collect();
    for (t, label) in &sel.feeders {
        if !produced_b.contains(t.as_str()) {
            return Err(Error::model(format!(
                "the candidate has no tensor '{t}' ({label}), which is compared instead of a selected output"
            )));
        }
    }
    Ok(())
}

/// The input sets: from a file, or seeded random in the range.
fn input_sets(
    opts: &VerifyOptions,
    specs: &[InputSpec],
    range: (f64, f64),
    rng: &mut Rng,
) -> Result<(Vec<Vec<Tensor>>, String)> {
    if let Some(p) = &opts.inputs {
        return Ok((read_inputs(p, specs)?, format!("inputs from {}", p.display())));
    }
    let n = if opts.trials == 0 { auto_trials(specs) } else { opts.trials };
    let mut sets = vec![];
    for _ in 0..n {
        sets.push(specs.iter().map(|s| random_input(s, range, rng)).collect::<Result<Vec<_>>>()?);
    }
    Ok((sets, format!("uniform [{}, {}) inputs", range.0, range.1)))
}

/// Both models loaded and optimised, with the probes they output.
struct Loaded {
    a: Runnable,
    b: Runnable,
    probes: Vec<probe::Probe>,
    /// Float tensors both models make under one name.
    shared: usize,
    skipped: std::collections::BTreeMap<String, usize>,
    layout: Layout,
    /// The precision the models compute in (they run up-cast when it is half).
    precision: Precision,
    /// How tract ran a model it could not optimise (none: both optimised).
    tract: Vec<String>,
}

/// Loads both models (on two threads) with the graph outputs, the selection
/// feeders and every shared tensor as outputs; picks the probes by the
/// typed facts and the layout (re-derived when none is given); optimises.
#[allow(clippy::too_many_arguments)]
fn load_pair(
    original: &ModelProto,
    candidate: &ModelProto,
    specs: &[InputSpec],
    order_b: &[usize],
    sel: &Selections,
    layout: Option<&Layout>,
    overrides: &HashMap<String, Vec<i64>>,
    probing: bool,
) -> Result<Loaded> {
    let (ga, gb) = (graph(original)?, graph(candidate)?);
    let feeders: Vec<String> = sel.feeders.iter().map(|(t, _)| t.clone()).collect();
    let fixed = ga.output.len() + feeders.len();
    let skip: HashSet<String> = sel.tainted_tensors.iter().chain(&feeders).cloned().collect();
    let cands: Vec<Candidate> = if probing { probe::candidates(ga, gb, &skip) } else { vec![] };
    let extra: Vec<String> = feeders.iter().cloned().chain(cands.iter().map(|c| c.name.clone())).collect();
    let order_a: Vec<usize> = (0..specs.len()).collect();
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| load_typed(candidate, &extra, specs, order_b, "candidate"));
        let a = load_typed(original, &extra, specs, &order_a, "original");
        (a, b.join().expect("tract load thread"))
    });
    let (a, b) = (a?, b?);
    let (fa, fb) = (output_facts(&a), output_facts(&b));
    let layout = match layout {
        Some(l) => l.clone(),
        None if probing => {
            // the candidate's channel widths, to recognise align's layout
            let widths: HashMap<String, Vec<usize>> = cands
                .iter()
                .enumerate()
                .filter_map(|(i, c)| fb.get(fixed + i).and_then(|(_, s)| s.clone()).map(|s| (c.name.clone(), s)))
                .collect();
            crate::layout::derive(original, &widths, overrides)
        }
        None => Layout::default(),
    };
    let (chosen, shared, skipped) = probe::choose(&cands, &fa, &fb, fixed, &layout);
    let keep: Vec<usize> = (0..fixed).collect();
    let taps: Vec<usize> = chosen.iter().map(|(i, _)| fixed + i).collect();
    // a model tract cannot optimise is loaded again and run unoptimised
    let run_either = |m: TypedModel, proto: &ModelProto, order: &[usize], which: &str| {
        optimise(m, &keep, &taps, which).map(|r| (r, None)).or_else(|e| {
            let again = load_typed(proto, &extra, specs, order, which)?;
            unoptimised(again, &keep, &taps, which, &e).map(|(r, note)| (r, Some(note))).map_err(|_| e)
        })
    };
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| run_either(b, candidate, order_b, "candidate"));
        let a = run_either(a, original, &order_a, "original");
        (a, b.join().expect("tract optimise thread"))
    });
    let ((a, note_a), (b, note_b)) = (a?, b?);
    run::trim_heap();
    Ok(Loaded {
        precision: Precision::F32,
        a,
        b,
        tract: note_a.into_iter().chain(note_b).collect(),
        probes: chosen.into_iter().map(|(_, p)| p).collect(),
        shared,
        skipped,
        layout,
    })
}

/// Intermediate tensors are compared on this many trials, or on as many as
/// give each channel [`criterion::MIN_SLICE`] elements (a deep 2×2 feature
/// map needs eight): a channel of an early feature map holds thousands of
/// elements per trial, and the later trials (up to eight for small inputs)
/// add evidence for the graph outputs, where one value per box or class is
/// all a trial gives.
pub const PROBE_TRIALS: usize = 2;

/// Runs every trial: the original, the candidate and (noise mode) the
/// original on perturbed inputs, each on its own thread and at the same
/// time, so that the probes are compared while the runs go on
/// ([`tap::Exchange`]). The graph outputs are kept for [`compare_outputs`].
fn run_trials(
    m: &Loaded,
    sets: &[Vec<Tensor>],
    pert: &[Vec<Tensor>],
    order_b: &[usize],
    opts: &VerifyOptions,
    progress: Progress,
) -> Result<(Vec<TrialOut>, Vec<probe::Judged>)> {
    use tap::Run;
    let noisy = !pert.is_empty();
    let wanted: Vec<usize> = m
        .probes
        .iter()
        .map(|p| {
            let per_channel: usize = p.shape.iter().skip(2).product::<usize>() * p.shape.first().copied().unwrap_or(1);
            criterion::MIN_SLICE.div_ceil(per_channel.max(1)).max(PROBE_TRIALS).min(sets.len())
        })
        .collect();
    let tracked: Vec<Mutex<Tracked>> = m
        .probes
        .iter()
        .zip(&wanted)
        .map(|(p, &k)| Mutex::new(Tracked::new(p.clone(), k, opts, m.precision.eps())))
        .collect();
    // a unit of progress: one probe compared on one trial, or a trial run
    let total = wanted.iter().sum::<usize>() + sets.len();
    let count = tap::Count::new(total, progress);
    let mut trials = vec![];
    for (t, set) in sets.iter().enumerate() {
        let active: Vec<bool> = wanted.iter().map(|&k| t < k).collect();
        let ex = tap::Exchange::new(&tracked, opts.tolerance, &active, &count);
        let feed = |run: Run| -> TVec<TValue> {
            match run {
                Run::Original => set.iter().map(|x| x.clone().into()).collect(),
                Run::Candidate => order_b.iter().map(|&k| set[k].clone().into()).collect(),
                Run::Perturbed => pert[t].iter().map(|x| x.clone().into()).collect(),
            }
        };
        let go = |run: Run| -> Result<Vec<Tensor>> {
            let (plan, which) = if run == Run::Candidate { (&m.b, "candidate") } else { (&m.a, "original") };
            let fail = |msg: String| if run == Run::Candidate { Error::verify(msg) } else { Error::model(msg) };
            run::guarded(which, || {
                ex.run(plan, feed(run), run)
                    .map_err(|e| fail(format!("tract failed running the {which} model: {}", one_line(&e))))
            })
        };
        let (a, b, n) = std::thread::scope(|s| {
            let b = s.spawn(|| go(Run::Candidate));
            let n = noisy.then(|| s.spawn(|| go(Run::Perturbed)));
            let a = go(Run::Original);
            (a, b.join().expect("tract run thread"), n.map(|n| n.join().expect("tract run thread")))
        });
        let (mut a, mut b) = (a?, b?);
        let mut n = n.transpose()?;
        if let Some(e) = ex.take_error() {
            return Err(e);
        }
        // the taps' scalars come first (tap::wire)
        let taps = m.probes.len();
        a.drain(..taps);
        b.drain(..taps);
        if let Some(n) = n.as_mut() {
            n.drain(..taps);
        }
        trials.push(TrialOut { a, b, n });
        count.tick();
    }
    Ok((trials, tracked.into_iter().map(|t| t.into_inner().expect("not poisoned").finish()).collect()))
}

/// Compares the graph outputs by name (selected ones through their inputs),
/// then the selection feeders.
fn compare_outputs(
    ga: &GraphProto,
    gb: &GraphProto,
    sel: &Selections,
    trials: &[TrialOut],
    opts: &VerifyOptions,
    eps: f64,
) -> Result<Vec<OutputDiff>> {
    let names_a: Vec<&str> = ga.output.iter().map(|o| o.name()).collect();
    let names_b: Vec<&str> = gb.output.iter().map(|o| o.name()).collect();
    let mut outputs = vec![];
    for (k, name) in names_a.iter().enumerate() {
        let kb = names_b.iter().position(|n| n == name).expect("checked by check_interfaces");
        let (sa, sb) = (trials[0].a[k].shape(), trials[0].b[kb].shape());
        if sel.tainted.contains_key(*name) {
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
        outputs.push(compare(name, "values", k, kb, trials, opts, eps)?);
    }
    for (j, (t, label)) in sel.feeders.iter().enumerate() {
        let (k, kb) = (names_a.len() + j, names_b.len() + j);
        let (sa, sb) = (trials[0].a[k].shape(), trials[0].b[kb].shape());
        if sa != sb {
            return Err(Error::verify(format!(
                "'{t}' ({label}) has shape {sa:?} in the original but {sb:?} in the candidate"
            )));
        }
        outputs.push(compare(t, label, k, kb, trials, opts, eps)?);
    }
    Ok(outputs)
}

/// The graph outputs compared through their selection ops' inputs.
fn selected_outputs(ga: &GraphProto, sel: &Selections) -> Vec<Selected> {
    ga.output
        .iter()
        .filter_map(|o| {
            sel.tainted.get(o.name()).map(|via| Selected {
                name: o.name().to_string(),
                via: via.clone(),
                compared_instead: sel
                    .feeders
                    .iter()
                    .filter(|(t, _)| sel.feeds.get(t).is_some_and(|ops| ops.iter().any(|o| via.contains(o))))
                    .map(|(t, _)| t.clone())
                    .collect(),
            })
        })
        .collect()
}
