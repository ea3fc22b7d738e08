//! Dense layers: Gemm (2-D, optional transposes) and MatMul (batch
//! broadcasting).

use super::{Cx, Rules};
use crate::ir::shapes::{broadcast, Shape};
use crate::onnx::attr_i;

/// Gemm: `[M, N]` from `A` (`[M, K]`, or `[K, M]` with transA) and `B`.
#[derive(Debug)]
pub struct Gemm;

impl Rules for Gemm {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = (cx.shape(0)?, cx.shape(1)?);
        if a.len() != 2 || b.len() != 2 {
            return None;
        }
        let ta = attr_i(cx.p, "transA", 0) == 1;
        let tb = attr_i(cx.p, "transB", 0) == 1;
        Some(cx.one(vec![if ta { a[1] } else { a[0] }, if tb { b[0] } else { b[1] }]))
    }
}

/// MatMul of operands of rank ≥ 2: batch dims broadcast.
#[derive(Debug)]
pub struct MatMul;

impl Rules for MatMul {
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
}

#[cfg(test)]
mod tests {
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
}
