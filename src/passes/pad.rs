//! pad: zero-pad every free channel space to a multiple of N.
//!
//! Before: `Conv(X: 19 ch) → Y: 37 ch → Relu → Conv(… 37 in)`.
//! After: `Conv → Y: 40 ch (3 zero filters, zero bias) → Relu → Conv (3 zero
//! weight columns)`; every output value is unchanged.
//!
//! Conditions come from [`crate::analysis`]: only free spaces are padded;
//! pinned ones (graph inputs/outputs, Reshape, unknown ops…) keep their
//! width. Each padded space gets exactly `ceil(c/N)·N` channels; a tensor
//! made of several spaces (after Concat) is the concatenation of their padded
//! layouts, and Split / Slice sizes are rewritten to match.
//!
//! Rewrites, with logical → physical channel maps from the analysis, each
//! in its op family's pad rule ([`crate::ops::Rules::pad`]; this file is the
//! driver, the constant scatter they share and `--slice-pinned`'s Slices):
//! * Conv / ConvTranspose: weight rows scattered on the output axis (zero
//!   filters), columns on the input axis (zero weights), bias zero-padded;
//!   depthwise convs get `group` = padded width.
//! * Per-channel constants of element-wise ops padded with values that keep
//!   padded channels finite: Add/Sub/Mul/Max/Min 0, Div/Pow 1, PRelu slope 0;
//!   BatchNormalization γ 0, β 0, mean 0, var 1.
//! * Split sizes, Slice starts/ends on the channel axis, Resize `sizes`.
//! * Gemm / MatMul after Flatten: weight rows for padded features are zero.
//! * value_info of every padded tensor gets its new channel count.

use super::Options;
use crate::analysis::{Analysis, ChannelMap};
use crate::error::{Error, Result};
use crate::ir::{Model, NodeId, Outlet};
use crate::layout::Layout;
use crate::ops::Role;
use crate::tensor;
use std::borrow::Cow;

/// Pads every free channel space. Returns (tensors padded, notes).
pub fn run(m: &mut Model, opts: &Options) -> Result<(usize, Vec<String>)> {
    run_with_layout(m, opts).map(|(n, notes, _)| (n, notes))
}

/// Folds shape arithmetic and analyses `m` as [`run`] does before it
/// rewrites anything: the fold notes and the analysis pad pads by.
pub fn analyse(m: &mut Model, opts: &Options) -> Result<(Vec<String>, Analysis)> {
    let notes = crate::ir::fold_shapes::fold(m)?;
    let a = Analysis::run(m, opts)?;
    Ok((notes, a))
}

/// [`run`], also returning where every kept tensor's channels went.
pub fn run_with_layout(m: &mut Model, opts: &Options) -> Result<(usize, Vec<String>, Layout)> {
    let (mut notes, a) = analyse(m, opts)?;
    let layout = Layout::of(m, &a, &m.altered, "align's own rewrite");
    for n in m.ops() {
        rewrite_node(m, &a, n).map_err(|e| e.in_node(&m.label(n)))?;
    }
    notes.extend(insert_slices(m, &a)?);
    // Record new channel counts of activations.
    let mut padded = 0;
    for n in m.ops() {
        for slot in 0..m.output_names(n).len() {
            let o = Outlet { node: n, slot };
            if let Some(cm) = a.channel_map(o).or_else(|| a.flat_map(o)).filter(|c| !c.is_identity()) {
                let name = m.tensor_name(o).to_string();
                notes.push(format!("{name}: {} → {}", cm.map.len(), cm.len));
                m.set_channel_dim(&name, cm.axis, cm.len);
                padded += 1;
            }
        }
    }
    Ok((padded, notes, layout))
}

/// The channel map of input `slot` of `n`.
pub(crate) fn map_in(a: &Analysis, m: &Model, n: NodeId, slot: usize) -> Option<ChannelMap> {
    a.channel_map(m.input(n, slot)?)
}

