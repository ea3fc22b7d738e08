//! `align report` and `align check`: per-layer channels, params and MACs,
//! and which channel dims are unaligned, free or pinned (and why).

use crate::analysis::{Analysis, Dim};
use crate::error::Result;
use crate::ir::{Model, NodeId, Outlet};
use crate::ops::{CostCx, LayerKind, Width};
use crate::passes::Options;

use serde::Serialize;
use std::collections::BTreeSet;

/// Where the analysis stopped for a conv dim whose tensor shape could not be inferred.
pub const UNANALYSED: &str = "shape unknown: the channel analysis cannot follow this tensor";

/// One channel dim of a layer.
#[derive(Debug, Clone, Serialize)]
pub struct DimReport {
    /// Channels in the model.
    pub channels: usize,
    /// Channels after alignment.
    pub aligned_to: usize,
    /// The channel spaces it is made of (several after a Concat).
    pub parts: Vec<usize>,
    /// Every part is a multiple.
    pub aligned: bool,
    /// Reasons parts of it are pinned.
    pub pinned: Vec<String>,
    /// Where the analysis stopped for parts of it (a gap of the tool, not a
    /// reason); empty when the whole dim was analysed.
    pub unanalysed: Vec<String>,
    /// The axis of a dense layer's features (`[N, T, C]`: 2), when they are
    /// not a conv's channels (axis 1) or flattened ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axis: Option<usize>,
}

/// What kind of channel dim a [`DimReport`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DimStatus {
    /// Every part analysed and free: align pads it.
    Free,
    /// Some part kept at its width for a genuine reason.
    Pinned,
    /// Some part align could not follow (a gap of the tool).
    Unanalysed,
}

impl DimReport {
    /// What kind of dim this is.
    pub fn status(&self) -> DimStatus {
        if !self.unanalysed.is_empty() {
            DimStatus::Unanalysed
        } else if !self.pinned.is_empty() {
            DimStatus::Pinned
        } else {
            DimStatus::Free
        }
    }
}

impl DimReport {
    fn from(d: &Dim) -> DimReport {
        DimReport {
            channels: d.logical,
            aligned_to: d.physical,
            parts: d.parts.clone(),
            aligned: !d.free_unaligned && !d.pinned_unaligned && !d.unanalysed_unaligned,
            pinned: d.pins.iter().cloned().collect(),
            unanalysed: d.gaps.iter().cloned().collect(),
            axis: d.axis,
        }
    }
}

/// One row: a Conv, ConvTranspose, Gemm/MatMul or BatchNormalization.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// ONNX node name (or its first output's name).
    pub node: String,
    /// Op type.
    pub op: String,
    /// Kernel size.
    pub kernel: Vec<i64>,
    /// Strides.
    pub stride: Vec<i64>,
    /// Groups.
    pub groups: i64,
    /// Input channels (features for Gemm).
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Both channel dims are multiples of the multiple.
    pub aligned: bool,
    /// Weight and bias elements.
    pub params: u64,
    /// Multiply-accumulates at the model's input shape (None if unknown).
    pub macs: Option<u64>,
    /// Params after alignment.
    pub params_aligned: u64,
    /// MACs after alignment.
    pub macs_aligned: Option<u64>,
    /// Input channel dim details.
    #[serde(rename = "in")]
    pub in_dim: Option<DimReport>,
    /// Output channel dim details.
    #[serde(rename = "out")]
    pub out_dim: Option<DimReport>,
    /// What kind of layer it is (not serialised: `op` says it).
    #[serde(skip)]
    pub kind: LayerKind,
}

/// A pinned channel dim of a layer.
#[derive(Debug, Clone, Serialize)]
pub struct Pinned {
    /// The layer.
    pub node: String,
    /// "in" or "out".
    pub side: &'static str,
    /// Its width.
    pub channels: usize,
    /// Whether it is a multiple anyway.
    pub aligned: bool,
    /// Why it keeps its width.
    pub reasons: Vec<String>,
    /// The axis of a dense layer's features ([`DimReport::axis`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axis: Option<usize>,
}

