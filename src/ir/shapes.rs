//! Static shape inference for the operators pruned CNN exports use.
//!
//! Shapes are `Vec<Option<i64>>`: the rank is known, a dim may be symbolic
//! (`None`). Tensors whose shape cannot be derived (unknown ops, data-dependent
//! shapes) are absent from the map, and the channel analysis pins them.

use super::values::{self, Value};
use super::{Model, NodeId, Outlet};
use crate::onnx::{attr_f, attr_i, attr_ints, attr_s};
use crate::ops::ShapeRule as S;
use crate::tensor;
use std::collections::HashMap;

/// A shape with possibly unknown dims.
pub type Shape = Vec<Option<i64>>;

/// Infers shapes for every tensor it can. `overrides` replaces graph input
/// shapes (for symbolic dims).
pub fn infer(m: &Model, overrides: &HashMap<String, Vec<i64>>) -> HashMap<Outlet, Shape> {
    infer_with_values(m, overrides).0
}

/// Shapes, and the values of small tensors computed from shapes and
/// constants ([`super::values`]), in one topological walk: each needs the
/// other (`Shape(x)` needs x's shape, a Reshape's shape needs its target).
pub fn infer_with_values(
    m: &Model,
    overrides: &HashMap<String, Vec<i64>>,
) -> (HashMap<Outlet, Shape>, HashMap<Outlet, Value>) {
    let mut s: HashMap<Outlet, Shape> = HashMap::new();
    let mut vals: HashMap<Outlet, Value> = HashMap::new();
    let inputs: HashMap<String, Shape> = m
        .proto
        .graph
        .as_ref()
        .map(|g| g.input.iter().filter_map(|vi| Some((vi.name().to_string(), super::value_info_shape(vi)?))).collect())
        .unwrap_or_default();
    let declared: HashMap<&str, Shape> = m
        .value_info
        .iter()
        .chain(m.outputs.iter().map(|(_, vi)| vi))
        .filter_map(|vi| Some((vi.name(), super::value_info_shape(vi).filter(|s| s.iter().all(|d| d.is_some()))?)))
        .collect();
    for n in m.toposort() {
        let o0 = Outlet { node: n, slot: 0 };
        match &m.g[n].kind {
            super::NodeKind::Input(name) => {
                let shape = overrides
                    .get(name)
                    .map(|v| v.iter().map(|&d| Some(d)).collect())
                    .or_else(|| inputs.get(name).cloned());
                if let Some(sh) = shape {
                    s.insert(o0, sh);
                }
            }
            super::NodeKind::Const(t) => {
                s.insert(o0, t.dims.iter().map(|&d| Some(d)).collect());
                if let Some(v) = values::const_value(m, o0) {
                    vals.insert(o0, v);
                }
            }
            super::NodeKind::Op(p) => {
                for (slot, sh) in op_shapes(m, n, &s, &vals).into_iter().enumerate() {
                    let o = Outlet { node: n, slot };
                    // What the op's semantics cannot give (unknown ops), the
                    // model's own value_info may record.
                    if let Some(sh) = sh.or_else(|| declared.get(m.tensor_name(o)).cloned()) {
                        s.insert(o, sh);
                    }
                }
                let v = if m.const_dims(o0).is_some() {
                    values::const_value(m, o0)
                } else if crate::ops::standard(p) {
                    values::eval_op(m, n, &s, &vals).filter(|v| v.data.len() <= values::MAX_ELEMENTS)
                } else {
                    None
                };
                if let Some(v) = v {
                    vals.insert(o0, v);
                }
            }
        }
    }
    (s, vals)
}

fn ints(m: &Model, n: NodeId, slot: usize) -> Option<Vec<i64>> {
    tensor::to_i64(&*m.input_const(n, slot)?).ok()
}

fn floats(m: &Model, n: NodeId, slot: usize) -> Option<Vec<f64>> {
    tensor::to_f64(&*m.input_const(n, slot)?).ok()
}

/// Normalises a possibly negative axis.
pub fn axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

fn broadcast(shapes: &[&Shape]) -> Option<Shape> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![Some(1); rank];
    for s in shapes {
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            *o = match (*o, *d) {
                (Some(1), d) => d,
                (o, Some(1)) => o,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(_), Some(_)) => return None,
                (a, None) | (None, a) => a.filter(|&v| v != 1),
            };
        }
    }
    Some(out)
}

