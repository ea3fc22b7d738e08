//! deconv: check every ConvTranspose and hand its channel dims to `pad`.
//!
//! A ConvTranspose has two independent channel dims: its input side (weight
//! axis 0, a consumer: it absorbs any padded layout through zero rows) and
//! its output side (weight axis 1 × group, a producer: it may emit zero
//! filters). Pruning tools often prune the input side and leave the output
//! side alone, so `pad` aligns them separately (117 → 120 in, 128 stays).
//!
//! Before / after: no graph change. This pass checks what the export must
//! satisfy and reports each deconvolution it cleared:
//! * the weight is a constant of rank ≥ 3 whose axis 0 equals the channels
//!   actually delivered (the classic pruned-deconv export error is reported
//!   naming the node and both counts);
//! * group divides the input channels, and a bias has `C_out` values;
//! * `output_padding` is smaller than stride or dilation per axis.
//!
//! Without this pass (`--passes fold-bn,pad`) ConvTranspose dims are pinned.
//! Grouped ConvTranspose (group > 1) stays pinned: its output layout is tied
//! to its input groups.

use super::Options;
use crate::error::{Error, Result};
use crate::ir::infer;
use crate::ir::{op_name, Model};
use crate::onnx::{attr_i, attr_ints};
use crate::ops::conv::KernelFormat;
use crate::tensor;

/// Checks every ConvTranspose. Changes nothing (count 0); one note each.
pub fn run(m: &mut Model, opts: &Options) -> Result<(usize, Vec<String>)> {
    let sh = infer::infer(m, &opts.input_shapes);
    let mut notes = vec![];
    for n in m.ops() {
        let p = m.op(n).unwrap();
        if KernelFormat::of(p) != Some(KernelFormat::Iohw) {
            continue;
        }
        let name = op_name(p);
        let Some(w) = m.input_const_header(n, 1) else {
            notes.push(format!("{name}: weight is not a constant, pinned"));
            continue;
        };
        let wd = tensor::dims(&w);
        if wd.len() < 3 {
            return Err(Error::at(name, format!("ConvTranspose weight has rank {}, expected at least 3", wd.len())));
        }
        let g = attr_i(p, "group", 1).max(1) as usize;
        let delivered = m.input(n, 0).and_then(|o| sh.get(&o)).and_then(|s| s.get(1).copied().flatten());
        if let Some(c) = delivered {
            if c as usize != wd[0] {
                return Err(Error::at(
                    name,
                    format!(
                        "ConvTranspose weight expects {} input channels (weight axis 0) but {c} are delivered",
                        wd[0]
                    ),
                ));
            }
        }
        if !wd[0].is_multiple_of(g) {
            return Err(Error::at(name, format!("ConvTranspose input channels {} not divisible by group {g}", wd[0])));
        }
        let cout = wd[1] * g;
        if let Some(b) = m.input_const(n, 2) {
            if tensor::numel(&b)? != cout {
                return Err(Error::at(
                    name,
                    format!(
                        "ConvTranspose bias has {} values but the weight gives {cout} output channels",
                        tensor::numel(&b)?
                    ),
                ));
            }
        }
        let nd = wd.len() - 2;
        let strides = attr_ints(p, "strides");
        let dil = attr_ints(p, "dilations");
        for (i, &op) in attr_ints(p, "output_padding").iter().enumerate() {
            let s = strides.get(i).copied().unwrap_or(1);
            let d = dil.get(i).copied().unwrap_or(1);
            if i < nd && op >= s.max(d) {
                return Err(Error::at(
                    name,
                    format!("ConvTranspose output_padding {op} must be smaller than stride {s} or dilation {d}"),
                ));
            }
        }
        let state = if g == 1 { "in and out aligned independently" } else { "grouped, pinned" };
        notes.push(format!("{name}: {} → {cout} ({state})", wd[0]));
    }
    Ok((0, notes))
}
