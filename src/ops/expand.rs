//! Expand: the input broadcast against a target shape (known in part when
//! computed from Shape).

use super::{Cx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{broadcast, Shape};
use crate::ir::values::{bcast_dims, bidx, numel, Value, MAX_ELEMENTS};

/// Expand.
#[derive(Debug)]
pub struct Expand;

impl Rules for Expand {
    /// Over other axes the layout passes; one channel broadcast to C (a
    /// constant target) starts a free space, every channel a copy of the
    /// one (finite), and `pad` writes the padded width into the target.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let out = cx.out(0);
        let (Some(x), Some(c)) = (cx.input(0), cx.channels(out)) else {
            return Ok(false);
        };
        if cx.layout(x).is_some_and(|l| cx.width(&l) == c) {
            return Ok(cx.pass());
        }
        let rank = cx.shape(out).map(|s| s.len());
        let single = cx.shape(x).is_some_and(|s| Some(s.len()) == rank && s[1] == Some(1));
        if single && cx.input(1).is_some_and(|o| cx.m.is_const(o)) {
            return Ok(cx.fresh(out, None).is_some());
        }
        Ok(false)
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let x = cx.shape(0)?;
        let target: Shape = match cx.value(1) {
            Some(v) => v.data.iter().map(|d| d.map(|d| d as i64)).collect(),
            None => cx.ints(1)?.into_iter().map(Some).collect(),
        };
        Some(cx.one(broadcast(&[x, &target])?))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let (v, s) = (cx.value(0)?, cx.value(1)?.ints()?);
        let target: Vec<usize> = s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
        let dims = bcast_dims(&v.dims, &target)?;
        let n = numel(&dims)?;
        if n > MAX_ELEMENTS {
            return None;
        }
        let data = (0..n).map(|i| v.data[bidx(&v.dims, &dims, i)]).collect();
        Some(Value { dims, data, elem: v.elem })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{known, Builder, Inferred};

    #[test]
    fn expand_broadcasts_input_and_target() {
        let mut b = Builder::new(&[1, 1, 4, 1]);
        let t = b.ints("t", &[2, 6, 1, 3]);
        let y = b.node("Expand", &["x", &t], 1, vec![]);
        assert_eq!(Inferred::of(&b).shape(&y[0]), Some(known(&[2, 6, 4, 3])));
    }

    #[test]
    fn an_expanded_value_repeats_its_elements() {
        let mut b = Builder::new(&[3, 5]);
        let s = b.unary("Shape", "x");
        let t = b.ints("t", &[2, 2]);
        let y = b.node("Expand", &[&s, &t], 1, vec![]);
        let v = Inferred::of(&b).value(&y[0]).unwrap();
        assert_eq!(v.dims, [2, 2]);
        assert_eq!(v.ints(), Some(vec![3, 5, 3, 5]));
    }
}
