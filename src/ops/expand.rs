//! Expand: the input broadcast against a target shape (known in part when
//! computed from Shape).

use super::{Cx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Error;
use crate::error::Result;
use crate::ir::shapes::{broadcast, Shape};
use crate::ir::values::{bcast_dims, bidx, numel, Value, MAX_ELEMENTS};
use crate::ir::Outlet;
use crate::passes::pad::PadCx;
use crate::tensor;

/// Expand.
#[derive(Debug)]
pub struct Expand;

impl Rules for Expand {
    /// Expand of one channel to a padded space: the constant target's channel
    /// dim becomes the padded width (where the layout passed through, the input
    /// already has it and the target keeps 1 or the logical count is rewritten).
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let (m, a, n) = (&mut *cx.m, cx.a, cx.n);
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
        let rank = cx.rank(out);
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
