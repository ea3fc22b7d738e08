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
use super::shapes::Shape;
use super::values::{self, Value, BOOL};
use super::{Model, NodeId, NodeKind, Outlet};
use crate::error::Result;
use crate::tensor;
use std::collections::{HashMap, HashSet};

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
    let mut notes: Vec<String> = fold_weights(m)?.iter().map(Evaluated::note).collect();
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
    !frontier(m).is_empty() || !weight_frontier(m).is_empty()
}

/// Largest weight computed from constants that [`fold_weights`] evaluates
/// (a 3×3 conv of 512 → 512 channels has 2.4 M), and the most elements one
/// evaluation holds at once, in all its steps (an element is 16 bytes).
const MAX_WEIGHT: usize = 1 << 22;
const MAX_EVALUATED: usize = 1 << 24;

/// The ops computed from constants alone (every input an initializer or
/// such an op): tract folds them at load, align evaluates them here.
fn constant_ops(m: &Model) -> Vec<NodeId> {
    let mut derived: HashSet<NodeId> = HashSet::new();
    let mut order = vec![];
    for n in m.toposort() {
        match &m.g[n].kind {
            NodeKind::Const(_) => {
                derived.insert(n);
            }
            NodeKind::Input(_) => {}
            NodeKind::Op(_) => {
                let mut ins = (0..m.n_inputs(n)).filter_map(|s| m.input(n, s)).chain(m.implicit_inputs(n));
                if ins.all(|o| derived.contains(&o.node)) {
                    derived.insert(n);
                    order.push(n);
                }
            }
        }
    }
    order
}

/// Float inputs of ops that read a tensor computed from constants which
/// the IR's constant folding does not give: (reader, slot).
fn weight_frontier(m: &Model) -> Vec<(NodeId, usize)> {
    let ops: HashSet<NodeId> = constant_ops(m).into_iter().collect();
    let mut out = vec![];
    for n in m.ops().into_iter().filter(|n| !ops.contains(n)) {
        for slot in 0..m.n_inputs(n) {
            let Some(o) = m.input(n, slot) else { continue };
            if ops.contains(&o.node) && !m.is_const(o) {
                out.push((n, slot));
            }
        }
    }
    out
}

/// Evaluates every weight computed from constants at run time (timm's
/// weight-standardised convs: `F.batch_norm(w.reshape(1, out, -1), None,
/// None, training=True)`, exported as ReduceMean / Sub / Mul and a
/// BatchNormalization with `training_mode=1` on a constant) in f64, each
/// op by its family's value rule, and writes it as a constant, rounded
/// once into its type; removes the ops left dead. A path with an op that
/// has no value rule, or larger than 2^24 elements, stays as it is.
/// Returns what it evaluated.
pub fn fold_weights(m: &mut Model) -> Result<Vec<Evaluated>> {
    let todo = weight_frontier(m);
    if todo.is_empty() {
        return Ok(vec![]);
    }
    let ops = constant_ops(m);
    let (shapes, _) = infer::infer_with_values(m, &HashMap::new());
    let mut done = vec![];
    for (n, slot) in todo {
        let Some(o) = m.input(n, slot) else { continue };
        let tensor = m.tensor_name(o).to_string();
        let Some(v) = values::with_limit(MAX_WEIGHT, || evaluate(m, &ops, &shapes, o)) else { continue };
        let Some(data) = v.known().filter(|_| tensor::Elem::from_onnx(v.elem).is_some_and(|e| e.is_float())) else {
            continue;
        };
        let t = tensor::from_f64(&format!("{}_in{slot}", m.label(n)), v.elem, &v.dims, &data)?;
        let c = m.add_const(t);
        m.set_input(n, slot, c);
        done.push(Evaluated { reader: m.label(n), slot, tensor, constant: m.tensor_name(c).to_string() });
    }
    // the constant paths nothing reads any more
    for &n in ops.iter().rev() {
        let outs = m.output_names(n).len();
        let dead = (0..outs).all(|slot| {
            let o = Outlet { node: n, slot };
            m.consumers(o).is_empty() && !m.is_graph_output(o)
        });
        if dead {
            m.remove(n);
        }
    }
    Ok(done)
}

/// The elements of a tensor of known, plausible shape, up to [`MAX_WEIGHT`].
fn numel_of(s: Option<&Shape>) -> Option<usize> {
    let n = s?.iter().try_fold(1usize, |a, d| a.checked_mul(usize::try_from((*d)?).ok()?))?;
    (n <= MAX_WEIGHT).then_some(n)
}

/// A weight [`fold_weights`] evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The op that reads it.
    pub reader: String,
    /// Which input of that op it is.
    pub slot: usize,
    /// The tensor the model computes.
    pub tensor: String,
    /// The constant that replaces it.
    pub constant: String,
}

impl Evaluated {
    /// One line for a pass's notes.
    pub fn note(&self) -> String {
        format!("{}: input {} ('{}') evaluated from constants", self.reader, self.slot, self.tensor)
    }
}

/// The value of `o` computed through the constant ops that make it.
fn evaluate(m: &Model, ops: &[NodeId], shapes: &HashMap<Outlet, Shape>, o: Outlet) -> Option<Value> {
    // the ops `o` depends on, in topological order
    let mut need: HashSet<NodeId> = HashSet::from([o.node]);
    for &n in ops.iter().rev() {
        if need.contains(&n) {
            need.extend((0..m.n_inputs(n)).filter_map(|s| m.input(n, s)).map(|i| i.node));
        }
    }
    let mut vals: HashMap<Outlet, Value> = HashMap::new();
    let mut held = 0usize;
    for &n in ops.iter().filter(|n| need.contains(n)) {
        for i in (0..m.n_inputs(n)).filter_map(|s| m.input(n, s)) {
            if let std::collections::hash_map::Entry::Vacant(e) = vals.entry(i) {
                held += numel_of(shapes.get(&i))?;
                e.insert(values::const_value(m, i)?);
            }
        }
        let out = Outlet { node: n, slot: 0 };
        // sizes known before anything is computed: within the budget
        held += numel_of(shapes.get(&out))?;
        if held > MAX_EVALUATED {
            return None;
        }
        if m.is_const(out) {
            // a constant the IR folds (Constant, Identity…)
            vals.insert(out, values::const_value(m, out)?);
            continue;
        }
        let p = m.op(n)?;
        let v = crate::ops::entry(p)?.rules.value(&crate::ops::Cx { m, n, p, shapes, values: &vals })?;
        vals.insert(Outlet { node: n, slot: 0 }, v);
    }
    vals.remove(&o)
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