/// Whole-model totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Params of the listed layers.
    pub params: u64,
    /// MACs of the listed layers.
    pub macs: u64,
    /// Params after alignment.
    pub params_aligned: u64,
    /// MACs after alignment.
    pub macs_aligned: u64,
    /// Channel dims of the listed layers (in and out).
    pub dims: usize,
    /// Dims with a free part that is not a multiple (what `align` pads).
    pub free_unaligned: usize,
    /// Dims with a pinned part (and no unanalysed part).
    pub pinned: usize,
    /// Pinned dims that are not multiples (and stay so).
    pub pinned_unaligned: usize,
    /// Dims with a part the analysis could not follow.
    pub unanalysed: usize,
    /// Unanalysed dims that are not multiples.
    pub unanalysed_unaligned: usize,
    /// Dims neither pinned nor unanalysed: what align may pad.
    pub alignable: usize,
    /// Alignable dims whose every part is a multiple already.
    pub aligned: usize,
}

/// The report of a model.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The multiple used.
    pub multiple: usize,
    /// Rows.
    pub layers: Vec<Layer>,
    /// Totals.
    pub totals: Totals,
    /// Pinned layer dims, each with its reasons.
    pub pinned: Vec<Pinned>,
    /// Layer dims the analysis could not follow, with where it stopped.
    pub unanalysed: Vec<Pinned>,
}

/// The row of op `n`, if its family says what it costs as a layer.
fn layer(m: &Model, a: &Analysis, n: NodeId, multiple: usize) -> Option<Layer> {
    let p = m.op(n)?;
    let x = m.input(n, 0);
    let out = Outlet { node: n, slot: 0 };
    // a dense layer's own input dim is its input's last axis (features),
    // or the flattened channels before it
    let dense = crate::ops::role(p) == Some(crate::ops::Role::Dense);
    let last = |x: Outlet| a.shapes.get(&x).and_then(|s| s.len().checked_sub(1));
    let in_dim = x.filter(|&x| !dense || a.axis(x).is_none() || a.axis(x) == last(x)).and_then(|x| a.dim(x));
    let out_dim = a.dim(out);
    let width = |d: &Dim| Width { logical: d.logical, physical: d.physical };
    let flat = || x.and_then(|x| a.flat_map(x)).map(|f| f.len);
    let cx = CostCx {
        m,
        n,
        p,
        shapes: &a.shapes,
        input: in_dim.as_ref().map(width),
        output: out_dim.as_ref().map(width),
        flat: &flat,
    };
    let c = crate::ops::entry(p)?.rules.cost(&cx)?;
    let mut row = Layer {
        node: crate::ir::op_name(p),
        op: p.op_type().to_string(),
        kernel: c.kernel,
        stride: c.stride,
        groups: c.groups,
        in_channels: c.in_channels,
        out_channels: c.out_channels,
        aligned: true,
        params: c.params,
        macs: c.macs,
        params_aligned: c.params_aligned,
        macs_aligned: c.macs_aligned,
        in_dim: in_dim.as_ref().map(DimReport::from),
        out_dim: out_dim.as_ref().map(DimReport::from),
        kind: c.kind,
    };
    match c.kind {
        LayerKind::Norm => {}
        // A layer dim the analysis could not follow (its tensor's shape is
        // unknown, e.g. after a runtime-computed Slice; a dense layer's
        // input features no op before it laid out) is left as it is: report
        // it as unanalysed so `check` shows it instead of passing it by.
        LayerKind::Conv | LayerKind::Dense => {
            let unknown = |c: usize| DimReport {
                channels: c,
                aligned_to: c,
                parts: vec![c],
                aligned: c.is_multiple_of(multiple),
                pinned: vec![],
                unanalysed: vec![UNANALYSED.to_string()],
                axis: None,
            };
            // a layer reading a constant (SwinV2's position-bias MLP reads
            // fixed log-spaced coordinates): the data has its width
            let constant = x.filter(|&x| m.is_const(x)).map(|x| DimReport {
                unanalysed: vec![],
                pinned: vec![format!("reads the constant '{}'", m.tensor_name(x))],
                ..unknown(row.in_channels)
            });
            row.in_dim = row.in_dim.take().or(constant).or_else(|| Some(unknown(row.in_channels)));
            row.out_dim = row.out_dim.take().or_else(|| Some(unknown(row.out_channels)));
        }
    }
    row.aligned = [&row.in_dim, &row.out_dim].iter().all(|d| d.as_ref().is_none_or(|d| d.aligned));
    if row.in_dim.is_none() {
        row.aligned &= row.in_channels.is_multiple_of(multiple);
    }
    Some(row)
}

