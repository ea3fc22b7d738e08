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
//! Rewrites, with logical → physical channel maps from the analysis:
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
use crate::ir::shapes;
use crate::ir::{Model, NodeId, Outlet};
use crate::layout::Layout;
use crate::onnx::{attr_i, set_attr_i, set_attr_ints};
use crate::ops::conv::KernelFormat;
use crate::ops::{slice, Role};
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
                m.set_channel_dim(&name, cm.len);
                padded += 1;
            }
        }
    }
    Ok((padded, notes, layout))
}

fn map_in(a: &Analysis, m: &Model, n: NodeId, slot: usize) -> Option<ChannelMap> {
    a.channel_map(m.input(n, slot)?)
}

fn scatter_const(m: &mut Model, n: NodeId, slot: usize, axis: usize, cm: &ChannelMap, fill: f64) -> Result<()> {
    scatter_const_axes(m, n, slot, &[(axis, cm)], fill)
}

/// Pads several axes of one constant input in a single rewrite (a conv
/// weight's output and input channels), applying a scale fold-bn deferred
/// on the way: the tensor is written once.
fn scatter_const_axes(m: &mut Model, n: NodeId, slot: usize, axes: &[(usize, &ChannelMap)], fill: f64) -> Result<()> {
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

/// The input map of one group of a grouped conv (every group's block has the
/// same layout, so group 0's describes all): positions within a block.
fn group_map(im: &ChannelMap, g: usize) -> Result<ChannelMap> {
    if g == 1 {
        return Ok(im.clone());
    }
    let (cg, pg) = (im.map.len() / g, im.len / g);
    let block: Vec<usize> = im.map[..cg].to_vec();
    let uniform = im.len.is_multiple_of(g)
        && (0..g).all(|i| im.map[i * cg..(i + 1) * cg].iter().zip(&block).all(|(&p, &q)| p == q + i * pg));
    if !uniform {
        return Err(Error::model("grouped conv whose input blocks are not padded alike"));
    }
    Ok(ChannelMap { map: block, len: pg })
}

/// Rewrites one node for the padded layouts, by its role (see [`crate::ops`]).
fn rewrite_node(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let Some(role) = m.op(n).and_then(crate::ops::entry).map(|e| e.role) else {
        return Ok(());
    };
    match role {
        Role::Conv | Role::ConvTranspose => rewrite_conv(m, a, n),
        Role::BatchNorm => rewrite_batch_norm(m, a, n),
        Role::Elementwise { .. } => rewrite_elementwise(m, a, n, role),
        Role::Split => rewrite_split(m, a, n),
        Role::Slice => rewrite_slice(m, a, n),
        Role::Resize => rewrite_resize(m, a, n),
        Role::Dense => rewrite_dense(m, a, n),
        Role::Flatten => rewrite_flatten(m, a, n),
        Role::Broadcast => rewrite_expand(m, a, n),
        _ => Ok(()),
    }
}

/// Conv / ConvTranspose: zero filters and bias on the output axis, zero
/// weights on the input axis (per group for grouped convs).
fn rewrite_conv(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let p = m.op(n).unwrap().clone();
    let Some(kf) = KernelFormat::of(&p) else {
        return Err(Error::at(crate::ir::op_name(&p), "not a Conv or ConvTranspose"));
    };
    let om = a.channel_map(Outlet { node: n, slot: 0 });
    let im = map_in(a, m, n, 0);
    let (Some(im), Some(om)) = (im, om) else {
        // Conv with padded input but no layout on its output (pinned
        // output, e.g. a Detect conv): only the input columns change.
        if let Some(im) = map_in(a, m, n, 0).filter(|c| !c.is_identity()) {
            let g = attr_i(&p, "group", 1).max(1) as usize;
            if g != 1 && kf == KernelFormat::Iohw {
                return Err(Error::model("grouped ConvTranspose with a padded input and no output layout"));
            }
            scatter_const(m, n, 1, kf.i_axis(), &group_map(&im, g)?, 0.0)?;
        }
        return Ok(());
    };
    let g = attr_i(&p, "group", 1).max(1) as usize;
    let per_group_in = m.input_const_header(n, 1).and_then(|w| w.dims.get(1).copied()).unwrap_or(1);
    if kf == KernelFormat::Oihw && g > 1 && per_group_in >= 2 {
        // grouped: every block padded alike, `group` unchanged
        let gm = group_map(&im, g)?;
        let axes: Vec<(usize, &ChannelMap)> =
            [(0, &om), (1, &gm)].into_iter().filter(|(_, cm)| !cm.is_identity()).collect();
        scatter_const_axes(m, n, 1, &axes, 0.0)?;
        if !om.is_identity() {
            scatter_const(m, n, 2, 0, &om, 0.0)?;
        }
        return Ok(());
    }
    if kf == KernelFormat::Oihw && g > 1 {
        // depthwise (channel multiplier k = C_out / C_in ≥ 1): one group per
        // physical input channel; the output keeps the input's layout with
        // each channel repeated k times
        if !om.is_identity() {
            let k = (om.map.len() / g).max(1);
            scatter_const(m, n, 1, 0, &om, 0.0)?;
            scatter_const(m, n, 2, 0, &om, 0.0)?;
            if let Some(p) = m.op_mut(n) {
                set_attr_i(p, "group", (om.len / k) as i64)
            }
        }
        return Ok(());
    }
    let axes: Vec<(usize, &ChannelMap)> =
        [(kf.o_axis(), &om), (kf.i_axis(), &im)].into_iter().filter(|(_, cm)| !cm.is_identity()).collect();
    scatter_const_axes(m, n, 1, &axes, 0.0)?;
    if !om.is_identity() {
        scatter_const(m, n, 2, 0, &om, 0.0)?;
        if kf == KernelFormat::Iohw {
            let os = crate::onnx::attr_ints(&p, "output_shape");
            let rank = m.input_const_header(n, 1).map(|w| w.dims.len()).unwrap_or(0);
            if os.len() == rank && rank > 2 {
                let mut os = os;
                os[1] = om.len as i64;
                if let Some(p) = m.op_mut(n) {
                    set_attr_ints(p, "output_shape", os)
                }
            }
        }
    }
    Ok(())
}

/// BatchNormalization: γ 0, β 0, mean 0, var 1 on padded channels.
fn rewrite_batch_norm(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let im = map_in(a, m, n, 0);
    if let Some(im) = im.filter(|c| !c.is_identity()) {
        for (slot, fill) in crate::ops::batch_norm::PARAM_FILL {
            scatter_const(m, n, slot, 0, &im, fill)?;
        }
    }
    Ok(())
}

/// Element-wise ops: per-channel constants padded with the slot's neutral value.
fn rewrite_elementwise(m: &mut Model, a: &Analysis, n: NodeId, role: Role) -> Result<()> {
    let out0 = Outlet { node: n, slot: 0 };
    let om = a.channel_map(out0);
    let Some(om) = om.filter(|c| !c.is_identity()) else {
        return Ok(());
    };
    let rank = a.shapes.get(&out0).map(|s| s.len()).unwrap_or(0);
    for slot in 0..m.n_inputs(n) {
        let Some(o) = m.input(n, slot) else { continue };
        if a.channel_map(o).is_some() || m.const_value(o).is_none() {
            continue;
        }
        let t = m.const_value(o).unwrap();
        let r = t.dims.len();
        let Some(axis) = (r + 1).checked_sub(rank) else {
            continue;
        };
        if r + 1 < rank || t.dims.get(axis) != Some(&(om.map.len() as i64)) || om.map.len() == 1 {
            continue;
        }
        let fill =
            role.neutral(slot).ok_or_else(|| Error::model("per-channel constant on an op without a neutral value"))?;
        scatter_const(m, n, slot, axis, &om, fill)?;
    }
    Ok(())
}

/// Split on the channel axis: sizes in physical channels.
fn rewrite_split(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let p = m.op(n).unwrap().clone();
    let Some(x) = m.input(n, 0) else {
        return Ok(());
    };
    let Some(bounds) = a.boundaries(x) else {
        return Ok(());
    };
    let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
    if shapes::axis(attr_i(&p, "axis", 0), rank) != Some(1) || bounds.iter().all(|(l, ph)| l == ph) {
        return Ok(());
    }
    let phys = |lo: usize| bounds.iter().find(|(l, _)| *l == lo).map(|(_, ph)| *ph);
    let sizes = crate::ops::split::split_sizes(m, n, bounds.last().unwrap().0 as i64)
        .ok_or_else(|| Error::model("Split sizes unknown"))?;
    let mut start = 0usize;
    let mut new = vec![];
    for s in sizes {
        let end = start + s as usize;
        let (ps, pe) = (phys(start), phys(end));
        let (Some(ps), Some(pe)) = (ps, pe) else {
            return Err(Error::model("Split point is not a channel-space boundary"));
        };
        new.push((pe - ps) as i64);
        start = end;
    }
    set_split(m, n, new)?;
    Ok(())
}

/// Slice on the channel axis: bounds in physical channels.
fn rewrite_slice(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let Some(x) = m.input(n, 0) else {
        return Ok(());
    };
    let Some(bounds) = a.boundaries(x) else {
        return Ok(());
    };
    let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
    let Some(params) = slice::slice_params(m, n, rank) else {
        return Ok(());
    };
    if bounds.iter().all(|(l, ph)| l == ph) || !params.iter().any(|(ax, ..)| *ax == 1) {
        return Ok(());
    }
    let c = bounds.last().unwrap().0 as i64;
    let phys = |lo: i64| bounds.iter().find(|(l, _)| *l as i64 == lo).map(|(_, ph)| *ph as i64);
    let mut starts = vec![];
    let mut ends = vec![];
    for (ax, st, en, _) in &params {
        if *ax == 1 {
            let (s, e) = slice::slice_range(c, *st, *en);
            starts.push(phys(s).ok_or_else(|| Error::model("Slice start is not a channel-space boundary"))?);
            ends.push(phys(e).ok_or_else(|| Error::model("Slice end is not a channel-space boundary"))?);
        } else {
            starts.push(*st);
            ends.push(*en);
        }
    }
    if m.opset() >= 10 {
        for (slot, vals) in [(1, starts), (2, ends)] {
            let t = m.input_const(n, slot).unwrap().into_owned();
            let nt = tensor::rewrite(&t, &[vals.len()], &vals.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
            m.replace_input_const(n, slot, nt);
        }
    } else {
        let pm = m.op_mut(n).unwrap();
        set_attr_ints(pm, "starts", starts);
        set_attr_ints(pm, "ends", ends);
    }
    Ok(())
}

/// Resize with constant sizes: sizes[1] is the padded width.
fn rewrite_resize(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
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

/// Reshape to [N, C·H·W] before a dense layer: a constant target that spells
/// the feature count out gets the padded count (0 and -1 need nothing).
fn rewrite_flatten(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let Some(fm) = a.flat_map(Outlet { node: n, slot: 0 }).filter(|c| !c.is_identity()) else {
        return Ok(());
    };
    if m.op_type(n) != "Reshape" {
        return Ok(());
    }
    let Some(t) = m.input_const(n, 1).map(|t| t.into_owned()) else {
        return Err(Error::model("Reshape before a dense layer has a computed target"));
    };
    let mut target = tensor::to_i64(&t)?;
    if target.len() == 2 && target[1] > 0 {
        target[1] = fm.len as i64;
        let nt = tensor::rewrite(&t, &[2], &target.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
        m.replace_input_const(n, 1, nt);
    }
    Ok(())
}

/// Expand of one channel to a padded space: the constant target's channel
/// dim becomes the padded width (where the layout passed through, the input
/// already has it and the target keeps 1 or the logical count is rewritten).
fn rewrite_expand(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let Some(om) = a.channel_map(Outlet { node: n, slot: 0 }).filter(|c| !c.is_identity()) else {
        return Ok(());
    };
    let Some(t) = m.input_const(n, 1).map(|t| t.into_owned()) else {
        return Err(Error::model("Expand into a padded space has a computed target"));
    };
    let mut target = tensor::to_i64(&t)?;
    if target.len() >= 2 && target[1] == om.map.len() as i64 && target[1] != 1 {
        target[1] = om.len as i64;
        let nt = tensor::rewrite(&t, &[target.len()], &target.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
        m.replace_input_const(n, 1, nt);
    }
    Ok(())
}

/// Gemm / MatMul after a Flatten: zero weight rows for padded features.
fn rewrite_dense(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let p = m.op(n).unwrap().clone();
    let Some(x) = m.input(n, 0) else {
        return Ok(());
    };
    let Some(fm) = a.flat_map(x).filter(|c| !c.is_identity()) else {
        return Ok(());
    };
    scatter_const(m, n, 1, crate::ops::dense::weight_in_axis(&p), &fm, 0.0)?;
    Ok(())
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

fn set_split(m: &mut Model, n: NodeId, sizes: Vec<i64>) -> Result<()> {
    if m.opset() >= 13 {
        let t = tensor::from_f64("split", 7, &[sizes.len()], &sizes.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
        if m.input(n, 1).is_some() {
            m.replace_input_const(n, 1, t);
        } else {
            let base = format!("{}_split", m.label(n));
            let t = crate::onnx::TensorProto { name: Some(base), ..t };
            let o = m.add_const(t);
            m.set_input(n, 1, o);
            if let Some(p) = m.op_mut(n) {
                p.attribute.retain(|a| a.name() != "num_outputs");
            }
        }
    } else {
        let p = m.op_mut(n).unwrap();
        if crate::onnx::attr(p, "split").is_some() {
            set_attr_ints(p, "split", sizes);
        } else {
            p.attribute.push(crate::onnx::AttributeProto {
                name: Some("split".into()),
                ints: sizes,
                r#type: Some(crate::onnx::attribute_proto::AttributeType::Ints as i32),
                ..Default::default()
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::onnx::ModelProto;
    use crate::tensor;
    use crate::testutil::{align_and_verify, free_unaligned, int_attr, Builder};

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
        let out = check(&b, 32);
        assert_eq!(init_dims(&out, "w"), vec![vec![32, 3, 3, 3], vec![32, 32, 3, 3], vec![4, 32, 1, 1]]);
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
