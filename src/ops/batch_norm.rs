//! BatchNormalization: per-channel affine map, output 0 of input 0's shape.

use super::{Cx, Rules};
use crate::ir::shapes::Shape;

/// BatchNormalization (inference form).
#[derive(Debug)]
pub struct BatchNorm;

impl Rules for BatchNorm {
    fn shapes(&self, cx: &Cx) -> Option<Vec<Option<Shape>>> {
        cx.same()
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{known, Builder, Inferred};

    #[test]
    fn batch_norm_keeps_its_input_shape() {
        let mut b = Builder::new(&[1, 6, 4, 3]);
        let y = b.bn("x", 6);
        assert_eq!(Inferred::of(&b).shape(&y), Some(known(&[1, 6, 4, 3])));
    }
}
