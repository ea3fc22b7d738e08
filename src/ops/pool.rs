//! Pooling: Max / Average / Lp pooling windows and their global forms.

use super::conv::window;
use super::{zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::Shape;
use crate::onnx::attr_ints;

/// MaxPool, AveragePool, LpPool: `[N, C, window(spatial)]` on every output
/// (MaxPool's indices too); only MaxPool has dilations.
#[derive(Debug)]
pub struct Pool;

impl Rules for Pool {
    /// Channel-wise: output 0 gets input 0's layout.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        Ok(cx.channelwise())
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        if x.len() < 3 {
            return None;
        }
        let k = attr_ints(cx.p, "kernel_shape");
        let mut out = vec![x[0], x[1]];
        out.extend(window(&x[2..], &k, cx.p, cx.p.op_type() == "MaxPool")?);
        Some(vec![Some(out); cx.p.output.len()])
    }
}

/// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: spatial dims become 1.
#[derive(Debug)]
pub struct GlobalPool;

impl Rules for GlobalPool {
    /// Channel-wise: output 0 gets input 0's layout.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        Ok(cx.channelwise())
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        if x.len() < 2 {
            return None;
        }
        let mut out = vec![x[0], x[1]];
        out.extend(std::iter::repeat_n(Some(1), x.len() - 2));
        Some(cx.one(out))
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

    #[test]
    fn ceil_mode_rounds_the_window_count_up() {
        let mut b = Builder::new(&[1, 5, 7, 7]);
        let k = vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2])];
        let floor = b.node("MaxPool", &["x"], 1, k.clone());
        let mut kc = k;
        kc.push(int_attr("ceil_mode", 1));
        let ceil = b.node("AveragePool", &["x"], 1, kc);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&floor[0]), Some(known(&[1, 5, 3, 3])));
        assert_eq!(inf.shape(&ceil[0]), Some(known(&[1, 5, 4, 4])));
    }

    #[test]
    fn max_pool_indices_have_the_output_shape_and_global_pools_keep_channels() {
        let mut b = Builder::new(&[2, 5, 6, 6]);
        let y = b.node("MaxPool", &["x"], 2, vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("dilations", &[2, 2])]);
        let g = b.unary("GlobalAveragePool", "x");
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[0]), Some(known(&[2, 5, 2, 2])), "MaxPool reads its dilations");
        assert_eq!(inf.shape(&y[1]), inf.shape(&y[0]));
        assert_eq!(inf.shape(&g), Some(known(&[2, 5, 1, 1])));
    }
}
