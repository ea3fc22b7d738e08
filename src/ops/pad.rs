//! Pad: every dim grows by its two pad amounts (attribute before opset 11,
//! input 1 from 11).

use super::{zero_if, Cx, Fill, FillCx, Rules};
use crate::ir::shapes::{fit, Shape};
use crate::onnx::{attr_f, attr_ints};

/// Pad.
#[derive(Debug)]
pub struct Pad;

impl Rules for Pad {
    /// Constant padding with 0 (the default) keeps zeros.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.scalar(2).unwrap_or(attr_f(cx.p, "value", 0.0) as f64) == 0.0 && cx.zero_at(0))
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let pads = if cx.opset() >= 11 { cx.ints(1)? } else { attr_ints(cx.p, "pads") };
        let r = x.len();
        if pads.len() != 2 * r {
            return None;
        }
        let out = (0..r).map(|i| x[i].and_then(|d| fit(d as i128 + pads[i] as i128 + pads[i + r] as i128))).collect();
        Some(cx.one(out))
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{ints_attr, known, Builder, Inferred};

    #[test]
    fn pads_add_to_both_ends_of_every_dim() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let pads = b.ints("pads", &[0, 0, 1, 2, 0, 0, 3, 4]);
        let y = b.node("Pad", &["x", &pads], 1, vec![]);
        let wrong = b.ints("wrong", &[1, 1]);
        let z = b.node("Pad", &["x", &wrong], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[0]), Some(known(&[1, 3, 8, 10])));
        assert_eq!(inf.shape(&z[0]), None);
    }

    #[test]
    fn before_opset_11_the_pads_are_an_attribute() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        b.opset = 10;
        let y = b.node("Pad", &["x"], 1, vec![ints_attr("pads", &[0, 0, 1, 1, 0, 0, 1, 1])]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 3, 6, 6])));
    }
}
