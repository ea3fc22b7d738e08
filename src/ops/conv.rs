//! Conv and ConvTranspose: the window arithmetic of their output shapes,
//! their cost as layers, and the one place that says which weight axis holds
//! which channels ([`KernelFormat`], as tract's `KernelFormat::{o_axis, i_axis}`).

use super::{mul, Cost, CostCx, Cx, Fill, FillCx, LayerKind, Rules};
use crate::analysis::ChannelMap;
use crate::analysis::{AtomId, ChannelCx};
use crate::error::{Error, Result};
use crate::ir::shapes::{fit, nonempty, Shape};
use crate::ir::Outlet;
use crate::onnx::{attr_i, attr_ints, attr_s, NodeProto};
use crate::onnx::{set_attr_i, set_attr_ints};
use crate::passes::pad::{map_in, scatter_const, scatter_const_axes, PadCx};
use crate::tensor;

/// How a conv op lays out its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// Conv: `[C_out, C_in / group, k…]`.
    Oihw,
    /// ConvTranspose: `[C_in, C_out / group, k…]`.
    Iohw,
}

impl KernelFormat {
    /// The weight layout of a standard-domain Conv or ConvTranspose.
    pub fn of(p: &NodeProto) -> Option<KernelFormat> {
        if super::is(p, "Conv") {
            Some(KernelFormat::Oihw)
        } else if super::is(p, "ConvTranspose") {
            Some(KernelFormat::Iohw)
        } else {
            None
        }
    }

    /// The weight axis of the output channels.
    pub fn o_axis(self) -> usize {
        match self {
            KernelFormat::Oihw => 0,
            KernelFormat::Iohw => 1,
        }
    }

    /// The weight axis of the input channels.
    pub fn i_axis(self) -> usize {
        match self {
            KernelFormat::Oihw => 1,
            KernelFormat::Iohw => 0,
        }
    }

    /// The output channels of a weight of dims `w` in `group` groups.
    pub fn out_channels(self, w: &[usize], group: usize) -> Option<usize> {
        match self {
            KernelFormat::Oihw => w.first().copied(),
            KernelFormat::Iohw => Some(w.get(1)? * group),
        }
    }

    /// (input channels, output channels) of a weight of dims `w` in `group`
    /// groups: axis 1 holds the channels of one group in both formats.
    pub fn channels(self, w: &[usize], group: usize) -> (usize, usize) {
        let grouped = w[1] * group;
        match self {
            KernelFormat::Oihw => (grouped, w[0]),
            KernelFormat::Iohw => (w[0], grouped),
        }
    }
}

/// Conv: `[N, C_out, window(spatial)]`.
#[derive(Debug)]
pub struct Conv;

impl Rules for Conv {
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        pad_conv(cx)
    }

    /// A new space on the output; the input absorbs any layout (zero
    /// weight columns). Depthwise passes the input's layout through (with a
    /// channel multiplier, each channel repeated); grouped pads every group
    /// alike.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let Some((lin, w)) = cx.conv_parts()? else {
            return Ok(false);
        };
        let name = cx.name;
        let g = attr_i(cx.p, "group", 1).max(1) as usize;
        let wd = tensor::dims(&w);
        if wd.len() < 3 {
            return Err(Error::at(name, format!("Conv weight has rank {}, expected at least 3", wd.len())));
        }
        let cin = cx.width(&lin);
        if wd[1] * g != cin {
            return Err(Error::at(
                name,
                format!(
                    "Conv weight expects {} input channels ({} per group × group {g}) but {cin} are delivered",
                    wd[1] * g,
                    wd[1]
                ),
            ));
        }
        if !wd[0].is_multiple_of(g) {
            return Err(Error::at(name, format!("Conv has {} output channels, not divisible by group {g}", wd[0])));
        }
        let out = cx.out(0);
        if g == 1 {
            cx.fresh(out, None);
        } else if g == cin && wd[0] == cin && wd[1] == 1 {
            // Depthwise: output channel j reads input channel j only.
            cx.set(out, lin);
        } else if g == cin && wd[1] == 1 && wd[0] > cin && cx.channels(out) == Some(wd[0]) {
            // Depthwise with channel multiplier m = C_out / C_in: outputs
            // c·m .. c·m + m read input channel c; padded, the output keeps
            // the input's layout with each channel repeated m times.
            let l = cx.atoms().scaled(&lin, wd[0] / g);
            cx.set(out, l);
        } else if wd[1] >= 2 && cx.channels(out) == Some(wd[0]) {
            // Grouped: group i reads input block i and writes output block i.
            // Every block is padded on its own, and all blocks of a side are
            // joined so they get the same physical width (`group` stays g).
            let (cg, og) = (wd[1], wd[0] / g);
            let atoms = cx.atoms();
            for i in 1..g {
                atoms.cut(&lin, i * cg);
            }
            let first = atoms.range(&lin, 0, cg);
            for i in 1..g {
                let block = atoms.range(&lin, i * cg, (i + 1) * cg);
                if !atoms.join(&first, &block) {
                    return Ok(false);
                }
            }
            let blocks: Vec<AtomId> = (0..g).map(|_| atoms.new_atom(og)).collect();
            for &b in &blocks[1..] {
                atoms.union_leaves(blocks[0], b);
            }
            cx.set(out, blocks);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Zero filters: the padded output channels are exactly 0.
    fn fill(&self, _cx: &FillCx) -> Option<Fill> {
        Some(Fill::Zeros)
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (x, w) = (cx.shape(0)?, cx.shape(1)?);
        if x.len() < 3 || w.len() != x.len() {
            return None;
        }
        let k: Vec<i64> = w[2..].iter().copied().collect::<Option<_>>()?;
        // a kernel_shape attribute, when given, limits how many dims count
        let k = nonempty(attr_ints(cx.p, "kernel_shape"), k.len(), 1)
            .into_iter()
            .zip(k)
            .map(|(_, b)| b)
            .collect::<Vec<_>>();
        let mut out = vec![x[0], w[KernelFormat::Oihw.o_axis()]];
        out.extend(window(&x[2..], &k, cx.p, true)?);
        Some(cx.one(out))
    }

    fn cost(&self, cx: &CostCx) -> Option<Cost> {
        layer_cost(cx, KernelFormat::Oihw)
    }
}

