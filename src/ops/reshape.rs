//! Ops that keep the data and change only the dims: Reshape, Flatten,
//! Squeeze and Unsqueeze. Their values are their input's elements under the
//! new dims.

use super::{const_axes, Cx, Rules};
use crate::ir::shapes::{axis, product, Shape};
use crate::ir::values::{numel, Value};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::attr_i;

/// Reshape to a target that may be partly known (a symbolic batch read by
/// Shape); `0` copies the input dim (unless `allowzero`), `-1` is inferred.
#[derive(Debug)]
pub struct Reshape;

impl Rules for Reshape {
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
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        Some(cx.one(unsqueeze_shape(cx.m, cx.n, cx.shape(0)?)?))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        regroup(v, &unsqueeze_shape(cx.m, cx.n, &known(v))?)
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
    fn before_opset_13_squeeze_axes_are_an_attribute() {
        let mut b = Builder::new(&[1, 3, 1, 4]);
        b.opset = 11;
        let y = b.node("Squeeze", &["x"], 1, vec![ints_attr("axes", &[2])]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 3, 4])));
    }
}
