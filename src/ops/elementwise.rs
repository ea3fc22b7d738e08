//! Element-wise ops: maps of one input (activations, Identity, Cast, Neg…)
//! and numpy-broadcasting ops of several (Add, Mul, comparisons, Where…),
//! with the values shape arithmetic computes through them.

use super::{zero_if, Cx, Fill, FillCx, FoldCx, Rules};
use crate::analysis::AtomId;
use crate::analysis::ChannelCx;
use crate::error::Error;
use crate::error::Result;
use crate::ir::shapes::{broadcast, Shape};
use crate::ir::values::{broadcast_map, Value, BOOL};
use crate::ir::Outlet;
use crate::onnx::{attr_f, attr_i, TensorProto};
use crate::passes::pad::{scatter_const, PadCx};
use crate::tensor;
use std::borrow::Cow;

/// One input mapped element by element: output 0 has its shape. Identity,
/// Cast and the exact maps of shape code (Neg, Abs, Floor, Ceil, Sqrt, Not,
/// Round) have a value.
#[derive(Debug)]
pub struct Map;

impl Rules for Map {
    /// Channel-wise: output 0 gets input 0's layout, on whichever axis.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        Ok(cx.channelwise())
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// Maps with f(0) = 0 keep exact zeros (Clip when its range holds 0);
    /// Sigmoid, HardSigmoid and Exp make their f(0).
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        let value = |v: f64| cx.zero_at(0).then_some(Fill::Value(v));
        match cx.p.op_type() {
            "Sigmoid" => value(0.5),
            "HardSigmoid" => value((attr_f(cx.p, "beta", 0.5) as f64).clamp(0.0, 1.0)),
            "Exp" | "Cos" => value(1.0),
            "Clip" => {
                let lo = cx.scalar(1).unwrap_or(attr_f(cx.p, "min", f32::MIN) as f64);
                let hi = cx.scalar(2).unwrap_or(attr_f(cx.p, "max", f32::MAX) as f64);
                zero_if(lo <= 0.0 && hi >= 0.0 && cx.padded_all_zero())
            }
            "Relu" | "LeakyRelu" | "Tanh" | "HardSwish" | "Identity" | "Dropout" | "Neg" | "Abs" | "Elu" | "Selu"
            | "Celu" | "Softsign" | "ThresholdedRelu" | "Mish" | "Gelu" | "Erf" | "Sign" | "Floor" | "Ceil"
            | "Round" | "Sin" => zero_if(cx.padded_all_zero()),
            _ => None,
        }
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        match cx.p.op_type() {
            "Identity" => Some(v.clone()),
            "Cast" => Some(cast(v, attr_i(cx.p, "to", 1) as i32)),
            op => {
                let f = unary(op)?;
                broadcast_map(&[v], |a| Some(f(a[0])).filter(|v| v.is_finite()), v.elem)
            }
        }
    }

    /// Identity of a constant is that constant; Cast of a small one is
    /// its elements in the new type.
    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        match cx.p.op_type() {
            "Identity" => cx.input(0),
            "Cast" => cx.regroup(Some(attr_i(cx.p, "to", 1) as i32), |dims, _| Some(dims)),
            _ => None,
        }
    }

    fn fold_dims(&self, cx: &FoldCx) -> Option<Vec<i64>> {
        match cx.p.op_type() {
            "Identity" => cx.input_dims(0),
            _ => self.fold(cx).map(|t| t.dims.clone()),
        }
    }
}

/// The function of a unary op shape code uses.
fn unary(op: &str) -> Option<fn(f64) -> f64> {
    Some(match op {
        "Neg" => |x| -x,
        "Abs" => f64::abs,
        "Floor" => f64::floor,
        "Ceil" => f64::ceil,
        "Sqrt" => f64::sqrt,
        "Round" => f64::round_ties_even,
        "Not" => |x| (x == 0.0) as i64 as f64,
        _ => return None,
    })
}

/// `v` converted to element type `to` (to an integer: truncated; to bool: 0 or 1).
fn cast(v: &Value, to: i32) -> Value {
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
    Value { dims: v.dims.clone(), data, elem: to }
}

/// Numpy broadcasting of all inputs. Two-operand arithmetic, comparisons
/// and logic (Max and Min of any arity) and Where have a value.
#[derive(Debug)]
pub struct Broadcast;

/// Binary ops with a value (Max and Min take any number of operands).
const BINARY: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Mod",
    "Pow",
    "Max",
    "Min",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// Binary ops whose result is a bool.
const BOOLEAN: &[&str] = &["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"];