/// How much padding grows a layer: its MACs after / before (its params
/// when the MACs are unknown or zero); `None` when neither is known.
pub fn growth(l: &Layer) -> Option<(f64, &'static str, u64, u64)> {
    match l.macs.zip(l.macs_aligned).filter(|&(b, _)| b > 0) {
        Some((b, a)) => Some((a as f64 / b as f64, "MACs", b, a)),
        None => {
            (l.params > 0).then(|| (l.params_aligned as f64 / l.params as f64, "params", l.params, l.params_aligned))
        }
    }
}

/// The channel dims of analysis `a` that padding would widen more than
/// `max` (a factor: 3 → 8 channels is ×2.67), each as a tensor of a layer
/// (conv or dense) whose space keeps its width, with the reason. A dim's factor depends on its own width only, so
/// the decision is the same on align's output (a second run pads nothing
/// more): a layer's MACs grow by the product of its dims' factors.
pub fn over_budget(m: &Model, a: &Analysis, max: f64) -> Vec<(Outlet, String)> {
    let mut out = vec![];
    if max.is_infinite() {
        return out;
    }
    let factor = |d: &DimReport| d.aligned_to as f64 / d.channels.max(1) as f64;
    for n in m.ops() {
        let Some(l) = layer(m, a, n, a.multiple).filter(|l| l.kind != LayerKind::Norm) else { continue };
        let sides = [(m.input(n, 0), &l.in_dim), (Some(Outlet { node: n, slot: 0 }), &l.out_dim)];
        // a grouped conv (not depthwise) runs group by group, without the
        // channel blocking that makes padded convs fast: padding its groups
        // costs the product of both dims' factors, and both keep their width
        // together (so the decision is the same on align's output)
        let grouped = l.groups > 1 && l.groups as usize != l.in_channels;
        if let (true, Some(i), Some(o)) = (grouped, &l.in_dim, &l.out_dim) {
            let g = factor(i) * factor(o);
            if g > max * (1.0 + 1e-9) {
                let per = |d: &DimReport| {
                    format!("{} → {}", d.channels / l.groups as usize, d.aligned_to / l.groups as usize)
                };
                let why = format!(
                    "cost: padding the groups of a grouped conv ({} in, {} out per group: MACs ×{g:.2}) is over --max-growth {max}",
                    per(i),
                    per(o)
                );
                out.extend(sides.iter().filter_map(|(x, _)| Some(((*x)?, why.clone()))));
            }
            continue;
        }
        for (o, d) in sides {
            let (Some(o), Some(d)) = (o, d) else { continue };
            let f = factor(d);
            if f <= max * (1.0 + 1e-9) {
                continue;
            }
            // one reason per space, whichever layer found it: the layers'
            // own growth is the report's `growth` column
            let why = format!(
                "cost: padding {} → {} channels (×{f:.2}) is over --max-growth {max}",
                d.channels, d.aligned_to
            );
            out.push((o, why));
        }
    }
    out
}

