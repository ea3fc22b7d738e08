//! Dense layers: Gemm (2-D, optional transposes) and MatMul (batch
//! broadcasting), and their cost as layers.

use super::{mul, Cost, CostCx, Cx, LayerKind, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{broadcast, Shape};
use crate::ir::{Model, Outlet};
use crate::onnx::{attr_i, NodeProto};
use crate::passes::pad::{scatter_const, PadCx};

/// Gemm: `[M, N]` from `A` (`[M, K]`, or `[K, M]` with transA) and `B`.
#[derive(Debug)]
pub struct Gemm;

impl Rules for Gemm {
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        pad_dense(cx)
    }

    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        absorb_flat(cx)
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = (cx.shape(0)?, cx.shape(1)?);
        if a.len() != 2 || b.len() != 2 {
            return None;
        }
        let ta = attr_i(cx.p, "transA", 0) == 1;
        let tb = attr_i(cx.p, "transB", 0) == 1;
        Some(cx.one(vec![if ta { a[1] } else { a[0] }, if tb { b[0] } else { b[1] }]))
    }

    fn cost(&self, cx: &CostCx) -> Option<Cost> {
        layer_cost(cx)
    }
}

/// MatMul of operands of rank ≥ 2: batch dims broadcast.
#[derive(Debug)]
pub struct MatMul;

impl Rules for MatMul {
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        pad_dense(cx)
    }

    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        absorb_flat(cx)
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = (cx.shape(0)?, cx.shape(1)?);
        if a.len() < 2 || b.len() < 2 {
            return None;
        }
        let mut out = broadcast(&[&a[..a.len() - 2].to_vec(), &b[..b.len() - 2].to_vec()])?;
        out.push(a[a.len() - 2]);
        out.push(b[b.len() - 1]);
        Some(cx.one(out))
    }

    fn cost(&self, cx: &CostCx) -> Option<Cost> {
        layer_cost(cx)
    }
}

/// The axis of a dense weight that holds the input features: 1 for a Gemm
/// with `transB`, else 0 (the other axis holds the outputs).
pub fn weight_in_axis(p: &NodeProto) -> usize {
    usize::from(super::is(p, "Gemm") && attr_i(p, "transB", 0) == 1)
}

/// A dense layer with a constant 2-D weight (`[K, N]`, or `[N, K]`, see
/// [`weight_in_axis`]): K features in, N out, one row per leading dim of its
/// input; aligned, K is the physical length of a flattened input.
fn layer_cost(cx: &CostCx) -> Option<Cost> {
    let wd = cx.weight_dims()?;
    if wd.len() != 2 {
        return None;
    }
    let a = weight_in_axis(cx.p);
    let (k, nout) = (wd[a], wd[1 - a]);
    let x = cx.m.input(cx.n, 0);
    let rows: Option<u64> =
        x.and_then(|x| cx.shapes.get(&x)).and_then(|s| s.first().copied().flatten()).map(|v| v as u64);
    let bias = if cx.m.input(cx.n, 2).is_some() { nout as u64 } else { 0 };
    let pk = (cx.flat)().unwrap_or(k);
    Some(Cost {
        kernel: vec![],
        stride: vec![],
        groups: 1,
        in_channels: k,
        out_channels: nout,
        params: (k as u64).saturating_mul(nout as u64).saturating_add(bias),
        macs: mul(rows, (k as u64).saturating_mul(nout as u64)),
        params_aligned: (pk as u64).saturating_mul(nout as u64).saturating_add(bias),
        macs_aligned: mul(rows, (pk as u64).saturating_mul(nout as u64)),
        kind: LayerKind::Dense,
    })
}

/// True when every reader of `o` is a dense layer (Gemm / MatMul with a
/// constant weight) reading it as its input A: the weight absorbs any layout.
pub fn dense_only(m: &Model, o: Outlet) -> bool {
    let consumers = m.consumers(o);
    !consumers.is_empty()
        && consumers.iter().all(|&(c, slot)| {
            let Some(p) = m.op(c).filter(|p| super::standard(p)) else { return false };
            slot == 0
                && match p.op_type() {
                    "Gemm" => attr_i(p, "transA", 0) == 0 && m.input(c, 1).is_some_and(|o| m.is_const(o)),
                    "MatMul" => m.input(c, 1).and_then(|o| m.const_dims(o)).is_some_and(|d| d.len() == 2),
                    _ => false,
                }
        })
}

/// A dense layer's channel rule: it absorbs a flattened layout on input A
/// (or reads an activation with no layout); its output is a plain rank-2
/// tensor with no layout.
fn absorb_flat(cx: &mut ChannelCx) -> Result<bool> {
    let Some(a) = cx.input(0) else { return Ok(false) };
    Ok(cx.is_flat(a) || cx.layout(a).is_none())
}

/// A dense layer after a Flatten: zero weight rows for padded features.
fn pad_dense(cx: &mut PadCx) -> Result<()> {
    let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
    let p = m.op(n).unwrap().clone();
    let Some(x) = m.input(n, 0) else {
        return Ok(());
    };
    let Some(fm) = a.flat_map(x).filter(|c| !c.is_identity()) else {
        return Ok(());
    };
    scatter_const(m, n, 1, weight_in_axis(&p), &fm, 0.0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::ops::LayerKind;
    use crate::testutil::{int_attr, known, Builder, Inferred};

    #[test]
    fn gemm_reads_its_transposes() {
        let mut b = Builder::new(&[2, 6]);
        let w = b.rand_init("w", &[10, 6], -1.0, 1.0);
        let y = b.node("Gemm", &["x", &w], 1, vec![int_attr("transB", 1)]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[2, 10])));
    }

    #[test]
    fn matmul_broadcasts_batch_dims() {
        let mut b = Builder::new(&[3, 1, 4, 6]);
        let w = b.rand_init("w", &[5, 6, 2], -1.0, 1.0);
        let y = b.node("MatMul", &["x", &w], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[3, 5, 4, 2])));
    }

    #[test]
    fn dense_cost_counts_features_and_rows_and_pads_the_flattened_input() {
        let mut b = Builder::new(&[2, 6]);
        let w = b.rand_init("w", &[10, 6], -1.0, 1.0);
        let bias = b.rand_init("b", &[10], -1.0, 1.0);
        let y = b.node("Gemm", &["x", &w, &bias], 1, vec![int_attr("transB", 1)]);
        let c = Inferred::of(&b).cost(&y[0], None, None, Some(8)).unwrap();
        assert_eq!((c.in_channels, c.out_channels), (6, 10));
        assert_eq!((c.params, c.macs), (70, Some(120)));
        assert_eq!((c.params_aligned, c.macs_aligned), (90, Some(160)));
        assert_eq!(c.kind, LayerKind::Dense);
    }

    #[test]
    fn matmul_weights_are_never_transposed() {
        let mut b = Builder::new(&[3, 6]);
        let w = b.rand_init("w", &[6, 10], -1.0, 1.0);
        let y = b.node("MatMul", &["x", &w], 1, vec![int_attr("transB", 1)]);
        let c = Inferred::of(&b).cost(&y[0], None, None, None).unwrap();
        assert_eq!((c.in_channels, c.out_channels, c.params, c.macs), (6, 10, 60, Some(180)));
    }
}
