//! Ops that keep the data and change only the dims: Reshape, Flatten,
//! Squeeze and Unsqueeze. Their values are their input's elements under the
//! new dims.

use super::{const_axes, zero_if, Cx, Fill, FillCx, FoldCx, Rules};
use crate::analysis::{ChannelCx, Flat};
use crate::error::Error;
use crate::error::Result;
use crate::ir::shapes::{axis, product, Shape};
use crate::ir::values::{numel, Value};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::{attr_i, attr_ints, TensorProto};
use crate::passes::pad::PadCx;
use crate::tensor;
use std::borrow::Cow;

/// Reshape to a target that may be partly known (a symbolic batch read by
/// Shape); `0` copies the input dim (unless `allowzero`), `-1` is inferred.
#[derive(Debug)]
pub struct Reshape;

impl Rules for Reshape {
    /// Reshape to [N, C·H·W] before a dense layer: a constant target that spells
    /// the feature count out gets the padded count (0 and -1 need nothing);
    /// so does the target of a Reshape that moves features (below).
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let out = Outlet { node: cx.n, slot: 0 };
        let flat = cx.a.flat_map(out).is_some();
        if let Some(om) = cx.out_map(0).filter(|c| !c.is_identity() && !flat) {
            let Some(mut target) = cx.m.input_const(cx.n, 1).and_then(|t| tensor::to_i64(&t).ok()) else {
                return Err(Error::model("a Reshape moving padded features has a computed target"));
            };
            if target.get(om.axis) == Some(&(om.map.len() as i64)) {
                target[om.axis] = om.len as i64;
                cx.set_ints(1, &target)?;
            }
            return Ok(());
        }
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let Some(fm) = a.flat_map(Outlet { node: n, slot: 0 }).filter(|c| !c.is_identity()) else {
            return Ok(());
        };
        let Some(t) = m.input_const(n, 1).map(|t| t.into_owned()) else {
            return Err(Error::model("Reshape before a dense layer has a computed target"));
        };
        let mut target = tensor::to_i64(&t)?;
        if target.len() == 2 && target[1] > 0 {
            target[1] = fm.len as i64;
            let nt = tensor::rewrite(&t, &[2], &target.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
            m.replace_input_const(n, 1, nt);
        }
        Ok(())
    }

    /// A Reshape to [N, C·H·W] feeding only dense layers flattens. A
    /// Reshape keeping a feature axis whole (onnxslim's `[N, H, W, C]` →
    /// `[N·H·W, C]` around a Gemm, and back) moves the features to it; so
    /// does one keeping the channels whole (LeViT's `x.flatten(2)` of its
    /// stem: `[N, C, H, W]` → `[N, C, H·W]`).
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        if cx.input(0).is_some_and(|x| cx.is_feature(x)) {
            return Ok(move_features(cx));
        }
        Ok(flatten_for_dense(cx) || (keeps_channels(cx) && move_features(cx)))
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// The same values, other dims.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let shape: Vec<Option<i64>> = match cx.value(1) {
            Some(v) => v.data.iter().map(|d| d.map(|d| d as i64)).collect(),
            None => cx.ints(1)?.into_iter().map(Some).collect(),
        };
        let allow_zero = attr_i(cx.p, "allowzero", 0) == 1;
        let mut out: Shape = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match d {
                Some(0) if !allow_zero => x.get(i).copied().flatten(),
                Some(d) if d < 0 => None,
                d => d,
            })
            .collect();
        if let Some(neg) = shape.iter().position(|&d| d == Some(-1)) {
            // An unknown leading dim of the target facing the input's
            // unknown leading dim is taken as the same (symbolic) batch:
            // it cancels out of the element count.
            let batch = x.first() == Some(&None) && out.first() == Some(&None) && neg != 0;
            let skip = usize::from(batch);
            let total = product(&x[skip.min(x.len())..]);
            let known = out
                .iter()
                .enumerate()
                .skip(skip)
                .filter(|(i, _)| *i != neg)
                .try_fold(1i64, |a, (_, v)| v.and_then(|v| a.checked_mul(v)));
            out[neg] = match (total, known) {
                (Some(t), Some(k)) if k > 0 && t % k == 0 => Some(t / k),
                _ => None,
            };
        }
        Some(cx.one(out))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        let own = cx.shapes.get(&Outlet { node: cx.n, slot: 0 }).cloned();
        let o = own.or_else(|| {
            let t = cx.value(1)?.ints()?;
            let known = t
                .iter()
                .enumerate()
                .filter(|(_, &d)| d != -1)
                .try_fold(1i64, |acc, (i, &d)| acc.checked_mul(if d == 0 { *v.dims.get(i)? as i64 } else { d }))?;
            let total = v.data.len() as i64;
            Some(
                t.iter()
                    .enumerate()
                    .map(|(i, &d)| match d {
                        -1 => (known > 0).then(|| total / known),
                        0 => v.dims.get(i).map(|&d| d as i64),
                        d => Some(d),
                    })
                    .collect(),
            )
        })?;
        regroup(v, &o)
    }

    /// A small constant under a constant target of positive dims holding
    /// as many elements.
    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        cx.regroup(None, |_, len| {
            let shape = tensor::to_i64(&*cx.m.input_const(cx.n, 1)?).ok()?;
            if shape.iter().any(|&d| d <= 0) {
                return None;
            }
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            (dims.iter().try_fold(1usize, |a, &x| a.checked_mul(x)) == Some(len)).then_some(dims)
        })
    }
}