/// Largest dim align believes: anything above is a corrupt model.
const MAX_DIM: i128 = 1 << 48;

/// A computed dim, if it is a plausible one.
fn fit(v: i128) -> Option<i64> {
    (0..=MAX_DIM).contains(&v).then_some(v as i64)
}

/// Product of known dims, if it fits.
pub fn product(d: &[Option<i64>]) -> Option<i64> {
    d.iter().try_fold(1i64, |acc, v| v.and_then(|v| acc.checked_mul(v)))
}

/// Spatial output of a conv / pool window.
fn window(inp: &[Option<i64>], k: &[i64], p: &crate::onnx::NodeProto, dil_ok: bool) -> Option<Vec<Option<i64>>> {
    let nd = k.len();
    let strides = nonempty(attr_ints(p, "strides"), nd, 1);
    let dil = if dil_ok { nonempty(attr_ints(p, "dilations"), nd, 1) } else { vec![1; nd] };
    let pads = nonempty(attr_ints(p, "pads"), 2 * nd, 0);
    let auto = attr_s(p, "auto_pad").unwrap_or(b"NOTSET");
    let ceil = attr_i(p, "ceil_mode", 0) == 1;
    if inp.len() != nd || strides.len() != nd || dil.len() != nd || pads.len() != 2 * nd || strides.contains(&0) {
        return None;
    }
    Some(
        (0..nd)
            .map(|i| {
                let w = |v: i64| v as i128;
                let (x, s) = (w(inp[i]?), w(strides[i]));
                let ek = (w(k[i]) - 1) * w(dil[i]) + 1;
                let v = match auto {
                    b"SAME_UPPER" | b"SAME_LOWER" => (x + s - 1) / s,
                    b"VALID" => (x - ek) / s + 1,
                    _ => {
                        let num = x + w(pads[i]) + w(pads[i + nd]) - ek;
                        if num < 0 {
                            return None;
                        }
                        if ceil {
                            (num + s - 1) / s + 1
                        } else {
                            num / s + 1
                        }
                    }
                };
                fit(v)
            })
            .collect(),
    )
}

fn nonempty(v: Vec<i64>, n: usize, fill: i64) -> Vec<i64> {
    if v.is_empty() {
        vec![fill; n]
    } else {
        v
    }
}

