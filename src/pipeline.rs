//! The whole `align MODEL` job as a library call: report before, run the
//! passes, report after, verify against the original. The CLI and the Python
//! binding are thin layers over [`align_model`]; neither holds logic of its own.

use crate::certify::{self, Certificate};
use crate::error::Result;
use crate::ir::Model;
use crate::layout::Layout;
use crate::onnx::ModelProto;
use crate::passes::{self, Options, Pass};
use crate::report;
use crate::verify::{self, Verification, VerifyOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What to do with a model.
#[derive(Debug, Clone)]
pub struct Config {
    /// Analysis settings (multiple, input shapes, slice-pinned).
    pub options: Options,
    /// Passes to run, in canonical order.
    pub passes: Vec<Pass>,
    /// Verification settings; `None` skips verification.
    pub verify: Option<VerifyOptions>,
}

impl Default for Config {
    fn default() -> Config {
        Config { options: Options::default(), passes: Pass::all(), verify: Some(VerifyOptions::default()) }
    }
}

/// What `align` did to a model: the numbers the summary prints and `--json`
/// emits.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Input path, when the model came from a file.
    pub input: Option<String>,
    /// Output path, when one was written.
    pub output: Option<String>,
    /// The channel multiple.
    pub multiple: usize,
    /// What each pass did.
    pub passes: Vec<passes::PassReport>,
    /// Free channel dims that are not a multiple, before.
    pub unaligned_free_dims_before: usize,
    /// Free channel dims that are not a multiple, after.
    pub unaligned_free_dims_after: usize,
    /// Layer channel dims the analysis could not follow, after (a gap of the tool).
    pub unanalysed_dims_after: usize,
    /// Alignable layer channel dims (neither pinned nor unanalysed), after.
    pub alignable_dims: usize,
    /// Of those, aligned after.
    pub aligned_dims: usize,
    /// Pinned layer dims with their reasons, after.
    pub pinned: Vec<report::Pinned>,
    /// Layer dims the analysis could not follow, with where it stopped, after.
    pub unanalysed: Vec<report::Pinned>,
    /// Parameters before.
    pub params_before: u64,
    /// Parameters after.
    pub params_after: u64,
    /// Multiply-accumulates before.
    pub macs_before: u64,
    /// Multiply-accumulates after.
    pub macs_after: u64,
    /// The rewrite checked weight by weight against the original (no
    /// inference; it runs under `--no-verify` too).
    pub certificate: Option<Certificate>,
    /// The equivalence check, if it ran.
    pub verification: Option<Verification>,
    /// Milliseconds per stage.
    pub millis: BTreeMap<&'static str, f64>,
}

/// The rewritten model and what happened.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The rewritten model (write it only when [`Outcome::passed`]).
    pub model: ModelProto,
    /// The summary.
    pub summary: Summary,
    /// Where each tensor of the original that the rewrite kept sits in
    /// `model` (verification compares them through it).
    pub layout: Layout,
}

impl Outcome {
    /// Why the rewrite is not written, in one line (`None` when it passed).
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.summary.certificate.as_ref().and_then(|c| c.failure_line()) {
            return Some(why);
        }
        self.summary.verification.as_ref().filter(|v| !v.passed).map(|v| v.failure_line())
    }

    /// The certificate holds, and verification passed or was skipped.
    pub fn passed(&self) -> bool {
        self.summary.certificate.as_ref().is_none_or(|c| c.passed)
            && self.summary.verification.as_ref().is_none_or(|v| v.passed)
    }
}

/// Aligns `proto` and verifies the result in memory when `cfg.verify` is
/// set. `stage` is told what runs (for a progress display).
pub fn align_model(proto: ModelProto, cfg: &Config, stage: &dyn Fn(&str)) -> Result<Outcome> {
    let (original, mut out) = rewrite(proto, cfg, stage)?;
    if let Some(original) = original {
        verify_into(&mut out.summary, &original, &out.model, &out.layout, cfg, stage, &|_, _| {})?;
    }
    Ok(out)
}