/// Flatten at `axis`: `[product(dims before), product(dims from)]`.
#[derive(Debug)]
pub struct Flatten;

/// The two dims Flatten makes of `x`.
fn flatten(cx: &Cx, x: &[Option<i64>]) -> Option<Shape> {
    let a = axis(attr_i(cx.p, "axis", 1), x.len() + 1)?;
    Some(vec![product(&x[..a]), product(&x[a..])])
}

impl Rules for Flatten {
    /// Flatten at axis 1 of an activation feeding only dense layers: the
    /// features are channel-major, so the dense weight absorbs the layout.
    /// A Flatten keeping a feature axis whole (LeViT's LinearNorm:
    /// `[N, T, C]` → `[N·T, C]` for a BatchNorm1d) moves the features to it.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        if cx.input(0).is_some_and(|x| cx.is_feature(x)) {
            return Ok(keep_features_whole(cx));
        }
        Ok(attr_i(cx.p, "axis", 1) == 1 && flatten_for_dense(cx))
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        Some(cx.one(flatten(cx, cx.shape(0)?)?))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        regroup(v, &flatten(cx, &known(v))?)
    }
}

/// Squeeze and Unsqueeze (axes an attribute before opset 13, input 1 from 13).
#[derive(Debug)]
pub struct Squeeze;

impl Rules for Squeeze {
    /// Features on an axis neither removed nor inserted keep their space,
    /// on the axis they land on (attention's q, k, v squeezed out of a
    /// Split); anything else stops the analysis as before.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        Ok(keep_features_whole(cx))
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// The same values, other dims.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        Some(cx.one(unsqueeze_shape(cx.m, cx.n, cx.shape(0)?)?))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        regroup(v, &unsqueeze_shape(cx.m, cx.n, &known(v))?)
    }

    /// A small constant with 1s inserted at (Unsqueeze), or dims of 1
    /// removed from (Squeeze), its constant axes. Unlike the value rule,
    /// Squeeze keeps a listed dim that is not 1.
    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        let axes = || -> Option<Vec<i64>> {
            if cx.m.opset() >= 13 {
                cx.m.input(cx.n, 1).and_then(|_| cx.m.input_const(cx.n, 1)).and_then(|a| tensor::to_i64(&a).ok())
            } else {
                Some(attr_ints(cx.p, "axes"))
            }
        };
        let unsqueeze = cx.p.op_type() == "Unsqueeze";
        cx.regroup(None, |mut dims, _| {
            if unsqueeze {
                let mut ax = axes()?;
                let r = (dims.len() + ax.len()) as i64;
                ax.iter_mut().for_each(|a| *a = if *a < 0 { *a + r } else { *a });
                ax.sort();
                for a in ax {
                    dims.insert(usize::try_from(a).ok().filter(|&a| a <= dims.len())?, 1);
                }
                return Some(dims);
            }
            let ax = axes().filter(|a| !a.is_empty());
            let r = dims.len() as i64;
            let listed = |i: usize| ax.as_ref().is_none_or(|a| a.iter().any(|&x| (x + r) % r == i as i64));
            Some(dims.iter().enumerate().filter(|&(i, &d)| !(d == 1 && listed(i))).map(|(_, &d)| d).collect())
        })
    }
}

