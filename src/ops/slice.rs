//! Slice: a range (any non-zero step) kept along some axes; bounds from
//! attributes before opset 10, from inputs 1–4 after. Its value is computed
//! too (F.pad reverses its pads with step −1).

use super::{const_ints, zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::{ChannelCx, RESTORE_SLICE_DOC};
use crate::error::Error;
use crate::error::Result;
use crate::ir::shapes::{axis, Shape};
use crate::ir::values::{numel, Value};
use crate::ir::{Model, NodeId};
use crate::onnx::attr_ints;
use crate::onnx::set_attr_ints;
use crate::passes::pad::PadCx;
use crate::tensor;

/// Slice.
#[derive(Debug)]
pub struct Slice;

impl Rules for Slice {
    /// Slice on the axis of the input's layout (channels, or features):
    /// bounds in physical channels.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let Some((x, on)) = m.input(n, 0).and_then(|x| Some((x, a.axis(x)?))) else {
            return Ok(());
        };
        let Some(bounds) = a.boundaries(x) else {
            return Ok(());
        };
        let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
        let Some(params) = slice_params(m, n, rank) else {
            return Ok(());
        };
        if bounds.iter().all(|(l, ph)| l == ph) || !params.iter().any(|(ax, ..)| *ax == on) {
            return Ok(());
        }
        let c = bounds.last().unwrap().0 as i64;
        let phys = |lo: i64| bounds.iter().find(|(l, _)| *l as i64 == lo).map(|(_, ph)| *ph as i64);
        let mut starts = vec![];
        let mut ends = vec![];
        for (ax, st, en, _) in &params {
            if *ax == on {
                let (s, e) = slice_range(c, *st, *en);
                starts.push(phys(s).ok_or_else(|| Error::model("Slice start is not a channel-space boundary"))?);
                ends.push(phys(e).ok_or_else(|| Error::model("Slice end is not a channel-space boundary"))?);
            } else {
                starts.push(*st);
                ends.push(*en);
            }
        }
        if m.opset() >= 10 {
            for (slot, vals) in [(1, starts), (2, ends)] {
                let t = m.input_const(n, slot).unwrap().into_owned();
                let nt = tensor::rewrite(&t, &[vals.len()], &vals.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
                m.replace_input_const(n, slot, nt);
            }
        } else {
            let pm = m.op_mut(n).unwrap();
            set_attr_ints(pm, "starts", starts);
            set_attr_ints(pm, "ends", ends);
        }
        Ok(())
    }

    /// On the layout's axis cuts like Split (step 1); on other axes passes.
    /// A Slice `--slice-pinned` inserted is a pinned view of its input.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let Some(x) = cx.input(0) else { return Ok(false) };
        let Some((l, on)) = cx.placed(x) else {
            return Ok(false);
        };
        let Some(rank) = cx.rank(x) else {
            return Ok(false);
        };
        let Some(params) = slice_params(cx.m, cx.n, rank) else {
            return Ok(false);
        };
        let out = cx.out(0);
        if cx.p.doc_string() == RESTORE_SLICE_DOC && cx.atoms().leaves(&l).len() == 1 {
            let why = format!("Slice '{}' (restores exact channels)", cx.m.label(cx.n));
            cx.fresh(out, Some(why));
            return Ok(true);
        }
        let mut result = l.clone();
        for (ax, st, en, step) in params {
            if ax != on {
                continue;
            }
            if step != 1 {
                return Ok(false);
            }
            let c = cx.width(&l) as i64;
            let (a, b) = slice_range(c, st, en);
            cx.atoms().cut(&l, a as usize);
            cx.atoms().cut(&l, b as usize);
            result = cx.atoms().range(&l, a as usize, b as usize);
        }
        if on != 1 && cx.channels_on(out, on) != Some(cx.width(&result)) {
            return Ok(false);
        }
        cx.set_on(out, result, on);
        Ok(true)
    }

    /// Features pass a Slice of other axes (LeViT subsamples its tokens:
    /// `x.view(N, H, W, C)[:, ::2, ::2]`) and are cut like channels on theirs.
    fn any_axis(&self) -> bool {
        true
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let sl = slice_params(cx.m, cx.n, x.len())?;
        let mut out = x.clone();
        for (a, st, en, step) in sl {
            out[a] = x[a].map(|d| slice_len(d, st, en, step));
        }
        Some(cx.one(out))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let d = cx.value(0)?;
        let r = d.dims.len();
        let (st, en, axes, steps) = if cx.opset() >= 10 {
            let st = cx.value(1)?.ints()?;
            let en = cx.value(2)?.ints()?;
            let present = |slot: usize| cx.m.input(cx.n, slot).is_some();
            let ax = if present(3) { cx.value(3)?.ints()? } else { (0..st.len() as i64).collect() };
            let sp = if present(4) { cx.value(4)?.ints()? } else { vec![1; st.len()] };
            (st, en, ax, sp)
        } else {
            attribute_bounds(cx.p)
        };
        if st.len() != en.len() || st.len() != axes.len() || st.len() != steps.len() || steps.contains(&0) {
            return None;
        }
        // the indices kept along every axis
        let mut keep: Vec<Vec<usize>> = d.dims.iter().map(|&k| (0..k).collect()).collect();
        for i in 0..st.len() {
            let a = axis(axes[i], r)?;
            keep[a] = slice_indices(d.dims[a] as i64, st[i], en[i], steps[i]);
        }
        let dims: Vec<usize> = keep.iter().map(|k| k.len()).collect();
        let (src, dst) = (tensor::strides(&d.dims), tensor::strides(&dims));
        let data = (0..numel(&dims)?)
            .map(|i| {
                let at: usize = (0..r).map(|k| keep[k][(i / dst[k]) % dims[k]] * src[k]).sum();
                d.data[at]
            })
            .collect();
        Some(Value { dims, data, elem: d.elem })
    }
}