/// The rewrite alone: the outcome with no verification yet, and the
/// original (sharing its weights' bytes) when `cfg.verify` asks for one, for
/// [`verify_into`]. The CLI verifies the file it wrote instead of
/// `out.model`, which it can then drop ([`crate::onnx::stage`]).
pub fn rewrite(proto: ModelProto, cfg: &Config, stage: &dyn Fn(&str)) -> Result<(Option<ModelProto>, Outcome)> {
    let mut ms = BTreeMap::new();
    let t = Instant::now();
    let original = proto.clone(); // shares the weights' bytes
    let mut m = Model::import(proto)?;
    ms.insert("import", t.elapsed().as_secs_f64() * 1e3);
    let mut opts = cfg.options.clone();
    opts.deconv = cfg.passes.contains(&Pass::Deconv);
    // weights the model computes from constants (standardised convs):
    // evaluated once, here, instead of by the report and again by fold-bn
    let t = Instant::now();
    let evaluated = if cfg.passes.is_empty() { vec![] } else { crate::ir::fold_shapes::fold_weights(&mut m)? };
    let evaluating = t.elapsed().as_secs_f64() * 1e3;
    if !evaluated.is_empty() {
        ms.insert("evaluate", evaluating);
    }
    let before = report::build(&m, &opts)?;
    let t = Instant::now();
    stage("folding and padding");
    let (mut pass_reports, layout) = passes::rewrite(&mut m, &cfg.passes, &opts)?;
    if let Some(first) = pass_reports.first_mut() {
        first.notes.splice(0..0, evaluated.iter().map(|e| e.note()));
        first.millis += evaluating;
    }
    let after = report::build(&m, &opts)?;
    let rewritten = m.into_export();
    ms.insert("passes", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    stage("certifying the weights");
    let certificate = certify::certify(&original, &rewritten, &layout)?;
    ms.insert("certify", t.elapsed().as_secs_f64() * 1e3);
    let summary = Summary {
        input: None,
        output: None,
        multiple: opts.multiple,
        passes: pass_reports,
        unaligned_free_dims_before: before.totals.free_unaligned,
        unaligned_free_dims_after: after.totals.free_unaligned,
        unanalysed_dims_after: after.totals.unanalysed,
        alignable_dims: after.totals.alignable,
        aligned_dims: after.totals.aligned,
        pinned: after.pinned.clone(),
        unanalysed: after.unanalysed.clone(),
        params_before: before.totals.params,
        params_after: after.totals.params,
        macs_before: before.totals.macs,
        macs_after: after.totals.macs,
        certificate: Some(certificate),
        verification: None,
        millis: ms,
    };
    let original = cfg.verify.is_some().then_some(original);
    Ok((original, Outcome { model: rewritten, summary, layout }))
}

/// Verifies `candidate` against `original` with `cfg`'s settings (nothing
/// when `cfg.verify` is `None`), recording the result and its time in
/// `summary`. `progress` is told how many comparisons are done, out of how
/// many, as they go ([`verify::Progress`]).
pub fn verify_into(
    summary: &mut Summary,
    original: &ModelProto,
    candidate: &ModelProto,
    layout: &Layout,
    cfg: &Config,
    stage: &dyn Fn(&str),
    progress: verify::Progress,
) -> Result<()> {
    let Some(v) = &cfg.verify else { return Ok(()) };
    stage("verifying with tract");
    let t = Instant::now();
    summary.verification =
        Some(verify::verify_observed(original, candidate, &cfg.options.input_shapes, v, Some(layout), progress)?);
    summary.millis.insert("verify", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// The summary as the text `align` prints on stderr.
pub fn summary_text(s: &Summary) -> String {
    let pct = |a: u64, b: u64| {
        if a == 0 {
            0.0
        } else {
            (b as f64 - a as f64) / a as f64 * 100.0
        }
    };
    let mut t = String::new();
    for p in &s.passes {
        t += &format!("{:<8} {:>4} change(s) in {:.1} ms\n", p.pass, p.changed, p.millis);
    }
    t += &format!(
        "unaligned free channel dims (multiple of {}): {} → {}\n",
        s.multiple, s.unaligned_free_dims_before, s.unaligned_free_dims_after
    );
    t += &format!("alignable layer channel dims aligned: {} of {}\n", s.aligned_dims, s.alignable_dims);
    if s.unanalysed_dims_after > 0 {
        t += &format!("UNANALYSED layer channel dims: {} (align could not follow them)\n", s.unanalysed_dims_after);
        for p in &s.unanalysed {
            t += &format!("  {} {} {} ch: {}\n", p.node, p.side, p.channels, p.reasons.join("; "));
        }
    }
    let pinned_unaligned: Vec<_> = s.pinned.iter().filter(|p| !p.aligned).collect();
    t += &format!("pinned layer channel dims: {} ({} unaligned)\n", s.pinned.len(), pinned_unaligned.len());
    for p in pinned_unaligned {
        t += &format!("  {} {} {} ch: {}\n", p.node, p.side, p.channels, p.reasons.join("; "));
    }
    t += &format!("params: {} → {} ({:+.1}%)\n", s.params_before, s.params_after, pct(s.params_before, s.params_after));
    t += &format!("MACs:   {} → {} ({:+.1}%)\n", s.macs_before, s.macs_after, pct(s.macs_before, s.macs_after));
    if let Some(c) = &s.certificate {
        t += &c.text();
    }
    match &s.verification {
        Some(v) => t += &v.text(),
        None => t += "verification: skipped (--no-verify)\n",
    }
    t += &format!("time: {}\n", s.millis.iter().map(|(k, v)| format!("{k} {v:.0} ms")).collect::<Vec<_>>().join(", "));
    if let Some(o) = &s.output {
        t += &format!("wrote {o}\n");
    }
    t
}
