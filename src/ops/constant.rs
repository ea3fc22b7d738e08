//! Constant carriers: Constant (its value attribute) and ConstantOfShape
//! (one value repeated over a shape), as constants the IR folds and as
//! values of shape arithmetic.

use super::{Cx, FoldCx, Rules};
use crate::ir::values::{numel, Value, MAX_ELEMENTS};
use crate::onnx::{attr, NodeProto, TensorProto};
use crate::tensor;
use std::borrow::Cow;

/// Largest constant align believes in (2^40 elements): dims beyond it are
/// a corrupt model, not a tensor.
const MAX_CONST_ELEMENTS: i64 = 1 << 40;

/// Largest tensor a ConstantOfShape is folded into (2^24 elements).
const MAX_FILLED: usize = 1 << 24;

/// Constant: the tensor of whichever value attribute it uses.
#[derive(Debug)]
pub struct Constant;

impl Rules for Constant {
    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        constant_attr(cx.p, cx.name()).map(Cow::Owned)
    }
}

/// The tensor a Constant node produces, named `name`.
fn constant_attr(p: &NodeProto, name: &str) -> Option<TensorProto> {
    let a = p.attribute.first()?;
    match a.name() {
        "value" => a.t.clone(),
        "value_float" => tensor::from_f64(name, 1, &[], &[a.f? as f64]).ok(),
        "value_floats" => {
            tensor::from_f64(name, 1, &[a.floats.len()], &a.floats.iter().map(|&v| v as f64).collect::<Vec<_>>()).ok()
        }
        "value_int" => tensor::from_f64(name, 7, &[], &[a.i? as f64]).ok(),
        "value_ints" => Some(TensorProto {
            name: Some(name.into()),
            data_type: Some(7),
            dims: vec![a.ints.len() as i64],
            int64_data: a.ints.clone(),
            ..Default::default()
        }),
        _ => None,
    }
}

/// Whether `p` is a standard Constant node.
pub fn is_constant(p: &NodeProto) -> bool {
    super::is(p, "Constant")
}

/// The tensor of a standard Constant node given by its `value` attribute.
pub fn value_attr(p: &NodeProto) -> Option<&TensorProto> {
    is_constant(p).then(|| attr(p, "value")?.t.as_ref()).flatten()
}

/// ConstantOfShape: its `value` attribute (default float 0) repeated over a
/// shape. Its shape is the IR's constant dims (or value_info).
#[derive(Debug)]
pub struct ConstantOfShape;

/// The fill value of a ConstantOfShape and its element type.
fn fill(p: &NodeProto) -> Option<(f64, i32)> {
    Some(match attr(p, "value").and_then(|a| a.t.as_ref()) {
        Some(t) => (*tensor::to_f64(t).ok()?.first()?, t.data_type()),
        None => (0.0, 1),
    })
}

impl Rules for ConstantOfShape {
    fn value(&self, cx: &Cx) -> Option<Value> {
        let s = cx.value(0)?.ints()?;
        let dims: Vec<usize> = s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
        let n = numel(&dims)?;
        if n > MAX_ELEMENTS {
            return None;
        }
        let (v, elem) = fill(cx.p)?;
        Some(Value { dims, data: vec![Some(v); n], elem })
    }

    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        let shape = tensor::to_i64(&*cx.small(0)?).ok()?;
        let (v, dt) = fill(cx.p)?;
        let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
        let n = numel(&dims)?;
        if n > MAX_FILLED {
            return None;
        }
        tensor::from_f64(cx.name(), dt, &dims, &vec![v; n]).ok().map(Cow::Owned)
    }

    fn fold_dims(&self, cx: &FoldCx) -> Option<Vec<i64>> {
        let shape = tensor::to_i64(&*cx.input(0)?).ok()?;
        // a shape whose element count overflows describes no tensor
        let n = shape.iter().try_fold(1i64, |a, &d| if d < 0 { None } else { a.checked_mul(d) })?;
        (n <= MAX_CONST_ELEMENTS).then_some(shape)
    }
}

#[cfg(test)]
mod tests {
    use crate::onnx::{attribute_proto::AttributeType, AttributeProto};
    use crate::testutil::{int_attr, ints_attr, Builder, Inferred};

    #[test]
    fn constant_of_shape_of_a_computed_shape_is_a_value() {
        let mut b = Builder::new(&[2, 3]);
        let s = b.unary("Shape", "x");
        let c = b.unary("ConstantOfShape", &s);
        let c = Inferred::of(&b).value(&c).unwrap();
        assert_eq!((c.dims, c.data, c.elem), (vec![2, 3], vec![Some(0.0); 6], 1));
    }

    #[test]
    fn constant_of_a_constant_shape_folds_and_its_dims_need_no_data() {
        let mut b = Builder::new(&[2, 3]);
        let shape = b.ints("shape", &[2, 4]);
        let small = b.unary("ConstantOfShape", &shape);
        let huge = b.ints("huge", &[1 << 20, 1 << 20]);
        let big = b.unary("ConstantOfShape", &huge);
        let inf = Inferred::of(&b);
        assert_eq!(inf.folded(&small), Some((vec![2, 4], vec![0.0; 8])));
        assert_eq!(inf.folded_dims(&big), Some(vec![1 << 20, 1 << 20]), "2^40 elements: dims only");
        assert_eq!(inf.folded(&big), None, "too large to materialise");
    }

    #[test]
    fn every_constant_attribute_folds() {
        let mut b = Builder::new(&[2, 3]);
        let ints = b.node("Constant", &[], 1, vec![ints_attr("value_ints", &[3, -1])]).remove(0);
        let f = AttributeProto {
            name: Some("value_float".into()),
            f: Some(0.5),
            r#type: Some(AttributeType::Float as i32),
            ..Default::default()
        };
        let float = b.node("Constant", &[], 1, vec![f]).remove(0);
        let none = b.node("Constant", &[], 1, vec![int_attr("sparse_value", 1)]).remove(0);
        let inf = Inferred::of(&b);
        assert_eq!(inf.folded(&ints), Some((vec![2], vec![3.0, -1.0])));
        assert_eq!(inf.folded(&float), Some((vec![], vec![0.5])));
        assert_eq!(inf.folded(&none), None);
    }
}
