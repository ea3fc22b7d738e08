//! Dense layers: Gemm (2-D, optional transposes) and MatMul (batch
//! broadcasting), and their cost as layers.

use super::{mul, zero_if, Cost, CostCx, Cx, Fill, FillCx, LayerKind, Rules};
use crate::analysis::{ChannelCx, ChannelMap};
use crate::error::Result;
use crate::ir::shapes::{broadcast, Shape};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::{attr_i, NodeProto};
use crate::passes::pad::PadCx;

/// Gemm (`[M, N]` from `A`: `[M, K]`, or `[K, M]` with transA, and `B`)
/// and MatMul (operands of rank ≥ 2, batch dims broadcast): one family,
/// their shapes apart.
#[derive(Debug)]
pub struct Dense;

impl Rules for Dense {
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        pad_dense(cx)
    }

    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        dense_channels(cx)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// Zero weight columns: the padded features hold 0 whatever A holds;
    /// a product of activations holds 0 where B does (attention · v).
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        match weight(cx.m, cx.n, cx.p) {
            Some(_) => Some(Fill::Zeros),
            None => zero_if(cx.zero_at(1)),
        }
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = (cx.shape(0)?, cx.shape(1)?);
        if super::is(cx.p, "Gemm") {
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let ta = attr_i(cx.p, "transA", 0) == 1;
            let tb = attr_i(cx.p, "transB", 0) == 1;
            return Some(cx.one(vec![if ta { a[1] } else { a[0] }, if tb { b[0] } else { b[1] }]));
        }
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
/// [`weight_in_axis`]): K features in, N out, one row per position of the
/// other dims of its input; aligned, K is the physical length of a
/// flattened input or of its features, N of its output's features.
fn layer_cost(cx: &CostCx) -> Option<Cost> {
    let wd = cx.weight_dims()?;
    if wd.len() != 2 {
        return None;
    }
    let a = weight_in_axis(cx.p);
    let (k, nout) = (wd[a], wd[1 - a]);
    let x = cx.m.input(cx.n, 0);
    let rows: Option<u64> = x.and_then(|x| cx.shapes.get(&x)).and_then(|s| {
        let lead = s.get(..s.len().checked_sub(1)?)?;
        lead.iter().try_fold(1u64, |acc, d| acc.checked_mul(u64::try_from((*d)?).ok()?))
    });
    let (pk, pn) = ((cx.flat)().or(cx.input.map(|w| w.physical)).unwrap_or(k), cx.output.map_or(nout, |w| w.physical));
    let bias = |n: usize| if cx.m.input(cx.n, 2).is_some() { n as u64 } else { 0 };
    let (k64, n64, pk64, pn64) = (k as u64, nout as u64, pk as u64, pn as u64);
    Some(Cost {
        kernel: vec![],
        stride: vec![],
        groups: 1,
        in_channels: k,
        out_channels: nout,
        params: k64.saturating_mul(n64).saturating_add(bias(nout)),
        macs: mul(rows, k64.saturating_mul(n64)),
        params_aligned: pk64.saturating_mul(pn64).saturating_add(bias(pn)),
        macs_aligned: mul(rows, pk64.saturating_mul(pn64)),
        kind: LayerKind::Dense,
    })
}

/// True when every reader of `o` is a dense layer (Gemm / MatMul with a
/// constant weight) reading it as its input A: the weight absorbs any layout.
pub fn dense_only(m: &Model, o: Outlet) -> bool {
    let consumers = m.consumers(o);
    !consumers.is_empty()
        && consumers.iter().all(|&(c, slot)| slot == 0 && m.op(c).is_some_and(|p| weight(m, c, p).is_some()))
}

/// True when some reader of `o` is a dense layer (Gemm / MatMul with a
/// constant weight) reading it as its input A: `o`'s last axis is features.
pub fn dense_reads(m: &Model, o: Outlet) -> bool {
    m.consumers(o).iter().any(|&(c, slot)| slot == 0 && m.op(c).is_some_and(|p| weight(m, c, p).is_some()))
}

/// The dims of a dense layer's constant 2-D weight (input B) and the axis
/// of them holding its input features ([`weight_in_axis`]); `None` for a
/// product of two activations (attention) or a Gemm reading A transposed.
fn weight(m: &Model, n: NodeId, p: &NodeProto) -> Option<(Vec<i64>, usize)> {
    if !super::standard(p) {
        return None;
    }
    let ok = match p.op_type() {
        "Gemm" => attr_i(p, "transA", 0) == 0,
        "MatMul" => true,
        _ => false,
    };
    let dims = m.input(n, 1).filter(|_| ok).and_then(|o| m.const_dims(o)).filter(|d| d.len() == 2)?;
    Some((dims, weight_in_axis(p)))
}

