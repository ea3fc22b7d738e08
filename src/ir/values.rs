//! Values of small tensors computed from shapes and constants (shape
//! arithmetic), element by element: an element is `None` where it depends on
//! a symbolic dim. [`super::shapes::infer_with_values`] computes them in the
//! same topological walk as the shapes, so a Reshape whose target is
//! `Concat(Shape(x)[0], [g, c, h, w])` still gets its channel dims.

use super::shapes::{self, Shape};
use super::{Model, NodeId, Outlet};
use crate::onnx::{attr, attr_i, attr_ints};
use crate::tensor;
use std::collections::HashMap;

/// Largest tensor the evaluator computes (shape arithmetic is tiny).
pub const MAX_ELEMENTS: usize = 4096;

/// A small tensor whose elements may be unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Dims.
    pub dims: Vec<usize>,
    /// Elements, row-major; `None` where unknown (a symbolic dim).
    pub data: Vec<Option<f64>>,
    /// ONNX element type.
    pub elem: i32,
}

impl Value {
    /// The elements, if all are known.
    pub fn known(&self) -> Option<Vec<f64>> {
        self.data.iter().copied().collect()
    }
    fn is_int(&self) -> bool {
        !tensor::Elem::from_onnx(self.elem).is_some_and(|e| e.is_float())
    }
    /// The elements as integers, if all are known.
    pub fn ints(&self) -> Option<Vec<i64>> {
        self.data.iter().map(|v| v.map(|v| v as i64)).collect()
    }
}

const INT64: i32 = 7;
/// ONNX bool.
pub const BOOL: i32 = 9;

/// The value of a small constant.
pub fn const_value(m: &Model, o: Outlet) -> Option<Value> {
    let dims = m.const_dims(o)?;
    let udims: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    if numel(&udims)? > MAX_ELEMENTS {
        return None;
    }
    let t = m.const_value(o)?;
    let elem = t.data_type();
    let data = tensor::to_f64(&t).ok()?;
    Some(Value { dims: udims, data: data.into_iter().map(Some).collect(), elem })
}

/// Element count, if it does not overflow.
fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
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

/// Numpy broadcasting of two dims lists.
fn bcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Index into `v` (dims `d`) of output position `idx` (dims `out`) under broadcasting.
fn bidx(d: &[usize], out: &[usize], mut idx: usize) -> usize {
    let mut pos = 0;
    let mut stride = 1;
    for i in (0..out.len()).rev() {
        let c = idx % out[i];
        idx /= out[i];
        if let Some(k) = (i + d.len()).checked_sub(out.len()) {
            if d[k] != 1 {
                pos += c * stride;
            }
            stride *= d[k];
        }
    }
    pos
}

fn broadcast_map(vs: &[&Value], f: impl Fn(&[f64]) -> Option<f64>, elem: i32) -> Option<Value> {
    let mut dims: Vec<usize> = vec![];
    for v in vs {
        dims = bcast_dims(&dims, &v.dims)?;
    }
    let n = numel(&dims)?;
    if n > MAX_ELEMENTS {
        return None;
    }
    let data = (0..n)
        .map(|i| {
            let args: Option<Vec<f64>> =
                vs.iter().map(|v| v.data.get(bidx(&v.dims, &dims, i)).copied().flatten()).collect();
            args.and_then(|a| f(&a))
        })
        .collect();
    Some(Value { dims, data, elem })
}

fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    shapes::axis(a, rank)
}

/// Axes of Squeeze/Unsqueeze/Reduce: attribute before opset 13 (18 for
/// most reductions), input 1 after.
fn axes_of(m: &Model, n: NodeId, vals: &HashMap<Outlet, Value>, input_from: i64) -> Option<Option<Vec<i64>>> {
    let p = m.op(n)?;
    if m.opset() >= input_from {
        match m.input(n, 1) {
            Some(o) => Some(Some(vals.get(&o)?.ints()?)),
            None => Some(None),
        }
    } else {
        Some(attr(p, "axes").map(|a| a.ints.clone()))
    }
}

