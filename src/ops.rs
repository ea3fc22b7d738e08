//! One entry per ONNX operator: everything align knows about an op, in one
//! place.
//!
//! An entry gives the op's **channel role** (how the channel analysis treats
//! it and, following from that, how `pad` rewrites it), what happens when
//! the role's conditions do not hold (the op then *pins* the channels it
//! touches for a genuine reason, or the analysis has a *gap*), its **shape
//! rule** (static shape inference) and whether it is **pure** (removed by
//! cleanup once nothing reads it). Adding an op that behaves like one
//! already known is one line in [`TABLE`]; an op not in the table is never
//! guessed: the analysis reports every channel dim it touches as unanalysed.
//!
//! The idea follows tract's `TypedOp` (one impl per op with its shape rule,
//! axes mapping and `change_axes` answer), kept as data: roles and shape
//! rules are enums the analysis, shape inference and the pad pass match on.

use crate::onnx::NodeProto;

/// How an op relates the channel axis (axis 1) of its inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Maps every channel to itself and keeps finite values finite
    /// (activations, pooling, Dropout…): passes the input's layout through.
    ChannelWise,
    /// Element-wise with broadcasting: joins the layouts of its activation
    /// operands. Per-channel constants are padded with the neutral value of
    /// their slot (`neutral[0]` for slot 0, `neutral[1]` for the others;
    /// `None`: a per-channel constant there pins). An activation may sit
    /// only in the slots `activation` allows (a padded 0 as a divisor, an
    /// exponent base or a slope could make Inf or NaN).
    Elementwise {
        /// Padding value of a per-channel constant in slot 0, in slots ≥ 1.
        neutral: [Option<f64>; 2],
        /// Whether an activation may be operand 0, operands ≥ 1.
        activation: [bool; 2],
    },
    /// Conv: starts a new space on its output, absorbs any input layout
    /// (depthwise passes it through; grouped pads every group alike).
    Conv,
    /// ConvTranspose: input and output dims aligned independently.
    ConvTranspose,
    /// BatchNormalization with constant parameters: channel-wise, its
    /// parameters padded with γ 0, β 0, mean 0, var 1.
    BatchNorm,
    /// Concat: on the channel axis the output layout is the inputs' one
    /// after the other; on another axis it joins them.
    Concat,
    /// Split on the channel axis cuts the input's space at the split points.
    Split,
    /// Slice on the channel axis cuts like Split; on other axes it passes.
    Slice,
    /// Resize / Upsample with channel scale 1 (or `sizes[1] = C`) passes.
    Resize,
    /// Pad without channel padding passes.
    Pad,
    /// Flatten, or Reshape to [N, C·H·W], feeding only dense layers: the
    /// dense weight absorbs the layout.
    Flatten,
    /// Gemm / MatMul: absorbs a flattened layout on input A.
    Dense,
    /// Reduction: over non-channel axes it passes; over channels it pins.
    Reduce,
    /// Shape: pins only when the channel count it reports is read.
    ShapeOf,
    /// Expand: over non-channel axes it passes; a single channel broadcast
    /// to C (`expand_as`) starts a space whose padded channels repeat a real
    /// one, its constant target rewritten to the padded width.
    Broadcast,
    /// Needs the exact channels of everything it reads and writes
    /// (Transpose, Softmax, GroupNormalization…): pins.
    Mixing,
}

impl Role {
    /// The value padded channels of a per-channel constant in `slot` get,
    /// for element-wise ops (None: an activation there pins).
    pub fn neutral(self, slot: usize) -> Option<f64> {
        match self {
            Role::Elementwise { neutral, .. } => neutral[slot.min(1)],
            _ => None,
        }
    }

    /// Whether an activation may be operand `slot` of an element-wise op.
    pub fn activation_ok(self, slot: usize) -> bool {
        match self {
            Role::Elementwise { activation, .. } => activation[slot.min(1)],
            _ => false,
        }
    }

    /// Whether an op of this role that the analysis cannot handle as such
    /// pins for a genuine reason (true) or leaves a gap of the tool (false).
    pub fn refusal_pins(self) -> bool {
        matches!(
            self,
            Role::Elementwise { .. }
                | Role::Split
                | Role::Slice
                | Role::Resize
                | Role::Pad
                | Role::Flatten
                | Role::Dense
                | Role::Reduce
                | Role::ShapeOf
                | Role::Broadcast
                | Role::Mixing
        )
    }
}

