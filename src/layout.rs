//! The correspondence between a model and its padded rewrite: for every
//! tensor the rewrite keeps, where its real channels sit in the rewrite and
//! what its padded channels must hold.
//!
//! The pad pass produces it from the channel analysis it padded by
//! ([`Layout::of`]); `align verify` re-derives it from the original
//! ([`derive`]) when it meets a candidate with no record of how it was made.
//! Verification reads it to compare every kept tensor of the original with
//! the same tensor of the candidate, channel by channel, instead of the
//! graph outputs alone.

use crate::analysis::{Analysis, ChannelMap};
use crate::error::Result;
use crate::ir::{Model, Outlet};
use crate::onnx::ModelProto;
use crate::ops::{Fill, FillCx};
use crate::passes::{self, Options, Pass};
use std::collections::{HashMap, HashSet};

/// Where each kept tensor's channels are in a padded rewrite.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Tensor name → logical → physical map of its axis 1 (only tensors
    /// the rewrite padded; every other kept tensor has the original's shape).
    pub maps: HashMap<String, ChannelMap>,
    /// Padded tensors whose padded channels must hold exactly 0 (zero
    /// filters, then ops that map 0 to 0); the others must be finite.
    pub zero_padded: HashSet<String>,
    /// Padded tensors whose padded channels hold f(0) ≠ 0 of the op that
    /// made them from exact zeros (a Sigmoid's 0.5, a HardSigmoid's β).
    pub padded_values: HashMap<String, f64>,
    /// Tensor names whose values a pass changed on purpose (a conv that
    /// absorbed a BatchNormalization after a Concat keeps its output name):
    /// they are not the original's tensor and are not compared.
    pub altered: HashSet<String>,
    /// How the layout was obtained, for the report.
    pub source: String,
}

impl Layout {
    /// The layout the analysis `a` of model `m` gives (the model the pad
    /// pass is about to rewrite), with the tensors passes altered.
    pub fn of(m: &Model, a: &Analysis, altered: &HashSet<String>, source: &str) -> Layout {
        let mut maps = HashMap::new();
        let mut padded: HashSet<Outlet> = HashSet::new();
        for n in m.ops() {
            for slot in 0..m.output_names(n).len() {
                let o = Outlet { node: n, slot };
                if let Some(cm) = a.channel_map(o).or_else(|| a.flat_map(o)).filter(|c| !c.is_identity()) {
                    maps.insert(m.tensor_name(o).to_string(), cm);
                    padded.insert(o);
                }
            }
        }
        // what padded channels hold, op by op in topological order, by each
        // op's fill rule: exact zeros (`zero`, with every output of an op
        // that writes zeros whatever it reads) or an op's f(0)
        let mut zero: HashSet<Outlet> = HashSet::new();
        let mut padded_values = HashMap::new();
        for n in m.toposort() {
            let Some(p) = m.op(n) else { continue };
            let Some(e) = crate::ops::entry(p) else { continue };
            let rank = a.shapes.get(&Outlet { node: n, slot: 0 }).map_or(0, |s| s.len());
            let first_padded = (0..m.n_inputs(n)).filter_map(|s| m.input(n, s)).find(|o| padded.contains(o));
            let first_map = first_padded.and_then(|o| maps.get(m.tensor_name(o)));
            let channels = first_map.map(|c: &ChannelMap| (c.map.len(), c.axis));
            let fill = e.rules.fill(&FillCx {
                m,
                n,
                p,
                zero: &|o| zero.contains(&o),
                padded: &|o| padded.contains(&o),
                zero_const: &|o| zero_or_per_channel(m, o, channels, rank),
            });
            let outs = (0..m.output_names(n).len()).map(|slot| Outlet { node: n, slot });
            match fill {
                Some(Fill::Zeros) => zero.extend(outs),
                Some(Fill::Zero) => zero.extend(outs.filter(|o| padded.contains(o))),
                Some(Fill::Value(v)) if padded.contains(&Outlet { node: n, slot: 0 }) => {
                    padded_values.insert(m.tensor_name(Outlet { node: n, slot: 0 }).to_string(), v);
                }
                _ => {}
            }
        }
        let zero_padded = zero.iter().filter(|o| padded.contains(o)).map(|&o| m.tensor_name(o).to_string()).collect();
        Layout { maps, zero_padded, padded_values, altered: altered.clone(), source: source.to_string() }
    }

    /// The candidate's channel count of `name` under this layout (`None`:
    /// the layout does not pad it).
    pub fn padded_width(&self, name: &str) -> Option<usize> {
        self.maps.get(name).map(|c| c.len)
    }
}

/// A constant operand that puts 0 in padded channels: all zeros, or a
/// per-channel constant (the pad pass pads it with 0 for these ops).
/// Per channel means as the pad pass reads it: the constant's axis aligned
/// with the channel axis (`channels`: count, axis) of the (rank `rank`)
/// output holds the channel count.
fn zero_or_per_channel(m: &Model, o: Outlet, channels: Option<(usize, usize)>, rank: usize) -> bool {
    let Some(t) = m.const_value(o) else { return false };
    let d = crate::tensor::dims(&t);
    let per_channel = channels.is_some_and(|(c, axis)| {
        let at = (d.len() + axis).checked_sub(rank);
        c > 1 && at.and_then(|a| d.get(a)) == Some(&c)
    });
    per_channel || crate::tensor::to_f64(&t).is_ok_and(|v| v.iter().all(|&x| x == 0.0))
}