/// The value of output 0 of op `n`, if every element it needs is known.
pub fn eval_op(m: &Model, n: NodeId, shapes: &HashMap<Outlet, Shape>, vals: &HashMap<Outlet, Value>) -> Option<Value> {
    let p = m.op(n)?;
    let arg = |i: usize| m.input(n, i).and_then(|o| vals.get(&o));
    let op = p.op_type();
    let out = |dims: Vec<usize>, data: Vec<Option<f64>>, elem: i32| Some(Value { dims, data, elem });
    match op {
        "Shape" => {
            let s = shapes.get(&m.input(n, 0)?)?;
            let r = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (clamp(attr_i(p, "start", 0)), clamp(attr_i(p, "end", r)));
            let d: Vec<Option<f64>> = s.get(a..b.max(a))?.iter().map(|d| d.map(|v| v as f64)).collect();
            out(vec![d.len()], d, INT64)
        }
        "Size" => {
            let s = shapes.get(&m.input(n, 0)?)?;
            out(vec![], vec![shapes::product(s).map(|v| v as f64)], INT64)
        }
        "Identity" => arg(0).cloned(),
        "Cast" => {
            let v = arg(0)?;
            let to = attr_i(p, "to", 1) as i32;
            let fl = tensor::Elem::from_onnx(to).is_some_and(|e| e.is_float());
            let data = v
                .data
                .iter()
                .map(|x| {
                    x.map(|x| {
                        if fl {
                            x
                        } else if to == BOOL {
                            (x != 0.0) as i64 as f64
                        } else {
                            x.trunc()
                        }
                    })
                })
                .collect();
            out(v.dims.clone(), data, to)
        }
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            // the data stays; only the dims change
            let v = arg(0)?;
            let x: Shape = v.dims.iter().map(|&d| Some(d as i64)).collect();
            let o = match op {
                "Reshape" => shapes.get(&Outlet { node: n, slot: 0 }).cloned().or_else(|| {
                    let t = arg(1)?.ints()?;
                    let known = t.iter().enumerate().filter(|(_, &d)| d != -1).try_fold(1i64, |acc, (i, &d)| {
                        acc.checked_mul(if d == 0 { *v.dims.get(i)? as i64 } else { d })
                    })?;
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
                })?,
                "Flatten" => {
                    let a = norm_axis(attr_i(p, "axis", 1), x.len() + 1)?;
                    vec![shapes::product(&x[..a]), shapes::product(&x[a..])]
                }
                _ => shapes::unsqueeze_shape(m, n, &x)?,
            };
            let dims: Vec<usize> = o.iter().map(|d| d.and_then(|d| usize::try_from(d).ok())).collect::<Option<_>>()?;
            (numel(&dims)? == v.data.len()).then(|| Value { dims, data: v.data.clone(), elem: v.elem })
        }
        "Gather" => {
            let (d, idx) = (arg(0)?, arg(1)?);
            let ax = norm_axis(attr_i(p, "axis", 0), d.dims.len())?;
            if d.dims.len() != 1 || ax != 0 {
                return None;
            }
            let len = d.dims[0] as i64;
            let data = idx
                .data
                .iter()
                .map(|i| {
                    let i = (*i)? as i64;
                    let i = if i < 0 { i + len } else { i };
                    d.data.get(usize::try_from(i).ok()?).copied().flatten()
                })
                .collect();
            out(idx.dims.clone(), data, d.elem)
        }
        "Slice" => {
            let d = arg(0)?;
            let r = d.dims.len();
            let (st, en, axes, steps) = if m.opset() >= 10 {
                let st = arg(1)?.ints()?;
                let en = arg(2)?.ints()?;
                let ax = if m.input(n, 3).is_some() { arg(3)?.ints()? } else { (0..st.len() as i64).collect() };
                let sp = if m.input(n, 4).is_some() { arg(4)?.ints()? } else { vec![1; st.len()] };
                (st, en, ax, sp)
            } else {
                let st = attr_ints(p, "starts");
                let ax = match attr_ints(p, "axes") {
                    a if a.is_empty() => (0..st.len() as i64).collect(),
                    a => a,
                };
                let k = st.len();
                (st, attr_ints(p, "ends"), ax, vec![1; k])
            };
            if st.len() != en.len() || st.len() != axes.len() || st.len() != steps.len() || steps.contains(&0) {
                return None;
            }
            // the indices kept along every axis (F.pad reverses its pads with step -1)
            let mut keep: Vec<Vec<usize>> = d.dims.iter().map(|&k| (0..k).collect()).collect();
            for i in 0..st.len() {
                let a = norm_axis(axes[i], r)?;
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
            out(dims, data, d.elem)
        }
        "Transpose" => {
            // F.pad builds its pads as [n, 2] and transposes them
            let v = arg(0)?;
            let r = v.dims.len();
            let perm: Vec<usize> = match attr_ints(p, "perm") {
                p if p.is_empty() => (0..r).rev().collect(),
                p => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect::<Option<_>>()?,
            };
            if perm.len() != r {
                return None;
            }
            let dims: Vec<usize> = perm.iter().map(|&a| v.dims[a]).collect();
            let (src, dst) = (tensor::strides(&v.dims), tensor::strides(&dims));
            let mut data = vec![None; v.data.len()];
            for (i, slot) in data.iter_mut().enumerate() {
                // output index i → coordinates → input offset
                let at: usize = (0..r).map(|k| (i / dst[k]) % dims[k] * src[perm[k]]).sum();
                *slot = v.data[at];
            }
            out(dims, data, v.elem)
        }
        "Concat" => {
            let parts: Vec<&Value> = (0..m.n_inputs(n)).map(arg).collect::<Option<_>>()?;
            if parts.iter().any(|v| v.dims.len() != 1) {
                return None;
            }
            let data: Vec<Option<f64>> = parts.iter().flat_map(|v| v.data.iter().copied()).collect();
            out(vec![data.len()], data, parts.first()?.elem)
        }
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Pow" | "Max" | "Min" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            let vs: Vec<&Value> = (0..m.n_inputs(n)).map(arg).collect::<Option<_>>()?;
            if vs.is_empty() || (vs.len() != 2 && !matches!(op, "Max" | "Min")) {
                return None;
            }
            let int = vs[0].is_int();
            let cmp = matches!(op, "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or");
            let b = |x: bool| Some(x as i64 as f64);
            let f = |a: &[f64]| -> Option<f64> {
                let (x, y) = (a[0], *a.get(1).unwrap_or(&a[0]));
                match op {
                    "Add" => Some(x + y),
                    "Sub" => Some(x - y),
                    "Mul" => Some(x * y),
                    "Div" if int => (y != 0.0).then(|| (x / y).trunc()),
                    "Div" => Some(x / y),
                    "Mod" if int => (y != 0.0).then(|| x - (x / y).floor() * y),
                    "Mod" => Some(x % y),
                    "Pow" => Some(x.powf(y)),
                    "Max" => Some(a.iter().copied().fold(f64::MIN, f64::max)),
                    "Min" => Some(a.iter().copied().fold(f64::MAX, f64::min)),
                    "Equal" => b(x == y),
                    "Less" => b(x < y),
                    "Greater" => b(x > y),
                    "LessOrEqual" => b(x <= y),
                    "GreaterOrEqual" => b(x >= y),
                    "And" => b(x != 0.0 && y != 0.0),
                    _ => b(x != 0.0 || y != 0.0),
                }
                .filter(|v| v.is_finite() && v.abs() < 9.0e15)
            };
            broadcast_map(&vs, f, if cmp { BOOL } else { vs[0].elem })
        }
        "Neg" | "Abs" | "Floor" | "Ceil" | "Sqrt" | "Not" | "Round" => {
            let v = arg(0)?;
            let f = |a: &[f64]| -> Option<f64> {
                let x = a[0];
                Some(match op {
                    "Neg" => -x,
                    "Abs" => x.abs(),
                    "Floor" => x.floor(),
                    "Ceil" => x.ceil(),
                    "Sqrt" => x.sqrt(),
                    "Round" => x.round_ties_even(),
                    _ => (x == 0.0) as i64 as f64,
                })
                .filter(|v| v.is_finite())
            };
            broadcast_map(&[v], f, v.elem)
        }
        "Where" => {
            let (c, x, y) = (arg(0)?, arg(1)?, arg(2)?);
            broadcast_map(&[c, x, y], |a| Some(if a[0] != 0.0 { a[1] } else { a[2] }), x.elem)
        }
        "Range" => {
            let (s, l, d) = (arg(0)?.known()?, arg(1)?.known()?, arg(2)?.known()?);
            let (s, l, d) = (*s.first()?, *l.first()?, *d.first()?);
            if d == 0.0 {
                return None;
            }
            let count = ((l - s) / d).ceil().max(0.0) as usize;
            if count > MAX_ELEMENTS {
                return None;
            }
            let data = (0..count).map(|i| Some(s + i as f64 * d)).collect();
            out(vec![count], data, arg(0)?.elem)
        }
        "Expand" => {
            let (v, s) = (arg(0)?, arg(1)?.ints()?);
            let target: Vec<usize> = s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
            let dims = bcast_dims(&v.dims, &target)?;
            let n = numel(&dims)?;
            if n > MAX_ELEMENTS {
                return None;
            }
            let data = (0..n).map(|i| v.data[bidx(&v.dims, &dims, i)]).collect();
            out(dims, data, v.elem)
        }
        "ConstantOfShape" => {
            let s = arg(0)?.ints()?;
            let dims: Vec<usize> = s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
            let n = numel(&dims)?;
            if n > MAX_ELEMENTS {
                return None;
            }
            let (fill, elem) = match attr(p, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => (*tensor::to_f64(t).ok()?.first()?, t.data_type()),
                None => (0.0, 1),
            };
            out(dims, vec![Some(fill); n], elem)
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceMean" => {
            let v = arg(0)?;
            let from = if op == "ReduceSum" { 13 } else { 18 };
            let axes = axes_of(m, n, vals, from)?;
            // only full reductions of rank-1 values (what shape code uses)
            if v.dims.len() != 1 || axes.is_some_and(|a| a.iter().any(|&x| norm_axis(x, 1) != Some(0))) {
                return None;
            }
            let keep = attr_i(p, "keepdims", 1) == 1;
            let k = v.known()?;
            let r = match op {
                "ReduceProd" => k.iter().product(),
                "ReduceSum" => k.iter().sum(),
                "ReduceMax" => k.iter().copied().fold(f64::MIN, f64::max),
                "ReduceMin" => k.iter().copied().fold(f64::MAX, f64::min),
                _ => k.iter().sum::<f64>() / k.len().max(1) as f64,
            };
            out(if keep { vec![1] } else { vec![] }, vec![Some(r)], v.elem)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::slice_indices;

    #[test]
    fn slice_indices_follow_onnx_for_every_step() {
        assert_eq!(slice_indices(4, 0, 2, 1), [0, 1]);
        assert_eq!(slice_indices(4, -1, i64::MIN, -1), [3, 2, 1, 0], "reversed, as F.pad exports its pads");
        assert_eq!(slice_indices(5, 4, 0, -2), [4, 2]);
        assert_eq!(slice_indices(5, 1, 100, 2), [1, 3]);
        assert!(slice_indices(3, 2, 2, 1).is_empty());
    }
}
