//! The certificate: align's rewrite checked against the original weight by
//! weight, with no inference.
//!
//! Given the original, the rewrite and the rewrite's [`Layout`], every
//! constant the rewrite's nodes read is related to the original's:
//!
//! * Conv / ConvTranspose / Gemm / MatMul weights and biases: each real
//!   value equals the original's, or, for a conv that absorbed a
//!   BatchNormalization, the fold recomputed here in f64 and rounded once
//!   into the weight's type (within 1 ulp of that type); every value at a
//!   padded position is exactly 0.
//! * Per-channel constants of element-wise ops and of a BatchNormalization
//!   left in place: real values equal, padded ones exactly the op's neutral
//!   value (0; 1 for divisors and exponents; BN γ 0, β 0, mean 0, var 1).
//! * Every other constant that keeps its name and shape is bit for bit the
//!   original's.
//!
//! The wiring is checked too: every node of the rewrite has its counterpart
//! in the original (same op, same activation inputs), apart from the Slices
//! `--slice-pinned` inserts; a folded conv's counterpart is the conv the
//! BatchNormalization read. Constants that hold layout (Split sizes, Slice
//! bounds, Resize sizes, Reshape targets, computed shapes) are not values
//! of the network: the run ([`crate::verify`]) checks their effect, and the
//! certificate counts them as *not certified*, by reason.
//!
//! The certificate is cheap (one pass over the weights) and runs on every
//! `align`, `--no-verify` included, so no output is written uncertified.

use crate::analysis::{ChannelMap, RESTORE_SLICE_DOC};
use crate::error::Result;
use crate::layout::Layout;
use crate::onnx::dtype::Elem;
use crate::onnx::{attr_f, attr_i, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::ops::conv::KernelFormat;
use crate::ops::{self, batch_norm, constant, dense, Role};
use crate::tensor::{self, Values};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// What the certificate found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Certificate {
    /// Constants checked against the original.
    pub tensors: usize,
    /// Values checked.
    pub values: u64,
    /// Of the checked constants, those recomputed from a folded BatchNormalization.
    pub folded: usize,
    /// Constants (or nodes) that differ from what the original and the
    /// layout give.
    pub differ: usize,
    /// The first difference, in words.
    pub first: Option<String>,
    /// Constants not certified, by reason (layout constants, ops the
    /// certificate has no rule for).
    pub not_certified: BTreeMap<String, usize>,
    /// Nothing differs.
    pub passed: bool,
}

impl Certificate {
    /// Why the certificate failed, in one line (`None` when it passed).
    pub fn failure_line(&self) -> Option<String> {
        (!self.passed).then(|| format!("certificate: {}", self.first.as_deref().unwrap_or("a constant differs")))
    }

    /// One line for the summary.
    pub fn text(&self) -> String {
        let left: usize = self.not_certified.values().sum();
        let why: Vec<String> = self.not_certified.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!(
            "certificate: {} constants ({} values, {} from folded BNs) checked against the original, {} differ{}{}\n",
            self.tensors,
            self.values,
            self.folded,
            self.differ,
            self.first.as_ref().map(|f| format!("; first: {f}")).unwrap_or_default(),
            if left > 0 { format!("; not certified: {}", why.join(", ")) } else { String::new() }
        )
    }
}

/// Per index of one axis, s·x + t (a folded BatchNormalization; an empty
/// `t` for weights): (axis, s, t).
type Scale<'m> = (usize, &'m [f64], &'m [f64]);

/// How a constant of the rewrite relates to the original's: the axes its
/// channels were re-laid out on, a fold's scale, the padding value.
struct Plan<'m> {
    axes: Vec<(usize, &'m ChannelMap)>,
    scale: Option<Scale<'m>>,
    fill: f64,
}

/// One graph's tensors, indexed.
struct Index<'a> {
    consts: HashMap<&'a str, Cow<'a, TensorProto>>,
    producer: HashMap<&'a str, &'a NodeProto>,
    readers: HashMap<&'a str, Vec<&'a NodeProto>>,
}

impl<'a> Index<'a> {
    fn of(g: &'a GraphProto) -> Index<'a> {
        let mut consts: HashMap<&str, Cow<TensorProto>> =
            g.initializer.iter().map(|t| (t.name(), Cow::Borrowed(t))).collect();
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for n in &g.node {
            if let (Some(o), Some(t)) = (n.output.first(), constant::value_attr(n)) {
                consts.insert(o.as_str(), Cow::Borrowed(t));
            }
            // an Identity of a constant is that constant (the TorchScript
            // exporter shares equal parameters that way: LeViT's two heads'
            // BatchNorm1d statistics)
            if let (true, Some(i), Some(o)) = (ops::is(n, "Identity"), n.input.first(), n.output.first()) {
                if let Some(t) = consts.get(i.as_str()).cloned() {
                    consts.insert(o.as_str(), t);
                }
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.as_str(), n);
            }
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                readers.entry(i.as_str()).or_default().push(n);
            }
        }
        Index { consts, producer, readers }
    }
}