/// One way align could have rewritten a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The channel multiple.
    pub multiple: usize,
    /// `--slice-pinned`.
    pub slice_pinned: bool,
}

/// The settings [`derive`] tries, most common first.
pub const SETTINGS: [Setting; 6] = [
    Setting { multiple: 8, slice_pinned: false },
    Setting { multiple: 16, slice_pinned: false },
    Setting { multiple: 32, slice_pinned: false },
    Setting { multiple: 8, slice_pinned: true },
    Setting { multiple: 16, slice_pinned: true },
    Setting { multiple: 32, slice_pinned: true },
];

/// `original` as the pad pass would meet it: fold-bn and deconv run on a
/// copy (weights are shared and scales deferred, so nothing is rewritten)
/// and shape arithmetic folded.
fn prepare(original: &ModelProto, input_shapes: &HashMap<String, Vec<i64>>) -> Result<(Model, Options)> {
    let mut m = Model::import(original.clone())?;
    let opts = Options { input_shapes: input_shapes.clone(), ..Options::default() };
    passes::run(&mut m, &[Pass::FoldBn, Pass::Deconv], &opts)?;
    crate::ir::fold_shapes::fold(&mut m)?;
    Ok((m, opts))
}

/// The layout align's pad pass gives the prepared model `m` under `setting`.
fn layout_for(m: &Model, opts: &Options, setting: Setting) -> Result<Layout> {
    let opts = Options { multiple: setting.multiple, slice_pinned: setting.slice_pinned, ..opts.clone() };
    let a = Analysis::run(m, &opts)?;
    let source = format!(
        "re-derived from the original (multiple {}{})",
        setting.multiple,
        if setting.slice_pinned { ", --slice-pinned" } else { "" }
    );
    Ok(Layout::of(m, &a, &m.altered, &source))
}

/// Re-derives how align would lay out `original` for `setting`.
pub fn derive_for(original: &ModelProto, setting: Setting, input_shapes: &HashMap<String, Vec<i64>>) -> Result<Layout> {
    let (m, opts) = prepare(original, input_shapes)?;
    layout_for(&m, &opts, setting)
}

/// The layout of the align rewrite of `original` that best explains the
/// candidate's channel widths (`widths`: tensor name → its dims, as the
/// candidate has them). When no setting pads anything the candidate
/// pads, tensors are matched by name and shape alone, still leaving out
/// those align's folding would have altered.
pub fn derive(
    original: &ModelProto,
    widths: &HashMap<String, Vec<usize>>,
    input_shapes: &HashMap<String, Vec<i64>>,
) -> Layout {
    let Ok((m, opts)) = prepare(original, input_shapes) else {
        return Layout { source: "names and shapes".into(), ..Layout::default() };
    };
    let mut best: Option<(i64, Layout)> = None;
    for s in SETTINGS {
        let Ok(l) = layout_for(&m, &opts, s) else { continue };
        let score: i64 = l
            .maps
            .iter()
            .filter_map(|(name, cm)| widths.get(name).map(|d| if d.get(cm.axis) == Some(&cm.len) { 1 } else { -1 }))
            .sum();
        if score > 0 && best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, l));
        }
    }
    best.map(|(_, l)| l).unwrap_or_else(|| Layout {
        altered: m.altered.clone(),
        source: "names and shapes".into(),
        ..Layout::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{int_attr, Builder};

    #[test]
    fn padded_channels_are_promised_zero_only_where_zero_stays_zero() {
        // conv → Sigmoid (0.5 in padded channels) and conv → Mul(x, Sigmoid(x))
        // (SiLU: 0) → Relu (0) → Concat with the Sigmoid (mixed) → conv
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c = b.conv("x", 3, 5, 3, 1, true);
        let s = b.unary("Sigmoid", &c);
        let silu = b.node("Mul", &[&c, &s], 1, vec![]).remove(0);
        let r = b.unary("Relu", &silu);
        let cat = b.node("Concat", &[&r, &s], 1, vec![int_attr("axis", 1)]).remove(0);
        let out = b.conv(&cat, 10, 4, 1, 1, true);
        b.output(&out, &[1, 4, 8, 8]);
        let m = Model::import(b.model()).unwrap();
        let a = Analysis::run(&m, &Options::default()).unwrap();
        let l = Layout::of(&m, &a, &HashSet::new(), "test");
        for t in [&c, &silu, &r] {
            assert!(l.maps.contains_key(t.as_str()) && l.zero_padded.contains(t.as_str()), "{t}: {l:?}");
        }
        for t in [&s, &cat] {
            assert!(l.maps.contains_key(t.as_str()) && !l.zero_padded.contains(t.as_str()), "{t}: {l:?}");
        }
        // the Sigmoid's padded channels hold σ(0) = 0.5; the Concat's mix 0 and 0.5
        assert_eq!(l.padded_values.get(s.as_str()), Some(&0.5), "{l:?}");
        assert!(!l.padded_values.contains_key(cat.as_str()), "{l:?}");
        assert_eq!(l.maps[c.as_str()].len, 8);
        assert_eq!(l.maps[cat.as_str()].len, 16);
    }
}