/// The dims of a value as a shape.
fn known(v: &Value) -> Shape {
    v.dims.iter().map(|&d| Some(d as i64)).collect()
}

/// `v`'s elements under dims `o`, if they are all known and hold as many.
fn regroup(v: &Value, o: &[Option<i64>]) -> Option<Value> {
    let dims: Vec<usize> = o.iter().map(|d| d.and_then(|d| usize::try_from(d).ok())).collect::<Option<_>>()?;
    (numel(&dims)? == v.data.len()).then(|| Value { dims, data: v.data.clone(), elem: v.elem })
}

/// Output shape of Squeeze / Unsqueeze (`x` is the input's shape).
pub fn unsqueeze_shape(m: &Model, n: NodeId, x: &Shape) -> Option<Shape> {
    let p = m.op(n)?;
    let ax = const_axes(m, n, 13)?;
    if p.op_type() == "Unsqueeze" {
        let r = x.len() + ax.len();
        let ax: Vec<usize> = ax.iter().map(|&a| axis(a, r)).collect::<Option<_>>()?;
        let mut src = x.iter();
        return (0..r).map(|i| if ax.contains(&i) { Some(Some(1)) } else { src.next().copied() }).collect();
    }
    let ax: Vec<usize> = if ax.is_empty() {
        (0..x.len()).filter(|&i| x[i] == Some(1)).collect()
    } else {
        ax.iter().map(|&a| axis(a, x.len())).collect::<Option<_>>()?
    };
    Some(x.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect())
}

/// Flatten (or Reshape to [N, C·H·W]) of an activation feeding only a
/// Gemm / MatMul: the features are channel-major, so the dense layer's
/// weight absorbs the padded layout. A Reshape must give [N, C·H·W].
fn flatten_for_dense(cx: &mut ChannelCx) -> bool {
    let Some(x) = cx.input(0) else { return false };
    let Some(l) = cx.layout(x) else {
        return false;
    };
    let Some(sh) = cx.shape(x) else {
        return false;
    };
    let out = cx.out(0);
    let Some(osh) = cx.shape(out) else {
        return false;
    };
    let spatial: Option<i64> = sh.get(2..).and_then(|d| d.iter().try_fold(1i64, |a, d| d.map(|d| a * d)));
    let Some(spatial) = spatial else { return false };
    let ok = super::is(cx.p, "Flatten") || (osh.len() == 2 && osh[1] == Some(cx.width(&l) as i64 * spatial));
    if !ok {
        return false;
    }
    if !super::dense::dense_only(cx.m, out) {
        // a pooled [N, C] that other ops read first (a BatchNorm1d before
        // the classifier: RepViT's, EfficientViT's heads) carries the
        // channels as features on its axis 1
        return pooled_features(cx, out, l, spatial);
    }
    cx.set_flat(out, Flat { layout: l, spatial: spatial as usize });
    true
}

/// A pooled activation (`spatial` 1) flattened to `[N, C]`: its channels,
/// as features on axis 1, for readers other than dense layers.
pub(super) fn pooled_features(cx: &mut ChannelCx, out: Outlet, l: Vec<crate::analysis::AtomId>, spatial: i64) -> bool {
    if spatial != 1 || cx.rank(out) != Some(2) || cx.channels_on(out, 1) != Some(cx.width(&l)) {
        return false;
    }
    cx.set_on(out, l, 1);
    true
}

