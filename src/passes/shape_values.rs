//! Shape arithmetic evaluated at the model's static input shape.
//!
//! Exporters often compute channel split points at run time:
//! `x.chunk(2, 1)` becomes `Shape → Gather → Add → Div → Mul → Slice`. With
//! the input shape fixed, those values are constants. `pad` replaces the
//! Slice / Split parameters computed this way with constants (what onnxsim
//! would do), so the `Shape` reader no longer pins the channel space and the
//! halves can be padded like any Split. The dead shape arithmetic is removed
//! by `Model::cleanup`.
//!
//! Before: `Slice(x, Constant(0), Mul(Div(Add(Gather(Shape(x), 1), 1), 2), 1), axes)`.
//! After: `Slice(x, Constant(0), [7], axes)` (then rewritten to physical offsets).
//! Conditions: every value in the chain is an integer tensor of rank ≤ 1
//! computed by Shape (of a tensor whose shape is fully known), Gather,
//! Add/Sub/Mul/Div/Mod, Unsqueeze/Squeeze, Concat, Cast, Identity, Slice or a
//! constant.

use crate::ir::shapes::Shape;
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::attr_i;
use crate::tensor;
use std::collections::HashMap;

/// The integer value at `o` (rank ≤ 1), if it can be evaluated.
pub fn eval(m: &Model, o: Outlet, shapes: &HashMap<Outlet, Shape>, depth: usize) -> Option<Vec<i64>> {
    if depth > 48 {
        return None;
    }
    if let Some(t) = m.const_value(o) {
        return (t.dims.len() <= 1 && tensor::elem(&t).is_some_and(|e| !e.is_float()))
            .then(|| tensor::to_i64(&t).ok())
            .flatten();
    }
    let p = m.op(o.node)?;
    if !p.domain().is_empty() || o.slot != 0 {
        return None;
    }
    let n = o.node;
    let arg = |i: usize| m.input(n, i).and_then(|x| eval(m, x, shapes, depth + 1));
    let v = match p.op_type() {
        "Shape" => {
            let s: Vec<i64> = shapes.get(&m.input(n, 0)?)?.iter().copied().collect::<Option<_>>()?;
            let r = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (clamp(attr_i(p, "start", 0)), clamp(attr_i(p, "end", r)));
            s.get(a..b.max(a))?.to_vec()
        }
        "Identity" | "Cast" => arg(0)?,
        "Gather" if attr_i(p, "axis", 0) == 0 => {
            let data = arg(0)?;
            let idx = arg(1)?;
            idx.iter()
                .map(|&i| {
                    let i = if i < 0 { i + data.len() as i64 } else { i };
                    data.get(usize::try_from(i).ok()?).copied()
                })
                .collect::<Option<_>>()?
        }
        "Add" | "Sub" | "Mul" | "Div" | "Mod" => {
            let (a, b) = (arg(0)?, arg(1)?);
            let len = a.len().max(b.len());
            if (a.len() != len && a.len() != 1) || (b.len() != len && b.len() != 1) {
                return None;
            }
            let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
            (0..len)
                .map(|i| {
                    let (x, y) = (at(&a, i), at(&b, i));
                    match p.op_type() {
                        "Add" => x.checked_add(y),
                        "Sub" => x.checked_sub(y),
                        "Mul" => x.checked_mul(y),
                        "Div" => x.checked_div(y),
                        _ => x.checked_rem(y),
                    }
                })
                .collect::<Option<_>>()?
        }
        "Unsqueeze" | "Squeeze" => arg(0)?,
        "Concat" => {
            let mut v = vec![];
            for i in 0..m.n_inputs(n) {
                v.extend(arg(i)?);
            }
            v
        }
        "Slice" => {
            let data = arg(0)?;
            let (st, en) = (arg(1)?, arg(2)?);
            if st.len() != 1 || en.len() != 1 || m.input(n, 4).is_some_and(|_| arg(4) != Some(vec![1])) {
                return None;
            }
            let (a, b) = crate::ir::shapes::slice_range(data.len() as i64, st[0], en[0]);
            data[a as usize..b as usize].to_vec()
        }
        _ => return None,
    };
    (v.len() <= 64).then_some(v)
}

