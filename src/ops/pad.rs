//! Pad: every dim grows by its two pad amounts (attribute before opset 11,
//! input 1 from 11).

use super::{zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{fit, Shape};
use crate::onnx::{attr_f, attr_ints};
use crate::tensor;

/// Pad.
#[derive(Debug)]
pub struct Pad;

impl Rules for Pad {
    /// Constant pads that leave batch and channels alone pass the layout.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (m, n) = (cx.m, cx.n);
        let pads = if m.opset() >= 11 {
            m.input_const(n, 1).and_then(|t| tensor::to_i64(&t).ok())
        } else {
            Some(attr_ints(cx.p, "pads"))
        };
        let rank = cx.rank(cx.out(0)).unwrap_or(0);
        let ok = pads.is_some_and(|v| {
            rank >= 3 && v.len() == 2 * rank && v[0] == 0 && v[1] == 0 && v[rank] == 0 && v[rank + 1] == 0
        }) && (m.opset() < 18 || m.input(n, 3).is_none())
            && (2..m.n_inputs(n)).all(|i| m.input(n, i).is_none_or(|o| m.is_const(o)));
        Ok(ok && cx.pass())
    }

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