/// The output axis that keeps input `x`'s features (on axis `a`, `width`
/// wide) whole: the axis of that width with as many elements before it
/// (Squeeze, Unsqueeze and Reshapes that only regroup the other dims).
fn kept_axis(cx: &ChannelCx, x: Outlet, a: usize, width: i64) -> Option<usize> {
    let (sh, osh) = (cx.shape(x)?, cx.shape(cx.out(0))?);
    let known = |d: &[Option<i64>]| d.iter().try_fold(1i64, |acc, v| v.and_then(|v| acc.checked_mul(v)));
    let before = known(&sh[..a])?;
    (0..osh.len()).find(|&b| osh[b] == Some(width) && known(&osh[..b]) == Some(before))
}

/// Input features (on another axis than an activation's channels) kept
/// whole on the output axis [`kept_axis`] finds: Squeeze, Unsqueeze, and a
/// Flatten keeping the feature axis (`[N, T, C]` → `[N·T, C]`).
fn keep_features_whole(cx: &mut ChannelCx) -> bool {
    let Some(x) = cx.input(0).filter(|&x| cx.is_feature(x)) else { return false };
    let Some((l, a)) = cx.placed(x) else { return false };
    let width = cx.width(&l) as i64;
    let Some(b) = kept_axis(cx, x, a, width).filter(|_| width > 1) else { return false };
    cx.set_on(cx.out(0), l, b);
    true
}

/// Whether this Reshape keeps its input's channels whole on axis 1 (only
/// the other dims regrouped: `[N, C, H, W]` → `[N, C, H·W]`), and they may
/// still be padded. Channels moved to another axis (a batch-1
/// `[1, C, H, W]` → `[C, H·W]`) would reach ops that read them as batch or
/// spatial: not followed. Nor is a pinned layout: on a refused op's output
/// of rank ≥ 3 axis 1 is a stand-in (MViTv2's `[N, T, h, d]` after a
/// pinned Transpose has its tokens there), which only a Reshape's own
/// refusal puts back on the axis its readers use.
fn keeps_channels(cx: &mut ChannelCx) -> bool {
    let Some((l, 1)) = cx.input(0).and_then(|x| cx.placed(x)) else { return false };
    let x = cx.input(0).unwrap();
    let width = cx.width(&l) as i64;
    !cx.all_pinned(&l) && kept_axis(cx, x, 1, width) == Some(1)
}

/// Where a Reshape puts input features laid out on axis `a` (`l`), and the
/// layout they get there.
enum Moved {
    /// Kept whole on output axis `b`.
    Whole(usize),
    /// Split into `k` runs of the last output axis's width (attention's
    /// `[N, T, 3·h·d]` → `[N, T, 3, h, d]`): the runs are joined into one
    /// space, which the output's last axis carries.
    Split(usize),
    /// Merged from the last `k` dims into the output's last axis (the heads
    /// back: `[N, T, h, d]` → `[N, T, h·d]`): `k` copies of the layout.
    Merged(usize),
}

/// How a Reshape of features on axis `a` of `x` moves them, when it does.
fn moved(cx: &ChannelCx, x: Outlet, a: usize, width: i64) -> Option<Moved> {
    if let Some(b) = kept_axis(cx, x, a, width) {
        return Some(Moved::Whole(b));
    }
    let (sh, osh) = (cx.shape(x)?, cx.shape(cx.out(0))?);
    let known = |d: &[Option<i64>]| d.iter().try_fold(1i64, |acc, v| v.and_then(|v| acc.checked_mul(v)));
    // features on the input's last axis, the output's last axis narrower and
    // dividing it, the same elements before the split / merged group
    let (last_in, last_out) = ((*sh.last()?)?, (*osh.last()?)?);
    if a + 1 != sh.len() || last_in != width {
        return None;
    }
    if last_out < width && last_out > 1 && width % last_out == 0 {
        // split: the dims after the input's prefix multiply to the width
        let before = known(&sh[..a])?;
        let b0 = (0..osh.len()).find(|&b| known(&osh[..b]) == Some(before))?;
        return (known(&osh[b0..]) == Some(width)).then(|| Moved::Split((width / last_out) as usize));
    }
    if last_out > width && last_out % width == 0 {
        // merge: the input's dims from some axis on multiply to the output's last
        let a0 = (0..sh.len()).find(|&k| known(&sh[k..]) == Some(last_out))?;
        return (known(&sh[..a0]) == known(&osh[..osh.len() - 1])).then(|| Moved::Merged((last_out / width) as usize));
    }
    None
}

