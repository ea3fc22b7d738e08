//! Shape arithmetic evaluated at the model's static shapes, to a fixpoint:
//! a rewrite of the IR that `pad` runs first (and `report` on a copy, to
//! see what `pad` will see). Not a pass of its own.
//!
//! Exporters compute many operator parameters at run time from `Shape`:
//! `x.chunk(2, 1)` becomes `Shape → Gather → Add → Div → Mul → Slice`,
//! `F.interpolate(x, size=skip.shape[2:])` becomes Resize sizes
//! `Concat(Shape(x)[0:2], Shape(skip)[2:4])`, a view becomes a Reshape of
//! `Concat(Shape(x)[0], [no, -1])`. Where the shapes involved are known those
//! values are constants, and `pad` needs them as constants: a `Shape` reader
//! of a padded tensor would see the padded width, and Slice / Split / Resize
//! parameters must be rewritten to physical offsets.
//!
//! Before: `Slice(x, 0, Mul(Div(Add(Gather(Shape(x), 1), 1), 2), 1), 1)`.
//! After: `Slice(x, [0], [7], [1])` (then rewritten to physical offsets by `pad`).
//!
//! Conditions: a value is evaluated when every element it needs is known:
//! small integer or float tensors (≤ [`MAX_ELEMENTS`](crate::ir::values::MAX_ELEMENTS) elements) computed by
//! Shape, Size, Gather, Slice, Concat, Unsqueeze, Squeeze, Reshape, Cast,
//! Identity, Add/Sub/Mul/Div/Mod/Pow/Max/Min, Neg/Abs/Floor/Ceil/Sqrt,
//! Equal/Less/Greater/Not/And/Or, Where, Range, Expand, ConstantOfShape and
//! ReduceProd/Sum/Max/Min/Mean from constants and known shapes. Values are
//! evaluated element by element: `Shape(x)` with a symbolic batch still knows
//! the channel count, so `Gather(Shape(x), 1)` folds and the written model
//! keeps its symbolic batch. Only values that do not depend on a symbolic dim
//! are folded (shapes are inferred without `--input-shape` here).
//!
//! Fixpoint: folding a Reshape target makes the Reshape's output shape known,
//! which may make the next chain evaluable; it repeats until nothing more
//! folds.

use super::infer;
use super::values::{Value, BOOL};
use super::{Model, NodeId, Outlet};
use crate::error::Result;
use crate::tensor;
use std::collections::HashMap;

/// Inputs [`fold`] replaces in one round: (reader, slot, value, elements).
/// Only the frontier: a reader whose own value is known is folded into its
/// readers in turn.
fn frontier(m: &Model) -> Vec<(NodeId, usize, Value, Vec<f64>)> {
    let (_, vals) = infer::infer_with_values(m, &HashMap::new());
    let mut out = vec![];
    for n in m.ops() {
        if vals.get(&Outlet { node: n, slot: 0 }).is_some_and(|v| v.known().is_some()) {
            continue;
        }
        for slot in 0..m.n_inputs(n) {
            let Some(o) = m.input(n, slot) else { continue };
            if m.is_const(o) || m.op(o.node).is_none() {
                continue;
            }
            let Some(v) = vals.get(&o) else { continue };
            // bools feed Where, which folds instead
            if v.elem == BOOL || tensor::Elem::from_onnx(v.elem).is_none() {
                continue;
            }
            if let Some(data) = v.known() {
                out.push((n, slot, v.clone(), data));
            }
        }
    }
    out
}

