//! Shapes: `Vec<Option<i64>>`, the rank known, a dim possibly symbolic
//! (`None`), and the arithmetic the op families' shape rules share
//! (axes, broadcasting, plausible dims). Tensors whose shape cannot be
//! derived (unknown ops, data-dependent shapes) are absent from the map
//! [`super::infer`] builds, and the channel analysis pins them.

/// A shape with possibly unknown dims.
pub type Shape = Vec<Option<i64>>;

/// Normalises a possibly negative axis.
pub fn axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

/// Numpy broadcasting of shapes (an unknown dim facing a known one other than 1 takes it).
pub fn broadcast(shapes: &[&Shape]) -> Option<Shape> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![Some(1); rank];
    for s in shapes {
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            *o = match (*o, *d) {
                (Some(1), d) => d,
                (o, Some(1)) => o,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(_), Some(_)) => return None,
                (a, None) | (None, a) => a.filter(|&v| v != 1),
            };
        }
    }
    Some(out)
}

/// Largest dim align believes: anything above is a corrupt model.
const MAX_DIM: i128 = 1 << 48;

/// A computed dim, if it is a plausible one.
pub fn fit(v: i128) -> Option<i64> {
    (0..=MAX_DIM).contains(&v).then_some(v as i64)
}

/// Product of known dims, if it fits.
pub fn product(d: &[Option<i64>]) -> Option<i64> {
    d.iter().try_fold(1i64, |acc, v| v.and_then(|v| acc.checked_mul(v)))
}

/// `v`, or `n` times `fill` when it is empty (an attribute left to its default).
pub fn nonempty(v: Vec<i64>, n: usize, fill: i64) -> Vec<i64> {
    if v.is_empty() {
        vec![fill; n]
    } else {
        v
    }
}