/// A Reshape whose input has features on axis `a`: kept whole on another
/// axis, split into runs (attention heads) or merged (heads back), per
/// [`Moved`]. The target must be a constant that spells the moved width, or
/// infers it (`-1`), or copies it (`0` on the same axis); `pad` rewrites a
/// spelled-out width.
fn move_features(cx: &mut ChannelCx) -> bool {
    let (Some(x), out) = (cx.input(0), cx.out(0)) else { return false };
    let Some((l, a)) = cx.placed(x) else { return false };
    let width = cx.width(&l) as i64;
    let (Some(how), Some(orank)) = (moved(cx, x, a, width), cx.rank(out)) else { return false };
    let Some(target) = cx.m.input_const(cx.n, 1).and_then(|t| tensor::to_i64(&t).ok()) else { return false };
    let (b, spelled_as) = match how {
        Moved::Whole(b) => (b, width),
        Moved::Split(k) => (orank - 1, width / k as i64),
        Moved::Merged(k) => (orank - 1, width * k as i64),
    };
    let spelled = match target.get(b) {
        Some(&t) if t == spelled_as => target.iter().filter(|&&t| t == -1).count() <= 1,
        Some(-1) => true,
        Some(0) => a == b && matches!(how, Moved::Whole(_)) && attr_i(cx.p, "allowzero", 0) == 0,
        _ => false,
    };
    if !spelled {
        return false;
    }
    let l = match how {
        Moved::Whole(_) => l,
        Moved::Split(k) => {
            // k runs, each cut at its boundaries and joined to the first
            let run = (width as usize) / k;
            for i in 1..k {
                cx.atoms().cut(&l, i * run);
            }
            let first = cx.atoms().range(&l, 0, run);
            for i in 1..k {
                let r = cx.atoms().range(&l, i * run, (i + 1) * run);
                if !cx.atoms().join(&first, &r) {
                    return false;
                }
            }
            first
        }
        Moved::Merged(k) => {
            // k copies, each a new run of atoms joined to the layout's
            let mut copies = l.clone();
            for _ in 1..k {
                let leaves = cx.atoms().leaves(&l);
                for leaf in leaves {
                    let size = cx.atoms().atom_size(leaf);
                    let c = cx.atoms().new_atom(size);
                    if !cx.atoms().join(&[leaf], &[c]) {
                        return false;
                    }
                    copies.push(c);
                }
            }
            copies
        }
    };
    cx.set_on(out, l, b);
    true
}