/// Pads axis `axis` of the constant at input `slot` of `n` by `cm`.
pub(crate) fn scatter_const(
    m: &mut Model,
    n: NodeId,
    slot: usize,
    axis: usize,
    cm: &ChannelMap,
    fill: f64,
) -> Result<()> {
    scatter_const_axes(m, n, slot, &[(axis, cm)], fill)
}

/// Pads several axes of one constant input in a single rewrite (a conv
/// weight's output and input channels), applying a scale fold-bn deferred
/// on the way: the tensor is written once.
pub(crate) fn scatter_const_axes(
    m: &mut Model,
    n: NodeId,
    slot: usize,
    axes: &[(usize, &ChannelMap)],
    fill: f64,
) -> Result<()> {
    let Some(o) = m.input(n, slot).filter(|_| !axes.is_empty()) else {
        return Ok(());
    };
    let (t, scale) = match m.const_unscaled(o) {
        Some((t, s)) => (Cow::Borrowed(t), s.map(|s| (s.block, s.factors.clone()))),
        None => match m.const_value(o) {
            Some(t) => (t, None),
            None => return Ok(()),
        },
    };
    let d = tensor::dims(&t);
    for &(axis, cm) in axes {
        if d.get(axis) != Some(&cm.map.len()) {
            return Err(Error::model(format!(
                "constant '{}' has {:?} where {} channels were expected on axis {axis}",
                t.name(),
                d,
                cm.map.len()
            )));
        }
    }
    let axes: Vec<(usize, &[usize], usize)> = axes.iter().map(|&(a, cm)| (a, &cm.map[..], cm.len)).collect();
    let nt = tensor::scatter_axes(&t, &axes, fill, scale.as_ref().map(|(b, f)| (*b, &f[..])))?;
    m.replace_input_const(n, slot, nt);
    Ok(())
}

/// Rewrites one node for the padded layouts: its family's pad rule
/// ([`crate::ops::Rules::pad`]), for ops whose role is not `Mixing`.
fn rewrite_node(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let Some(e) = m.op(n).and_then(crate::ops::entry).filter(|e| e.role != Role::Mixing) else {
        return Ok(());
    };
    e.rules.pad(&mut PadCx { m, a, n, role: e.role })
}

/// What a family's pad rule ([`crate::ops::Rules::pad`]) works on: the
/// model being rewritten, the analysis it is padded by, and the op.
pub struct PadCx<'a> {
    /// The model, being rewritten.
    pub m: &'a mut Model,
    /// The channel analysis the model is padded by.
    pub a: &'a Analysis,
    /// The op's node.
    pub n: NodeId,
    /// The op's channel role.
    pub role: Role,
}

impl PadCx<'_> {
    /// The channel map of input `slot` (`None`: no layout).
    pub fn in_map(&self, slot: usize) -> Option<ChannelMap> {
        map_in(self.a, self.m, self.n, slot)
    }

    /// The channel map of output `slot`.
    pub fn out_map(&self, slot: usize) -> Option<ChannelMap> {
        self.a.channel_map(Outlet { node: self.n, slot })
    }

    /// Pads axis `axis` of the constant at input `slot` by `cm`, `fill` in
    /// the padded positions.
    pub fn scatter(&mut self, slot: usize, axis: usize, cm: &ChannelMap, fill: f64) -> Result<()> {
        scatter_const(self.m, self.n, slot, axis, cm, fill)
    }

    /// Pads several axes of the constant at input `slot` in one rewrite.
    pub fn scatter_axes(&mut self, slot: usize, axes: &[(usize, &ChannelMap)], fill: f64) -> Result<()> {
        scatter_const_axes(self.m, self.n, slot, axes, fill)
    }

    /// Writes `vals` into the integer constant at input `slot` (a target,
    /// sizes, bounds), keeping its type.
    pub fn set_ints(&mut self, slot: usize, vals: &[i64]) -> Result<()> {
        let t = self.m.input_const(self.n, slot).ok_or_else(|| Error::model("a computed integer input"))?.into_owned();
        let nt = tensor::rewrite(&t, &[vals.len()], &vals.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
        self.m.replace_input_const(self.n, slot, nt);
        Ok(())
    }
}

