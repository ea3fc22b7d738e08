//! Ops that mix channels (the analysis pins what they read and write):
//! normalisations over several channels, Transpose.

use super::{zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::Shape;
use crate::ir::values::Value;
use crate::onnx::{attr_ints, NodeProto};
use crate::tensor;

/// Softmax, LogSoftmax, Hardmax, Group / Layer / Instance normalisation,
/// LRN: output 0 has input 0's shape.
#[derive(Debug)]
pub struct Normalize;

impl Rules for Normalize {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }

    fn pin_note(&self, p: &NodeProto) -> Option<&'static str> {
        Some(match p.op_type() {
            "LayerNormalization" | "GroupNormalization" | "InstanceNormalization" => {
                "padding would change the mean and variance it normalises by"
            }
            "LRN" => "normalises over neighbouring channels",
            _ => "padding would change the sum it normalises by",
        })
    }
}

/// Einsum: the output's dims are the input dims its subscripts name
/// (explicit `->` form, or the implicit one: the letters used once, in
/// alphabetical order). An ellipsis is not followed. It contracts what it
/// reads: the analysis pins its operands (MViTv2's relative position terms,
/// `byhwc,hkc->byhwk`).
#[derive(Debug)]
pub struct Einsum;

/// The output shape of `equation` over input shapes `xs`.
fn einsum_shape(equation: &str, xs: &[&Shape]) -> Option<Shape> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains("...") {
        return None;
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != xs.len() {
        return None;
    }
    let mut dims: std::collections::BTreeMap<char, Option<i64>> = Default::default();
    let mut uses: std::collections::BTreeMap<char, usize> = Default::default();
    for (t, x) in terms.iter().zip(xs) {
        if t.chars().count() != x.len() || !t.chars().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        for (c, &d) in t.chars().zip(x.iter()) {
            *uses.entry(c).or_default() += 1;
            let e = dims.entry(c).or_insert(d);
            // a broadcast 1 gives way to the other operand's dim
            match (*e, d) {
                (Some(1), d) | (None, d @ Some(_)) => *e = d,
                _ => {}
            }
        }
    }
    let out: String = match rhs {
        Some(r) => r.to_string(),
        None => uses.iter().filter(|(_, &n)| n == 1).map(|(&c, _)| c).collect(),
    };
    out.chars().map(|c| dims.get(&c).copied()).collect()
}

impl Rules for Einsum {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let xs: Vec<&Shape> = (0..cx.p.input.len()).map(|i| cx.shape(i)).collect::<Option<_>>()?;
        let eq = crate::onnx::attr(cx.p, "equation").map(|a| String::from_utf8_lossy(a.s()).to_string())?;
        Some(cx.one(einsum_shape(&eq, &xs)?))
    }
}

/// CumSum: running sums along an axis, its input's shape (EdgeNeXt's
/// Fourier position encoding sums a mask over H and W).
#[derive(Debug)]
pub struct CumSum;

impl Rules for CumSum {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }
}

/// ScatterND: the data (input 0) with some elements replaced; its shape.
#[derive(Debug)]
pub struct ScatterNd;

impl Rules for ScatterNd {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }
}

/// Transpose by `perm` (default: reversed axes). Its value is computed too:
/// F.pad builds its pads as `[n, 2]` and transposes them.
#[derive(Debug)]
pub struct Transpose;

/// The permutation of a Transpose of a rank-`r` tensor.
fn perm(p: &NodeProto, r: usize) -> Option<Vec<usize>> {
    let perm = attr_ints(p, "perm");
    if perm.is_empty() {
        return Some((0..r).rev().collect());
    }
    let perm: Vec<usize> = perm.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect::<Option<_>>()?;
    (perm.len() == r).then_some(perm)
}

impl Rules for Transpose {
    /// The layout moves to the axis the permutation sends its axis to, when
    /// its space may still be padded (NCHW → NHWC before a channels-last
    /// MLP, and back), lands on the last axis (features: `[N, C, T]` →
    /// `[N, T, C]`) or turns features back into channels. An activation
    /// layout already pinned that would land elsewhere stops here as
    /// before: its output gets a pinned layout on axis 1 for the convs
    /// after it.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (Some(x), out) = (cx.input(0), cx.out(0)) else { return Ok(false) };
        let (Some((l, axis)), Some(r)) = (cx.placed(x), cx.rank(x)) else {
            return Ok(false);
        };
        let Some(to) = perm(cx.p, r).and_then(|p| p.iter().position(|&a| a == axis)) else {
            return Ok(false);
        };
        let pinned = cx.all_pinned(&l);
        // features back to an activation's channels (a LayerNorm2d's
        // NHWC → NCHW) keep their space; a pinned activation layout that
        // would land elsewhere stops as before
        let back = to == 1 && r >= 3 && cx.is_feature(x);
        if pinned && to + 1 != r && !back {
            return Ok(false);
        }
        if cx.channels_on(out, to) != Some(cx.width(&l)) {
            return Ok(false);
        }
        cx.set_on(out, l, to);
        Ok(true)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// f(0) = 0: the same values, elsewhere.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

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
        let perm = perm(cx.p, r)?;
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

/// TopK: values and indices of the input's shape with `k` on `axis`.
#[derive(Debug)]
pub struct TopK;

impl Rules for TopK {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let a = crate::ir::shapes::axis(crate::onnx::attr_i(cx.p, "axis", -1), x.len())?;
        let k = if cx.opset() >= 10 { *cx.ints(1)?.first()? } else { crate::onnx::attr_i(cx.p, "k", 0) };
        let mut s = x.clone();
        s[a] = Some(k).filter(|&k| k >= 0);
        Some(vec![Some(s); cx.p.output.len()])
    }
}