/// Builds the report of `m`.
pub fn build(m: &Model, opts: &Options) -> Result<Report> {
    // Report what `pad` will see: shape arithmetic it folds into constants
    // is folded here too (on a copy, only when there is any).
    let folded;
    let m = if crate::ir::fold_shapes::foldable(m) {
        let mut c = m.clone();
        crate::ir::fold_shapes::fold(&mut c)?;
        folded = c;
        &folded
    } else {
        m
    };
    let a = Analysis::run(m, opts)?;
    let mut layers = vec![];
    let mut totals = Totals::default();
    for n in m.ops() {
        let Some(row) = layer(m, &a, n, opts.multiple) else { continue };
        totals.params = totals.params.saturating_add(row.params);
        totals.params_aligned = totals.params_aligned.saturating_add(row.params_aligned);
        totals.macs = totals.macs.saturating_add(row.macs.unwrap_or(0));
        totals.macs_aligned = totals.macs_aligned.saturating_add(row.macs_aligned.unwrap_or(0));
        layers.push(row);
    }
    let (mut pinned, mut unanalysed) = (vec![], vec![]);
    for l in &layers {
        for (side, d) in [("in", &l.in_dim), ("out", &l.out_dim)] {
            let Some(d) = d else { continue };
            totals.dims += 1;
            if d.aligned_to != d.channels {
                totals.free_unaligned += 1;
            }
            let entry = |reasons: &Vec<String>| Pinned {
                node: l.node.clone(),
                side,
                channels: d.channels,
                aligned: d.aligned,
                reasons: reasons.clone(),
                axis: d.axis,
            };
            match d.status() {
                DimStatus::Unanalysed => {
                    totals.unanalysed += 1;
                    totals.unanalysed_unaligned += usize::from(!d.aligned && d.aligned_to == d.channels);
                    unanalysed.push(entry(&d.unanalysed));
                }
                DimStatus::Pinned => {
                    totals.pinned += 1;
                    totals.pinned_unaligned += usize::from(!d.aligned && d.aligned_to == d.channels);
                    pinned.push(entry(&d.pinned));
                }
                DimStatus::Free => {
                    totals.alignable += 1;
                    totals.aligned += usize::from(d.aligned);
                }
            }
        }
    }
    Ok(Report { multiple: opts.multiple, layers, totals, pinned, unanalysed })
}

fn fmt_num(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_dim(d: &Option<DimReport>, fallback: usize) -> String {
    match d {
        Some(d) if d.channels != d.aligned_to => format!("{}→{}", d.channels, d.aligned_to),
        Some(d) => d.channels.to_string(),
        None => fallback.to_string(),
    }
}

impl Report {
    /// Human-readable table.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let w = self.layers.iter().map(|l| l.node.len()).max().unwrap_or(4).clamp(4, 48);
        s += &format!(
            "{:<w$}  {:<18}  {:>7}  {:>6}  {:>3}  {:>9}  {:>9}  {:<7}  {:>11}  {:>15}  {:>6}\n",
            "node", "op", "kernel", "stride", "grp", "in", "out", "aligned", "params", "MACs", "growth"
        );
        for l in &self.layers {
            let k = l.kernel.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x");
            let st = l.stride.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x");
            let free_unaligned =
                [&l.in_dim, &l.out_dim].iter().any(|d| d.as_ref().is_some_and(|d| d.aligned_to != d.channels));
            let unanalysed =
                [&l.in_dim, &l.out_dim].iter().any(|d| d.as_ref().is_some_and(|d| d.status() == DimStatus::Unanalysed));
            let al = if l.aligned {
                "yes"
            } else if free_unaligned {
                "no"
            } else if unanalysed {
                "UNANALYSED"
            } else {
                "pinned"
            };
            // what padding does to the layer's MACs (params when unknown)
            let grows = growth(l).filter(|g| g.2 != g.3).map(|g| format!("×{:.2}", g.0)).unwrap_or_default();
            s += &format!(
                "{:<w$}  {:<18}  {:>7}  {:>6}  {:>3}  {:>9}  {:>9}  {:<7}  {:>11}  {:>15}  {:>6}\n",
                truncate(&l.node, w),
                l.op,
                k,
                st,
                l.groups,
                fmt_dim(&l.in_dim, l.in_channels),
                fmt_dim(&l.out_dim, l.out_channels),
                al,
                fmt_num(l.params),
                l.macs.map(fmt_num).unwrap_or_else(|| "?".into()),
                grows
            );
        }
        let t = &self.totals;
        let pct = |a: u64, b: u64| {
            if a == 0 {
                0.0
            } else {
                (b as f64 - a as f64) / a as f64 * 100.0
            }
        };
        s += &format!(
            "\ntotal: {} layers, {} params, {} MACs; aligned to {}: {} params ({:+.1}%), {} MACs ({:+.1}%)\n",
            self.layers.len(),
            fmt_num(t.params),
            fmt_num(t.macs),
            self.multiple,
            fmt_num(t.params_aligned),
            pct(t.params, t.params_aligned),
            fmt_num(t.macs_aligned),
            pct(t.macs, t.macs_aligned)
        );
        s += &format!(
            "channel dims: {}: {} alignable ({} aligned, {} free and unaligned), {} pinned ({} unaligned), {} unanalysed ({} unaligned)\n",
            t.dims, t.alignable, t.aligned, t.free_unaligned, t.pinned, t.pinned_unaligned, t.unanalysed, t.unanalysed_unaligned
        );
        for (title, list) in [("pinned", &self.pinned), ("UNANALYSED (align could not follow these)", &self.unanalysed)]
        {
            if !list.is_empty() {
                s += &format!("{title}:\n");
                for p in list {
                    let mark = if p.aligned { "" } else { " (unaligned)" };
                    let on = p.axis.map(|a| format!(" on axis {a}")).unwrap_or_default();
                    s += &format!("  {} {} {} ch{on}{mark}: {}\n", p.node, p.side, p.channels, p.reasons.join("; "));
                }
            }
        }
        s
    }
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let t: String = s.chars().take(w - 1).collect();
        format!("{t}…")
    }
}

