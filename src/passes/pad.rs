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
use crate::analysis::{neutral, Analysis, ChannelMap};
use crate::error::{Error, Result};
use crate::ir::shapes;
use crate::ir::{op_name, Model, NodeId, Outlet};
use crate::onnx::{attr_i, set_attr_i, set_attr_ints};
use crate::tensor;

/// Pads every free channel space. Returns (tensors padded, notes).
pub fn run(m: &mut Model, opts: &Options) -> Result<(usize, Vec<String>)> {
    let a = Analysis::run(m, opts)?;
    let mut notes = vec![];
    for n in m.ops() {
        rewrite_node(m, &a, n).map_err(|e| e.in_node(&m.label(n)))?;
    }
    // Record new channel counts of activations.
    let mut padded = 0;
    for n in m.ops() {
        for slot in 0..m.output_names(n).len() {
            let o = Outlet { node: n, slot };
            if let Some(cm) = a.channel_map(o).filter(|c| !c.is_identity()) {
                let name = m.tensor_name(o).to_string();
                notes.push(format!("{name}: {} → {}", cm.map.len(), cm.len));
                m.set_channel_dim(&name, cm.len);
                padded += 1;
            }
        }
    }
    Ok((padded, notes))
}

fn map_in(a: &Analysis, m: &Model, n: NodeId, slot: usize) -> Option<ChannelMap> {
    a.channel_map(m.input(n, slot)?)
}

fn scatter_const(m: &mut Model, n: NodeId, slot: usize, axis: usize, cm: &ChannelMap, fill: f64) -> Result<()> {
    let Some(t) = m.input_const(n, slot).map(|t| t.into_owned()) else { return Ok(()) };
    let d = tensor::dims(&t);
    if d.get(axis) != Some(&cm.map.len()) {
        return Err(Error::model(format!("constant '{}' has {:?} where {} channels were expected on axis {axis}", t.name(), d, cm.map.len())));
    }
    let v = tensor::to_f64(&t)?;
    let (nd, nv) = tensor::scatter_axis(&v, &d, axis, &cm.map, cm.len, fill);
    let nt = tensor::rewrite(&t, &nd, &nv)?;
    m.replace_input_const(n, slot, nt);
    Ok(())
}