/// GatherElements: the shape of its indices.
#[derive(Debug)]
pub struct GatherElements;

impl Rules for GatherElements {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        Some(cx.one(cx.shape(1)?.clone()))
    }
}

/// Tile: each dim times its repeat count (a constant, or a value shape
/// arithmetic computes).
#[derive(Debug)]
pub struct Tile;

impl Rules for Tile {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let reps: Vec<Option<i64>> = match cx.value(1) {
            Some(v) => v.data.iter().map(|d| d.map(|d| d as i64)).collect(),
            None => cx.ints(1)?.into_iter().map(Some).collect(),
        };
        if reps.len() != x.len() {
            return None;
        }
        Some(cx.one(x.iter().zip(&reps).map(|(d, r)| d.zip(*r).and_then(|(d, r)| d.checked_mul(r))).collect()))
    }
}

/// GridSample: `[N, C, H_out, W_out]` from input `[N, C, H, W]` and grid
/// `[N, H_out, W_out, 2]` (any rank: the grid's middle dims).
#[derive(Debug)]
pub struct GridSample;

impl Rules for GridSample {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (x, g) = (cx.shape(0)?, cx.shape(1)?);
        if x.len() < 3 || g.len() != x.len() {
            return None;
        }
        let mut s = x[..2].to_vec();
        s.extend_from_slice(&g[1..g.len() - 1]);
        Some(cx.one(s))
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

    #[test]
    fn decoder_ops_have_shapes() {
        // RT-DETR's decoder: TopK of the encoder's scores, GatherElements of
        // the chosen queries, a Tile of the reference points, GridSample
        let mut b = Builder::new(&[1, 100, 8]);
        let k = b.ints("k", &[30]);
        let top = b.node("TopK", &["x", &k], 2, vec![int_attr("axis", 1)]);
        let idx = b.ints("idx", &[0; 30 * 8]);
        b.g.initializer.last_mut().unwrap().dims = vec![1, 30, 8];
        let ge = b.node("GatherElements", &["x", &idx], 1, vec![int_attr("axis", 1)]).remove(0);
        let reps = b.ints("reps", &[2, 1, 3]);
        let t = b.node("Tile", &["x", &reps], 1, vec![]).remove(0);
        let img = b.rand_init("img", &[1, 8, 10, 10], 0.0, 1.0);
        let grid = b.rand_init("grid", &[1, 30, 4, 2], -1.0, 1.0);
        let gs = b.node("GridSample", &[&img, &grid], 1, vec![]).remove(0);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&top[0]), Some(known(&[1, 30, 8])));
        assert_eq!(inf.shape(&top[1]), Some(known(&[1, 30, 8])));
        assert_eq!(inf.shape(&ge), Some(known(&[1, 30, 8])));
        assert_eq!(inf.shape(&t), Some(known(&[2, 100, 24])));
        assert_eq!(inf.shape(&gs), Some(known(&[1, 8, 30, 4])));
    }

    #[test]
    fn einsum_names_its_output_dims_and_scatter_nd_and_cumsum_keep_their_input_shape() {
        // MViTv2's relative position term, explicit and implicit forms
        let mut b = Builder::new(&[2, 3, 4, 5, 6]);
        let rh = b.rand_init("rh", &[4, 7, 6], 0.0, 1.0);
        let eq = |s: &str| crate::onnx::AttributeProto {
            name: Some("equation".into()),
            s: Some(s.as_bytes().to_vec()),
            r#type: Some(crate::onnx::attribute_proto::AttributeType::String as i32),
            ..Default::default()
        };
        let y = b.node("Einsum", &["x", &rh], 1, vec![eq("byhwc,hkc->byhwk")]).remove(0);
        let w = b.rand_init("w", &[6, 9], 0.0, 1.0);
        let imp = b.node("Einsum", &["x", &w], 1, vec![eq("byhwc,cd")]).remove(0);
        let dots = b.node("Einsum", &["x", &rh], 1, vec![eq("...c,hkc->...hk")]).remove(0);
        let idx = b.ints("idx", &[0, 0]);
        b.g.initializer.last_mut().unwrap().dims = vec![1, 2];
        let upd = b.rand_init("upd", &[1, 4, 5, 6], 0.0, 1.0);
        let sc = b.node("ScatterND", &["x", &idx, &upd], 1, vec![]).remove(0);
        let ax = b.ints("ax", &[1]);
        let cs = b.node("CumSum", &["x", &ax], 1, vec![]).remove(0);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y), Some(known(&[2, 3, 4, 5, 7])));
        assert_eq!(inf.shape(&imp), Some(known(&[2, 9, 4, 5, 3])), "implicit: b d h w y");
        assert_eq!(inf.shape(&dots), None, "an ellipsis is not followed");
        assert_eq!(inf.shape(&sc), Some(known(&[2, 3, 4, 5, 6])));
        assert_eq!(inf.shape(&cs), Some(known(&[2, 3, 4, 5, 6])));
    }

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