/// How an op's output shape follows from its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeRule {
    /// Output 0 has input 0's shape.
    Same,
    /// Numpy broadcasting of all inputs.
    Broadcast,
    /// Conv window arithmetic.
    Conv,
    /// ConvTranspose arithmetic.
    ConvTranspose,
    /// Max / Average / Lp pooling window arithmetic.
    Pool,
    /// Global pooling: spatial dims become 1.
    GlobalPool,
    /// Concat along an axis.
    Concat,
    /// Split sizes along an axis.
    Split,
    /// Slice bounds.
    Slice,
    /// Resize / Upsample scales or sizes.
    Resize,
    /// Pad amounts.
    Pad,
    /// Flatten at an axis.
    Flatten,
    /// Reshape to a constant target.
    Reshape,
    /// Transpose by a permutation.
    Transpose,
    /// Gemm.
    Gemm,
    /// MatMul with batch broadcasting.
    MatMul,
    /// Reductions with axes and keepdims.
    Reduce,
    /// Shape: a rank-1 tensor of the input's rank.
    ShapeOf,
    /// Unsqueeze / Squeeze.
    Unsqueeze,
    /// Gather along an axis.
    Gather,
    /// Expand: the input broadcast against the target shape.
    Expand,
    /// Unknown here: the model's value_info may record it.
    Declared,
}

/// Everything align knows about one op.
#[derive(Debug, Clone, Copy)]
pub struct OpEntry {
    /// ONNX op type.
    pub op: &'static str,
    /// Channel role.
    pub role: Role,
    /// Shape rule.
    pub shape: ShapeRule,
    /// Side-effect free shape arithmetic or constant carrier: removed once
    /// nothing reads it.
    pub pure: bool,
}

const fn e(op: &'static str, role: Role, shape: ShapeRule, pure: bool) -> OpEntry {
    OpEntry { op, role, shape, pure }
}

use Role as R;
use ShapeRule as S;

const ZERO: Role = R::Elementwise { neutral: [Some(0.0), Some(0.0)], activation: [true, true] };