/// ConvTranspose: `[N, C_out/group · group, stride·(x−1) + output_padding + dilated kernel − pads]`,
/// or its `output_shape`.
#[derive(Debug)]
pub struct ConvTranspose;

impl Rules for ConvTranspose {
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        pad_conv(cx)
    }

    /// Input and output dims aligned independently (ungrouped; the output
    /// is pinned when the deconv pass is not selected).
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let Some((lin, w)) = cx.conv_parts()? else {
            return Ok(false);
        };
        let name = cx.name;
        let wd = tensor::dims(&w);
        let cin = cx.width(&lin);
        if wd.len() < 3 || wd[0] != cin {
            return Err(Error::at(
                name,
                format!(
                    "ConvTranspose weight has {} input channels (axis 0) but {cin} are delivered",
                    wd.first().copied().unwrap_or(0)
                ),
            ));
        }
        let g = attr_i(cx.p, "group", 1).max(1) as usize;
        if !cin.is_multiple_of(g) {
            return Err(Error::at(name, format!("ConvTranspose input channels {cin} not divisible by group {g}")));
        }
        if g != 1 {
            return Ok(false);
        }
        let out = cx.out(0);
        if !cx.deconv() {
            let why = format!("ConvTranspose '{name}' (deconv pass not selected)");
            cx.atoms().pin(&lin, &why);
            cx.fresh(out, Some(why));
            return Ok(true);
        }
        cx.fresh(out, None);
        Ok(true)
    }

    /// Zero filters: the padded output channels are exactly 0.
    fn fill(&self, _cx: &FillCx) -> Option<Fill> {
        Some(Fill::Zeros)
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let p = cx.p;
        let (x, w) = (cx.shape(0)?, cx.shape(1)?);
        if x.len() < 3 || w.len() != x.len() {
            return None;
        }
        let nd = x.len().checked_sub(2)?;
        let g = attr_i(p, "group", 1);
        let k: Vec<i64> = w[2..].iter().copied().collect::<Option<_>>()?;
        let strides = nonempty(attr_ints(p, "strides"), nd, 1);
        let dil = nonempty(attr_ints(p, "dilations"), nd, 1);
        let pads = nonempty(attr_ints(p, "pads"), 2 * nd, 0);
        let opad = nonempty(attr_ints(p, "output_padding"), nd, 0);
        let oshape = attr_ints(p, "output_shape");
        let auto = attr_s(p, "auto_pad").unwrap_or(b"NOTSET");
        if k.len() != nd || strides.len() != nd || pads.len() != 2 * nd || opad.len() != nd || dil.len() != nd {
            return None;
        }
        let mut out = vec![x[0], w[KernelFormat::Iohw.o_axis()].and_then(|c| c.checked_mul(g))];
        for i in 0..nd {
            out.push(if !oshape.is_empty() {
                Some(*oshape.get(oshape.len() - nd + i)?)
            } else if auto == b"SAME_UPPER" || auto == b"SAME_LOWER" {
                x[2 + i].map(|v| v * strides[i])
            } else {
                x[2 + i].and_then(|v| {
                    let w = |v: i64| v as i128;
                    fit(w(strides[i]) * (w(v) - 1) + w(opad[i]) + (w(k[i]) - 1) * w(dil[i]) + 1
                        - w(pads[i])
                        - w(pads[i + nd]))
                })
            });
        }
        Some(cx.one(out))
    }

    fn cost(&self, cx: &CostCx) -> Option<Cost> {
        layer_cost(cx, KernelFormat::Iohw)
    }
}