/// A dense layer's channel rule. With a constant weight, its output's last
/// axis is a new space of features (padded with zero weight columns: a
/// Linear's hidden width), and it absorbs the features of its input A
/// through zero weight rows: a flattened activation, or a layout on A's
/// last axis. A layout on another axis of A (the tokens of [N, T, C]) is
/// kept at its width. A product of two activations (attention scores)
/// makes no layout; a laid-out B keeps its width.
fn dense_channels(cx: &mut ChannelCx) -> Result<bool> {
    let Some(a) = cx.input(0) else { return Ok(false) };
    let why = format!("{} '{}'", cx.p.op_type(), cx.name);
    let Some((wd, in_axis)) = weight(cx.m, cx.n, cx.p) else {
        if cx.input(1).is_some_and(|b| cx.is_feature(b)) || cx.is_feature(a) {
            return Ok(product(cx, a));
        }
        if let Some(lb) = cx.input(1).and_then(|b| cx.layout(b)) {
            cx.atoms().pin(&lb, &format!("{why} (a product of two activations)"));
        }
        return Ok(cx.is_flat(a) || cx.layout(a).is_none());
    };
    if cx.input(2).is_some_and(|c| !cx.m.is_const(c)) {
        return Ok(false);
    }
    let (Some(ra), Some(ro)) = (cx.rank(a), cx.rank(cx.out(0))) else { return Ok(false) };
    if !cx.is_flat(a) {
        if let Some((l, axis)) = cx.placed(a) {
            let k = wd[in_axis];
            if axis + 1 != ra {
                cx.atoms().pin(&l, &why);
            } else if k < 0 || cx.width(&l) != k as usize {
                return Ok(false);
            }
        }
    }
    if ro >= 2 {
        cx.fresh_on(cx.out(0), ro - 1, None);
    }
    Ok(true)
}

/// A MatMul of two activations reading features (attention): contracting
/// A's last axis with B's second-to-last when both carry one space (q·kᵀ:
/// the padded head dims meet; exact when either side holds zeros there,
/// which the analysis checks once it knows, [`ChannelCx::contract`]), or
/// passing B's features on its last axis to the output's (attention · v),
/// or A's on its row axis to the output's (`v @ attnᵀ`, when B holds no
/// space that may still be padded). Any other layout of A keeps its width.
fn product(cx: &mut ChannelCx, a: Outlet) -> bool {
    let Some(b) = cx.input(1).filter(|_| super::is(cx.p, "MatMul")) else { return false };
    let (Some(ra), Some(rb), Some(ro)) = (cx.rank(a), cx.rank(b), cx.rank(cx.out(0))) else { return false };
    if ra < 2 || rb < 2 {
        return false;
    }
    let why = format!("{} '{}' (a product of two activations)", cx.p.op_type(), cx.name);
    let (la, lb) = (cx.placed(a), cx.placed(b));
    match (la, lb) {
        (Some((la, xa)), Some((lb, xb))) if xa + 1 == ra && xb + 2 == rb => {
            if cx.width(&la) != cx.width(&lb) || !cx.atoms().join(&la, &lb) {
                return false;
            }
            cx.contract(a, b);
            true
        }
        // A's rows (EfficientViT's `v @ attnᵀ`, v's channels on the row
        // axis): the output's rows are A's, whatever B holds; taken when
        // B's layout is only a pinned stand-in (a Softmax's output)
        (Some((la, xa)), lb) if xa + 2 == ra && ro >= 2 && lb.as_ref().is_none_or(|(l, _)| cx.all_pinned(l)) => {
            if let Some((lb, _)) = lb {
                cx.atoms().pin(&lb, &why);
            }
            cx.set_on(cx.out(0), la, ro - 2);
            true
        }
        (la, Some((lb, xb))) if xb + 1 == rb => {
            if let Some((la, _)) = la {
                cx.atoms().pin(&la, &why);
            }
            cx.set_on(cx.out(0), lb, ro - 1);
            true
        }
        _ => false,
    }
}