/// How an original conv's outputs were scaled into the rewrite: y = s·x + t
/// per output channel (a folded BatchNormalization).
struct Fold {
    s: Vec<f64>,
    t: Vec<f64>,
}

impl Fold {
    /// This fold followed by `next`: y = s₂·(s₁·x + t₁) + t₂.
    fn then(&self, next: &Fold) -> Fold {
        let s = self.s.iter().zip(&next.s).map(|(a, b)| a * b).collect();
        let t = self.t.iter().zip(&next.s).zip(&next.t).map(|((t1, s2), t2)| t1 * s2 + t2).collect();
        Fold { s, t }
    }
}

fn bn_fold(bn: &NodeProto, o: &Index, range: std::ops::Range<usize>) -> Option<Fold> {
    let get = |i: usize| bn.input.get(i).and_then(|n| o.consts.get(n.as_str())).and_then(|t| tensor::to_f64(t).ok());
    let (g, b, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let eps = attr_f(bn, "epsilon", 1e-5) as f64;
    if range.end > g.len() || b.len() != g.len() || mean.len() != g.len() || var.len() != g.len() {
        return None;
    }
    let s: Vec<f64> = range.clone().map(|i| g[i] / (var[i] + eps).sqrt()).collect();
    let t = range.clone().zip(&s).map(|(i, s)| b[i] - mean[i] * s).collect();
    Some(Fold { s, t })
}

/// Checks `candidate` (align's rewrite of `original` with `layout`).
pub fn certify(original: &ModelProto, candidate: &ModelProto, layout: &Layout) -> Result<Certificate> {
    let empty = GraphProto::default();
    let (ga, gb) = (original.graph.as_ref().unwrap_or(&empty), candidate.graph.as_ref().unwrap_or(&empty));
    let (o, c) = (Index::of(ga), Index::of(gb));
    let mut cert = Certificate::default();
    // --slice-pinned: names of the rewrite that stand for an original tensor
    let mut alias: HashMap<&str, &str> = HashMap::new();
    for n in gb.node.iter().filter(|n| n.doc_string() == RESTORE_SLICE_DOC) {
        if let (Some(i), Some(out)) = (n.input.first(), n.output.first()) {
            if o.producer.contains_key(out.as_str()) && !o.producer.contains_key(i.as_str()) {
                alias.insert(i, out); // the conv renamed to `<name>_padded`, the Slice gives `<name>`
            } else {
                alias.insert(out, i); // readers moved to `<name>_exact`
            }
        }
    }
    let orig_name = |n: &'_ str| -> String { alias.get(n).map_or(n, |a| a).to_string() };
    for n in &gb.node {
        if constant::is_constant(n) || n.doc_string() == RESTORE_SLICE_DOC {
            continue;
        }
        let label = format!("{} '{}'", n.op_type(), if n.name().is_empty() { "" } else { n.name() });
        let Some(out0) = n.output.first().map(|s| orig_name(s)) else { continue };
        // the counterpart: the original node that makes the same tensor,
        // through a folded BatchNormalization where there was one
        let Some(&p) = o.producer.get(out0.as_str()) else {
            fail(&mut cert, format!("{label} makes '{out0}', which the original does not have"));
            continue;
        };
        let (p, fold) = if is_bn(p) && p.op_type() != n.op_type() {
            // one BatchNormalization, or a chain of them, folded into the
            // conv before it
            let mut chain = vec![p];
            let mut q = p.input.first().and_then(|i| o.producer.get(i.as_str())).copied();
            while let Some(b) = q.filter(|b| is_bn(b)) {
                chain.push(b);
                q = b.input.first().and_then(|i| o.producer.get(i.as_str())).copied();
            }
            match q {
                Some(q) if q.op_type() == n.op_type() => {
                    let fold = out_width(q, &o).and_then(|w| {
                        let mut folds = chain.iter().rev().map(|bn| bn_fold(bn, &o, 0..w));
                        let first = folds.next()??;
                        folds.try_fold(first, |acc, f| Some(acc.then(&f?)))
                    });
                    (q, fold)
                }
                _ => {
                    fail(&mut cert, format!("{label} makes '{out0}', which the original's BatchNormalization makes"));
                    continue;
                }
            }
        } else if layout.altered.contains(&out0) {
            // a conv whose BN after a Concat was folded slice by slice
            (p, concat_fold(p, &out0, &o))
        } else {
            (p, None)
        };
        if p.op_type() != n.op_type() {
            fail(&mut cert, format!("{label} makes '{out0}', which the original makes with {}", p.op_type()));
            continue;
        }
        // every input the original gives is still there (a conv may gain
        // the bias of a fold, never lose one)
        if let Some(slot) =
            (0..p.input.len()).find(|&k| !p.input[k].is_empty() && n.input.get(k).is_none_or(|i| i.is_empty()))
        {
            fail(&mut cert, format!("{label} has no input {slot}, which the original gives ('{}')", p.input[slot]));
        }
        // a Gemm that absorbed the BatchNorm1d before it reads the BN's input
        let before = p.input.first().and_then(|i| bn_before(p, i, &o, &c));
        // activation inputs wired as in the original
        for (slot, i) in n.input.iter().enumerate() {
            if i.is_empty() || c.consts.contains_key(i.as_str()) {
                continue;
            }
            let want = p.input.get(slot).map(|s| s.as_str()).unwrap_or("");
            let want = match &before {
                Some((bn, _)) if slot == 0 => bn.input.first().map_or("", |s| s.as_str()),
                _ => want,
            };
            if orig_name(i) != want {
                fail(&mut cert, format!("{label} reads '{i}' at input {slot} where the original reads '{want}'"));
            }
        }
        match &before {
            Some((_, f)) => check_gemm_after_bn(&mut cert, n, p, f, &o, &c, layout, &label, &out0),
            None => check_constants(&mut cert, n, p, fold.as_ref(), &o, &c, layout, &label, &out0),
        }
    }
    cert.passed = cert.differ == 0;
    Ok(cert)
}

/// Output channels of a conv, or output features of a Gemm (from its weight).
fn out_width(conv: &NodeProto, o: &Index) -> Option<usize> {
    let w = o.consts.get(conv.input.get(1)?.as_str())?;
    let d = tensor::dims(w);
    match KernelFormat::of(conv) {
        Some(kf) => kf.out_channels(&d, attr_i(conv, "group", 1).max(1) as usize),
        None if ops::is(conv, "Gemm") && d.len() == 2 => Some(d[1 - dense::weight_in_axis(conv)]),
        None => None,
    }
}

/// Whether `p` is a standard BatchNormalization.
fn is_bn(p: &NodeProto) -> bool {
    ops::role(p) == Some(Role::BatchNorm)
}

/// The fold of the BatchNormalization after the Concat that conv `p`
/// (output `name`) feeds: its slice of the BN's channels.
fn concat_fold(p: &NodeProto, name: &str, o: &Index) -> Option<Fold> {
    let cat = *o.readers.get(name)?.first()?;
    let bn = *o.readers.get(cat.output.first()?.as_str())?.first()?;
    if ops::role(cat) != Some(Role::Concat) || !is_bn(bn) {
        return None;
    }
    let mut start = 0;
    for i in &cat.input {
        let w = out_width(o.producer.get(i.as_str())?, o)?;
        if i == name {
            return bn_fold(bn, o, start..start + w);
        }
        start += w;
    }
    let _ = p;
    None
}

/// The BatchNorm1d that made original input `input` of dense layer `p`,
/// when the rewrite has no such tensor (fold-bn folded the BN into `p`):
/// the BN and its fold.
fn bn_before<'a>(p: &NodeProto, input: &str, o: &'a Index, c: &Index) -> Option<(&'a NodeProto, Fold)> {
    let bn = *o.producer.get(input)?;
    if !ops::is(p, "Gemm") || !is_bn(bn) || c.producer.contains_key(input) {
        return None;
    }
    let k = bn.input.get(1).and_then(|g| o.consts.get(g.as_str())).map(|g| tensor::dims(g).iter().product())?;
    Some((bn, bn_fold(bn, o, 0..k)?))
}

