//! Split: one input cut along an axis into several outputs, by explicit
//! sizes (attribute before opset 13, input 1 from 13) or evenly.

use super::{const_ints, zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Error;
use crate::error::Result;
use crate::ir::shapes;
use crate::ir::shapes::{axis, Shape};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::set_attr_ints;
use crate::onnx::{attr_i, attr_ints};
use crate::passes::pad::PadCx;
use crate::tensor;

/// Split along `axis`: output i has the input's shape with size i there.
#[derive(Debug)]
pub struct Split;

impl Rules for Split {
    /// Split on the axis of the input's layout (channels, or a feature
    /// axis): sizes in physical channels. On another axis: nothing to
    /// rewrite.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
        let p = m.op(n).unwrap().clone();
        let Some((x, on)) = m.input(n, 0).and_then(|x| Some((x, a.axis(x)?))) else {
            return Ok(());
        };
        let Some(bounds) = a.boundaries(x) else {
            return Ok(());
        };
        let rank = a.shapes.get(&x).map(|s| s.len()).unwrap_or(0);
        if shapes::axis(attr_i(&p, "axis", 0), rank) != Some(on) || bounds.iter().all(|(l, ph)| l == ph) {
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

    /// On the axis of the input's layout (channels, or features: LeViT
    /// splits each head's run into key, key and value dims) the space is
    /// cut at the split points and each output gets its part, on that axis;
    /// on another axis every output passes it.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let Some(x) = cx.input(0) else { return Ok(false) };
        let (Some((l, on)), Some(rank)) = (cx.placed(x), cx.rank(x)) else {
            return Ok(false);
        };
        let Some(ax) = axis(attr_i(cx.p, "axis", 0), rank) else {
            return Ok(false);
        };
        if ax != on {
            if cx.is_feature(x) {
                return Ok(features(cx, x));
            }
            for slot in 0..cx.p.output.len() {
                cx.set(cx.out(slot), l.clone());
            }
            return Ok(true);
        }
        let Some(sizes) = split_sizes(cx.m, cx.n, cx.width(&l) as i64) else {
            return Ok(false);
        };
        let mut start = 0usize;
        for &s in &sizes {
            cx.atoms().cut(&l, start);
            start += s as usize;
        }
        let mut start = 0usize;
        for (slot, &s) in sizes.iter().enumerate() {
            let r = cx.atoms().range(&l, start, start + s as usize);
            cx.set_on(cx.out(slot), r, on);
            start += s as usize;
        }
        Ok(true)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let a = axis(attr_i(cx.p, "axis", 0), x.len())?;
        let sizes = split_sizes(cx.m, cx.n, x[a]?)?;
        Some(
            sizes
                .into_iter()
                .map(|sz| {
                    let mut o = x.clone();
                    o[a] = Some(sz);
                    Some(o)
                })
                .collect(),
        )
    }
}

/// Sizes of a Split's outputs along its axis of length `len`.
pub fn split_sizes(m: &Model, n: NodeId, len: i64) -> Option<Vec<i64>> {
    let p = m.op(n)?;
    let nout = p.output.len() as i64;
    let explicit = if m.opset() >= 13 {
        m.input(n, 1).and_then(|_| const_ints(m, n, 1))
    } else {
        Some(attr_ints(p, "split")).filter(|v| !v.is_empty())
    };
    if let Some(v) = explicit {
        return (v.iter().all(|&s| s >= 0) && v.iter().map(|&s| s as i128).sum::<i128>() == len as i128).then_some(v);
    }
    if m.opset() >= 13 && m.input(n, 1).is_some() {
        return None;
    }
    let num = if m.opset() >= 18 { attr_i(p, "num_outputs", nout) } else { nout };
    if num <= 0 || num != nout {
        return None;
    }
    if len < 0 {
        return None;
    }
    let chunk = ((len as i128 + num as i128 - 1) / num as i128) as i64;
    Some((0..num).map(|i| (len - i * chunk).clamp(0, chunk)).collect())
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

/// A Split of features (attention's q, k, v from one tensor) on another
/// axis than theirs: every output keeps the layout, on the same axis.
fn features(cx: &mut ChannelCx, x: Outlet) -> bool {
    let Some((l, on)) = cx.placed(x) else { return false };
    for slot in 0..cx.p.output.len() {
        let o = cx.out(slot);
        if cx.channels_on(o, on) != Some(cx.width(&l)) {
            return false;
        }
        cx.set_on(o, l.clone(), on);
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, ints_attr, known, Builder, Inferred};

    #[test]
    fn split_evenly_rounds_the_last_chunk_down() {
        let mut b = Builder::new(&[1, 7, 4, 4]);
        let y = b.node("Split", &["x"], 3, vec![int_attr("axis", 1)]);
        let inf = Inferred::of(&b);
        let widths: Vec<_> = y.iter().map(|o| inf.shape(o).unwrap()[1]).collect();
        assert_eq!(widths, [Some(3), Some(3), Some(1)]);
    }

    #[test]
    fn explicit_sizes_must_add_up() {
        let mut b = Builder::new(&[1, 7, 4, 4]);
        let ok = b.ints("ok", &[2, 5]);
        let y = b.node("Split", &["x", &ok], 2, vec![int_attr("axis", 1)]);
        let bad = b.ints("bad", &[2, 4]);
        let z = b.node("Split", &["x", &bad], 2, vec![int_attr("axis", 1)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[1]), Some(known(&[1, 5, 4, 4])));
        assert_eq!(inf.shape(&z[0]), None);
    }

    #[test]
    fn before_opset_13_the_sizes_are_an_attribute() {
        let mut b = Builder::new(&[1, 7, 4, 4]);
        b.opset = 11;
        let y = b.node("Split", &["x"], 2, vec![int_attr("axis", 1), ints_attr("split", &[6, 1])]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[1, 6, 4, 4])));
    }
}
