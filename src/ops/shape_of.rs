//! Shape and Size: the dims of a tensor as a value (`None` where a dim is
//! symbolic), the start of every chain of shape arithmetic.

use super::{slice, Cx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{product, Shape};
use crate::ir::values::{Value, INT64};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::attr_i;
use crate::tensor;

/// Shape (with opset-15 `start` / `end`): a rank-1 int64 tensor.
#[derive(Debug)]
pub struct ShapeOf;

/// The clamped `[start, end)` of a Shape op over rank `r`.
fn bounds(cx: &Cx, r: i64) -> (i64, i64) {
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
    (clamp(attr_i(cx.p, "start", 0)), clamp(attr_i(cx.p, "end", r)))
}

impl Rules for ShapeOf {
    /// `Shape(x)` reads x's dims; the channel count it reports would be the
    /// padded one. It holds (does not pin x) when nothing reads that element:
    /// every reader is a Gather of constant indices or a Slice of constant
    /// bounds that leaves it out (`x.shape[0]` for a batch-generic Reshape),
    /// or the sizes of x's own Resize.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (m, n, p) = (cx.m, cx.n, cx.p);
        let Some(rank) = cx.input(0).and_then(|x| cx.shape(x)).map(|s| s.len() as i64) else {
            return Ok(false);
        };
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank);
        let (a, b) = (clamp(attr_i(p, "start", 0)), clamp(attr_i(p, "end", rank)));
        if !(a..b).contains(&1) {
            return Ok(true);
        }
        let pos = 1 - a; // where the channel count sits in the output
        let len = b - a;
        Ok(m.consumers(Outlet { node: n, slot: 0 }).iter().all(|&(c, slot)| {
            let Some(reader) = m.op(c).filter(|r| super::standard(r)) else { return false };
            slot == 0
                && match reader.op_type() {
                    "Gather" => m
                        .input_const(c, 1)
                        .and_then(|t| tensor::to_i64(&t).ok())
                        .is_some_and(|idx| idx.iter().all(|&i| (if i < 0 { i + len } else { i }) != pos)),
                    "Slice" => {
                        slice::slice_params(m, c, 1).is_some_and(|sl| {
                            sl.iter().all(|&(_, st, en, step)| {
                                let (s, e) = slice::slice_range(len, st, en);
                                step == 1 && !(s..e).contains(&pos)
                            })
                        }) || sizes_of_own_resize(m, Outlet { node: c, slot: 0 }, m.input(n, 0))
                    }
                    "Concat" => a == 0 && b == 2 && sizes_of_own_resize(m, Outlet { node: n, slot: 0 }, m.input(n, 0)),
                    _ => false,
                }
        }))
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (a, b) = bounds(cx, cx.shape(0)?.len() as i64);
        Some(cx.one(vec![Some((b - a).max(0))]))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let s = cx.shape(0)?;
        let (a, b) = bounds(cx, s.len() as i64);
        let (a, b) = (a as usize, b as usize);
        let d: Vec<Option<f64>> = s.get(a..b.max(a))?.iter().map(|d| d.map(|v| v as f64)).collect();
        Some(Value { dims: vec![d.len()], data: d, elem: INT64 })
    }
}

/// Size: the element count as an int64 scalar (its shape is left to the
/// model's value_info).
#[derive(Debug)]
pub struct Size;

impl Rules for Size {
    fn value(&self, cx: &Cx) -> Option<Value> {
        let s = cx.shape(0)?;
        Some(Value { dims: vec![], data: vec![product(s).map(|v| v as f64)], elem: INT64 })
    }
}

/// `x.shape[:2]` as a Shape with start 0, end 2, or Shape → Slice [0, 2).
fn batch_and_channels_of(m: &Model, o: Outlet) -> Option<Outlet> {
    let p = m.op(o.node).filter(|p| super::standard(p))?;
    match p.op_type() {
        "Shape" if attr_i(p, "start", 0) == 0 && attr_i(p, "end", i64::MAX) == 2 => m.input(o.node, 0),
        "Slice" => {
            let sh = m.input(o.node, 0)?;
            let sp = m.op(sh.node)?;
            let whole = super::is(sp, "Shape") && attr_i(sp, "start", 0) == 0 && sp.attribute.len() <= 1;
            let params = slice::slice_params(m, o.node, 1)?;
            (whole && params.len() == 1 && params[0].1 == 0 && params[0].2 == 2 && params[0].3 == 1)
                .then(|| m.input(sh.node, 0))
                .flatten()
        }
        _ => None,
    }
}

/// True when Concat `cat` starts with `x.shape[:2]` (F.interpolate's sizes
/// for a dynamic H, W): the batch and channel counts it passes on are x's own.
pub fn own_batch_and_channels(m: &Model, cat: NodeId, x: Option<Outlet>) -> bool {
    m.op(cat).is_some_and(|p| super::is(p, "Concat") && attr_i(p, "axis", 0) == 0)
        && m.input(cat, 0).and_then(|o| batch_and_channels_of(m, o)).is_some_and(|o| Some(o) == x)
}

/// True when `v` (x.shape[:2]) feeds only Concats that are the sizes of
/// Resizes of x itself: the channel count read there follows x's padding.
fn sizes_of_own_resize(m: &Model, v: Outlet, x: Option<Outlet>) -> bool {
    let readers = m.consumers(v);
    !readers.is_empty()
        && readers.iter().all(|&(cat, slot)| {
            slot == 0
                && own_batch_and_channels(m, cat, x)
                && m.consumers(Outlet { node: cat, slot: 0 })
                    .iter()
                    .all(|&(r, s)| s == 3 && m.op(r).is_some_and(|p| super::is(p, "Resize")) && m.input(r, 0) == x)
        })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, known, Builder, Inferred};

    #[test]
    fn shape_reports_symbolic_dims_as_unknown_and_honours_start_and_end() {
        let mut b = Builder::new(&[1, 3, 5, 7]);
        b.symbolic(0);
        let all = b.unary("Shape", "x");
        let tail = b.node("Shape", &["x"], 1, vec![int_attr("start", -2)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.value(&all).unwrap().data, vec![None, Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(inf.shape(&tail[0]), Some(known(&[2])));
        assert_eq!(inf.ints(&tail[0]), Some(vec![5, 7]));
    }

    #[test]
    fn size_is_the_element_count_when_every_dim_is_known() {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let n = b.unary("Size", "x");
        assert_eq!(Inferred::of(&b).ints(&n), Some(vec![210]));
        let mut b = Builder::new(&[2, 3, 5, 7]);
        b.symbolic(0);
        let n = b.unary("Size", "x");
        assert_eq!(Inferred::of(&b).value(&n).unwrap().data, vec![None]);
    }
}