/// A Gemm that absorbed the BatchNorm1d before it (`f`): its weight's input
/// features scaled by s, its bias b + W·t recomputed from the original
/// weight in f64.
#[allow(clippy::too_many_arguments)]
fn check_gemm_after_bn(
    cert: &mut Certificate,
    n: &NodeProto,
    p: &NodeProto,
    f: &Fold,
    o: &Index,
    c: &Index,
    layout: &Layout,
    label: &str,
    out0: &str,
) {
    let om = layout.maps.get(out0);
    let im = n.input.first().and_then(|i| layout.maps.get(i.as_str()));
    let ia = dense::weight_in_axis(p);
    let (Some(ow), Some(cw)) =
        (p.input.get(1).and_then(|w| o.consts.get(w.as_str())), n.input.get(1).and_then(|w| c.consts.get(w.as_str())))
    else {
        return fail(cert, format!("{label}: a Gemm after a folded BatchNormalization has no constant weight"));
    };
    let mut axes: Vec<(usize, &ChannelMap)> =
        [(ia, im), (1 - ia, om)].into_iter().filter_map(|(a, m)| Some((a, m?))).collect();
    axes.sort_by_key(|&(a, _)| a);
    cert.tensors += 1;
    cert.folded += 1;
    match compare(ow, cw, &axes, Some((ia, &f.s, &[])), 0.0) {
        Ok(v) => cert.values += v,
        Err(e) => fail(cert, format!("{label} input 1: {e}")),
    }
    let Some(cb) = n.input.get(2).and_then(|b| c.consts.get(b.as_str())) else {
        return fail(cert, format!("{label}: the fold of a BatchNormalization before it left no bias"));
    };
    let (Ok(wv), k) = (tensor::to_f64(ow), f.s.len()) else { return fail(cert, format!("{label}: unreadable weight")) };
    let nout = wv.len() / k.max(1);
    let b0 = match p.input.get(2).filter(|b| !b.is_empty()).and_then(|b| o.consts.get(b.as_str())) {
        Some(b) => tensor::to_f64(b).unwrap_or_default(),
        None => vec![0.0; nout],
    };
    let at = |r: usize, i: usize| if ia == 1 { wv[r * k + i] } else { wv[i * nout + r] };
    let want: Vec<f64> = (0..nout)
        .map(|r| b0.get(r).copied().unwrap_or(f64::NAN) + (0..k).map(|i| at(r, i) * f.t[i]).sum::<f64>())
        .collect();
    let Ok(ot) = tensor::from_f64("", cb.data_type(), &[nout], &want) else {
        return fail(cert, format!("{label}: bias of an unsupported type"));
    };
    cert.tensors += 1;
    cert.folded += 1;
    match compare(&ot, cb, &om.map(|m| vec![(0, m)]).unwrap_or_default(), None, 0.0) {
        Ok(v) => cert.values += v,
        Err(e) => fail(cert, format!("{label} input 2 (b + W·t of the folded BatchNormalization): {e}")),
    }
}