/// The ops align knows.
pub const TABLE: &[OpEntry] = &[
    // activations and other channel-wise maps
    e("Relu", R::ChannelWise, S::Same, false),
    e("LeakyRelu", R::ChannelWise, S::Same, false),
    e("Sigmoid", R::ChannelWise, S::Same, false),
    e("Tanh", R::ChannelWise, S::Same, false),
    e("HardSigmoid", R::ChannelWise, S::Same, false),
    e("HardSwish", R::ChannelWise, S::Same, false),
    e("Clip", R::ChannelWise, S::Same, false),
    e("Elu", R::ChannelWise, S::Same, false),
    e("Selu", R::ChannelWise, S::Same, false),
    e("Celu", R::ChannelWise, S::Same, false),
    e("Softsign", R::ChannelWise, S::Same, false),
    e("Softplus", R::ChannelWise, S::Same, false),
    e("Mish", R::ChannelWise, S::Same, false),
    e("Gelu", R::ChannelWise, S::Same, false),
    e("Erf", R::ChannelWise, S::Same, false),
    e("ThresholdedRelu", R::ChannelWise, S::Same, false),
    e("Identity", R::ChannelWise, S::Same, true),
    e("Dropout", R::ChannelWise, S::Same, false),
    e("Neg", R::ChannelWise, S::Same, true),
    e("Abs", R::ChannelWise, S::Same, true),
    e("Exp", R::ChannelWise, S::Same, false),
    e("Floor", R::ChannelWise, S::Same, true),
    e("Ceil", R::ChannelWise, S::Same, true),
    e("Round", R::ChannelWise, S::Same, true),
    e("Sign", R::ChannelWise, S::Same, false),
    e("Cast", R::ChannelWise, S::Same, true),
    e("MaxPool", R::ChannelWise, S::Pool, false),
    e("AveragePool", R::ChannelWise, S::Pool, false),
    e("LpPool", R::ChannelWise, S::Pool, false),
    e("GlobalAveragePool", R::ChannelWise, S::GlobalPool, false),
    e("GlobalMaxPool", R::ChannelWise, S::GlobalPool, false),
    e("GlobalLpPool", R::ChannelWise, S::GlobalPool, false),
    // element-wise with broadcasting
    e("Add", ZERO, S::Broadcast, true),
    e("Sub", ZERO, S::Broadcast, true),
    e("Mul", ZERO, S::Broadcast, true),
    e("Max", ZERO, S::Broadcast, true),
    e("Min", ZERO, S::Broadcast, true),
    e("Sum", ZERO, S::Broadcast, false),
    e("Div", R::Elementwise { neutral: [None, Some(1.0)], activation: [true, false] }, S::Broadcast, true),
    e("Pow", R::Elementwise { neutral: [None, Some(1.0)], activation: [false, false] }, S::Broadcast, true),
    e("PRelu", R::Elementwise { neutral: [None, Some(0.0)], activation: [true, false] }, S::Broadcast, false),
    // layers
    e("Conv", R::Conv, S::Conv, false),
    e("ConvTranspose", R::ConvTranspose, S::ConvTranspose, false),
    e("BatchNormalization", R::BatchNorm, S::Same, false),
    e("Gemm", R::Dense, S::Gemm, false),
    e("MatMul", R::Dense, S::MatMul, false),
    // layout plumbing
    e("Concat", R::Concat, S::Concat, true),
    e("Split", R::Split, S::Split, false),
    e("Slice", R::Slice, S::Slice, true),
    e("Resize", R::Resize, S::Resize, false),
    e("Upsample", R::Resize, S::Resize, false),
    e("Pad", R::Pad, S::Pad, false),
    e("Flatten", R::Flatten, S::Flatten, true),
    e("Reshape", R::Flatten, S::Reshape, true),
    // reductions
    e("ReduceMean", R::Reduce, S::Reduce, true),
    e("ReduceSum", R::Reduce, S::Reduce, true),
    e("ReduceMax", R::Reduce, S::Reduce, true),
    e("ReduceMin", R::Reduce, S::Reduce, true),
    e("ReduceProd", R::Reduce, S::Reduce, true),
    e("ReduceL1", R::Reduce, S::Reduce, false),
    e("ReduceL2", R::Reduce, S::Reduce, false),
    e("ReduceLogSumExp", R::Reduce, S::Reduce, false),
    e("ReduceSumSquare", R::Reduce, S::Reduce, false),
    e("Shape", R::ShapeOf, S::ShapeOf, true),
    // ops that need exact channels
    e("Transpose", R::Mixing, S::Transpose, false),
    e("Softmax", R::Mixing, S::Same, false),
    e("LogSoftmax", R::Mixing, S::Same, false),
    e("Hardmax", R::Mixing, S::Same, false),
    e("GroupNormalization", R::Mixing, S::Same, false),
    e("LayerNormalization", R::Mixing, S::Same, false),
    e("InstanceNormalization", R::Mixing, S::Same, false),
    e("LRN", R::Mixing, S::Same, false),
    e("DepthToSpace", R::Mixing, S::Declared, false),
    e("SpaceToDepth", R::Mixing, S::Declared, false),
    e("Squeeze", R::Mixing, S::Unsqueeze, true),
    e("Unsqueeze", R::Mixing, S::Unsqueeze, true),
    e("Einsum", R::Mixing, S::Declared, false),
    e("ArgMax", R::Mixing, S::Declared, false),
    e("ArgMin", R::Mixing, S::Declared, false),
    e("TopK", R::Mixing, S::Declared, false),
    e("Gather", R::Mixing, S::Gather, true),
    e("GatherElements", R::Mixing, S::Declared, false),
    e("Tile", R::Mixing, S::Declared, false),
    e("Expand", R::Broadcast, S::Expand, true),
    e("CumSum", R::Mixing, S::Declared, false),
    e("NonMaxSuppression", R::Mixing, S::Declared, false),
    // element-wise maths a padded channel could turn into Inf or NaN, and booleans: pin
    e("Log", R::Mixing, S::Same, false),
    e("Sqrt", R::Mixing, S::Same, true),
    e("Reciprocal", R::Mixing, S::Same, false),
    e("Not", R::Mixing, S::Same, true),
    e("Equal", R::Mixing, S::Broadcast, true),
    e("Less", R::Mixing, S::Broadcast, true),
    e("Greater", R::Mixing, S::Broadcast, true),
    e("LessOrEqual", R::Mixing, S::Broadcast, true),
    e("GreaterOrEqual", R::Mixing, S::Broadcast, true),
    e("And", R::Mixing, S::Broadcast, true),
    e("Or", R::Mixing, S::Broadcast, true),
    e("Where", R::Mixing, S::Broadcast, true),
    e("Mod", R::Mixing, S::Broadcast, true),
    e("Mean", R::Mixing, S::Broadcast, false),
    // constants and shape arithmetic
    e("Constant", R::Mixing, S::Declared, true),
    e("ConstantOfShape", R::Mixing, S::Declared, true),
    e("Size", R::Mixing, S::Declared, true),
    e("Range", R::Mixing, S::Declared, true),
];

/// True for the default ONNX domain ("" or "ai.onnx"): the only domain
/// whose ops align interprets.
pub fn standard(p: &NodeProto) -> bool {
    p.domain().is_empty() || p.domain() == "ai.onnx"
}

/// The entry of a standard-domain op, if align knows it.
pub fn entry(p: &NodeProto) -> Option<&'static OpEntry> {
    if !standard(p) {
        return None;
    }
    lookup(p.op_type())
}

/// The entry of an op type of the default domain.
pub fn lookup(op: &str) -> Option<&'static OpEntry> {
    TABLE.iter().find(|e| e.op == op)
}

/// True when `p` is a standard op of type `op`.
pub fn is(p: &NodeProto, op: &str) -> bool {
    standard(p) && p.op_type() == op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_one_entry() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(TABLE[i + 1..].iter().all(|b| b.op != a.op), "{} listed twice", a.op);
        }
    }

    #[test]
    fn both_spellings_of_the_default_domain_are_standard() {
        let mut p = NodeProto { op_type: Some("Relu".into()), ..Default::default() };
        assert!(entry(&p).is_some());
        p.domain = Some("ai.onnx".into());
        assert!(entry(&p).is_some());
        p.domain = Some("com.example".into());
        assert!(entry(&p).is_none());
    }
}