impl Rules for Broadcast {
    /// Element-wise ops: per-channel constants padded with the slot's neutral value.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let role = cx.role;
        let out0 = Outlet { node: n, slot: 0 };
        let om = a.channel_map(out0);
        let Some(om) = om.filter(|c| !c.is_identity()) else {
            return Ok(());
        };
        let rank = a.shapes.get(&out0).map(|s| s.len()).unwrap_or(0);
        for slot in 0..m.n_inputs(n) {
            let Some(o) = m.input(n, slot) else { continue };
            if a.channel_map(o).is_some() || m.const_value(o).is_none() {
                continue;
            }
            let t = m.const_value(o).unwrap();
            let r = t.dims.len();
            let Some(axis) = (r + om.axis).checked_sub(rank) else {
                continue;
            };
            if r > rank || t.dims.get(axis) != Some(&(om.map.len() as i64)) || om.map.len() == 1 {
                continue;
            }
            let fill = role
                .neutral(slot)
                .ok_or_else(|| Error::model("per-channel constant on an op without a neutral value"))?;
            scatter_const(m, n, slot, axis, &om, fill)?;
        }
        Ok(())
    }

    /// Joins the layouts of its activation operands (on one axis: an
    /// activation's channels or a dense layer's features); a constant
    /// operand broadcasts over that axis or is per channel (padded with its
    /// slot's neutral value, [`super::Role::neutral`]); an activation only
    /// in the slots the role allows.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (m, role, out) = (cx.m, cx.role, cx.out(0));
        let Some(rank) = cx.rank(out) else { return Ok(false) };
        // the axis: that of the operands laid out on a feature axis (at the
        // output's rank), else an activation's channels
        let feature = (0..m.n_inputs(cx.n))
            .filter_map(|s| cx.input(s))
            .find(|&o| cx.is_feature(o) && cx.shape(o).is_some_and(|s| s.len() == rank));
        let (axis, c) = match feature.and_then(|o| cx.placed(o)) {
            Some((_, axis)) => (axis, cx.channels_on(out, axis)),
            None => (1, cx.channels(out)),
        };
        let Some(c) = c else {
            return Ok(false);
        };
        let mut joined: Vec<Vec<AtomId>> = vec![];
        for slot in 0..m.n_inputs(cx.n) {
            let Some(o) = cx.input(slot) else {
                return Ok(false);
            };
            let Some(sh) = cx.shape(o).cloned() else {
                return Ok(false);
            };
            let ch_axis = (sh.len() + axis).checked_sub(rank);
            let ch = ch_axis.and_then(|i| sh.get(i).copied().flatten());
            let laid_out = cx.placed(o).filter(|(_, a)| *a == axis && sh.len() == rank && ch == Some(c as i64));
            if let Some((l, _)) = laid_out {
                // An activation of this space.
                if !role.activation_ok(slot) {
                    return Ok(false); // a divisor, exponent or slope: 0/0 would be NaN
                }
                joined.push(l);
            } else if m.is_const(o) {
                if ch == Some(c as i64) && c != 1 && role.neutral(slot).is_none() {
                    return Ok(false);
                }
                if sh.len() > rank {
                    return Ok(false);
                }
            } else if ch.is_none_or(|v| v != 1) || sh.len() > rank || cx.is_feature(o) {
                return Ok(false); // a non-constant that does not broadcast over channels
            }
        }
        let Some(first) = joined.first().cloned() else {
            return Ok(false);
        };
        if joined.iter().any(|l| cx.width(l) != c) {
            return Ok(false);
        }
        for l in &joined[1..] {
            if !cx.atoms().join(&first, l) {
                return Ok(false);
            }
        }
        cx.set_on(out, first, axis);
        Ok(true)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// 0 · x = 0 for Mul; 0 / 1 and a 0 slope for Div and PRelu; sums and
    /// extrema of operands that are all 0 there.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        match cx.p.op_type() {
            "Mul" => zero_if(cx.some_padded_zero()),
            "Div" | "PRelu" => zero_if(cx.zero_at(0)),
            "Add" | "Sub" | "Max" | "Min" | "Sum" => zero_if(cx.every_operand_zero()),
            _ => None,
        }
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        Some(cx.one(broadcast(&cx.input_shapes()?)?))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let op = cx.p.op_type();
        if op == "Where" {
            let (c, x, y) = (cx.value(0)?, cx.value(1)?, cx.value(2)?);
            return broadcast_map(&[c, x, y], |a| Some(if a[0] != 0.0 { a[1] } else { a[2] }), x.elem);
        }
        if !BINARY.contains(&op) {
            return None;
        }
        let vs = cx.input_values()?;
        if vs.is_empty() || (vs.len() != 2 && !matches!(op, "Max" | "Min")) {
            return None;
        }
        let int = vs[0].is_int();
        let f = |a: &[f64]| binary(op, int, a).filter(|v| v.is_finite() && v.abs() < 9.0e15);
        broadcast_map(&vs, f, if BOOLEAN.contains(&op) { BOOL } else { vs[0].elem })
    }
}