fn fail(cert: &mut Certificate, what: String) {
    cert.differ += 1;
    if cert.first.is_none() {
        cert.first = Some(what);
    }
}

fn skip(cert: &mut Certificate, why: &str) {
    *cert.not_certified.entry(why.to_string()).or_default() += 1;
}

/// The per-group block of a grouped conv's input map (every block is laid
/// out alike; pad refuses otherwise).
fn block(im: &ChannelMap, g: usize) -> Option<ChannelMap> {
    if g == 1 {
        return Some(im.clone());
    }
    let (cg, pg) = (im.map.len() / g, im.len / g);
    Some(ChannelMap { map: im.map.get(..cg)?.to_vec(), len: pg, axis: im.axis })
}

#[allow(clippy::too_many_arguments)]
fn check_constants(
    cert: &mut Certificate,
    n: &NodeProto,
    p: &NodeProto,
    fold: Option<&Fold>,
    o: &Index,
    c: &Index,
    layout: &Layout,
    label: &str,
    out0: &str,
) {
    let om = layout.maps.get(out0).or_else(|| n.output.first().and_then(|x| layout.maps.get(x.as_str())));
    let im = n.input.first().and_then(|i| layout.maps.get(i.as_str()));
    let (role, kf) = (ops::role(n), KernelFormat::of(n));
    let group = attr_i(p, "group", 1).max(1) as usize;
    for (slot, i) in n.input.iter().enumerate() {
        let Some(ct) = c.consts.get(i.as_str()) else { continue };
        let ot = p.input.get(slot).filter(|s| !s.is_empty()).and_then(|s| o.consts.get(s.as_str()));
        let is_float = tensor::elem(ct).is_some_and(|e| e.is_float());
        let what = format!("{label} input {slot} ('{i}')");
        // a grouped conv's weight sees one block of its input's layout
        let gm: Option<ChannelMap> = match (kf, slot, im) {
            (Some(KernelFormat::Oihw), 1, Some(im)) => {
                let per_group = tensor::dims(ct).get(1).copied().unwrap_or(1);
                (per_group >= 2 || group == 1).then(|| block(im, group)).flatten().filter(|m| !m.is_identity())
            }
            _ => None,
        };
        // which axes are re-laid out, and how each original value maps
        let plan: Option<Plan> = match (kf, role, slot) {
            // a weight: output channels (scaled by a fold) and input channels
            // (one group's block), on the axes of its kernel format
            (Some(kf), _, 1) if kf == KernelFormat::Oihw || group <= 1 => {
                let in_map = if kf == KernelFormat::Oihw { gm.as_ref() } else { im };
                let mut axes: Vec<(usize, &ChannelMap)> =
                    [(kf.o_axis(), om), (kf.i_axis(), in_map)].into_iter().filter_map(|(a, m)| Some((a, m?))).collect();
                axes.sort_by_key(|&(a, _)| a);
                Some(Plan { axes, scale: fold.map(|f| (kf.o_axis(), &f.s[..], &[][..])), fill: 0.0 })
            }
            (Some(_), _, 2) => Some(Plan {
                axes: om.map(|m| vec![(0, m)]).unwrap_or_default(),
                scale: fold.map(|f| (0, &f.s[..], &f.t[..])),
                fill: 0.0,
            }),
            // a dense weight: input features (flattened, or on the input's
            // last axis) and output features (scaled by a fold)
            (_, Some(Role::Dense), 1) => {
                let ia = dense::weight_in_axis(p);
                let mut axes: Vec<(usize, &ChannelMap)> =
                    [(ia, im), (1 - ia, om)].into_iter().filter_map(|(a, m)| Some((a, m?))).collect();
                axes.sort_by_key(|&(a, _)| a);
                Some(Plan { axes, scale: fold.map(|f| (1 - ia, &f.s[..], &[][..])), fill: 0.0 })
            }
            // a Gemm's bias that absorbed a fold: s·x + t per feature
            (_, Some(Role::Dense), 2) if fold.is_some() => {
                let last = tensor::dims(ct).len().saturating_sub(1);
                Some(Plan {
                    axes: om.map(|m| vec![(last, m)]).unwrap_or_default(),
                    scale: fold.map(|f| (last, &f.s[..], &f.t[..])),
                    fill: 0.0,
                })
            }
            (_, Some(Role::BatchNorm), _) => batch_norm::PARAM_FILL
                .iter()
                .find(|&&(s, _)| s == slot)
                .map(|&(_, fill)| Plan { axes: om.map(|m| vec![(0, m)]).unwrap_or_default(), scale: None, fill }),
            _ => None,
        };
        // a conv without a bias in the original that got one from the fold
        let zeros;
        let folded_bias = kf.is_some() || role == Some(Role::Dense);
        let ot = match (ot, folded_bias, slot) {
            (None, true, 2) if fold.is_some() => {
                let w = fold.map_or(0, |f| f.s.len());
                zeros = TensorProto {
                    dims: vec![w as i64],
                    data_type: Some(1),
                    float_data: vec![0.0; w],
                    ..Default::default()
                };
                Some(Cow::Borrowed(&zeros))
            }
            (Some(t), ..) => Some(Cow::Borrowed(t.as_ref())),
            (None, ..) => None,
        };
        let Some(ot) = ot else {
            skip(cert, "constants the original computes (layout, shapes)");
            continue;
        };
        let plan = match plan {
            Some(p) => Some(p),
            None if tensor::dims(&ot) == tensor::dims(ct) => Some(Plan { axes: vec![], scale: None, fill: 0.0 }),
            None => per_channel_plan(n, slot, &ot, ct, om),
        };
        // integers are layout (Split sizes, Slice bounds, Reshape targets,
        // Resize sizes): padding rewrites them, and the run checks their effect
        if !is_float {
            if ot.as_ref() != ct.as_ref() {
                skip(cert, "layout constants (sizes, bounds, targets)");
            }
            continue;
        }
        let Some(Plan { axes, scale, fill }) = plan else {
            skip(cert, "re-laid-out constants with no rule");
            continue;
        };
        cert.tensors += 1;
        if scale.is_some() {
            cert.folded += 1;
        }
        match compare(&ot, ct, &axes, scale, fill) {
            Ok(k) => cert.values += k,
            Err(e) => fail(cert, format!("{what}: {e}")),
        }
        release(&ot, ct);
    }
}