/// True when `n` is one of the three ops of a channel shuffle:
/// Reshape [N, C, H, W] → [N, g, C/g, H, W], Transpose swapping axes 1 and 2,
/// Reshape back to rank 4. Such a shuffle is a fixed permutation of channels,
/// but its padded form interleaves the padding of the g blocks, which a
/// channel layout of contiguous runs cannot express: it pins, and says so.
pub fn shuffle_part(m: &Model, n: NodeId) -> bool {
    let is = |t: NodeId, op: &str| m.op(t).is_some_and(|p| super::is(p, op));
    let is_swap = |t: NodeId| is(t, "Transpose") && m.op(t).is_some_and(|p| attr_ints(p, "perm") == [0, 2, 1, 3, 4]);
    let sole = |o: Outlet| {
        let c = m.consumers(o);
        (c.len() == 1).then(|| c[0].0)
    };
    let out = |x: NodeId| Outlet { node: x, slot: 0 };
    let from = |x: NodeId| m.input(x, 0).map(|o| o.node);
    if is(n, "Transpose") {
        is_swap(n) && from(n).is_some_and(|r| is(r, "Reshape")) && sole(out(n)).is_some_and(|r| is(r, "Reshape"))
    } else if is(n, "Reshape") {
        sole(out(n)).is_some_and(|t| is_swap(t) && sole(out(t)).is_some_and(|r| is(r, "Reshape")))
            || from(n).is_some_and(|t| is_swap(t) && from(t).is_some_and(|r| is(r, "Reshape")))
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

    #[test]
    fn reshape_copies_zeros_and_infers_minus_one() {
        let mut b = Builder::new(&[2, 6, 4, 4]);
        let t = b.ints("t", &[0, 3, -1]);
        let y = b.node("Reshape", &["x", &t], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[2, 3, 32])));
    }

    #[test]
    fn a_symbolic_batch_cancels_out_of_minus_one() {
        let mut b = Builder::new(&[1, 6, 4, 4]);
        b.symbolic(0);
        let s = b.unary("Shape", "x");
        let idx = b.ints("i", &[0]);
        let n = b.node("Gather", &[&s, &idx], 1, vec![]);
        let rest = b.ints("rest", &[2, -1]);
        let t = b.node("Concat", &[&n[0], &rest], 1, vec![int_attr("axis", 0)]);
        let y = b.node("Reshape", &["x", &t[0]], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(vec![None, Some(2), Some(48)]));
    }

    #[test]
    fn flatten_and_squeezes_regroup_values() {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let s = b.unary("Shape", "x");
        let ax = b.ints("ax", &[0, 2]);
        let u = b.node("Unsqueeze", &[&s, &ax], 1, vec![]);
        let f = b.node("Flatten", &[&u[0]], 1, vec![int_attr("axis", 2)]);
        let q = b.unary("Squeeze", &u[0]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&u[0]), Some(known(&[1, 4, 1])));
        assert_eq!(inf.value(&u[0]).unwrap().dims, [1, 4, 1]);
        assert_eq!(inf.value(&f[0]).unwrap().dims, [4, 1]);
        assert_eq!(inf.ints(&f[0]), Some(vec![2, 3, 5, 7]));
        assert_eq!(inf.value(&q).unwrap().dims, [4]);
    }

    #[test]
    fn small_constants_fold_through_reshapes_and_squeezes() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let c = b.ints("c", &[1, 2, 3, 4, 5, 6]);
        let t = b.ints("t", &[3, 2]);
        let r = b.node("Reshape", &[&c, &t], 1, vec![]);
        let minus = b.ints("minus", &[3, -1]);
        let refused = b.node("Reshape", &[&c, &minus], 1, vec![]);
        let ax = b.ints("ax", &[-1]);
        let u = b.node("Unsqueeze", &[&r[0], &ax], 1, vec![]);
        let ax1 = b.ints("ax1", &[1]);
        let kept = b.node("Squeeze", &[&u[0], &ax1], 1, vec![]);
        let inf = Inferred::of(&b);
        let data = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(inf.folded(&r[0]), Some((vec![3, 2], data.clone())));
        assert_eq!(inf.folded(&refused[0]), None, "the folder takes no -1 (the evaluator does)");
        assert_eq!(inf.ints(&refused[0]), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(inf.folded(&u[0]), Some((vec![3, 2, 1], data.clone())));
        assert_eq!(inf.folded(&kept[0]), Some((vec![3, 2, 1], data)), "the folder keeps a listed dim that is not 1");
        assert_eq!(inf.value(&kept[0]).unwrap().dims, [3, 2, 1], "the walk takes what the IR folds");
    }

    #[test]
    fn before_opset_13_squeeze_axes_are_an_attribute() {
        let mut b = Builder::new(&[1, 3, 1, 4]);
        b.opset = 11;
        let y = b.node("Squeeze", &["x"], 1, vec![ints_attr("axes", &[2])]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 3, 4])));
    }
}
