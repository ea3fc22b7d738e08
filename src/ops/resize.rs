//! Resize and Upsample: output dims from scales or sizes (inputs or
//! attributes, by opset), or from sizes computed at run time.

use super::{const_floats, const_ints, zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{fit, Shape};
use crate::ir::Outlet;
use crate::ir::{Model, NodeId};
use crate::onnx::attr_f;
use crate::passes::pad::PadCx;
use crate::tensor;

/// Resize / Upsample.
#[derive(Debug)]
pub struct Resize;

impl Rules for Resize {
    /// Resize with constant sizes: sizes[1] is the padded width.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let om = a.channel_map(Outlet { node: n, slot: 0 });
        let Some(om) = om.filter(|c| !c.is_identity()) else {
            return Ok(());
        };
        if let Some((_, Some(mut sizes))) = crate::ops::resize::resize_params(m, n) {
            sizes[1] = om.len as i64;
            let t = m.input_const(n, 3).unwrap().into_owned();
            let nt = tensor::rewrite(&t, &[sizes.len()], &sizes.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
            m.replace_input_const(n, 3, nt);
        }
        Ok(())
    }

    /// Channel scale 1, or sizes[1] equal to the channels (or sizes
    /// computed from the input's own shape): passes the layout.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let Some(c) = cx.input_layout(0).map(|l| cx.width(&l)) else {
            return Ok(false);
        };
        let (m, n) = (cx.m, cx.n);
        let ok = match resize_params(m, n) {
            Some((_, Some(sizes))) => sizes.get(1) == Some(&(c as i64)),
            Some((Some(sc), None)) => sc.get(1) == Some(&1.0) && sc.first() == Some(&1.0),
            // sizes computed at run time from the input's own shape (dynamic
            // H, W): the channel count read there is the padded one
            _ => m.input(n, 3).is_some_and(|s| super::shape_of::own_batch_and_channels(m, s.node, m.input(n, 0))),
        };
        Ok(ok && cx.pass())
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        // sizes computed at run time (dynamic H, W) may be known in part
        let computed = (cx.opset() >= 11 && cx.m.input_const(cx.n, 3).is_none())
            .then(|| cx.value(3))
            .flatten()
            .filter(|v| v.data.len() == x.len());
        if let Some(v) = computed {
            return Some(cx.one(v.data.iter().map(|d| d.map(|d| d as i64)).collect()));
        }
        let (scales, sizes) = resize_params(cx.m, cx.n)?;
        let out = if let Some(sz) = sizes {
            sz.iter().map(|&d| Some(d)).collect()
        } else {
            let sc = scales?;
            if sc.len() != x.len() {
                return None;
            }
            x.iter().zip(sc).map(|(d, f)| d.and_then(|d| fit((d as f64 * f).floor() as i128))).collect()
        };
        Some(cx.one(out))
    }
}

/// Scales and/or sizes of a Resize.
pub type ResizeParams = (Option<Vec<f64>>, Option<Vec<i64>>);

/// Resize/Upsample scales or sizes, from inputs (by opset) or attributes.
pub fn resize_params(m: &Model, n: NodeId) -> Option<ResizeParams> {
    let p = m.op(n)?;
    if p.op_type() == "Upsample" {
        if m.opset() >= 9 {
            return Some((Some(const_floats(m, n, 1)?), None));
        }
        let sc = crate::onnx::attr(p, "scales")?.floats.iter().map(|&v| v as f64).collect();
        return Some((Some(sc), None));
    }
    // Resize: opset 10 (X, scales); 11+ (X, roi, scales, sizes).
    if m.opset() < 11 {
        return Some((Some(const_floats(m, n, 1)?), None));
    }
    let sizes = m.input(n, 3).and_then(|_| const_ints(m, n, 3)).filter(|v| !v.is_empty());
    let scales = m.input(n, 2).and_then(|_| const_floats(m, n, 2)).filter(|v| !v.is_empty());
    if sizes.is_none() && scales.is_none() {
        return None;
    }
    if attr_f(p, "extrapolation_value", 0.0).is_nan() {
        return None;
    }
    Some((scales, sizes))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{known, Builder, Inferred};

    #[test]
    fn resize_by_scales_floors_and_by_sizes_takes_them() {
        let mut b = Builder::new(&[1, 4, 5, 5]);
        let scales = b.init("scales", &[4], vec![1.0, 1.0, 2.5, 2.0]);
        let y = b.node("Resize", &["x", "", &scales], 1, vec![]);
        let sizes = b.ints("sizes", &[1, 4, 7, 9]);
        let z = b.node("Resize", &["x", "", "", &sizes], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[0]), Some(known(&[1, 4, 12, 10])));
        assert_eq!(inf.shape(&z[0]), Some(known(&[1, 4, 7, 9])));
    }

    #[test]
    fn opset_9_upsample_reads_its_scales_input() {
        let mut b = Builder::new(&[1, 4, 5, 5]);
        b.opset = 9;
        let scales = b.init("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
        let y = b.node("Upsample", &["x", &scales], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 4, 10, 10])));
    }
}