/// A per-channel constant of an element-wise op padded on the one axis
/// whose length changed: padded with the op's neutral value.
fn per_channel_plan<'m>(
    n: &NodeProto,
    slot: usize,
    ot: &TensorProto,
    ct: &TensorProto,
    om: Option<&'m ChannelMap>,
) -> Option<Plan<'m>> {
    let (od, cd) = (tensor::dims(ot), tensor::dims(ct));
    if od.len() != cd.len() {
        return None;
    }
    let changed: Vec<usize> = (0..od.len()).filter(|&k| od[k] != cd[k]).collect();
    let om = om?;
    if changed.len() != 1 || od[changed[0]] != om.map.len() || cd[changed[0]] != om.len {
        return None;
    }
    let fill = crate::ops::entry(n)?.role.neutral(slot)?;
    Some(Plan { axes: vec![(changed[0], om)], scale: None, fill })
}

/// Compares candidate `ct` with original `ot` re-laid out on `axes`,
/// original values optionally scaled per index of one axis (`s`, plus `t`
/// when given: s·x + t) and rounded once into the candidate's type; padded
/// positions must hold exactly `fill`. Returns the values checked.
fn compare(
    ot: &TensorProto,
    ct: &TensorProto,
    axes: &[(usize, &ChannelMap)],
    scale: Option<Scale>,
    fill: f64,
) -> std::result::Result<u64, String> {
    let (od, cd) = (tensor::dims(ot), tensor::dims(ct));
    let mut want = od.clone();
    for &(a, m) in axes {
        if a >= want.len() || want[a] != m.map.len() {
            return Err(format!("has dims {od:?} in the original, which the layout does not lay out on axis {a}"));
        }
        want[a] = m.len;
    }
    if want != cd {
        return Err(format!("has dims {cd:?} where {want:?} was expected"));
    }
    let elem = tensor::elem(ct).ok_or("has an element type the certificate cannot read")?;
    let (ov, cv) = (Values::of(ot).map_err(|e| e.msg)?, Values::of(ct).map_err(|e| e.msg)?);
    if ov.len() != od.iter().product::<usize>() || cv.len() != cd.iter().product::<usize>() {
        return Err("holds fewer values than its dims declare".into());
    }
    let rank = cd.len();
    // physical → logical per axis (None: a padded position)
    let mut inv: Vec<Option<Vec<Option<usize>>>> = vec![None; rank];
    for &(a, m) in axes {
        let mut v = vec![None; m.len];
        for (l, &ph) in m.map.iter().enumerate() {
            v[ph] = Some(l);
        }
        inv[a] = Some(v);
    }
    // the re-laid-out axes (and the scaled one) lead; the axes after them
    // are the same in both tensors and contiguous. The last leading axis is
    // walked in runs: consecutive positions that are all padding, or real
    // channels in the original's order, are one contiguous block in both
    // tensors (a conv weight is a few runs per output channel, not one
    // block per input channel)
    let split = axes.iter().map(|&(a, _)| a + 1).chain(scale.map(|(a, ..)| a + 1)).max().unwrap_or(0);
    let inner: usize = cd[split..].iter().product();
    let last = split.checked_sub(1);
    let runs: Vec<(usize, Option<usize>, usize)> = match last {
        None => vec![(0, Some(0), 1)],
        Some(l) => {
            let mut runs: Vec<(usize, Option<usize>, usize)> = vec![];
            for ph in 0..cd[l] {
                let lo = inv[l].as_ref().map_or(Some(ph), |v| v[ph]);
                match runs.last_mut() {
                    Some((_, prev, len)) if prev.map(|p| p + *len) == lo || (prev.is_none() && lo.is_none()) => {
                        *len += 1
                    }
                    _ => runs.push((ph, lo, 1)),
                }
            }
            runs
        }
    };
    let ostride: Vec<usize> = (0..split).map(|k| od[k + 1..].iter().product()).collect();
    let outer_axes = last.unwrap_or(0);
    let n_outer: usize = cd[..outer_axes].iter().product();
    for outer in 0..n_outer {
        // the position on the axes before the last leading one
        let (mut rest, mut obase, mut real, mut channel) = (outer, 0, true, 0);
        for k in (0..outer_axes).rev() {
            let x = rest % cd[k];
            rest /= cd[k];
            match inv[k].as_ref().map_or(Some(x), |v| v[x]) {
                Some(l) => {
                    obase += l * ostride[k];
                    if scale.is_some_and(|(a, ..)| a == k) {
                        channel = l;
                    }
                }
                None => real = false,
            }
        }
        let cbase = outer * cd.get(outer_axes).copied().unwrap_or(1) * inner;
        for &(ph, lo, len) in &runs {
            let ci0 = cbase + ph * inner;
            let block = len * inner;
            match lo.filter(|_| real) {
                None => check_fill(&cv, ci0, block, fill)?,
                Some(l) => {
                    let oi0 = obase + last.map_or(0, |la| l * ostride[la]);
                    // the scale's channel: fixed by an outer axis, or stepping with the last
                    let per = match (scale, last) {
                        (Some((a, ..)), Some(la)) if a == la => Some((l, inner)),
                        _ => None,
                    };
                    check_real(&cv, &ov, ci0, oi0, block, scale, channel, per, elem)?;
                }
            }
        }
    }
    Ok(cv.len() as u64)
}