/// Slice / Split parameters that are computed, not constant, but can be
/// evaluated: (node, input slot, value).
pub fn computed_params(m: &Model, shapes: &HashMap<Outlet, Shape>) -> Vec<(NodeId, usize, Vec<i64>)> {
    let mut out = vec![];
    for n in m.ops() {
        if !m.op(n).is_some_and(|p| p.domain().is_empty()) {
            continue;
        }
        let slots: &[usize] = match m.op_type(n) {
            "Slice" if m.opset() >= 10 => &[1, 2, 3, 4],
            "Split" if m.opset() >= 13 => &[1],
            _ => continue,
        };
        for &s in slots {
            let Some(o) = m.input(n, s) else { continue };
            if m.const_value(o).is_some() {
                continue;
            }
            if let Some(v) = eval(m, o, shapes, 0) {
                out.push((n, s, v));
            }
        }
    }
    out
}

/// Replaces computed Slice / Split parameters by constants and removes the
/// shape arithmetic left dead. Returns one note per replaced input.
pub fn fold(m: &mut Model, shapes: &HashMap<Outlet, Shape>) -> crate::Result<Vec<String>> {
    let mut notes = vec![];
    for (n, slot, v) in computed_params(m, shapes) {
        let base = format!("{}_in{slot}", m.label(n));
        let t = tensor::from_f64(&base, 7, &[v.len()], &v.iter().map(|&x| x as f64).collect::<Vec<_>>())?;
        let c = m.add_const(t);
        m.set_input(n, slot, c);
        notes.push(format!("{}: input {slot} evaluated to {v:?}", m.label(n)));
    }
    if !notes.is_empty() {
        m.cleanup();
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{int_attr, Builder};

    fn chunk_model(batch_known: bool) -> Model {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c = b.conv("x", 3, 14, 1, 1, true);
        let shape = b.node("Shape", &[&c], 1, vec![]).remove(0);
        let one = b.ints("one", &[1]);
        let ch = b.node("Gather", &[&shape, &one], 1, vec![int_attr("axis", 0)]).remove(0);
        let two = b.ints("two", &[2]);
        let half = b.node("Div", &[&ch, &two], 1, vec![]).remove(0);
        let (zero, ax) = (b.ints("zero", &[0]), b.ints("ax", &[1]));
        let s = b.node("Slice", &[&c, &zero, &half, &ax], 1, vec![]).remove(0);
        b.output(&s, &[1, 7, 8, 8]);
        if !batch_known {
            b.g.input[0] = crate::testutil::vi("x", &[1, 3, 8, 8]);
            if let Some(crate::onnx::type_proto::Value::TensorType(tt)) =
                b.g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                tt.shape.as_mut().unwrap().dim[0].value =
                    Some(crate::onnx::tensor_shape_proto::dimension::Value::DimParam("N".into()));
            }
        }
        Model::import(b.model()).unwrap()
    }

    #[test]
    fn chunk_arithmetic_evaluates_at_the_static_shape() {
        let mut m = chunk_model(true);
        let sh = crate::ir::shapes::infer(&m, &Default::default());
        let notes = fold(&mut m, &sh).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("[7]"));
        assert!(m.ops().iter().all(|&n| m.op_type(n) != "Shape"), "dead shape arithmetic removed");
    }

    #[test]
    fn no_fold_when_the_shape_is_not_fully_known() {
        let mut m = chunk_model(false);
        let sh = crate::ir::shapes::infer(&m, &Default::default());
        assert!(fold(&mut m, &sh).unwrap().is_empty());
        // an explicit input shape makes it evaluable
        let over = [("x".to_string(), vec![1, 3, 8, 8])].into_iter().collect();
        let sh = crate::ir::shapes::infer(&m, &over);
        assert_eq!(fold(&mut m, &sh).unwrap().len(), 1);
    }
}