/// Replaces every op input whose value is fully known (and does not depend
/// on a symbolic dim) by a constant, repeating until nothing more folds;
/// removes the shape arithmetic left dead. Returns one note per folded input.
pub fn fold(m: &mut Model) -> Result<Vec<String>> {
    let mut notes = vec![];
    // a fixpoint: each round can only turn computed inputs into constants
    for _ in 0..64 {
        let todo = frontier(m);
        if todo.is_empty() {
            break;
        }
        for (n, slot, v, data) in todo {
            let base = format!("{}_in{slot}", m.label(n));
            let t = tensor::from_f64(&base, v.elem, &v.dims, &data)?;
            let c = m.add_const(t);
            m.set_input(n, slot, c);
            notes.push(if data.len() <= 8 {
                format!("{}: input {slot} evaluated to {:?}", m.label(n), v.ints().unwrap_or_default())
            } else {
                format!("{}: input {slot} evaluated ({} values)", m.label(n), data.len())
            });
        }
        m.cleanup();
    }
    Ok(notes)
}

/// True when [`fold`] would change something (the report folds a copy only then).
pub fn foldable(m: &Model) -> bool {
    !frontier(m).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{int_attr, Builder};

    /// `x.chunk(2, 1)` as torch exports it, `k` times in a chain.
    fn chunk_model(batch_known: bool, k: usize) -> Model {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let mut c = b.conv("x", 3, 14, 1, 1, true);
        let mut width = 14;
        for _ in 0..k {
            let shape = b.node("Shape", &[&c], 1, vec![]).remove(0);
            let one = b.ints("one", &[1]);
            let ch = b.node("Gather", &[&shape, &one], 1, vec![int_attr("axis", 0)]).remove(0);
            let add = b.ints("add", &[1]);
            let ch1 = b.node("Add", &[&ch, &add], 1, vec![]).remove(0);
            let two = b.ints("two", &[2]);
            let half = b.node("Div", &[&ch1, &two], 1, vec![]).remove(0);
            let (zero, ax) = (b.ints("zero", &[0]), b.ints("ax", &[1]));
            let s = b.node("Slice", &[&c, &zero, &half, &ax], 1, vec![]).remove(0);
            width = (width + 1) / 2;
            c = b.conv(&s, width, 14, 1, 1, true);
            width = 14;
        }
        b.output(&c, &[1, 14, 8, 8]);
        if !batch_known {
            b.symbolic(0);
        }
        Model::import(b.model()).unwrap()
    }

    #[test]
    fn every_chunk_evaluates_in_one_run() {
        let mut m = chunk_model(true, 5);
        let notes = fold(&mut m).unwrap();
        assert_eq!(notes.len(), 5, "{notes:?}");
        assert!(notes[0].contains("[7]"), "{notes:?}");
        assert!(m.ops().iter().all(|&n| m.op_type(n) != "Shape"), "dead shape arithmetic removed");
        assert!(!foldable(&m));
    }

    #[test]
    fn a_symbolic_batch_does_not_stop_channel_arithmetic() {
        let mut m = chunk_model(false, 3);
        let notes = fold(&mut m).unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
    }

    #[test]
    fn values_that_depend_on_a_symbolic_dim_are_not_folded() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c = b.conv("x", 3, 6, 1, 1, true);
        let shape = b.node("Shape", &[&c], 1, vec![]).remove(0);
        let zero = b.ints("zero", &[0]);
        let batch = b.node("Gather", &[&shape, &zero], 1, vec![int_attr("axis", 0)]).remove(0);
        let rest = b.ints("rest", &[6, -1]);
        let target = b.node("Concat", &[&batch, &rest], 1, vec![int_attr("axis", 0)]).remove(0);
        let r = b.node("Reshape", &[&c, &target], 1, vec![]).remove(0);
        b.output(&r, &[1, 6, 64]);
        b.symbolic(0);
        let mut m = Model::import(b.model()).unwrap();
        assert!(fold(&mut m).unwrap().is_empty());
        let (_, vals) = infer::infer_with_values(&m, &HashMap::new());
        let reshape = m.ops().into_iter().find(|&n| m.op_type(n) == "Reshape").unwrap();
        let v = &vals[&m.input(reshape, 1).unwrap()];
        assert_eq!(v.data, vec![None, Some(6.0), Some(-1.0)], "batch unknown, the rest known");
    }
}
