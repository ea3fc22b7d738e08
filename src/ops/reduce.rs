//! Reductions (ReduceMean, ReduceSum, ReduceMax…): axes, keepdims,
//! noop_with_empty_axes. Values are computed over any axes of a known
//! value (shape code, and the statistics of a weight standardised at run
//! time, `ir::fold_weights`).

use super::{const_axes, zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::{ChannelCx, Flat};
use crate::error::Result;
use crate::ir::shapes::{axis, Shape};
use crate::ir::values::Value;
use crate::onnx::{attr, attr_i};

/// A reduction.
#[derive(Debug)]
pub struct Reduce;

/// The opset from which `op`'s axes are input 1 instead of an attribute:
/// ReduceSum moved in opset 13, the other reductions in 18.
pub fn axes_input_from(op: &str) -> i64 {
    if op == "ReduceSum" {
        13
    } else {
        18
    }
}

impl Rules for Reduce {
    /// Over non-channel axes each channel maps to itself (a padded channel
    /// of finite values stays finite); over every spatial axis to [N, C]
    /// feeding only dense layers, a flattened layout; over the channel axis
    /// it mixes channels and does not hold. Features on another axis are
    /// kept by a reduction over other axes than theirs and the batch.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (m, n, p) = (cx.m, cx.n, cx.p);
        let Some(x) = cx.input(0) else { return Ok(false) };
        let (Some((l, on)), Some(rank)) = (cx.placed(x), cx.rank(x)) else {
            return Ok(false);
        };
        let Some(axes) = const_axes(m, n, axes_input_from(p.op_type())) else { return Ok(false) };
        let axes: Option<Vec<usize>> = axes.iter().map(|&a| axis(a, rank)).collect();
        let Some(axes) = axes else { return Ok(false) };
        let out = cx.out(0);
        if cx.is_feature(x) {
            // features kept, on the axis they land on (LeViT's head pools
            // its tokens: `x.mean(1)` of `[N, T, C]` → `[N, C]`)
            if axes.is_empty() || axes.contains(&0) || axes.contains(&on) {
                return Ok(false);
            }
            let keep = attr_i(p, "keepdims", 1) == 1;
            let b = if keep { on } else { on - axes.iter().filter(|&&a| a < on).count() };
            if cx.channels_on(out, b) != Some(cx.width(&l)) {
                return Ok(false);
            }
            cx.set_on(out, l, b);
            return Ok(true);
        }
        if axes.is_empty() || axes.contains(&0) || axes.contains(&1) {
            return Ok(false); // all axes, or batch / channels
        }
        if attr_i(p, "keepdims", 1) == 1 || rank - axes.len() >= 3 {
            if cx.channels(out) != Some(cx.width(&l)) {
                return Ok(false);
            }
            cx.set(out, l);
            return Ok(true);
        }
        // [N, C] after reducing every spatial axis: like a Flatten feeding a dense layer
        if rank - axes.len() == 2 && super::dense::dense_only(m, out) {
            cx.set_flat(out, Flat { layout: l, spatial: 1 });
            return Ok(true);
        }
        Ok(rank - axes.len() == 2 && super::reshape::pooled_features(cx, out, l, 1))
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// Over other axes, the reductions whose value at 0 is 0.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        let keeps =
            matches!(cx.p.op_type(), "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceL1" | "ReduceL2");
        zero_if(keeps && cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let p = cx.p;
        let ax = const_axes(cx.m, cx.n, axes_input_from(p.op_type()))?;
        if ax.is_empty() && attr_i(p, "noop_with_empty_axes", 0) == 1 {
            return Some(cx.one(x.clone()));
        }
        let ax: Vec<usize> = if ax.is_empty() {
            (0..x.len()).collect()
        } else {
            ax.iter().map(|&a| axis(a, x.len())).collect::<Option<_>>()?
        };
        let keep = attr_i(p, "keepdims", 1) == 1;
        let out = x
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| match (ax.contains(&i), keep) {
                (true, true) => Some(Some(1)),
                (true, false) => None,
                (false, _) => Some(d),
            })
            .collect();
        Some(cx.one(out))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let op = cx.p.op_type();
        let fold: fn(&[f64]) -> f64 = match op {
            "ReduceProd" => |k| k.iter().product(),
            "ReduceSum" => |k| k.iter().sum(),
            "ReduceMax" => |k| k.iter().copied().fold(f64::MIN, f64::max),
            "ReduceMin" => |k| k.iter().copied().fold(f64::MAX, f64::min),
            "ReduceMean" => |k| k.iter().sum::<f64>() / k.len().max(1) as f64,
            _ => return None,
        };
        let v = cx.value(0)?;
        let rank = v.dims.len();
        // axes known element by element (an attribute, or a computed input)
        let axes = if cx.opset() >= axes_input_from(op) {
            match cx.m.input(cx.n, 1) {
                Some(_) => Some(cx.value(1)?.ints()?),
                None => None,
            }
        } else {
            attr(cx.p, "axes").map(|a| a.ints.clone())
        };
        let axes: Vec<usize> = match axes {
            Some(a) if a.is_empty() && attr_i(cx.p, "noop_with_empty_axes", 0) == 1 => return Some(v.clone()),
            Some(a) if !a.is_empty() => a.iter().map(|&x| axis(x, rank.max(1))).collect::<Option<_>>()?,
            _ => (0..rank).collect(),
        };
        let data = v.known()?;
        // each element's group: its index with the reduced axes at 0
        let kept: Vec<usize> = v.dims.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        // each element's group, counted like an odometer over the dims
        let step: Vec<usize> =
            (0..rank).map(|k| if axes.contains(&k) { 0 } else { kept[k + 1..].iter().product() }).collect();
        let mut groups: Vec<Vec<f64>> = vec![vec![]; kept.iter().product()];
        let (mut idx, mut g) = (vec![0usize; rank], 0usize);
        for &x in &data {
            groups[g].push(x);
            for k in (0..rank).rev() {
                idx[k] += 1;
                g += step[k];
                if idx[k] < v.dims[k] {
                    break;
                }
                g -= step[k] * idx[k];
                idx[k] = 0;
            }
        }
        let dims = if attr_i(cx.p, "keepdims", 1) == 1 {
            kept
        } else {
            v.dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        };
        Some(Value { dims, data: groups.iter().map(|g| Some(fold(g))).collect(), elem: v.elem })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

    #[test]
    fn reduce_sum_takes_axes_as_an_input_from_opset_13_the_others_from_18() {
        let mut b = Builder::new(&[2, 3, 4, 5]);
        let ax = b.ints("ax", &[2, 3]);
        let sum = b.node("ReduceSum", &["x", &ax], 1, vec![int_attr("keepdims", 0)]);
        let mean = b.node("ReduceMean", &["x"], 1, vec![ints_attr("axes", &[-1])]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&sum[0]), Some(known(&[2, 3])));
        assert_eq!(inf.shape(&mean[0]), Some(known(&[2, 3, 4, 1])));
    }

    #[test]
    fn empty_axes_reduce_everything_unless_told_not_to() {
        let mut b = Builder::new(&[2, 3]);
        let all = b.node("ReduceMax", &["x"], 1, vec![]);
        let none = b.node("ReduceSum", &["x"], 1, vec![int_attr("noop_with_empty_axes", 1)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&all[0]), Some(known(&[1, 1])));
        assert_eq!(inf.shape(&none[0]), Some(known(&[2, 3])));
    }

    #[test]
    fn reductions_of_known_values_over_some_axes() {
        // a standardised weight's statistics: [1, 2, 3] reduced over 0 and 2
        let mut b = Builder::new(&[1, 1]);
        let w = b.init("w", &[1, 2, 3], vec![1.0, 2.0, 6.0, -1.0, 0.0, 4.0]);
        let keep = b.node("ReduceMean", &[&w], 1, vec![ints_attr("axes", &[0, 2])]);
        let flat = b.node("ReduceMax", &[&w], 1, vec![ints_attr("axes", &[2]), int_attr("keepdims", 0)]);
        let first = b.node("ReduceMin", &[&w], 1, vec![ints_attr("axes", &[1])]);
        let inf = Inferred::of(&b);
        let v = inf.value(&keep[0]).unwrap();
        assert_eq!((v.dims.clone(), v.known().unwrap()), (vec![1, 2, 1], vec![3.0, 1.0]));
        let v = inf.value(&flat[0]).unwrap();
        assert_eq!((v.dims.clone(), v.known().unwrap()), (vec![1, 2], vec![6.0, 4.0]));
        let v = inf.value(&first[0]).unwrap();
        assert_eq!((v.dims.clone(), v.known().unwrap()), (vec![1, 1, 3], vec![-1.0, 0.0, 4.0]));
    }

    #[test]
    fn full_reductions_of_shape_vectors_have_values() {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let s = b.unary("Shape", "x");
        let prod = b.node("ReduceProd", &[&s], 1, vec![int_attr("keepdims", 0)]);
        let min = b.node("ReduceMin", &[&s], 1, vec![]);
        let l2 = b.node("ReduceL2", &[&s], 1, vec![]);
        let inf = Inferred::of(&b);
        let p = inf.value(&prod[0]).unwrap();
        assert_eq!((p.dims, p.data), (vec![], vec![Some(210.0)]));
        assert_eq!(inf.ints(&min[0]), Some(vec![2]));
        assert_eq!(inf.value(&l2[0]), None, "no value rule for ReduceL2");
    }
}