/// One failing dim for `align check`.
#[derive(Debug, Clone, Serialize)]
pub struct Offender {
    /// Node name.
    pub node: String,
    /// Op type.
    pub op: String,
    /// "in" or "out".
    pub side: &'static str,
    /// Channels now.
    pub channels: usize,
    /// Channels align would pad it to.
    pub padded_to: usize,
    /// Pin reasons (for pinned dims).
    pub pinned: Vec<String>,
    /// Where the analysis stopped (for unanalysed dims).
    pub unanalysed: Vec<String>,
}

impl Offender {
    /// "node (op) side N channels", as every check output names a dim.
    pub fn what(&self) -> String {
        format!("{} ({}) {} {} channels", self.node, self.op, self.side, self.channels)
    }
}

/// The result of `align check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The multiple.
    pub multiple: usize,
    /// Whether the check passed.
    pub ok: bool,
    /// Free dims that are not multiples.
    pub offenders: Vec<Offender>,
    /// Pinned dims that are not multiples (fail only with --strict).
    pub pinned: Vec<Offender>,
    /// Dims the analysis could not follow that are not multiples (fail).
    pub unanalysed: Vec<Offender>,
}

/// Runs the check on a report.
pub fn check(r: &Report, strict: bool) -> Check {
    let mut offenders = vec![];
    let mut pinned = vec![];
    let mut unanalysed = vec![];
    let mut seen = BTreeSet::new();
    for l in &r.layers {
        for (side, d) in [("in", &l.in_dim), ("out", &l.out_dim)] {
            let Some(d) = d else { continue };
            if d.aligned || !seen.insert((l.node.clone(), side)) {
                continue;
            }
            let o = Offender {
                node: l.node.clone(),
                op: l.op.clone(),
                side,
                channels: d.channels,
                padded_to: d.aligned_to,
                pinned: d.pinned.clone(),
                unanalysed: d.unanalysed.clone(),
            };
            if d.aligned_to != d.channels {
                offenders.push(o);
            } else if d.status() == DimStatus::Unanalysed {
                unanalysed.push(o);
            } else {
                pinned.push(o);
            }
        }
    }
    let ok = offenders.is_empty() && unanalysed.is_empty() && (!strict || pinned.is_empty());
    Check { multiple: r.multiple, ok, offenders, pinned, unanalysed }
}

impl Check {
    /// Human-readable result.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for o in &self.offenders {
            s += &format!("unaligned: {} → {}\n", o.what(), o.padded_to);
        }
        for o in &self.pinned {
            s += &format!("pinned:    {}: {}\n", o.what(), o.pinned.join("; "));
        }
        for o in &self.unanalysed {
            s += &format!("unanalysed: {}: {}\n", o.what(), o.unanalysed.join("; "));
        }
        s += &format!(
            "{}: {} unaligned free channel dim(s), {} unanalysed unaligned, {} pinned unaligned (multiple of {})\n",
            if self.ok { "ok" } else { "FAIL" },
            self.offenders.len(),
            self.unanalysed.len(),
            self.pinned.len(),
            self.multiple
        );
        s
    }
}
