//! Shape and Size: the dims of a tensor as a value (`None` where a dim is
//! symbolic), the start of every chain of shape arithmetic.

use super::{Cx, Rules};
use crate::ir::shapes::{product, Shape};
use crate::ir::values::{Value, INT64};
use crate::onnx::attr_i;

/// Shape (with opset-15 `start` / `end`): a rank-1 int64 tensor.
#[derive(Debug)]
pub struct ShapeOf;

/// The clamped `[start, end)` of a Shape op over rank `r`.
fn bounds(cx: &Cx, r: i64) -> (i64, i64) {
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
    (clamp(attr_i(cx.p, "start", 0)), clamp(attr_i(cx.p, "end", r)))
}

impl Rules for ShapeOf {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = bounds(cx, cx.shape(0)?.len() as i64);
        Some(cx.one(vec![Some((b - a).max(0))]))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let s = cx.shape(0)?;
        let (a, b) = bounds(cx, s.len() as i64);
        let (a, b) = (a as usize, b as usize);
        let d: Vec<Option<f64>> = s.get(a..b.max(a))?.iter().map(|d| d.map(|v| v as f64)).collect();
        Some(Value { dims: vec![d.len()], data: d, elem: INT64 })
    }
}

/// Size: the element count as an int64 scalar (its shape is left to the
/// model's value_info).
#[derive(Debug)]
pub struct Size;

impl Rules for Size {
    fn value(&self, cx: &Cx) -> Option<Value> {
        let s = cx.shape(0)?;
        Some(Value { dims: vec![], data: vec![product(s).map(|v| v as f64)], elem: INT64 })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, known, Builder, Inferred};

    #[test]
    fn shape_reports_symbolic_dims_as_unknown_and_honours_start_and_end() {
        let mut b = Builder::new(&[1, 3, 5, 7]);
        b.symbolic(0);
        let all = b.unary("Shape", "x");
        let tail = b.node("Shape", &["x"], 1, vec![int_attr("start", -2)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.value(&all).unwrap().data, vec![None, Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(inf.shape(&tail[0]), Some(known(&[2])));
        assert_eq!(inf.ints(&tail[0]), Some(vec![5, 7]));
    }

    #[test]
    fn size_is_the_element_count_when_every_dim_is_known() {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let n = b.unary("Size", "x");
        assert_eq!(Inferred::of(&b).ints(&n), Some(vec![210]));
        let mut b = Builder::new(&[2, 3, 5, 7]);
        b.symbolic(0);
        let n = b.unary("Size", "x");
        assert_eq!(Inferred::of(&b).value(&n).unwrap().data, vec![None]);
    }
}
