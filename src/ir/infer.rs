//! Static shape inference and shape-arithmetic values in one topological
//! walk. The walk knows no op: it asks each op's family
//! ([`crate::ops::Rules`]) for its output shapes and its value, and keeps
//! what they give. Each needs the other (`Shape(x)` needs x's shape, a
//! Reshape's shape needs its target's value).

use super::shapes::{fit, Shape};
use super::values::{self, Value};
use super::{Model, NodeKind, Outlet};
use crate::ops::{self, Cx};
use std::collections::HashMap;

/// Infers shapes for every tensor it can. `overrides` replaces graph input
/// shapes (for symbolic dims).
pub fn infer(m: &Model, overrides: &HashMap<String, Vec<i64>>) -> HashMap<Outlet, Shape> {
    infer_with_values(m, overrides).0
}

/// Shapes, and the values of small tensors computed from shapes and
/// constants ([`super::values`]), in one topological walk.
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
            NodeKind::Input(name) => {
                let shape = overrides
                    .get(name)
                    .map(|v| v.iter().map(|&d| Some(d)).collect())
                    .or_else(|| inputs.get(name).cloned());
                if let Some(sh) = shape {
                    s.insert(o0, sh);
                }
            }
            NodeKind::Const(t) => {
                s.insert(o0, t.dims.iter().map(|&d| Some(d)).collect());
                if let Some(v) = values::const_value(m, o0) {
                    vals.insert(o0, v);
                }
            }
            NodeKind::Op(p) => {
                let shapes = op_shapes(&Cx { m, n, p, shapes: &s, values: &vals });
                for (slot, sh) in shapes.into_iter().enumerate() {
                    let o = Outlet { node: n, slot };
                    // What the op's rules cannot give (unknown ops), the
                    // model's own value_info may record.
                    if let Some(sh) = sh.or_else(|| declared.get(m.tensor_name(o)).cloned()) {
                        s.insert(o, sh);
                    }
                }
                let v = if m.const_dims(o0).is_some() {
                    values::const_value(m, o0)
                } else {
                    op_value(&Cx { m, n, p, shapes: &s, values: &vals })
                };
                if let Some(v) = v {
                    vals.insert(o0, v);
                }
            }
        }
    }
    (s, vals)
}

/// The shapes of op `cx.n`'s outputs: a constant's dims, else its family's
/// rule, a shape with a negative or absurdly large dim (a corrupt model)
/// taken as unknown.
fn op_shapes(cx: &Cx) -> Vec<Option<Shape>> {
    let nout = cx.p.output.len();
    let Some(entry) = ops::entry(cx.p) else {
        return vec![None; nout];
    };
    if let Some(d) = cx.m.const_dims(Outlet { node: cx.n, slot: 0 }) {
        return cx.one(d.iter().map(|&d| Some(d)).collect());
    }
    entry
        .rules
        .shapes(cx)
        .unwrap_or_else(|| vec![None; nout])
        .into_iter()
        .map(|s| s.filter(|s| s.iter().all(|d| d.is_none_or(|d| fit(d as i128).is_some()))))
        .collect()
}

/// The value of output 0 of a standard op by its family's rule, if every
/// element it needs is known and it is small.
fn op_value(cx: &Cx) -> Option<Value> {
    ops::entry(cx.p)?.rules.value(cx).filter(|v| v.data.len() <= values::limit())
}