fn op_shapes(m: &Model, n: NodeId, s: &HashMap<Outlet, Shape>, vals: &HashMap<Outlet, Value>) -> Vec<Option<Shape>> {
    let p = m.op(n).unwrap();
    let nout = p.output.len();
    let one = |x: Option<Shape>| {
        let mut v = vec![None; nout];
        if nout > 0 {
            v[0] = x;
        }
        v
    };
    let Some(rule) = crate::ops::entry(p).map(|e| e.shape) else {
        return vec![None; nout];
    };
    let inp = |i: usize| m.input(n, i).and_then(|o| s.get(&o));
    let op = p.op_type();
    if let Some(d) = m.const_dims(Outlet { node: n, slot: 0 }) {
        let mut v = vec![None; nout];
        if nout > 0 {
            v[0] = Some(d.iter().map(|&d| Some(d)).collect());
        }
        return v;
    }

    let r = (|| -> Option<Vec<Option<Shape>>> {
        Some(match rule {
            S::Same => one(Some(inp(0)?.clone())),
            S::Broadcast => {
                let shapes: Vec<&Shape> = (0..m.n_inputs(n)).map(inp).collect::<Option<_>>()?;
                one(Some(broadcast(&shapes)?))
            }
            S::Conv => {
                let x = inp(0)?;
                let w = inp(1)?;
                if x.len() < 3 || w.len() != x.len() {
                    return None;
                }
                let k: Vec<i64> = w[2..].iter().copied().collect::<Option<_>>()?;
                let k = nonempty(attr_ints(p, "kernel_shape"), k.len(), 1)
                    .into_iter()
                    .zip(k)
                    .map(|(_, b)| b)
                    .collect::<Vec<_>>();
                let mut out = vec![x[0], w[0]];
                out.extend(window(&x[2..], &k, p, true)?);
                one(Some(out))
            }
            S::ConvTranspose => {
                let x = inp(0)?;
                let w = inp(1)?;
                if x.len() < 3 || w.len() != x.len() {
                    return None;
                }
                let nd = x.len().checked_sub(2)?;
                let g = attr_i(p, "group", 1);
                let k: Vec<i64> = w[2..].iter().copied().collect::<Option<_>>()?;
                let strides = nonempty(attr_ints(p, "strides"), nd, 1);
                let dil = nonempty(attr_ints(p, "dilations"), nd, 1);
                let pads = nonempty(attr_ints(p, "pads"), 2 * nd, 0);
                let opad = nonempty(attr_ints(p, "output_padding"), nd, 0);
                let oshape = attr_ints(p, "output_shape");
                let auto = attr_s(p, "auto_pad").unwrap_or(b"NOTSET");
                if k.len() != nd || strides.len() != nd || pads.len() != 2 * nd || opad.len() != nd || dil.len() != nd {
                    return None;
                }
                let mut out = vec![x[0], w[1].and_then(|c| c.checked_mul(g))];
                for i in 0..nd {
                    out.push(if !oshape.is_empty() {
                        Some(*oshape.get(oshape.len() - nd + i)?)
                    } else if auto == b"SAME_UPPER" || auto == b"SAME_LOWER" {
                        x[2 + i].map(|v| v * strides[i])
                    } else {
                        x[2 + i].and_then(|v| {
                            let w = |v: i64| v as i128;
                            fit(w(strides[i]) * (w(v) - 1) + w(opad[i]) + (w(k[i]) - 1) * w(dil[i]) + 1
                                - w(pads[i])
                                - w(pads[i + nd]))
                        })
                    });
                }
                one(Some(out))
            }
            S::Pool => {
                let x = inp(0)?;
                if x.len() < 3 {
                    return None;
                }
                let k = attr_ints(p, "kernel_shape");
                let mut out = vec![x[0], x[1]];
                out.extend(window(&x[2..], &k, p, op == "MaxPool")?);
                let mut v = vec![Some(out.clone()); nout];
                if nout > 1 {
                    v[1] = Some(out);
                }
                v
            }
            S::GlobalPool => {
                let x = inp(0)?;
                if x.len() < 2 {
                    return None;
                }
                let mut out = vec![x[0], x[1]];
                out.extend(std::iter::repeat_n(Some(1), x.len() - 2));
                one(Some(out))
            }
            S::Concat => {
                let shapes: Vec<&Shape> = (0..m.n_inputs(n)).map(inp).collect::<Option<_>>()?;
                let a = axis(attr_i(p, "axis", 0), shapes.first()?.len())?;
                if shapes.iter().any(|s| s.len() != shapes[0].len()) {
                    return None;
                }
                let mut out = shapes[0].clone();
                out[a] = shapes.iter().map(|s| s.get(a).copied().flatten()).sum::<Option<i64>>();
                one(Some(out))
            }
            S::Split => {
                let x = inp(0)?;
                let a = axis(attr_i(p, "axis", 0), x.len())?;
                let sizes = split_sizes(m, n, x[a]?)?;
                sizes
                    .into_iter()
                    .map(|sz| {
                        let mut o = x.clone();
                        o[a] = Some(sz);
                        Some(o)
                    })
                    .collect()
            }
            S::Slice => {
                let x = inp(0)?;
                let sl = slice_params(m, n, x.len())?;
                let mut out = x.clone();
                for (a, st, en, step) in sl {
                    out[a] = x[a].map(|d| slice_len(d, st, en, step));
                }
                one(Some(out))
            }
            S::Resize => {
                let x = inp(0)?;
                // sizes computed at run time (dynamic H, W) may be known in part
                let computed = (m.opset() >= 11 && m.input_const(n, 3).is_none())
                    .then(|| m.input(n, 3).and_then(|o| vals.get(&o)))
                    .flatten()
                    .filter(|v| v.data.len() == x.len());
                if let Some(v) = computed {
                    return Some(one(Some(v.data.iter().map(|d| d.map(|d| d as i64)).collect())));
                }
                let (scales, sizes) = resize_params(m, n)?;
                let out = if let Some(sz) = sizes {
                    sz.iter().map(|&d| Some(d)).collect()
                } else {
                    let sc = scales?;
                    if sc.len() != x.len() {
                        return None;
                    }
                    x.iter().zip(sc).map(|(d, f)| d.and_then(|d| fit((d as f64 * f).floor() as i128))).collect()
                };
                one(Some(out))
            }
            S::Pad => {
                let x = inp(0)?;
                let pads = if m.opset() >= 11 { ints(m, n, 1)? } else { attr_ints(p, "pads") };
                let r = x.len();
                if pads.len() != 2 * r {
                    return None;
                }
                one(Some(
                    (0..r).map(|i| x[i].and_then(|d| fit(d as i128 + pads[i] as i128 + pads[i + r] as i128))).collect(),
                ))
            }
            S::Flatten => {
                let x = inp(0)?;
                let a = axis(attr_i(p, "axis", 1), x.len() + 1)?;
                let pr = product;
                one(Some(vec![pr(&x[..a]), pr(&x[a..])]))
            }
            S::Reshape => {
                let x = inp(0)?;
                // the target may be partly known (a symbolic batch read by Shape)
                let shape: Vec<Option<i64>> = match m.input(n, 1).and_then(|o| vals.get(&o)) {
                    Some(v) => v.data.iter().map(|d| d.map(|d| d as i64)).collect(),
                    None => ints(m, n, 1)?.into_iter().map(Some).collect(),
                };
                let allow_zero = attr_i(p, "allowzero", 0) == 1;
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
                one(Some(out))
            }
            S::Transpose => {
                let x = inp(0)?;
                let perm = attr_ints(p, "perm");
                let perm: Vec<usize> = if perm.is_empty() {
                    (0..x.len()).rev().collect()
                } else {
                    perm.iter().map(|&a| a as usize).collect()
                };
                one(Some(perm.iter().map(|&a| x.get(a).copied().flatten()).collect()))
            }
            S::Gemm => {
                let a = inp(0)?;
                let b = inp(1)?;
                if a.len() != 2 || b.len() != 2 {
                    return None;
                }
                let ta = attr_i(p, "transA", 0) == 1;
                let tb = attr_i(p, "transB", 0) == 1;
                one(Some(vec![if ta { a[1] } else { a[0] }, if tb { b[0] } else { b[1] }]))
            }
            S::MatMul => {
                let a = inp(0)?;
                let b = inp(1)?;
                if a.len() < 2 || b.len() < 2 {
                    return None;
                }
                let mut out = broadcast(&[&a[..a.len() - 2].to_vec(), &b[..b.len() - 2].to_vec()])?;
                out.push(a[a.len() - 2]);
                out.push(b[b.len() - 1]);
                one(Some(out))
            }
            S::ShapeOf => {
                let r = inp(0)?.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
                let (a, b) = (clamp(attr_i(p, "start", 0)), clamp(attr_i(p, "end", r)));
                one(Some(vec![Some((b - a).max(0))]))
            }
            S::Reduce => one(Some(reduce_shape(m, n, inp(0)?)?)),
            S::Unsqueeze => one(Some(unsqueeze_shape(m, n, inp(0)?)?)),
            S::Gather => {
                let (x, idx) = (inp(0)?, inp(1)?);
                let a = axis(attr_i(p, "axis", 0), x.len())?;
                let mut out = x[..a].to_vec();
                out.extend(idx.iter().copied());
                out.extend(x[a + 1..].iter().copied());
                one(Some(out))
            }
            S::Expand => {
                let x = inp(0)?;
                let target: Shape = match m.input(n, 1).and_then(|o| vals.get(&o)) {
                    Some(v) => v.data.iter().map(|d| d.map(|d| d as i64)).collect(),
                    None => ints(m, n, 1)?.into_iter().map(Some).collect(),
                };
                one(Some(broadcast(&[x, &target])?))
            }
            S::Declared => return None,
        })
    })();
    // A dim that is negative or absurdly large means a corrupt model: treat
    // the shape as unknown rather than compute with it.
    r.unwrap_or_else(|| vec![None; nout])
        .into_iter()
        .map(|s| s.filter(|s| s.iter().all(|d| d.is_none_or(|d| fit(d as i128).is_some()))))
        .collect()
}