/// Starts, ends, axes and steps of an opset < 10 Slice, from its attributes.
type Bounds = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

fn attribute_bounds(p: &crate::onnx::NodeProto) -> Bounds {
    let st = attr_ints(p, "starts");
    let ax = match attr_ints(p, "axes") {
        a if a.is_empty() => (0..st.len() as i64).collect(),
        a => a,
    };
    let k = st.len();
    (st, attr_ints(p, "ends"), ax, vec![1; k])
}

/// Slice parameters as (axis, start, end, step), with constant inputs.
pub fn slice_params(m: &Model, n: NodeId, rank: usize) -> Option<Vec<(usize, i64, i64, i64)>> {
    let p = m.op(n)?;
    let (starts, ends, axes, steps) = if m.opset() >= 10 {
        let st = const_ints(m, n, 1)?;
        let en = const_ints(m, n, 2)?;
        let ax = if m.input(n, 3).is_some() { const_ints(m, n, 3)? } else { (0..st.len() as i64).collect() };
        let sp = if m.input(n, 4).is_some() { const_ints(m, n, 4)? } else { vec![1; st.len()] };
        (st, en, ax, sp)
    } else {
        attribute_bounds(p)
    };
    if starts.len() != ends.len() || starts.len() != axes.len() || steps.len() != starts.len() || steps.contains(&0) {
        return None;
    }
    (0..starts.len()).map(|i| Some((axis(axes[i], rank)?, starts[i], ends[i], steps[i]))).collect()
}

/// Clamped [start, end) of a slice on a dim of length `d` (step > 0).
pub fn slice_range(d: i64, st: i64, en: i64) -> (i64, i64) {
    let norm = |v: i64| if v < 0 { (v + d).max(0) } else { v.min(d) };
    (norm(st), norm(en).max(norm(st)))
}

/// How many elements a slice keeps of a dim of length `d`.
fn slice_len(d: i64, st: i64, en: i64, step: i64) -> i64 {
    if step > 0 {
        let (a, b) = slice_range(d, st, en);
        (b - a + step - 1) / step
    } else {
        let norm = |v: i64, hi: i64| if v < 0 { (v + d).max(-1) } else { v.min(hi) };
        let a = norm(st, d - 1);
        let b = norm(en, d - 1);
        if a <= b {
            0
        } else {
            (a - b + (-step) - 1) / (-step)
        }
    }
}

/// The indices ONNX Slice takes from a dim of length `d` (any non-zero step).
fn slice_indices(d: i64, start: i64, end: i64, step: i64) -> Vec<usize> {
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = if step > 0 {
        (norm(start).clamp(0, d), norm(end).clamp(0, d))
    } else {
        (norm(start).clamp(-1, d - 1), norm(end).clamp(-1, d - 1))
    };
    let mut out = vec![];
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        if (0..d).contains(&i) {
            out.push(i as usize);
        }
        i += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{known, Builder, Inferred};

    #[test]
    fn slice_shapes_follow_bounds_axes_and_steps() {
        let mut b = Builder::new(&[1, 16, 10, 10]);
        let (st, en, ax, sp) =
            (b.ints("st", &[4, -1]), b.ints("en", &[12, 0]), b.ints("ax", &[1, 3]), b.ints("sp", &[1, -3]));
        let y = b.node("Slice", &["x", &st, &en, &ax, &sp], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 8, 10, 3])));
    }

    #[test]
    fn a_sliced_shape_vector_keeps_its_symbolic_elements() {
        let mut b = Builder::new(&[1, 16, 10, 12]);
        b.symbolic(0);
        let s = b.unary("Shape", "x");
        let (st, en) = (b.ints("st", &[-3]), b.ints("en", &[i64::MAX]));
        let tail = b.node("Slice", &[&s, &st, &en], 1, vec![]);
        let (st, en) = (b.ints("st", &[0]), b.ints("en", &[2]));
        let head = b.node("Slice", &[&s, &st, &en], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.ints(&tail[0]), Some(vec![16, 10, 12]));
        assert_eq!(inf.value(&head[0]).unwrap().data, vec![None, Some(16.0)]);
    }

    #[test]
    fn slice_range_clamps_to_the_dim() {
        assert_eq!(slice_range(10, -4, i64::MAX), (6, 10));
        assert_eq!(slice_range(10, 8, 2), (8, 8));
    }

    #[test]
    fn slice_indices_follow_onnx_for_every_step() {
        assert_eq!(slice_indices(4, 0, 2, 1), [0, 1]);
        assert_eq!(slice_indices(4, -1, i64::MIN, -1), [3, 2, 1, 0], "reversed, as F.pad exports its pads");
        assert_eq!(slice_indices(5, 4, 0, -2), [4, 2]);
        assert_eq!(slice_indices(5, 1, 100, 2), [1, 3]);
        assert!(slice_indices(3, 2, 2, 1).is_empty());
    }
}