/// A dense layer's padding: zero weight rows for the padded features of
/// its input (flattened, or laid out on its last axis), zero weight
/// columns (and zero bias) for the padded features of its output.
fn pad_dense(cx: &mut PadCx) -> Result<()> {
    let (m, a, n) = (&*cx.m, cx.a, cx.n);
    let p = m.op(n).unwrap().clone();
    let Some(x) = m.input(n, 0) else {
        return Ok(());
    };
    let in_axis = weight_in_axis(&p);
    let last = a.shapes.get(&x).map_or(0, |s| s.len()).saturating_sub(1);
    let im = a.flat_map(x).or_else(|| a.channel_map(x).filter(|c| c.axis == last && last > 0));
    let om = a.channel_map(Outlet { node: n, slot: 0 });
    let (im, om) = (im.filter(|c| !c.is_identity()), om.filter(|c| !c.is_identity()));
    let bias = m.input(n, 2).and_then(|c| m.const_dims(c));
    let mut axes: Vec<(usize, &ChannelMap)> = vec![];
    if let Some(im) = &im {
        axes.push((in_axis, im));
    }
    if let Some(om) = &om {
        axes.push((1 - in_axis, om));
    }
    axes.sort_by_key(|&(a, _)| a);
    cx.scatter_axes(1, &axes, 0.0)?;
    if let (Some(om), Some(dims)) = (&om, bias) {
        // Gemm's C: padded on its last axis when it is per feature
        if dims.last() == Some(&(om.map.len() as i64)) && om.map.len() > 1 {
            cx.scatter(2, dims.len() - 1, om, 0.0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::ops::LayerKind;
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

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
    fn a_dense_layer_reading_a_constant_has_its_input_pinned_not_unanalysed() {
        // timm SwinV2-CR's relative position bias: an MLP over fixed
        // log-spaced coordinates [T, 2]; its 2 input features are data
        let mut b = Builder::new(&[49, 3]);
        let coords = b.rand_init("coords", &[49, 2], -1.0, 1.0);
        let w = b.rand_init("w", &[2, 13], -1.0, 1.0);
        let h = b.node("MatMul", &[&coords, &w], 1, vec![]).remove(0);
        let r = b.unary("Relu", &h);
        let w2 = b.rand_init("w2", &[13, 3], -1.0, 1.0);
        let y = b.node("MatMul", &[&r, &w2], 1, vec![]).remove(0);
        let s = b.node("Add", &["x", &y], 1, vec![]).remove(0);
        b.output(&s, &[49, 3]);
        let m = crate::ir::Model::import(b.model()).unwrap();
        let r = crate::report::build(&m, &Default::default()).unwrap();
        assert_eq!(r.totals.unanalysed, 0, "{:?}", r.unanalysed);
        let fc1 = &r.layers[0];
        let d = fc1.in_dim.as_ref().unwrap();
        assert!(d.pinned[0].starts_with("reads the constant 'coords"), "{d:?}");
        // its hidden width is still a space of its own
        assert_eq!(fc1.out_dim.as_ref().unwrap().aligned_to, 16);
    }

    #[test]
    fn matmul_weights_are_never_transposed() {
        let mut b = Builder::new(&[3, 6]);
        let w = b.rand_init("w", &[6, 10], -1.0, 1.0);
        let y = b.node("MatMul", &["x", &w], 1, vec![int_attr("transB", 1)]);
        let c = Inferred::of(&b).cost(&y[0], None, None, None).unwrap();
        assert_eq!((c.in_channels, c.out_channels, c.params, c.macs), (6, 10, 60, Some(180)));
    }

    #[test]
    fn v_times_attention_transposed_keeps_v_channels_on_its_rows() {
        // EfficientViT's cascaded group attention: v [N, d, T] (a conv's
        // channels, flattened) @ softmax(q kᵀ)ᵀ [N, T, T] → [N, d, T] → back
        // to NCHW → a conv; and a pooled [N, C] read by a BatchNorm1d
        // before the classifier
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let v = b.conv("x", 3, 13, 1, 1, true);
        let t = b.ints("t", &[1, 13, 16]);
        let vf = b.node("Reshape", &[&v, &t], 1, vec![]).remove(0);
        let q = b.conv("x", 3, 5, 1, 1, true);
        let tq = b.ints("tq", &[1, 5, 16]);
        let qf = b.node("Reshape", &[&q, &tq], 1, vec![]).remove(0);
        let qt = b.node("Transpose", &[&qf], 1, vec![ints_attr("perm", &[0, 2, 1])]).remove(0);
        let s = b.node("MatMul", &[&qt, &qf], 1, vec![]).remove(0);
        let a = b.node("Softmax", &[&s], 1, vec![int_attr("axis", -1)]).remove(0);
        let at = b.node("Transpose", &[&a], 1, vec![ints_attr("perm", &[0, 2, 1])]).remove(0);
        let o = b.node("MatMul", &[&vf, &at], 1, vec![]).remove(0);
        let back = b.ints("back", &[1, 13, 4, 4]);
        let o4 = b.node("Reshape", &[&o, &back], 1, vec![]).remove(0);
        let c = b.conv(&o4, 13, 11, 1, 1, true);
        let p = b.node("GlobalAveragePool", &[&c], 1, vec![]).remove(0);
        let f = b.node("Flatten", &[&p], 1, vec![]).remove(0);
        let n = b.bn(&f, 11);
        let w = b.rand_init("w", &[11, 3], -1.0, 1.0);
        let y = b.node("MatMul", &[&n, &w], 1, vec![]).remove(0);
        b.output(&y, &[1, 3]);
        let m = crate::ir::Model::import(b.model()).unwrap();
        let r = crate::report::build(&m, &Default::default()).unwrap();
        assert_eq!(r.totals.unanalysed, 0, "{:?}", r.unanalysed);
        let (out, _, v) = crate::testutil::align_and_verify(&b.model(), 8);
        assert!(v.passed, "{}", v.text());
        let widths: Vec<i64> =
            out.graph.as_ref().unwrap().initializer.iter().filter(|t| t.dims.len() == 4).map(|t| t.dims[0]).collect();
        assert!(widths.contains(&16), "v's conv padded 13 → 16: {widths:?}");
        assert_eq!(crate::testutil::free_unaligned(&out, 8), 0);
    }
}