fn rewrite_node(m: &mut Model, a: &Analysis, n: NodeId) -> Result<()> {
    let p = m.op(n).unwrap().clone();
    if !p.domain().is_empty() && p.domain() != "ai.onnx" {
        return Ok(());
    }
    let out0 = Outlet { node: n, slot: 0 };
    let om = a.channel_map(out0);
    let im = map_in(a, m, n, 0);
    match p.op_type() {
        "Conv" | "ConvTranspose" => {
            let (Some(im), Some(om)) = (im, om) else {
                // Conv with padded input but no layout on its output (pinned
                // output, e.g. a Detect conv): only the input columns change.
                if let Some(im) = map_in(a, m, n, 0).filter(|c| !c.is_identity()) {
                    let axis = if p.op_type() == "Conv" { 1 } else { 0 };
                    if attr_i(&p, "group", 1) != 1 {
                        return Err(Error::model("grouped conv with a padded input and no output layout"));
                    }
                    scatter_const(m, n, 1, axis, &im, 0.0)?;
                }
                return Ok(());
            };
            let g = attr_i(&p, "group", 1).max(1) as usize;
            if p.op_type() == "Conv" && g > 1 {
                // depthwise: input and output share one layout
                if !om.is_identity() {
                    scatter_const(m, n, 1, 0, &om, 0.0)?;
                    scatter_const(m, n, 2, 0, &om, 0.0)?;
                    m.op_mut(n).map(|p| set_attr_i(p, "group", om.len as i64));
                }
                return Ok(());
            }
            let (in_axis, out_axis) = if p.op_type() == "Conv" { (1, 0) } else { (0, 1) };
            if !om.is_identity() {
                scatter_const(m, n, 1, out_axis, &om, 0.0)?;
                scatter_const(m, n, 2, 0, &om, 0.0)?;
                if p.op_type() == "ConvTranspose" {
                    let os = crate::onnx::attr_ints(&p, "output_shape");
                    let rank = m.input_const(n, 1).map(|w| w.dims.len()).unwrap_or(0);
                    if os.len() == rank && rank > 2 {
                        let mut os = os;
                        os[1] = om.len as i64;
                        m.op_mut(n).map(|p| set_attr_ints(p, "output_shape", os));
                    }
                }
            }
            if !im.is_identity() {
                scatter_const(m, n, 1, in_axis, &im, 0.0)?;
            }
        }
        "BatchNormalization" => {
            if let Some(im) = im.filter(|c| !c.is_identity()) {
                for (slot, fill) in [(1, 0.0), (2, 0.0), (3, 0.0), (4, 1.0)] {
                    scatter_const(m, n, slot, 0, &im, fill)?;
                }
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" | "Sum" | "PRelu" => {
            let Some(om) = om.filter(|c| !c.is_identity()) else { return Ok(()) };
            let rank = a.shapes.get(&out0).map(|s| s.len()).unwrap_or(0);
            for slot in 0..m.n_inputs(n) {
                let Some(o) = m.input(n, slot) else { continue };
                if a.channel_map(o).is_some() || m.const_value(o).is_none() {
                    continue;
                }
                let t = m.const_value(o).unwrap();
                let r = t.dims.len();
                let Some(axis) = (r + 1).checked_sub(rank) else { continue };
                if r + 1 < rank || t.dims.get(axis) != Some(&(om.map.len() as i64)) || om.map.len() == 1 {
                    continue;
                }
                let fill = neutral(p.op_type(), slot).ok_or_else(|| Error::model("per-channel constant on an op without a neutral value"))?;
                scatter_const(m, n, slot, axis, &om, fill)?;
            }
        }
        "Split" => {
            let Some(x) = m.input(n, 0) else { return Ok(()) };
            let Some(bounds) = a.boundaries(x) else { return Ok(()) };
            let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
            if shapes::axis(attr_i(&p, "axis", 0), rank) != Some(1) || bounds.iter().all(|(l, ph)| l == ph) {
                return Ok(());
            }
            let phys = |lo: usize| bounds.iter().find(|(l, _)| *l == lo).map(|(_, ph)| *ph);
            let sizes = shapes::split_sizes(m, n, bounds.last().unwrap().0 as i64).ok_or_else(|| Error::model("Split sizes unknown"))?;
            let mut start = 0usize;
            let mut new = vec![];
            for s in sizes {
                let end = start + s as usize;
                let (ps, pe) = (phys(start), phys(end));
                let (Some(ps), Some(pe)) = (ps, pe) else { return Err(Error::model("Split point is not a channel-space boundary")) };
                new.push((pe - ps) as i64);
                start = end;
            }
            set_split(m, n, new)?;
        }
        "Slice" => {
            let Some(x) = m.input(n, 0) else { return Ok(()) };
            let Some(bounds) = a.boundaries(x) else { return Ok(()) };
            let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
            let Some(params) = shapes::slice_params(m, n, rank) else { return Ok(()) };
            if bounds.iter().all(|(l, ph)| l == ph) || !params.iter().any(|(ax, ..)| *ax == 1) {
                return Ok(());
            }
            let c = bounds.last().unwrap().0 as i64;
            let phys = |lo: i64| bounds.iter().find(|(l, _)| *l as i64 == lo).map(|(_, ph)| *ph as i64);
            let mut starts = vec![];
            let mut ends = vec![];
            for (ax, st, en, _) in &params {
                if *ax == 1 {
                    let (s, e) = shapes::slice_range(c, *st, *en);
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
        }
        "Resize" => {
            let Some(om) = om.filter(|c| !c.is_identity()) else { return Ok(()) };
            if let Some((_, Some(mut sizes))) = shapes::resize_params(m, n) {
                sizes[1] = om.len as i64;
                let t = m.input_const(n, 3).unwrap().into_owned();
                let nt = tensor::rewrite(&t, &[sizes.len()], &sizes.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
                m.replace_input_const(n, 3, nt);
            }
        }
        "Gemm" | "MatMul" => {
            let Some(x) = m.input(n, 0) else { return Ok(()) };
            let Some(fm) = a.flat_map(x).filter(|c| !c.is_identity()) else { return Ok(()) };
            let axis = if p.op_type() == "Gemm" && attr_i(&p, "transB", 0) == 1 { 1 } else { 0 };
            scatter_const(m, n, 1, axis, &fm, 0.0)?;
        }
        _ => {}
    }
    let _ = op_name(&p);
    Ok(())
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