/// What a conv's cost depends on besides its channel counts.
struct Geometry {
    transpose: bool,
    kernel: u64,
    out_spatial: Option<u64>,
    in_spatial: Option<u64>,
    bias: bool,
}

/// Params and MACs of a conv for given channel counts.
fn conv_cost(geo: &Geometry, cin: usize, cout: usize, g: usize) -> (u64, Option<u64>) {
    let g = g.max(1) as u64;
    let (cin, cout) = (cin as u64, cout as u64);
    // saturating / checked: a corrupt model must not overflow the report
    let per = cout.saturating_mul(cin / g).saturating_mul(geo.kernel);
    let params = per.saturating_add(if geo.bias { cout } else { 0 });
    let macs = if geo.transpose {
        mul(geo.in_spatial, cin.saturating_mul(cout / g).saturating_mul(geo.kernel))
    } else {
        mul(geo.out_spatial, per)
    };
    (params, macs)
}

/// A conv with a constant weight as a layer: its cost at the model's widths
/// and at the aligned ones (a depthwise conv's groups follow its width).
fn layer_cost(cx: &CostCx, kf: KernelFormat) -> Option<Cost> {
    let p = cx.p;
    let wd = cx.weight_dims()?;
    if wd.len() < 3 {
        return None;
    }
    let g = attr_i(p, "group", 1).max(1) as usize;
    let (cin, cout) = kf.channels(&wd, g);
    let k = wd[2..].iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
    let mut stride = attr_ints(p, "strides");
    if stride.is_empty() {
        stride = vec![1; wd.len() - 2];
    }
    let geo = Geometry {
        transpose: kf == KernelFormat::Iohw,
        kernel: k,
        out_spatial: cx.spatial(Some(Outlet { node: cx.n, slot: 0 })),
        in_spatial: cx.spatial(cx.m.input(cx.n, 0)),
        bias: cx.m.input(cx.n, 2).is_some(),
    };
    let (params, macs) = conv_cost(&geo, cin, cout, g);
    let pin = cx.input.map_or(cin, |d| d.physical);
    let pout = cx.output.map_or(cout, |d| d.physical);
    let pg = if g > 1 && g == cin { pin } else { g };
    let (params_aligned, macs_aligned) = conv_cost(&geo, pin, pout, pg);
    Some(Cost {
        kernel: wd[2..].iter().map(|&d| d as i64).collect(),
        stride,
        groups: g as i64,
        in_channels: cin,
        out_channels: cout,
        params,
        macs,
        params_aligned,
        macs_aligned,
        kind: LayerKind::Conv,
    })
}

/// Spatial output of a conv / pool window over `inp` with kernel `k`
/// (dilations read only when `dil_ok`).
pub fn window(inp: &[Option<i64>], k: &[i64], p: &NodeProto, dil_ok: bool) -> Option<Vec<Option<i64>>> {
    let nd = k.len();
    let strides = nonempty(attr_ints(p, "strides"), nd, 1);
    let dil = if dil_ok { nonempty(attr_ints(p, "dilations"), nd, 1) } else { vec![1; nd] };
    let pads = nonempty(attr_ints(p, "pads"), 2 * nd, 0);
    let auto = attr_s(p, "auto_pad").unwrap_or(b"NOTSET");
    let ceil = attr_i(p, "ceil_mode", 0) == 1;
    if inp.len() != nd || strides.len() != nd || dil.len() != nd || pads.len() != 2 * nd || strides.contains(&0) {
        return None;
    }
    Some(
        (0..nd)
            .map(|i| {
                let w = |v: i64| v as i128;
                let (x, s) = (w(inp[i]?), w(strides[i]));
                let ek = (w(k[i]) - 1) * w(dil[i]) + 1;
                let v = match auto {
                    b"SAME_UPPER" | b"SAME_LOWER" => (x + s - 1) / s,
                    b"VALID" => (x - ek) / s + 1,
                    _ => {
                        let num = x + w(pads[i]) + w(pads[i + nd]) - ek;
                        if num < 0 {
                            return None;
                        }
                        if ceil {
                            (num + s - 1) / s + 1
                        } else {
                            num / s + 1
                        }
                    }
                };
                fit(v)
            })
            .collect(),
    )
}