/// Padded positions `ci0..ci0 + block` of the candidate hold exactly `fill`.
fn check_fill(cv: &Values, ci0: usize, block: usize, fill: f64) -> std::result::Result<(), String> {
    if let Values::Raw(cb, e) = cv {
        let r = ci0 * e.size()..(ci0 + block) * e.size();
        if fill == 0.0 && cb[r].iter().all(|&b| b == 0) {
            return Ok(()); // +0.0 everywhere, at memory speed
        }
    }
    match (ci0..ci0 + block).find(|&i| cv.get(i) != fill) {
        Some(i) => Err(format!("holds {} at padded position {i} where exactly {fill} belongs", cv.get(i))),
        None => Ok(()),
    }
}

/// Real positions `ci0..ci0 + block` of the candidate against the
/// original's `oi0..`: bit for bit, or for a fold `s·x + t` recomputed in
/// f64 and rounded once, within 1 ulp. The fold's channel is `channel`, or
/// with `per = (first, inner)` it steps every `inner` elements from `first`.
#[allow(clippy::too_many_arguments)]
fn check_real(
    cv: &Values,
    ov: &Values,
    ci0: usize,
    oi0: usize,
    block: usize,
    scale: Option<Scale>,
    channel: usize,
    per: Option<(usize, usize)>,
    elem: Elem,
) -> std::result::Result<(), String> {
    let ch = |i: usize| per.map_or(channel, |(first, inner)| first + i / inner);
    if let (Values::Raw(cb, e), Values::Raw(ob, f)) = (cv, ov) {
        let (cs, os) = (&cb[ci0 * e.size()..(ci0 + block) * e.size()], &ob[oi0 * f.size()..(oi0 + block) * f.size()]);
        match scale {
            None if e == f && cs == os => return Ok(()), // bit for bit, at memory speed
            Some((_, s, t)) if (*e, *f) == (Elem::F32, Elem::F32) => {
                // one channel's elements at a time: its factor is fixed there
                let (first, step) = per.unwrap_or((channel, block.max(1)));
                let ok = cs.chunks(4 * step).zip(os.chunks(4 * step)).enumerate().all(|(j, (cc, oc))| {
                    let (sk, tk) = (s[first + j], t.get(first + j).copied().unwrap_or(0.0));
                    folded_f32_close(cc, oc, sk, tk)
                });
                if ok {
                    return Ok(());
                } // else the general loop names the element
            }
            _ => {}
        }
    }
    for i in 0..block {
        let (c, x) = (cv.get(ci0 + i), ov.get(oi0 + i));
        match scale {
            None => {
                if c != x && !(c.is_nan() && x.is_nan()) {
                    return Err(format!("holds {c} at {} where the original holds {x}", ci0 + i));
                }
            }
            Some((_, s, t)) => {
                let k = ch(i);
                let e = round_to(x * s[k] + t.get(k).copied().unwrap_or(0.0), elem);
                if (c - e).abs() > ulp(e, elem) {
                    return Err(format!(
                        "holds {c} at {} where the BatchNormalization fold gives {e} (original {x}, scale {})",
                        ci0 + i,
                        s[k]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Candidate f32 bytes `c` hold the fold `s·x + t` of original f32 bytes
/// `o`, recomputed in f64 and rounded once, within 1 ulp: first tested for
/// exact equality over the whole run (vectorised; the usual case, as the
/// fold is computed the same way), then element by element.
fn folded_f32_close(c: &[u8], o: &[u8], s: f64, t: f64) -> bool {
    fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
        b.chunks_exact(4).map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }
    let want = |x: f32| (x as f64 * s + t) as f32;
    let exact = f32s(c).zip(f32s(o)).fold(true, |ok, (c, x)| ok & (c == want(x)));
    exact
        || f32s(c).zip(f32s(o)).all(|(c, x)| {
            let w = want(x);
            c == w || ((c - w).abs() as f64) <= ulp(w as f64, Elem::F32)
        })
}

/// Hands back the mapped pages of both tensors once they are checked (the
/// certificate must not keep the whole original resident).
fn release(ot: &TensorProto, ct: &TensorProto) {
    for t in [ot, ct] {
        if let Some(raw) = &t.raw_data {
            crate::onnx::mapped::release(raw);
        }
    }
}

fn round_to(x: f64, e: Elem) -> f64 {
    match e {
        Elem::F32 => x as f32 as f64,
        Elem::F16 => half::f16::from_f64(x).to_f64(),
        Elem::BF16 => half::bf16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// One unit in the last place of `x` in type `e`.
fn ulp(x: f64, e: Elem) -> f64 {
    match e {
        Elem::F32 => {
            // 2^(exponent − 23): the spacing of f32 values at |x| (the larger
            // one, towards infinity, at a power of two); subnormals 2^−149
            let bits = (x as f32).abs().to_bits() & 0x7f80_0000;
            if bits == 0 {
                2f64.powi(-149)
            } else {
                f32::from_bits(bits) as f64 * 2f64.powi(-23)
            }
        }
        Elem::F16 => (x.abs() * 2f64.powi(-10)).max(2f64.powi(-24)),
        Elem::BF16 => (x.abs() * 2f64.powi(-7)).max(f64::MIN_POSITIVE),
        _ => (x.abs() * f64::EPSILON).max(f64::MIN_POSITIVE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Model;
    use crate::passes::{self, Options, Pass};
    use crate::testutil::{int_attr, Builder};

    /// conv 5→7 → BN → Relu → conv 7→6 → Concat with a conv 7→3 (so both
    /// folds and padding happen), and align's rewrite of it with its layout.
    fn rewritten() -> (ModelProto, ModelProto, Layout) {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, false);
        let y = b.bn(&c, 7);
        let r = b.unary("Relu", &y);
        let c2 = b.conv(&r, 7, 6, 1, 1, true);
        let c3 = b.conv(&r, 7, 3, 3, 1, true);
        let cat = b.node("Concat", &[&c2, &c3], 1, vec![int_attr("axis", 1)]).remove(0);
        let out = b.conv(&cat, 9, 4, 1, 1, true);
        b.output(&out, &[1, 4, 8, 8]);
        let original = b.model();
        let mut m = Model::import(original.clone()).unwrap();
        let (_, layout) = passes::rewrite(&mut m, &Pass::all(), &Options::default()).unwrap();
        (original, m.export(), layout)
    }

    fn init(m: &mut ModelProto, node: usize, slot: usize) -> &mut TensorProto {
        let g = m.graph.as_mut().unwrap();
        let name = g.node[node].input[slot].clone();
        g.initializer.iter_mut().find(|t| t.name() == name).unwrap()
    }

    fn edit(t: &mut TensorProto, f: impl FnOnce(&mut Vec<f64>)) {
        let mut v = tensor::to_f64(t).unwrap();
        f(&mut v);
        *t = tensor::rewrite(t, &tensor::dims(t), &v).unwrap();
    }

    #[test]
    fn align_s_own_rewrite_is_certified() {
        let (a, b, l) = rewritten();
        let c = certify(&a, &b, &l).unwrap();
        assert!(c.passed, "{}", c.text());
        assert!(c.folded >= 2, "the folded conv's weight and bias: {}", c.text());
        assert!(c.tensors >= 8 && c.values > 500, "{}", c.text());
    }

    #[test]
    fn a_wrong_weight_a_wrong_padding_or_a_dropped_bias_is_named() {
        let (a, b, l) = rewritten();
        // one real weight of the folded conv off by 2 ulps
        let mut m = b.clone();
        edit(init(&mut m, 0, 1), |v| v[0] = (v[0] as f32).next_up().next_up() as f64);
        let c = certify(&a, &m, &l).unwrap();
        assert!(!c.passed && c.first.as_ref().unwrap().contains("fold gives"), "{}", c.text());
        // ... by 1 ulp is the rounding the fold allows
        let mut m = b.clone();
        edit(init(&mut m, 0, 1), |v| v[0] = (v[0] as f32).next_up() as f64);
        assert!(certify(&a, &m, &l).unwrap().passed);
        // a padded filter given a bias
        let mut m = b.clone();
        edit(init(&mut m, 0, 2), |v| *v.last_mut().unwrap() = 1.0);
        let c = certify(&a, &m, &l).unwrap();
        assert!(!c.passed && c.first.as_ref().unwrap().contains("padded position"), "{}", c.text());
        // the last conv's bias dropped
        let mut m = b.clone();
        let g = m.graph.as_mut().unwrap();
        let last = g.node.iter_mut().rev().find(|n| n.op_type() == "Conv").unwrap();
        last.input.truncate(2);
        let c = certify(&a, &m, &l).unwrap();
        assert!(!c.passed && c.first.as_ref().unwrap().contains("has no input 2"), "{}", c.text());
        // a conv reading another tensor than in the original
        let mut m = b.clone();
        let g = m.graph.as_mut().unwrap();
        let x = g.node[0].output[0].clone();
        let last = g.node.iter_mut().rev().find(|n| n.op_type() == "Conv").unwrap();
        last.input[0] = x;
        let c = certify(&a, &m, &l).unwrap();
        assert!(!c.passed && c.first.as_ref().unwrap().contains("where the original reads"), "{}", c.text());
    }
}