/// Axes of Squeeze / Unsqueeze / a reduction: an attribute up to
/// `input_from - 1`, a constant input 1 from opset `input_from` on.
fn axes(m: &Model, n: NodeId, input_from: i64) -> Option<Vec<i64>> {
    if m.opset() >= input_from {
        match m.input(n, 1) {
            Some(_) => ints(m, n, 1),
            None => Some(vec![]),
        }
    } else {
        Some(attr_ints(m.op(n)?, "axes"))
    }
}

/// Output shape of a reduction (keepdims, noop_with_empty_axes).
fn reduce_shape(m: &Model, n: NodeId, x: &Shape) -> Option<Shape> {
    let p = m.op(n)?;
    let from = if p.op_type() == "ReduceSum" { 13 } else { 18 };
    let ax = axes(m, n, from)?;
    if ax.is_empty() && attr_i(p, "noop_with_empty_axes", 0) == 1 {
        return Some(x.clone());
    }
    let ax: Vec<usize> = if ax.is_empty() {
        (0..x.len()).collect()
    } else {
        ax.iter().map(|&a| axis(a, x.len())).collect::<Option<_>>()?
    };
    let keep = attr_i(p, "keepdims", 1) == 1;
    Some(
        x.iter()
            .enumerate()
            .filter_map(|(i, &d)| match (ax.contains(&i), keep) {
                (true, true) => Some(Some(1)),
                (true, false) => None,
                (false, _) => Some(d),
            })
            .collect(),
    )
}

