//! BatchNormalization: per-channel affine map, output 0 of input 0's shape;
//! as a layer, four parameters and one multiply-add per channel and pixel.

use super::{mul, zero_if, Cost, CostCx, Cx, Fill, FillCx, LayerKind, Rules};
use crate::analysis::ChannelCx;
use crate::error::{Error, Result};
use crate::ir::shapes::Shape;
use crate::ir::values::Value;
use crate::ir::Outlet;
use crate::onnx::{attr_f, attr_i};
use crate::passes::pad::{map_in, scatter_const, PadCx};

/// The parameter inputs of a BatchNormalization (scale, B, mean, var) and
/// the value their padded channels get: γ 0, β 0, mean 0, var 1, so a
/// padded channel maps 0 to 0 and never divides by 0.
pub const PARAM_FILL: [(usize, f64); 4] = [(1, 0.0), (2, 0.0), (3, 0.0), (4, 1.0)];

/// BatchNormalization (inference form).
#[derive(Debug)]
pub struct BatchNorm;

impl Rules for BatchNorm {
    /// y = (x − mean) / √(var + ε) · scale + B per channel (axis 1) of a
    /// known value; with `training_mode=1` mean and var are the batch's own
    /// (over every axis but 1, var biased), as ONNX defines it: what a
    /// weight standardised at run time computes (timm's `StdConv2d`,
    /// `ScaledStdConv2d`).
    fn value(&self, cx: &Cx) -> Option<Value> {
        let x = cx.value(0)?;
        let c = *x.dims.get(1).filter(|&&c| c > 0)?;
        let per_channel = |slot| cx.value(slot)?.known().filter(|v| v.len() == c);
        let (scale, b) = (per_channel(1)?, per_channel(2)?);
        let data = x.known()?;
        let inner: usize = x.dims[2..].iter().product();
        let channel = |i: usize| (i / inner) % c;
        let (mean, var) = if attr_i(cx.p, "training_mode", 0) == 1 {
            let n = (data.len() / c).max(1) as f64;
            let mut mean = vec![0.0; c];
            data.iter().enumerate().for_each(|(i, &v)| mean[channel(i)] += v / n);
            let mut var = vec![0.0; c];
            data.iter().enumerate().for_each(|(i, &v)| var[channel(i)] += (v - mean[channel(i)]).powi(2) / n);
            (mean, var)
        } else {
            (per_channel(3)?, per_channel(4)?)
        };
        let eps = attr_f(cx.p, "epsilon", 1e-5) as f64;
        let y = data.iter().enumerate().map(|(i, &v)| {
            let k = channel(i);
            Some((v - mean[k]) / (var[k] + eps).sqrt() * scale[k] + b[k])
        });
        Some(Value { dims: x.dims.clone(), data: y.collect(), elem: x.elem })
    }

    /// BatchNormalization: γ 0, β 0, mean 0, var 1 on padded channels.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let im = map_in(a, m, n, 0);
        if let Some(im) = im.filter(|c| !c.is_identity()) {
            for (slot, fill) in crate::ops::batch_norm::PARAM_FILL {
                scatter_const(m, n, slot, 0, &im, fill)?;
            }
        }
        Ok(())
    }

    /// Channel-wise with constant 1-D parameters (padded γ 0, β 0, mean 0,
    /// var 1); a BatchNormalization in training mode is an error.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        if attr_i(cx.p, "training_mode", 0) == 1 {
            return Err(Error::at(
                cx.name,
                "BatchNormalization has training_mode=1 (a training graph); export the model in eval mode",
            ));
        }
        let m = cx.m;
        let consts = (1..5).all(|i| cx.input(i).and_then(|o| m.const_dims(o)).is_some_and(|d| d.len() == 1));
        // features reach it only on axis 1 (a BatchNorm1d on `[N, C]`)
        let on_channels = cx.input(0).and_then(|x| cx.placed(x)).is_none_or(|(_, a)| a == 1);
        Ok(consts && on_channels && cx.p.output.len() == 1 && cx.pass())
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// Padded with γ 0 and β 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }

    fn cost(&self, cx: &CostCx) -> Option<Cost> {
        let d = cx.input?;
        let sp = cx.spatial(Some(Outlet { node: cx.n, slot: 0 }));
        Some(Cost {
            kernel: vec![],
            stride: vec![],
            groups: 1,
            in_channels: d.logical,
            out_channels: d.logical,
            params: 4 * d.logical as u64,
            macs: mul(sp, d.logical as u64),
            params_aligned: 4 * d.physical as u64,
            macs_aligned: mul(sp, d.physical as u64),
            kind: LayerKind::Norm,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_norm_of_a_known_value_in_training_mode_uses_the_batch_statistics() {
        use crate::testutil::{int_attr, Builder, Inferred};
        let mut b = Builder::new(&[1, 1]);
        // [1, 2, 2]: channel 0 holds 1, 3 (mean 2, var 1); channel 1 holds 4, 4
        let x = b.init("x0", &[1, 2, 2], vec![1.0, 3.0, 4.0, 4.0]);
        let (s, bias) = (b.init("s", &[2], vec![2.0, 1.0]), b.init("b", &[2], vec![0.5, 0.0]));
        let (m, v) = (b.init("m", &[2], vec![100.0, 100.0]), b.init("v", &[2], vec![9.0, 9.0]));
        let eps = crate::testutil::float_attr("epsilon", 0.0);
        let train =
            b.node("BatchNormalization", &[&x, &s, &bias, &m, &v], 1, vec![int_attr("training_mode", 1), eps.clone()]);
        let infer = b.node("BatchNormalization", &[&x, &s, &bias, &m, &v], 1, vec![eps]);
        let inf = Inferred::of(&b);
        // (x − 2) / 1 · 2 + 0.5; a channel of equal values has var 0: 0/0 is not a value
        let t = inf.value(&train[0]).unwrap();
        assert_eq!(&t.data[..2], &[Some(-1.5), Some(2.5)]);
        // the running statistics given: (x − 100) / 3 · s + b
        let i = inf.value(&infer[0]).unwrap().known().unwrap();
        assert_eq!(i[0], (1.0 - 100.0) / 3.0 * 2.0 + 0.5);
    }

    use crate::testutil::{known, width, Builder, Inferred};

    #[test]
    fn batch_norm_keeps_its_input_shape() {
        let mut b = Builder::new(&[1, 6, 4, 3]);
        let y = b.bn("x", 6);
        assert_eq!(Inferred::of(&b).shape(&y), Some(known(&[1, 6, 4, 3])));
    }

    #[test]
    fn batch_norm_costs_four_params_and_a_multiply_add_per_channel() {
        let mut b = Builder::new(&[1, 6, 4, 4]);
        let y = b.bn("x", 6);
        let inf = Inferred::of(&b);
        let c = inf.cost(&y, width(6, 8), None, None).unwrap();
        assert_eq!((c.params, c.macs, c.params_aligned, c.macs_aligned), (24, Some(96), 32, Some(128)));
        assert_eq!(inf.cost(&y, None, None, None), None, "no row without an analysed channel dim");
        let r = b.unary("Relu", &y);
        assert_eq!(Inferred::of(&b).cost(&r, width(6, 8), None, None), None, "Relu is no layer");
    }
}
