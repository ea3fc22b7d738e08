//! Shape arithmetic that is not element-wise: Gather (indexing a shape
//! vector, or the tokens of an activation) and Range.

use super::{zero_if, Cx, Fill, FillCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{axis, Shape};
use crate::ir::values::{Value, MAX_ELEMENTS};
use crate::onnx::attr_i;

/// Gather along `axis`. Values: rank-1 data gathered on axis 0.
#[derive(Debug)]
pub struct Gather;

impl Rules for Gather {
    /// Gather on another axis than the layout's with constant indices (a
    /// ViT's class token, `x[:, 0]`) keeps the layout: on the same axis, or
    /// shifted by the rank the indices replace the gathered axis with.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let (Some(x), Some(i)) = (cx.input(0), cx.input(1)) else { return Ok(false) };
        let (Some((l, on)), Some(r)) = (cx.placed(x), cx.rank(x)) else {
            return Ok(false);
        };
        let (Some(g), Some(ir)) = (axis(attr_i(cx.p, "axis", 0), r), cx.m.const_dims(i).map(|d| d.len())) else {
            return Ok(false);
        };
        if g == on {
            return Ok(false);
        }
        let to = if g < on { on - 1 + ir } else { on };
        if cx.channels_on(cx.out(0), to) != Some(cx.width(&l)) {
            return Ok(false);
        }
        cx.set_on(cx.out(0), l, to);
        Ok(true)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// The padded channels' values, gathered elsewhere.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let (x, idx) = (cx.shape(0)?, cx.shape(1)?);
        let a = axis(attr_i(cx.p, "axis", 0), x.len())?;
        let mut out = x[..a].to_vec();
        out.extend(idx.iter().copied());
        out.extend(x[a + 1..].iter().copied());
        Some(cx.one(out))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let (d, idx) = (cx.value(0)?, cx.value(1)?);
        let ax = axis(attr_i(cx.p, "axis", 0), d.dims.len())?;
        if d.dims.len() != 1 || ax != 0 {
            return None;
        }
        let len = d.dims[0] as i64;
        let data = idx
            .data
            .iter()
            .map(|i| {
                let i = (*i)? as i64;
                let i = if i < 0 { i + len } else { i };
                d.data.get(usize::try_from(i).ok()?).copied().flatten()
            })
            .collect();
        Some(Value { dims: idx.dims.clone(), data, elem: d.elem })
    }
}

/// Range(start, limit, delta) of known scalars. Its shape is left to the
/// model's value_info.
#[derive(Debug)]
pub struct Range;

impl Rules for Range {
    fn value(&self, cx: &Cx) -> Option<Value> {
        let (s, l, d) = (cx.value(0)?.known()?, cx.value(1)?.known()?, cx.value(2)?.known()?);
        let (s, l, d) = (*s.first()?, *l.first()?, *d.first()?);
        if d == 0.0 {
            return None;
        }
        let count = ((l - s) / d).ceil().max(0.0) as usize;
        if count > MAX_ELEMENTS {
            return None;
        }
        let data = (0..count).map(|i| Some(s + i as f64 * d)).collect();
        Some(Value { dims: vec![count], data, elem: cx.value(0)?.elem })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{known, Builder, Inferred};

    #[test]
    fn gather_indexes_shapes_and_shape_vectors() {
        let mut b = Builder::new(&[2, 3, 5, 7]);
        let s = b.unary("Shape", "x");
        let idx = b.ints("i", &[-1, 1]);
        let g = b.node("Gather", &[&s, &idx], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&g[0]), Some(known(&[2])));
        assert_eq!(inf.ints(&g[0]), Some(vec![7, 3]));
    }

    #[test]
    fn range_of_known_scalars() {
        let mut b = Builder::new(&[2, 3]);
        let s = b.unary("Shape", "x");
        let (start, delta) = (b.ints("start", &[1]), b.ints("delta", &[1]));
        let idx = b.ints("i", &[1]);
        let limit = b.node("Gather", &[&s, &idx], 1, vec![]);
        let r = b.node("Range", &[&start, &limit[0], &delta], 1, vec![]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.ints(&r[0]), Some(vec![1, 2]));
    }
}