/// Conv / ConvTranspose: zero filters and bias on the output axis, zero
/// weights on the input axis (per group for grouped convs).
fn pad_conv(cx: &mut PadCx) -> Result<()> {
    let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
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
    Ok(ChannelMap { map: block, len: pg, axis: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::LayerKind;
    use crate::testutil::{int_attr, ints_attr, known, width, Builder, Inferred};

    #[test]
    fn conv_output_is_the_window_over_its_input() {
        let mut b = Builder::new(&[1, 3, 17, 16]);
        let w = b.rand_init("w", &[8, 3, 3, 3], -1.0, 1.0);
        let y = b.node("Conv", &["x", &w], 1, vec![ints_attr("strides", &[2, 2]), ints_attr("pads", &[1, 1, 1, 1])]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 8, 9, 8])));
    }

    #[test]
    fn conv_transpose_outputs_per_group_channels_times_group() {
        let mut b = Builder::new(&[1, 4, 5, 5]);
        let w = b.rand_init("w", &[4, 3, 2, 2], -1.0, 1.0);
        let attrs = vec![ints_attr("strides", &[2, 2]), int_attr("group", 2), ints_attr("output_padding", &[1, 0])];
        let y = b.node("ConvTranspose", &["x", &w], 1, attrs);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 6, 11, 10])));
    }

    #[test]
    fn a_window_larger_than_its_padded_input_leaves_its_dims_unknown() {
        let mut b = Builder::new(&[1, 3, 2, 2]);
        let w = b.rand_init("w", &[8, 3, 3, 3], -1.0, 1.0);
        let y = b.node("Conv", &["x", &w], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(vec![Some(1), Some(8), None, None]));
    }

    #[test]
    fn kernel_format_names_the_weight_axes_of_standard_convs_only() {
        let mut p = NodeProto { op_type: Some("Conv".into()), ..Default::default() };
        let kf = KernelFormat::of(&p).unwrap();
        assert_eq!((kf.o_axis(), kf.i_axis()), (0, 1));
        p.op_type = Some("ConvTranspose".into());
        let kf = KernelFormat::of(&p).unwrap();
        assert_eq!((kf.o_axis(), kf.i_axis()), (1, 0));
        p.domain = Some("com.example".into());
        assert_eq!(KernelFormat::of(&p), None);
        p.domain = None;
        p.op_type = Some("MatMul".into());
        assert_eq!(KernelFormat::of(&p), None);
    }

    #[test]
    fn conv_cost_at_the_model_widths_and_the_aligned_ones() {
        let mut b = Builder::new(&[1, 3, 16, 16]);
        let y = b.conv("x", 3, 8, 3, 1, true);
        let c = Inferred::of(&b).cost(&y, width(3, 8), width(8, 8), None).unwrap();
        assert_eq!((c.in_channels, c.out_channels, c.kernel.clone(), c.stride.clone()), (3, 8, vec![3, 3], vec![1, 1]));
        assert_eq!((c.params, c.macs), (8 * 3 * 9 + 8, Some(256 * 8 * 3 * 9)));
        assert_eq!((c.params_aligned, c.macs_aligned), (8 * 8 * 9 + 8, Some(256 * 8 * 8 * 9)));
        assert_eq!(c.kind, LayerKind::Conv);
    }

    #[test]
    fn a_depthwise_conv_keeps_one_group_per_aligned_channel() {
        let mut b = Builder::new(&[1, 6, 8, 8]);
        let y = b.conv("x", 6, 6, 3, 6, false);
        let c = Inferred::of(&b).cost(&y, width(6, 16), width(6, 16), None).unwrap();
        assert_eq!((c.groups, c.params, c.params_aligned), (6, 6 * 9, 16 * 9));
    }

    #[test]
    fn conv_transpose_macs_count_input_pixels() {
        let mut b = Builder::new(&[1, 4, 5, 5]);
        let y = b.deconv("x", 4, 6);
        let c = Inferred::of(&b).cost(&y, None, None, None).unwrap();
        assert_eq!((c.in_channels, c.out_channels), (4, 6));
        assert_eq!((c.params, c.macs), (6 * 4 * 4 + 6, Some(25 * 4 * 6 * 4)));
        assert_eq!((c.params_aligned, c.macs_aligned), (c.params, c.macs), "no widths: the model's");
    }

    #[test]
    fn a_conv_without_a_constant_weight_is_no_layer() {
        let mut b = Builder::new(&[1, 3, 8, 8]);
        let w = b.rand_init("w", &[8, 3, 1, 1], -1.0, 1.0);
        let w = b.unary("Relu", &w);
        let y = b.node("Conv", &["x", &w], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[0]), Some(known(&[1, 8, 8, 8])));
        assert_eq!(inf.cost(&y[0], None, None, None), None);
    }
}