/// One element of binary op `op` (`int`: integer semantics for Div and Mod).
fn binary(op: &str, int: bool, a: &[f64]) -> Option<f64> {
    let (x, y) = (a[0], *a.get(1).unwrap_or(&a[0]));
    let b = |x: bool| Some(x as i64 as f64);
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
        "Or" => b(x != 0.0 || y != 0.0),
        "Xor" => b((x != 0.0) != (y != 0.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::values::BOOL;
    use crate::testutil::{int_attr, known, Builder, Inferred};

    /// `Shape(x)`, whose value is x's dims (`x`: [2, 3, 5, 7]).
    fn dims() -> (Builder, String) {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let s = b.unary("Shape", "x");
        (b, s)
    }

    #[test]
    fn broadcasting_aligns_trailing_dims() {
        let mut b = Builder::new(&[1, 3, 1, 4]);
        let c = b.rand_init("c", &[2, 1, 5, 1], 0.0, 1.0);
        let y = b.node("Add", &["x", &c], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[2, 3, 5, 4])));
    }

    #[test]
    fn incompatible_operands_have_no_shape() {
        let mut b = Builder::new(&[1, 3, 4]);
        let c = b.rand_init("c", &[5], 0.0, 1.0);
        let y = b.node("Mul", &["x", &c], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), None);
    }

    #[test]
    fn integer_division_truncates_and_modulo_follows_the_divisor() {
        let (mut b, s) = dims();
        let k = b.ints("k", &[-2]);
        let d = b.node("Div", &[&s, &k], 1, vec![]);
        let m = b.node("Mod", &[&s, &k], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.ints(&d[0]), Some(vec![-1, -1, -2, -3]));
        assert_eq!(inf.ints(&m[0]), Some(vec![0, -1, -1, -1]));
    }

    #[test]
    fn comparisons_are_bool_and_where_selects() {
        let (mut b, s) = dims();
        let k = b.ints("k", &[4]);
        let less = b.node("Less", &[&s, &k], 1, vec![]);
        let zero = b.ints("zero", &[0]);
        let w = b.node("Where", &[&less[0], &zero, &s], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.value(&less[0]).unwrap().elem, BOOL);
        assert_eq!(inf.ints(&less[0]), Some(vec![1, 1, 0, 0]));
        assert_eq!(inf.ints(&w[0]), Some(vec![0, 0, 5, 7]));
        // RT-DETR's decoder masks: Xor of two comparisons
        let mut b = b;
        let more = b.node("Greater", &[&s, &k], 1, vec![]);
        let x = b.node("Xor", &[&less[0], &more[0]], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.ints(&x[0]), Some(vec![1, 1, 1, 1]));
        assert_eq!(inf.value(&x[0]).unwrap().elem, BOOL);
    }

    #[test]
    fn maps_compute_exact_ops_and_refuse_the_others() {
        let (mut b, s) = dims();
        let neg = b.unary("Neg", &s);
        let relu = b.unary("Relu", &neg);
        let f = b.node("Cast", &[&neg], 1, vec![int_attr("to", 1)]);
        let sq = b.unary("Sqrt", &f[0]);
        let back = b.node("Cast", &[&sq], 1, vec![int_attr("to", 7)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.ints(&neg), Some(vec![-2, -3, -5, -7]));
        assert_eq!(inf.shape(&relu), Some(known(&[4])));
        assert_eq!(inf.value(&relu), None, "Relu has no value rule");
        assert_eq!(inf.value(&sq).unwrap().data, vec![None; 4], "sqrt of a negative is not finite");
        assert_eq!(inf.value(&back[0]).unwrap().data, vec![None; 4]);
    }

    #[test]
    fn sin_and_cos_keep_shapes_and_have_no_value() {
        // RT-DETR's AIFI encoder adds a sin-cos position embedding: before
        // align knew Sin and Cos, every shape after the encoder was unknown
        let mut b = Builder::new(&[1, 16, 4, 4]);
        let (sin, cos) = (b.unary("Sin", "x"), b.unary("Cos", "x"));
        let y = b.node("Add", &[&sin, &cos], 1, vec![]).remove(0);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y), Some(known(&[1, 16, 4, 4])));
        let (mut b, s) = dims();
        let c = b.unary("Cos", &s);
        assert_eq!(Inferred::of(&b).value(&c), None, "computed by the runtime, not folded");
    }

    #[test]
    fn identity_and_cast_of_constants_fold() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let c = b.init("c", &[2], vec![2.5, -1.0]);
        let i = b.unary("Identity", &c);
        let ii = b.unary("Identity", &i);
        let f = b.node("Cast", &[&ii], 1, vec![int_attr("to", 11)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.folded(&ii), Some((vec![2], vec![2.5, -1.0])));
        assert_eq!(inf.folded_dims(&ii), Some(vec![2]));
        assert_eq!(inf.folded(&f[0]), Some((vec![2], vec![2.5, -1.0])), "to double");
        assert_eq!(inf.value(&f[0]).unwrap().elem, 11);
    }

    #[test]
    fn a_cast_to_an_integer_truncates() {
        let (mut b, s) = dims();
        let f = b.node("Cast", &[&s], 1, vec![int_attr("to", 1)]);
        let two = b.init("two", &[1], vec![-2.0]);
        let h = b.node("Div", &[&f[0], &two], 1, vec![]);
        let i = b.node("Cast", &[&h[0]], 1, vec![int_attr("to", 7)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.value(&h[0]).unwrap().data, [-1.0, -1.5, -2.5, -3.5].map(Some));
        let cast = inf.value(&i[0]).unwrap();
        assert_eq!((cast.data, cast.elem), ([-1.0, -1.0, -2.0, -3.0].map(Some).to_vec(), 7));
    }
}
