//! Values of small tensors computed from shapes and constants (shape
//! arithmetic), element by element: an element is `None` where it depends on
//! a symbolic dim. [`super::infer::infer_with_values`] computes them in the
//! same topological walk as the shapes, each op's by its family's
//! [`crate::ops::Rules::value`], so a Reshape whose target is
//! `Concat(Shape(x)[0], [g, c, h, w])` still gets its channel dims. This
//! module holds the value type and the element arithmetic the rules share.

use super::{Model, Outlet};
use crate::tensor;

/// Largest tensor the evaluator computes (shape arithmetic is tiny).
pub const MAX_ELEMENTS: usize = 4096;

thread_local! {
    static LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_ELEMENTS) };
}

/// The largest tensor the evaluator computes now: [`MAX_ELEMENTS`], or
/// what [`with_limit`] sets while it runs.
pub fn limit() -> usize {
    LIMIT.with(|l| l.get())
}

/// Runs `f` with the evaluator computing tensors of up to `n` elements
/// (`ir::fold_weights` evaluating a weight computed from constants).
pub fn with_limit<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let old = LIMIT.with(|l| l.replace(n));
    let r = f();
    LIMIT.with(|l| l.set(old));
    r
}

/// A small tensor whose elements may be unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Dims.
    pub dims: Vec<usize>,
    /// Elements, row-major; `None` where unknown (a symbolic dim).
    pub data: Vec<Option<f64>>,
    /// ONNX element type.
    pub elem: i32,
}

impl Value {
    /// The elements, if all are known.
    pub fn known(&self) -> Option<Vec<f64>> {
        self.data.iter().copied().collect()
    }
    /// True unless the element type is a float type.
    pub fn is_int(&self) -> bool {
        !tensor::Elem::from_onnx(self.elem).is_some_and(|e| e.is_float())
    }
    /// The elements as integers, if all are known.
    pub fn ints(&self) -> Option<Vec<i64>> {
        self.data.iter().map(|v| v.map(|v| v as i64)).collect()
    }
}

/// ONNX int64.
pub const INT64: i32 = 7;
/// ONNX bool.
pub const BOOL: i32 = 9;

/// The value of a small constant.
pub fn const_value(m: &Model, o: Outlet) -> Option<Value> {
    let dims = m.const_dims(o)?;
    let udims: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    if numel(&udims)? > limit() {
        return None;
    }
    let t = m.const_value(o)?;
    let elem = t.data_type();
    let data = tensor::to_f64(&t).ok()?;
    Some(Value { dims: udims, data: data.into_iter().map(Some).collect(), elem })
}

/// Element count, if it does not overflow.
pub fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Numpy broadcasting of two dims lists.
pub fn bcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Index into `v` (dims `d`) of output position `idx` (dims `out`) under broadcasting.
pub fn bidx(d: &[usize], out: &[usize], mut idx: usize) -> usize {
    let mut pos = 0;
    let mut stride = 1;
    for i in (0..out.len()).rev() {
        let c = idx % out[i];
        idx /= out[i];
        if let Some(k) = (i + d.len()).checked_sub(out.len()) {
            if d[k] != 1 {
                pos += c * stride;
            }
            stride *= d[k];
        }
    }
    pos
}

/// `f` of the operands' elements at every position of their broadcast dims
/// (`None` where an operand's element is unknown or `f` refuses), `None`
/// above [`limit`].
pub fn broadcast_map(vs: &[&Value], f: impl Fn(&[f64]) -> Option<f64>, elem: i32) -> Option<Value> {
    let mut dims: Vec<usize> = vec![];
    for v in vs {
        dims = bcast_dims(&dims, &v.dims)?;
    }
    let n = numel(&dims)?;
    if n > limit() {
        return None;
    }
    // an operand of the output's dims is read at the same index, a single
    // element always at 0: only the others need broadcast indexing
    let same: Vec<Option<usize>> = vs
        .iter()
        .map(|v| match v.data.len() {
            1 => Some(0),
            k if k == n && v.dims.len() == dims.len() => Some(usize::MAX),
            _ => None,
        })
        .collect();
    let mut args = vec![0.0; vs.len()];
    let mut data = Vec::with_capacity(n);
    'elements: for i in 0..n {
        for (k, v) in vs.iter().enumerate() {
            let at = match same[k] {
                Some(usize::MAX) => i,
                Some(j) => j,
                None => bidx(&v.dims, &dims, i),
            };
            match v.data.get(at).copied().flatten() {
                Some(x) => args[k] = x,
                None => {
                    data.push(None);
                    continue 'elements;
                }
            }
        }
        data.push(f(&args));
    }
    Some(Value { dims, data, elem })
}
