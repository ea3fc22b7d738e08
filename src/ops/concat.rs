//! Concat: inputs joined along an axis. Its value is computed for rank-1
//! inputs (shape vectors).

use super::{zero_if, Cx, Fill, FillCx, FoldCx, Rules};
use crate::analysis::ChannelCx;
use crate::error::Result;
use crate::ir::shapes::{axis, Shape};
use crate::ir::values::Value;
use crate::onnx::{attr_i, TensorProto};
use crate::passes::pad::PadCx;
use crate::tensor;
use std::borrow::Cow;

/// Concat along `axis`.
#[derive(Debug)]
pub struct Concat;

impl Rules for Concat {
    /// On the channel axis the output layout is the inputs' one after the
    /// other; on another axis it joins them.
    fn channels(&self, cx: &mut ChannelCx) -> Result<bool> {
        let out = cx.out(0);
        let Some(rank) = cx.rank(out) else {
            return Ok(false);
        };
        let Some(ax) = axis(attr_i(cx.p, "axis", 0), rank) else {
            return Ok(false);
        };
        if (0..cx.m.n_inputs(cx.n)).any(|s| cx.input(s).is_some_and(|o| cx.is_feature(o))) {
            return features(cx, ax, rank);
        }
        let mut ls = vec![];
        for slot in 0..cx.m.n_inputs(cx.n) {
            match cx.input_layout(slot) {
                Some(l) => ls.push(l),
                None => return Ok(false),
            }
        }
        if ax == 1 {
            cx.set(out, ls.concat());
        } else {
            if ls.iter().any(|l| cx.width(l) != cx.width(&ls[0])) {
                return Ok(false);
            }
            for l in &ls[1..] {
                if !cx.atoms().join(&ls[0], l) {
                    return Ok(false);
                }
            }
            cx.set(out, ls[0].clone());
        }
        Ok(true)
    }

    fn any_axis(&self) -> bool {
        true
    }

    /// Constant operands of a concatenation along another axis than the
    /// features (a class token before the patch tokens): zero features.
    fn pad(&self, cx: &mut PadCx) -> Result<()> {
        let Some(om) = cx.out_map(0).filter(|c| !c.is_identity()) else { return Ok(()) };
        for slot in 0..cx.m.n_inputs(cx.n) {
            if cx.m.input(cx.n, slot).is_some_and(|o| cx.m.is_const(o)) {
                cx.scatter(slot, om.axis, &om, 0.0)?;
            }
        }
        Ok(())
    }

    /// f(0) = 0: exact zeros in, exact zeros out.
    fn fill(&self, cx: &FillCx) -> Option<Fill> {
        zero_if(cx.padded_all_zero())
    }

    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        let shapes = cx.input_shapes()?;
        let a = axis(attr_i(cx.p, "axis", 0), shapes.first()?.len())?;
        if shapes.iter().any(|s| s.len() != shapes[0].len()) {
            return None;
        }
        let mut out = shapes[0].clone();
        out[a] = shapes.iter().map(|s| s.get(a).copied().flatten()).sum::<Option<i64>>();
        Some(cx.one(out))
    }

    fn value(&self, cx: &Cx) -> Option<Value> {
        let parts = cx.input_values()?;
        if parts.iter().any(|v| v.dims.len() != 1) {
            return None;
        }
        let data: Vec<Option<f64>> = parts.iter().flat_map(|v| v.data.iter().copied()).collect();
        Some(Value { dims: vec![data.len()], data, elem: parts.first()?.elem })
    }

    /// Small rank-1 constants joined (the last one's element type).
    fn fold<'a>(&self, cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        let mut v = vec![];
        let mut dt = 7;
        for i in 0..cx.m.n_inputs(cx.n) {
            let t = cx.small(i)?;
            if t.dims.len() != 1 {
                return None;
            }
            dt = t.data_type();
            v.extend(tensor::to_f64(&t).ok()?);
        }
        tensor::from_f64(cx.name(), dt, &[v.len()], &v).ok().map(Cow::Owned)
    }
}

/// Concat of tensors laid out on a feature axis: along that axis the
/// output's layout is theirs one after the other; along another axis it
/// joins them, and a constant operand (a class token) has its features
/// zero-padded.
fn features(cx: &mut ChannelCx, ax: usize, rank: usize) -> Result<bool> {
    let mut ls = vec![];
    let mut on = None;
    for slot in 0..cx.m.n_inputs(cx.n) {
        let Some(o) = cx.input(slot) else { return Ok(false) };
        if cx.rank(o) != Some(rank) {
            return Ok(false);
        }
        match cx.placed(o) {
            Some((l, axis)) if on.is_none_or(|a| a == axis) => {
                on = Some(axis);
                ls.push(l);
            }
            None if cx.m.is_const(o) => {}
            _ => return Ok(false),
        }
    }
    let (Some(axis), Some(first)) = (on, ls.first().cloned()) else { return Ok(false) };
    if ax == axis {
        if ls.len() != cx.m.n_inputs(cx.n) {
            return Ok(false);
        }
        cx.set_on(cx.out(0), ls.concat(), axis);
        return Ok(true);
    }
    let width = cx.width(&first);
    for slot in 0..cx.m.n_inputs(cx.n) {
        let o = cx.input(slot).expect("checked above");
        if cx.channels_on(o, axis) != Some(width) {
            return Ok(false);
        }
    }
    for l in &ls[1..] {
        if !cx.atoms().join(&first, l) {
            return Ok(false);
        }
    }
    cx.set_on(cx.out(0), first, axis);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{int_attr, known, Builder, Inferred};

    #[test]
    fn concat_adds_up_its_axis_and_refuses_mismatched_ranks() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let c = b.rand_init("c", &[1, 5, 4, 4], 0.0, 1.0);
        let y = b.node("Concat", &["x", &c], 1, vec![int_attr("axis", 1)]);
        let d = b.rand_init("d", &[1, 5, 4], 0.0, 1.0);
        let bad = b.node("Concat", &["x", &d], 1, vec![int_attr("axis", 1)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&y[0]), Some(known(&[1, 8, 4, 4])));
        assert_eq!(inf.shape(&bad[0]), None);
    }

    #[test]
    fn small_rank_1_constants_fold() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let (p, q) = (b.ints("p", &[1, 2]), b.ints("q", &[3]));
        let y = b.node("Concat", &[&p, &q], 1, vec![int_attr("axis", 0)]);
        let m = b.rand_init("m", &[2, 2], 0.0, 1.0);
        let no = b.node("Concat", &[&m, &m], 1, vec![int_attr("axis", 0)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.folded(&y[0]), Some((vec![3], vec![1.0, 2.0, 3.0])));
        assert_eq!(inf.folded(&no[0]), None, "rank 2: not a shape vector");
        assert_eq!(inf.shape(&no[0]), Some(known(&[4, 2])));
    }

    #[test]
    fn a_reshape_target_built_from_a_symbolic_batch_keeps_its_known_part() {
        let mut b = Builder::new(&[1, 6, 4, 4]);
        b.symbolic(0);
        let s = b.unary("Shape", "x");
        let idx = b.ints("i", &[0]);
        let n = b.node("Gather", &[&s, &idx], 1, vec![]);
        let rest = b.ints("rest", &[2, 3, 16]);
        let t = b.node("Concat", &[&n[0], &rest], 1, vec![int_attr("axis", 0)]);
        let inf = Inferred::of(&b);
        assert_eq!(inf.value(&t[0]).unwrap().data, vec![None, Some(2.0), Some(3.0), Some(16.0)]);
    }
}