/// `--slice-pinned`: a Slice after each padded conv whose exact channels a
/// reader (graph output, Reshape…) needs; that reader reads the Slice. A
/// graph output keeps its name: the Slice produces it, the conv's padded
/// tensor gets a new one.
fn insert_slices(m: &mut Model, a: &Analysis) -> Result<Vec<String>> {
    use crate::analysis::{Reader, RESTORE_SLICE_DOC};
    let mut notes = vec![];
    let mut by_outlet: std::collections::BTreeMap<Outlet, Vec<Reader>> = Default::default();
    for (o, r) in &a.sliced_readers {
        by_outlet.entry(*o).or_default().push(*r);
    }
    for (o, readers) in by_outlet {
        let Some(cm) = a.channel_map(o).filter(|c| !c.is_identity()) else { continue };
        let c = cm.map.len() as i64;
        let name = m.tensor_name(o).to_string();
        let is_output = readers.iter().any(|r| matches!(r, Reader::Output(_)));
        let out_name = if is_output {
            let padded = m.unique_name(&format!("{name}_padded"));
            m.op_mut(o.node).expect("sliced tensors come from convs").output[o.slot] = padded;
            name.clone()
        } else {
            m.unique_name(&format!("{name}_exact"))
        };
        let node_name = m.unique_name(&format!("{}_restore", m.label(o.node)));
        let mut node = crate::onnx::NodeProto {
            name: Some(node_name),
            op_type: Some("Slice".into()),
            doc_string: Some(RESTORE_SLICE_DOC.into()),
            output: vec![out_name],
            input: vec![String::new()],
            ..Default::default()
        };
        if m.opset() < 10 {
            for (k, v) in [("starts", 0), ("ends", c), ("axes", 1)] {
                node.attribute.push(crate::onnx::AttributeProto {
                    name: Some(k.into()),
                    ints: vec![v],
                    r#type: Some(crate::onnx::attribute_proto::AttributeType::Ints as i32),
                    ..Default::default()
                });
            }
        }
        let id = m.add_op(node, o.node);
        m.set_input(id, 0, o);
        if m.opset() >= 10 {
            for (slot, (k, v)) in [("starts", 0), ("ends", c), ("axes", 1)].into_iter().enumerate() {
                let t = tensor::from_f64(&format!("{name}_{k}"), 7, &[1], &[v as f64])?;
                let k = m.add_const(t);
                m.set_input(id, slot + 1, k);
            }
        }
        let restored = Outlet { node: id, slot: 0 };
        for r in readers {
            match r {
                Reader::Input(n, slot) => m.set_input(n, slot, restored),
                Reader::Output(i) => m.outputs[i].0 = restored,
            }
        }
        notes.push(format!("{name}: {} → {} with a Slice restoring {c} channels", c, cm.len));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use crate::ir::Model;
    use crate::onnx::ModelProto;
    use crate::passes::Options;
    use crate::tensor;
    use crate::testutil::{align_and_verify, free_unaligned, int_attr, ints_attr, Builder};

    fn init_dims(m: &ModelProto, name_prefix: &str) -> Vec<Vec<i64>> {
        m.graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .filter(|t| t.name().starts_with(name_prefix))
            .map(|t| t.dims.clone())
            .collect()
    }

    fn check(b: &Builder, multiple: usize) -> ModelProto {
        let (out, _, v) = align_and_verify(&b.model(), multiple);
        assert!(v.passed, "verification failed: {:?}", v.outputs);
        assert_eq!(free_unaligned(&out, multiple), 0);
        out
    }

    #[test]
    fn conv_chain_pads_to_the_next_multiple_only() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 3, 1, true);
        let r = b.unary("Relu", &c1);
        let c2 = b.conv(&r, 13, 19, 3, 1, true);
        let s = b.unary("Sigmoid", &c2);
        let m = b.node("Mul", &[&c2, &s], 1, vec![]).remove(0);
        let c3 = b.conv(&m, 19, 4, 1, 1, true);
        b.output(&c3, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "w"), vec![vec![16, 3, 3, 3], vec![24, 16, 3, 3], vec![4, 24, 1, 1]]);
        // at 32, 13 → 32 (×2.46) is over the default --max-growth: it keeps
        // its width; 19 → 32 (×1.68) is padded
        let out = check(&b, 32);
        assert_eq!(init_dims(&out, "w"), vec![vec![13, 3, 3, 3], vec![32, 13, 3, 3], vec![4, 32, 1, 1]]);
    }

    #[test]
    fn split_halves_are_padded_each_in_the_producer() {
        // C2f: a conv feeding a channel Split pads each half.
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 26, 1, 1, true);
        let sizes = b.ints("split", &[13, 13]);
        let parts = b.node("Split", &[&c1, &sizes], 2, vec![int_attr("axis", 1)]);
        let c2 = b.conv(&parts[1], 13, 11, 3, 1, true);
        let cat = b.node("Concat", &[&parts[0], &parts[1], &c2], 1, vec![int_attr("axis", 1)]).remove(0);
        let c3 = b.conv(&cat, 37, 5, 1, 1, true);
        b.output(&c3, &[1, 5, 8, 8]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "w"), vec![vec![32, 3, 1, 1], vec![16, 16, 3, 3], vec![5, 48, 1, 1]]);
        let split = out.graph.as_ref().unwrap().initializer.iter().find(|t| t.name().starts_with("split")).unwrap();
        assert_eq!(tensor::to_i64(split).unwrap(), vec![16, 16]);
    }

    #[test]
    fn depthwise_conv_pads_its_group() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 1, 1, true);
        let dw = b.conv(&c1, 13, 13, 3, 13, true);
        let r = b.node("Clip", &[&dw], 1, vec![]).remove(0);
        let c3 = b.conv(&r, 13, 4, 1, 1, true);
        b.output(&c3, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        let dwn = &out.graph.as_ref().unwrap().node[1];
        assert_eq!(crate::onnx::attr_i(dwn, "group", 0), 16);
    }

    #[test]
    fn depthwise_conv_with_a_channel_multiplier_repeats_its_input_layout() {
        // timm FastViT's downsampling: group = C_in, C_out = 2·C_in. The
        // input (13 → 16) and a concat of two parts (5 + 6 → 8 + 8) both
        // come out as the input's layout with every channel doubled
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 1, 1, true);
        let dw = b.conv(&c1, 13, 26, 3, 13, true);
        let r = b.unary("Relu", &dw);
        let c3 = b.conv(&r, 26, 4, 1, 1, true);
        let (p, q) = (b.conv("x", 3, 5, 1, 1, true), b.conv("x", 3, 6, 1, 1, true));
        let cat = b.node("Concat", &[&p, &q], 1, vec![int_attr("axis", 1)]).remove(0);
        let dw2 = b.conv(&cat, 11, 33, 3, 11, false);
        let c4 = b.conv(&dw2, 33, 4, 1, 1, true);
        let sum = b.node("Add", &[&c3, &c4], 1, vec![]).remove(0);
        b.output(&sum, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        let g = out.graph.as_ref().unwrap();
        let group = |i: usize| crate::onnx::attr_i(&g.node[i], "group", 0);
        let wdims = |i: usize| g.initializer.iter().find(|t| t.name() == g.node[i].input[1]).unwrap().dims.clone();
        assert_eq!((group(1), wdims(1)[0]), (16, 32));
        let dw2n = g.node.iter().position(|n| n.output[0] == dw2).unwrap();
        assert_eq!((group(dw2n), wdims(dw2n)[0]), (16, 48));
    }

    #[test]
    fn a_pinned_multiplier_output_pins_its_input() {
        // the multiplier conv's output is a graph output: its input space
        // keeps its width too, with the output's reason
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 1, 1, true);
        let dw = b.conv(&c1, 13, 26, 3, 13, true);
        b.output(&dw, &[1, 26, 8, 8]);
        let m = crate::ir::Model::import(b.model()).unwrap();
        let a = crate::analysis::Analysis::run(&m, &crate::analysis::Options::default()).unwrap();
        let c1o = (m.ops().into_iter().map(|n| crate::ir::Outlet { node: n, slot: 0 }))
            .find(|&o| m.tensor_name(o) == c1)
            .unwrap();
        let d = a.dim(c1o).unwrap();
        assert_eq!(d.physical, 13, "{d:?}");
        assert!(d.pins.iter().any(|p| p.contains("graph output")), "{d:?}");
    }

    #[test]
    fn deconv_input_and_output_align_independently() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let c1 = b.conv("x", 3, 117, 1, 1, true);
        let d = b.deconv(&c1, 117, 128);
        let c3 = b.conv(&d, 128, 4, 1, 1, true);
        b.output(&c3, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "w")[1], vec![120, 128, 2, 2]);
    }

    #[test]
    fn residual_add_and_unfoldable_bn_join_one_space() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 3, 1, true);
        let r1 = b.unary("Relu", &c1);
        let c2 = b.conv(&r1, 13, 13, 3, 1, true);
        let add = b.node("Add", &[&r1, &c2], 1, vec![]).remove(0);
        let bn = b.bn(&add, 13);
        let k = b.init("k", &[1, 13, 1, 1], (0..13).map(|i| 0.5 + i as f32 / 10.0).collect());
        let div = b.node("Div", &[&bn, &k], 1, vec![]).remove(0);
        let c3 = b.conv(&div, 13, 4, 1, 1, true);
        b.output(&c3, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "k"), vec![vec![1, 16, 1, 1]]);
        assert_eq!(init_dims(&out, "var"), vec![vec![16]]);
        let var = out.graph.as_ref().unwrap().initializer.iter().find(|t| t.name().starts_with("var")).unwrap();
        assert_eq!(tensor::to_f64(var).unwrap()[13..], [1.0, 1.0, 1.0]);
    }

    #[test]
    fn reshape_pins_the_conv_before_it() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 3, 1, true);
        let shape = b.ints("shape", &[1, 13, 64]);
        let r = b.node("Reshape", &[&c1, &shape], 1, vec![]).remove(0);
        b.output(&r, &[1, 13, 64]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "w"), vec![vec![13, 3, 3, 3]]);
    }

    #[test]
    fn flatten_gemm_head_absorbs_padding() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 3, 1, true);
        let p = b.unary("GlobalAveragePool", &c1);
        let f = b.node("Flatten", &[&p], 1, vec![int_attr("axis", 1)]).remove(0);
        let w = b.rand_init("fc", &[5, 13], -0.5, 0.5);
        let bias = b.rand_init("fcb", &[5], -0.5, 0.5);
        let g = b.node("Gemm", &[&f, &w, &bias], 1, vec![int_attr("transB", 1)]).remove(0);
        b.output(&g, &[1, 5]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "fc")[0], vec![5, 16]);
    }

    /// `[1, 5, 12]` tokens → LayerNorm → fc1 (MatMul + bias Add, 19
    /// features) → `act` → fc2 (back to 12) → residual Add: a ViT MLP.
    fn token_mlp(act: &str) -> Builder {
        let mut b = Builder::new(&[1, 5, 12]);
        b.opset = 17;
        let (g, be) = (b.rand_init("lng", &[12], 0.5, 1.5), b.rand_init("lnb", &[12], -0.5, 0.5));
        let ln = b.node("LayerNormalization", &["x", &g, &be], 1, vec![int_attr("axis", -1)]).remove(0);
        let (w1, b1) = (b.rand_init("w1", &[12, 19], -0.5, 0.5), b.rand_init("b1", &[19], -0.5, 0.5));
        let h = b.node("MatMul", &[&ln, &w1], 1, vec![]).remove(0);
        let h = b.node("Add", &[&h, &b1], 1, vec![]).remove(0);
        let a = b.unary(act, &h);
        let (w2, b2) = (b.rand_init("w2", &[19, 12], -0.5, 0.5), b.rand_init("b2", &[12], -0.5, 0.5));
        let y = b.node("MatMul", &[&a, &w2], 1, vec![]).remove(0);
        let y = b.node("Add", &[&y, &b2], 1, vec![]).remove(0);
        let r = b.node("Add", &["x", &y], 1, vec![]).remove(0);
        b.output(&r, &[1, 5, 12]);
        b
    }

    #[test]
    fn a_token_mlp_pads_its_hidden_width_on_the_feature_axis() {
        // Sigmoid puts 0.5 in the padded features: fc2's zero rows hide them
        for act in ["Relu", "Sigmoid"] {
            let b = token_mlp(act);
            let out = check(&b, 8);
            assert_eq!(init_dims(&out, "w1"), vec![vec![12, 24]], "{act}");
            assert_eq!(init_dims(&out, "b1"), vec![vec![24]], "{act}");
            assert_eq!(init_dims(&out, "w2"), vec![vec![24, 12]], "{act}");
            let m = Model::import(b.model()).unwrap();
            let r = crate::report::build(&m, &Options::default()).unwrap();
            let fc1 = r.layers.iter().find(|l| l.op == "MatMul" && l.out_channels == 19).unwrap();
            let d = fc1.out_dim.as_ref().unwrap();
            assert_eq!((d.aligned_to, d.axis, d.pinned.len()), (24, Some(2), 0), "{act}: {d:?}");
            // the residual stream is LayerNorm-pinned, and says so
            let stream = fc1.in_dim.as_ref().unwrap();
            assert!(stream.pinned.iter().any(|p| p.starts_with("LayerNormalization")), "{stream:?}");
            assert_eq!(r.totals.unanalysed, 0);
        }
    }

    #[test]
    fn a_wrong_padded_feature_is_caught_by_verification() {
        // negative control of the dense family: fc1's bias non-zero in a
        // padded feature (Relu keeps it) breaks the promise of zeros there,
        // which the per-tensor comparison reads on the feature axis
        let b = token_mlp("Relu");
        let (mut out, _, v) = align_and_verify(&b.model(), 8);
        assert!(v.passed);
        let g = out.graph.as_mut().unwrap();
        let t = g.initializer.iter_mut().find(|t| t.name().starts_with("b1")).unwrap();
        let mut vals = tensor::to_f64(t).unwrap();
        vals[20] = 0.3; // a padded feature
        *t = tensor::rewrite(t, &tensor::dims(t), &vals).unwrap();
        let bad = crate::verify::verify(
            &b.model(),
            &out,
            &Default::default(),
            &crate::verify::VerifyOptions { trials: 2, seed: 7, ..Default::default() },
        )
        .unwrap();
        assert!(!bad.passed, "a padded feature of 0.3 passed");
    }

    #[test]
    fn a_channels_last_mlp_moves_the_space_through_transposes() {
        // ConvNeXt: conv → NHWC → fc1 → fc2 → NCHW → conv; every width but
        // the graph's own is free, on axis 1 or on axis 3
        let mut b = Builder::new(&[1, 3, 6, 6]);
        let c1 = b.conv("x", 3, 11, 3, 1, true);
        let t = b.node("Transpose", &[&c1], 1, vec![ints_attr("perm", &[0, 2, 3, 1])]).remove(0);
        let w1 = b.rand_init("fc1", &[11, 37], -0.5, 0.5);
        let h = b.node("MatMul", &[&t, &w1], 1, vec![]).remove(0);
        let a = b.unary("Relu", &h);
        let w2 = b.rand_init("fc2", &[37, 13], -0.5, 0.5);
        let y = b.node("MatMul", &[&a, &w2], 1, vec![]).remove(0);
        let back = b.node("Transpose", &[&y], 1, vec![ints_attr("perm", &[0, 3, 1, 2])]).remove(0);
        let c2 = b.conv(&back, 13, 4, 1, 1, true);
        b.output(&c2, &[1, 4, 6, 6]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "fc1"), vec![vec![16, 40]]);
        assert_eq!(init_dims(&out, "fc2"), vec![vec![40, 16]]);
        assert_eq!(init_dims(&out, "w"), vec![vec![16, 3, 3, 3], vec![4, 16, 1, 1]]);
    }

    /// Tokens `[1, 4, 6]` → q, k projections (5 features each, `act`
    /// after each) → q·kᵀ → the scores `[1, 4, 4]` are the output.
    fn scores(act: &str) -> Builder {
        let mut b = Builder::new(&[1, 4, 6]);
        b.opset = 17;
        let (wq, wk) = (b.rand_init("wq", &[6, 5], -0.5, 0.5), b.rand_init("wk", &[6, 5], -0.5, 0.5));
        let q = b.node("MatMul", &["x", &wq], 1, vec![]).remove(0);
        let k = b.node("MatMul", &["x", &wk], 1, vec![]).remove(0);
        let (q, k) = (b.unary(act, &q), b.unary(act, &k));
        let kt = b.node("Transpose", &[&k], 1, vec![ints_attr("perm", &[0, 2, 1])]).remove(0);
        let s = b.node("MatMul", &[&q, &kt], 1, vec![]).remove(0);
        b.output(&s, &[1, 4, 4]);
        b
    }

    #[test]
    fn q_and_k_pad_their_head_dim_only_where_the_padding_is_zero() {
        // Relu keeps the zero columns' zeros: padded q·kᵀ adds 0·0 terms
        let out = check(&scores("Relu"), 8);
        assert_eq!(init_dims(&out, "wq"), vec![vec![6, 8]]);
        assert_eq!(init_dims(&out, "wk"), vec![vec![6, 8]]);
        // Sigmoid puts 0.5 on both sides: 0.25 per padded feature would
        // change every score, so the head dim keeps its width, and says why
        let b = scores("Sigmoid");
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "wq"), vec![vec![6, 5]]);
        let m = Model::import(b.model()).unwrap();
        let r = crate::report::build(&m, &Options::default()).unwrap();
        let why = r
            .pinned
            .iter()
            .flat_map(|p| &p.reasons)
            .any(|w| w.contains("contracts padded features that are not exactly zero"));
        assert!(why, "{:?}", r.pinned);
    }

    #[test]
    fn a_class_token_joins_the_features_and_is_gathered_back() {
        // a ViT's front and head: tokens [1, 4, 11] from a dense layer, a
        // constant class token concatenated on the token axis (its features
        // zero-padded), fc, the class token gathered, a dense head
        let mut b = Builder::new(&[1, 4, 6]);
        let w0 = b.rand_init("w0", &[6, 11], -0.5, 0.5);
        let t = b.node("MatMul", &["x", &w0], 1, vec![]).remove(0);
        let cls = b.rand_init("cls", &[1, 1, 11], -0.5, 0.5);
        let cat = b.node("Concat", &[&cls, &t], 1, vec![int_attr("axis", 1)]).remove(0);
        let pos = b.rand_init("pos", &[1, 5, 11], -0.5, 0.5);
        let p = b.node("Add", &[&cat, &pos], 1, vec![]).remove(0);
        let w1 = b.rand_init("w1", &[11, 13], -0.5, 0.5);
        let h = b.node("MatMul", &[&p, &w1], 1, vec![]).remove(0);
        let zero = b.ints("zero", &[0]);
        let g = b.node("Gather", &[&h, &zero], 1, vec![int_attr("axis", 1)]).remove(0);
        let hw = b.rand_init("hw", &[13, 3], -0.5, 0.5);
        let y = b.node("MatMul", &[&g, &hw], 1, vec![]).remove(0);
        b.output(&y, &[1, 1, 3]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "cls"), vec![vec![1, 1, 16]]);
        assert_eq!(init_dims(&out, "pos"), vec![vec![1, 5, 16]]);
        assert_eq!(init_dims(&out, "w1"), vec![vec![16, 16]]);
        assert_eq!(init_dims(&out, "hw"), vec![vec![16, 3]]);
    }

    #[test]
    fn a_dim_padding_would_widen_past_the_limit_keeps_its_width_and_says_why() {
        // conv → 3 channels (an SE squeeze) → conv: 3 → 8 is ×2.67
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c1 = b.conv("x", 5, 13, 3, 1, true);
        let sq = b.conv(&c1, 13, 3, 1, 1, true);
        let r = b.unary("Relu", &sq);
        let c2 = b.conv(&r, 3, 13, 1, 1, true);
        let y = b.node("Add", &[&c1, &c2], 1, vec![]).remove(0);
        let c3 = b.conv(&y, 13, 4, 1, 1, true);
        b.output(&c3, &[1, 4, 8, 8]);
        let m = Model::import(b.model()).unwrap();
        let r = crate::report::build(&m, &Options::default()).unwrap();
        let pins: Vec<&String> = r.pinned.iter().flat_map(|p| &p.reasons).collect();
        assert!(pins.iter().any(|p| *p == "cost: padding 3 → 8 channels (×2.67) is over --max-growth 2"), "{pins:?}");
        assert_eq!(r.totals.free_unaligned, 4, "the 13s still padded: {:?}", r.totals);
        let out = check(&b, 8);
        assert_eq!(
            init_dims(&out, "w"),
            vec![vec![16, 5, 3, 3], vec![3, 16, 1, 1], vec![16, 3, 1, 1], vec![4, 16, 1, 1]]
        );
        // no limit: everything is padded
        let all = Options { max_growth: f64::INFINITY, ..Options::default() };
        let r = crate::report::build(&m, &all).unwrap();
        assert!(r.pinned.iter().all(|p| !p.reasons.iter().any(|w| w.starts_with("cost"))), "{:?}", r.pinned);
        assert_eq!(r.totals.free_unaligned, 6);
        // a limit below 1 is refused
        let e = Options { max_growth: 0.5, ..Options::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("max growth must be at least 1"), "{e}");
    }

    #[test]
    fn channel_slice_is_rewritten_to_physical_offsets() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 22, 1, 1, true);
        let (st, en, ax) = (b.ints("st", &[9]), b.ints("en", &[22]), b.ints("ax", &[1]));
        let s = b.node("Slice", &[&c1, &st, &en, &ax], 1, vec![]).remove(0);
        let c2 = b.conv(&s, 13, 4, 1, 1, true);
        b.output(&c2, &[1, 4, 8, 8]);
        let out = check(&b, 8);
        assert_eq!(init_dims(&out, "w")[0], vec![32, 3, 1, 1]);
    }

    #[test]
    fn a_wrong_padding_weight_is_caught_by_verification() {
        // Negative control: a nonzero weight in a padded column reads the
        // padded channels (Sigmoid makes them 0.5), so it must fail.
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let c1 = b.conv("x", 3, 13, 3, 1, true);
        let s = b.unary("Sigmoid", &c1);
        let c2 = b.conv(&s, 13, 4, 1, 1, true);
        b.output(&c2, &[1, 4, 8, 8]);
        let (mut out, _, v) = align_and_verify(&b.model(), 8);
        assert!(v.passed);
        let g = out.graph.as_mut().unwrap();
        let w = g.initializer.iter_mut().find(|t| t.dims == vec![4, 16, 1, 1]).unwrap();
        let mut vals = tensor::to_f64(w).unwrap();
        vals[14] = 0.3; // row 0, padded column 14
        *w = tensor::rewrite(w, &tensor::dims(w), &vals).unwrap();
        let v = crate::verify::verify(
            &b.model(),
            &out,
            &Default::default(),
            &crate::verify::VerifyOptions { trials: 2, seed: 7, ..Default::default() },
        )
        .unwrap();
        assert!(!v.passed);
    }
}