/// Output shape of Squeeze / Unsqueeze (`x` is the input's shape).
pub fn unsqueeze_shape(m: &Model, n: NodeId, x: &Shape) -> Option<Shape> {
    let p = m.op(n)?;
    let ax = axes(m, n, 13)?;
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

/// Sizes of a Split's outputs along its axis of length `len`.
pub fn split_sizes(m: &Model, n: NodeId, len: i64) -> Option<Vec<i64>> {
    let p = m.op(n)?;
    let nout = p.output.len() as i64;
    let explicit = if m.opset() >= 13 {
        m.input(n, 1).and_then(|_| ints(m, n, 1))
    } else {
        Some(attr_ints(p, "split")).filter(|v| !v.is_empty())
    };
    if let Some(v) = explicit {
        return (v.iter().all(|&s| s >= 0) && v.iter().map(|&s| s as i128).sum::<i128>() == len as i128).then_some(v);
    }
    if m.opset() >= 13 && m.input(n, 1).is_some() {
        return None;
    }
    let num = if m.opset() >= 18 { attr_i(p, "num_outputs", nout) } else { nout };
    if num <= 0 || num != nout {
        return None;
    }
    if len < 0 {
        return None;
    }
    let chunk = ((len as i128 + num as i128 - 1) / num as i128) as i64;
    Some((0..num).map(|i| (len - i * chunk).clamp(0, chunk)).collect())
}

/// Slice parameters as (axis, start, end, step), with constant inputs.
pub fn slice_params(m: &Model, n: NodeId, rank: usize) -> Option<Vec<(usize, i64, i64, i64)>> {
    let p = m.op(n)?;
    let (starts, ends, axes, steps) = if m.opset() >= 10 {
        let st = ints(m, n, 1)?;
        let en = ints(m, n, 2)?;
        let ax = if m.input(n, 3).is_some() { ints(m, n, 3)? } else { (0..st.len() as i64).collect() };
        let sp = if m.input(n, 4).is_some() { ints(m, n, 4)? } else { vec![1; st.len()] };
        (st, en, ax, sp)
    } else {
        let st = attr_ints(p, "starts");
        let ax = attr_ints(p, "axes");
        let ax = if ax.is_empty() { (0..st.len() as i64).collect() } else { ax };
        let n = st.len();
        (st, attr_ints(p, "ends"), ax, vec![1; n])
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

/// Scales and/or sizes of a Resize.
pub type ResizeParams = (Option<Vec<f64>>, Option<Vec<i64>>);

/// Resize/Upsample scales or sizes, from inputs (by opset) or attributes.
pub fn resize_params(m: &Model, n: NodeId) -> Option<ResizeParams> {
    let p = m.op(n)?;
    if p.op_type() == "Upsample" {
        if m.opset() >= 9 {
            return Some((Some(floats(m, n, 1)?), None));
        }
        let sc = crate::onnx::attr(p, "scales")?.floats.iter().map(|&v| v as f64).collect();
        return Some((Some(sc), None));
    }
    // Resize: opset 10 (X, scales); 11+ (X, roi, scales, sizes).
    if m.opset() < 11 {
        return Some((Some(floats(m, n, 1)?), None));
    }
    let sizes = m.input(n, 3).and_then(|_| ints(m, n, 3)).filter(|v| !v.is_empty());
    let scales = m.input(n, 2).and_then(|_| floats(m, n, 2)).filter(|v| !v.is_empty());
    if sizes.is_none() && scales.is_none() {
        return None;
    }
    if attr_f(p, "extrapolation_value", 0.0).is_nan() {
        return None;
    }
    Some((scales, sizes))
}
