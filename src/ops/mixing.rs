//! Ops that mix channels (the analysis pins what they read and write):
//! normalisations over several channels, Transpose.

use super::{Cx, Rules};
use crate::ir::shapes::Shape;
use crate::ir::values::Value;
use crate::onnx::attr_ints;
use crate::tensor;

/// Softmax, LogSoftmax, Hardmax, Group / Layer / Instance normalisation,
/// LRN: output 0 has input 0's shape.
#[derive(Debug)]
pub struct Normalize;

impl Rules for Normalize {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }
}

/// Transpose by `perm` (default: reversed axes). Its value is computed too:
/// F.pad builds its pads as `[n, 2]` and transposes them.
#[derive(Debug)]
pub struct Transpose;

impl Rules for Transpose {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let perm = attr_ints(cx.p, "perm");
        let perm: Vec<usize> =
            if perm.is_empty() { (0..x.len()).rev().collect() } else { perm.iter().map(|&a| a as usize).collect() };
        Some(cx.one(perm.iter().map(|&a| x.get(a).copied().flatten()).collect()))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let v = cx.value(0)?;
        let r = v.dims.len();
        let perm: Vec<usize> = match attr_ints(cx.p, "perm") {
            p if p.is_empty() => (0..r).rev().collect(),
            p => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect::<Option<_>>()?,
        };
        if perm.len() != r {
            return None;
        }
        let dims: Vec<usize> = perm.iter().map(|&a| v.dims[a]).collect();
        let (src, dst) = (tensor::strides(&v.dims), tensor::strides(&dims));
        let mut data = vec![None; v.data.len()];
        for (i, slot) in data.iter_mut().enumerate() {
            // output index i → coordinates → input offset
            let at: usize = (0..r).map(|k| (i / dst[k]) % dims[k] * src[perm[k]]).sum();
            *slot = v.data[at];
        }
        Some(Value { dims, data, elem: v.elem })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{ints_attr, known, Builder, Inferred};

    #[test]
    fn transpose_permutes_shapes_and_values() {
        let mut b = Builder::new(&[1, 2, 3, 4]);
        let t = b.node("Transpose", &["x"], 1, vec![ints_attr("perm", &[0, 3, 1, 2])]);
        let r = b.unary("Transpose", "x");
        // a [2, 3] value transposed: F.pad's pads
        let pads = b.ints("pads", &[1, 2, 3, 4, 5, 6]);
        let shape = b.ints("shape", &[2, 3]);
        let m = b.node("Reshape", &[&pads, &shape], 1, vec![]);
        let mt = b.unary("Transpose", &m[0]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&t[0]), Some(known(&[1, 4, 2, 3])));
        assert_eq!(inf.shape(&r), Some(known(&[4, 3, 2, 1])), "no perm: axes reversed");
        assert_eq!(inf.ints(&mt), Some(vec![1, 4, 2, 5, 3, 6]));
        assert_eq!(inf.value(&mt).unwrap().dims, [3, 2]);
    }

    #[test]
    fn normalisations_keep_their_input_shape_and_have_no_value() {
        let mut b = Builder::new(&[1, 6, 2, 2]);
        let y = b.unary("Softmax", "x");
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y), Some(known(&[1, 6, 2, 2])));
        assert_eq!(inf.value(&y), None);
    }
}
