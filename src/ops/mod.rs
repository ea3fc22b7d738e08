//! One entry per ONNX operator, and one file per op family holding what
//! align knows about it.
//!
//! An entry of [`TABLE`] gives the op's **channel role** (how the channel
//! analysis treats it and, following from that, how `pad` rewrites it; what
//! happens when the role's conditions do not hold: the op *pins* the
//! channels it touches for a genuine reason, or the analysis has a *gap*),
//! the [`Rules`] of its **family** and whether it is **pure** (removed by
//! cleanup once nothing reads it).
//!
//! A family is a file of this folder (`conv.rs`, `concat.rs`, `slice.rs`…)
//! with a type implementing [`Rules`]: the op's output shapes, constant
//! value and cost as a layer, written once, with the family's unit tests
//! beside them. Every rule refuses by default, so an op whose family gives
//! no rule stays unknown. `ir::infer` walks the graph and asks each op's
//! shapes and value; `report` asks each op's cost. Adding an op that
//! behaves like one already known is one line in [`TABLE`]; a new kind of
//! op is its family file plus that line. An op not in the table is never
//! guessed: the analysis reports every channel dim it touches as unanalysed.
//!
//! The idea follows tract's `TypedOp` (one impl per op with its shape rule,
//! axes mapping, `change_axes` answer and cost, defaults refusing). Roles are
//! still an enum the analysis and the pad pass match on; moving them into the
//! families is the next step of issue 17.

pub mod batch_norm;
pub mod concat;
pub mod constant;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod expand;
pub mod mixing;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod reshape;
pub mod resize;
pub mod shape_arith;
pub mod shape_of;
pub mod slice;
pub mod split;

use crate::analysis::ChannelCx;
use crate::ir::shapes::Shape;
use crate::ir::values::Value;
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::{attr_ints, NodeProto, TensorProto};
use crate::passes::pad::PadCx;
use crate::tensor;
use std::borrow::Cow;
use std::collections::HashMap;

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
    /// Gather: on another axis than the layout's (a class token) it
    /// passes; on the layout's axis it pins.
    Select,
    /// Transpose, Squeeze, Unsqueeze: move a layout to the axis they put it
    /// on (NCHW ↔ NHWC around a channels-last MLP, attention's q, k, v);
    /// otherwise pin.
    Permute,
    /// Needs the exact channels of everything it reads and writes
    /// (Softmax, GroupNormalization…): pins.
    Mixing,
}

impl Role {
    /// The value padded channels of a per-channel constant in `slot` get:
    /// for element-wise ops (None: an activation there pins), the constants
    /// of a Concat and a dense layer's bias (0).
    pub fn neutral(self, slot: usize) -> Option<f64> {
        match self {
            Role::Elementwise { neutral, .. } => neutral[slot.min(1)],
            // a constant concatenated with features along another axis, a
            // dense layer's bias
            Role::Concat | Role::Dense => Some(0.0),
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
                | Role::Permute
                | Role::Select
                | Role::Mixing
        )
    }
}

/// Everything align knows about one op.
#[derive(Debug, Clone, Copy)]
pub struct OpEntry {
    /// ONNX op type.
    pub op: &'static str,
    /// Channel role.
    pub role: Role,
    /// The rules of its family: output shapes, value, constant fold, cost.
    pub rules: &'static dyn Rules,
    /// Side-effect free shape arithmetic or constant carrier: removed once
    /// nothing reads it.
    pub pure: bool,
}

const fn e(op: &'static str, role: Role, rules: &'static dyn Rules, pure: bool) -> OpEntry {
    OpEntry { op, role, rules, pure }
}

/// What align knows about an op family, rule by rule. Every method refuses
/// by default, so an op whose family does not give a rule stays unknown
/// (unanalysed), never guessed. The engines know no op: they walk the graph
/// and ask each op's rules (`ir::infer` its shapes and value,
/// [`Model::const_value`] its fold, `report` its cost).
pub trait Rules: std::fmt::Debug {
    /// The shape of each output slot (`None` in a slot: unknown), or `None`
    /// when no shape follows from what is known; the model's value_info may
    /// still record what a rule cannot give.
    fn shapes(&self, _cx: &Cx) -> Option<Vec<Option<Shape>>> {
        None
    }

    /// The value of output 0 (shape arithmetic: small tensors computed from
    /// shapes and constants), when every element it needs is known.
    fn value(&self, _cx: &Cx) -> Option<Value> {
        None
    }

    /// Output 0 as a constant tensor, when the op only carries or regroups
    /// constants ([`Model::const_value`] follows chains of these). A second
    /// folder beside [`Rules::value`], with its own limits (see
    /// `docs/architecture.md`, "Op families").
    fn fold<'a>(&self, _cx: &FoldCx<'a>) -> Option<Cow<'a, TensorProto>> {
        None
    }

    /// The dims of [`Rules::fold`]'s tensor, computed without materialising
    /// it where the family can ([`Model::const_dims`]).
    fn fold_dims(&self, cx: &FoldCx) -> Option<Vec<i64>> {
        self.fold(cx).map(|t| t.dims.clone())
    }

    /// What the op costs as a layer of the report (params and MACs, before
    /// and after alignment); `None`: not a layer (or its weights are not
    /// constant), left out of the report.
    fn cost(&self, _cx: &CostCx) -> Option<Cost> {
        None
    }

    /// The op's channel-space rule, for ops whose role is not
    /// [`Role::Mixing`]: how the channel layouts of its outputs follow from
    /// its inputs' (passes, joins, cuts, new spaces), through the
    /// analysis's [`ChannelCx`]. `Ok(false)`: the rule does not hold here,
    /// and the op stops the analysis (a pin when its role says so, a gap
    /// otherwise); `Err`: the model is malformed.
    fn channels(&self, _cx: &mut ChannelCx) -> crate::error::Result<bool> {
        Ok(false)
    }

    /// Whether [`Rules::channels`] reads the axis of every layout it meets
    /// ([`ChannelCx::placed`]): only such a rule sees an input laid out on
    /// another axis than 1 (the features of dense layers); for any other op
    /// that input stops the analysis.
    fn any_axis(&self) -> bool {
        false
    }

    /// Why the op needs its exact channels, said in the reason of the pin
    /// it makes (`None`: its name says enough).
    fn pin_note(&self, _p: &NodeProto) -> Option<&'static str> {
        None
    }

    /// The op's padding rewrite, for ops whose role is not
    /// [`Role::Mixing`]: its constants (weights, per-channel constants,
    /// sizes, bounds, targets) rewritten for the padded layouts the analysis
    /// gives, through [`PadCx`]. The default rewrites nothing.
    fn pad(&self, _cx: &mut PadCx) -> crate::error::Result<()> {
        Ok(())
    }

    /// What the op writes into the padded channels of its output, given
    /// what its inputs hold there ([`FillCx`]); `None`: nothing is
    /// promised beyond finite values. The layout a verification compares
    /// by is built from it (`layout::Layout::of`).
    fn fill(&self, _cx: &FillCx) -> Option<Fill> {
        None
    }
}

/// What an op writes into the padded channels of its output ([`Rules::fill`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Exactly 0 whatever its inputs hold there (a conv's zero filters): so
    /// are the padded channels of every output it has.
    Zeros,
    /// Exactly 0, because of what its inputs hold there.
    Zero,
    /// Exactly f(0) ≠ 0 of the op, made from exact zeros (a Sigmoid's 0.5).
    Value(f64),
}

/// What a fill rule sees: the op, and which of its inputs are padded and
/// hold exact zeros in their padded channels (the layout walk so far).
pub struct FillCx<'a> {
    /// The model.
    pub m: &'a Model,
    /// The op's node.
    pub n: NodeId,
    /// The op.
    pub p: &'a NodeProto,
    /// Whether a tensor is padded and its padded channels hold exact zeros.
    pub zero: &'a dyn Fn(Outlet) -> bool,
    /// Whether a tensor is padded.
    pub padded: &'a dyn Fn(Outlet) -> bool,
    /// Whether a constant operand of this op puts 0 in the padded channels
    /// (all zeros, or per channel and padded with 0).
    pub zero_const: &'a dyn Fn(Outlet) -> bool,
}

impl FillCx<'_> {
    fn inputs(&self) -> impl Iterator<Item = Outlet> + '_ {
        (0..self.m.n_inputs(self.n)).filter_map(|s| self.m.input(self.n, s))
    }

    /// Whether input `slot` holds exact zeros in its padded channels.
    pub fn zero_at(&self, slot: usize) -> bool {
        self.m.input(self.n, slot).is_some_and(|o| (self.zero)(o))
    }

    /// Whether the op reads a padded tensor and every one it reads holds
    /// exact zeros there: f(0) = 0 maps then keep them.
    pub fn padded_all_zero(&self) -> bool {
        let mut acts = self.inputs().filter(|&o| (self.padded)(o)).peekable();
        acts.peek().is_some() && acts.all(|o| (self.zero)(o))
    }

    /// Whether some padded input holds exact zeros there (0 · x = 0).
    pub fn some_padded_zero(&self) -> bool {
        self.inputs().any(|o| (self.padded)(o) && (self.zero)(o))
    }

    /// Whether every operand puts 0 in the padded channels: padded zeros,
    /// or constants that do ([`FillCx::zero_const`]), at least one padded.
    pub fn every_operand_zero(&self) -> bool {
        self.inputs().any(|o| (self.padded)(o))
            && self.inputs().all(|o| (self.zero)(o) || (!(self.padded)(o) && (self.zero_const)(o)))
    }

    /// The first element of the constant at input `slot`.
    pub fn scalar(&self, slot: usize) -> Option<f64> {
        let t = self.m.input_const(self.n, slot)?;
        tensor::to_f64(&t).ok()?.first().copied()
    }
}

/// [`Fill::Zero`] when `keeps` holds.
pub fn zero_if(keeps: bool) -> Option<Fill> {
    keeps.then_some(Fill::Zero)
}

/// An op with no rule of its own (data-dependent or layout-changing ops):
/// its shapes come from value_info or nowhere, its value is unknown.
#[derive(Debug)]
pub struct Opaque;

impl Rules for Opaque {}

/// What a rule sees of one op: the model, the op, and the shapes and values
/// the walk has found so far (every input's, the op's own shapes once they
/// are known).
pub struct Cx<'a> {
    /// The model.
    pub m: &'a Model,
    /// The op's node.
    pub n: NodeId,
    /// The op.
    pub p: &'a NodeProto,
    /// Shapes found so far.
    pub shapes: &'a HashMap<Outlet, Shape>,
    /// Values found so far.
    pub values: &'a HashMap<Outlet, Value>,
}

impl<'a> Cx<'a> {
    /// The shape of input `slot`, if known.
    pub fn shape(&self, slot: usize) -> Option<&'a Shape> {
        self.m.input(self.n, slot).and_then(|o| self.shapes.get(&o))
    }

    /// The shapes of all inputs, if all are known.
    pub fn input_shapes(&self) -> Option<Vec<&'a Shape>> {
        (0..self.m.n_inputs(self.n)).map(|i| self.shape(i)).collect()
    }

    /// The value of input `slot`, if known.
    pub fn value(&self, slot: usize) -> Option<&'a Value> {
        self.m.input(self.n, slot).and_then(|o| self.values.get(&o))
    }

    /// The values of all inputs, if all are known.
    pub fn input_values(&self) -> Option<Vec<&'a Value>> {
        (0..self.m.n_inputs(self.n)).map(|i| self.value(i)).collect()
    }

    /// Output 0 has shape `s`, any other output is unknown.
    pub fn one(&self, s: Shape) -> Vec<Option<Shape>> {
        let mut v = vec![None; self.p.output.len()];
        if let Some(first) = v.first_mut() {
            *first = Some(s);
        }
        v
    }

    /// Output 0 has input 0's shape.
    pub fn same(&self) -> Option<Vec<Option<Shape>>> {
        Some(self.one(self.shape(0)?.clone()))
    }

    /// The constant at input `slot` as integers.
    pub fn ints(&self, slot: usize) -> Option<Vec<i64>> {
        const_ints(self.m, self.n, slot)
    }

    /// The model's default-domain opset.
    pub fn opset(&self) -> i64 {
        self.m.opset()
    }
}

/// Largest operand the derived folds (Unsqueeze, Squeeze, Cast, Reshape,
/// Concat) materialise: they exist for shape vectors.
const MAX_DERIVED_CONST: i64 = 1 << 16;

/// What a fold rule sees: the model, the op, and how deep in a chain of
/// folds it is (the IR stops following a chain at a fixed depth).
pub struct FoldCx<'a> {
    /// The model.
    pub m: &'a Model,
    /// The op's node.
    pub n: NodeId,
    /// The op.
    pub p: &'a NodeProto,
    /// Folds above this one in the chain.
    pub depth: usize,
}

impl<'a> FoldCx<'a> {
    /// The constant at input `slot`, one fold deeper.
    pub fn input(&self, slot: usize) -> Option<Cow<'a, TensorProto>> {
        self.m.const_at(self.m.input(self.n, slot)?, self.depth + 1)
    }

    /// The dims of the constant at input `slot`, one fold deeper.
    pub fn input_dims(&self, slot: usize) -> Option<Vec<i64>> {
        self.m.const_dims_at(self.m.input(self.n, slot)?, self.depth + 1)
    }

    /// The constant at input `slot` if it is small enough for a derived
    /// fold (a large operand is not worth materialising here).
    pub fn small(&self, slot: usize) -> Option<Cow<'a, TensorProto>> {
        let n = self.input_dims(slot)?.iter().try_fold(1i64, |a, &d| a.checked_mul(d))?;
        if n > MAX_DERIVED_CONST {
            return None;
        }
        self.input(slot)
    }

    /// The name of output 0 (a folded tensor's name).
    pub fn name(&self) -> &'a str {
        self.p.output.first().map(|s| s.as_str()).unwrap_or("")
    }

    /// Input 0's elements (small) under dims `f` makes of its dims and
    /// element count, as element type `to` (default: input 0's).
    pub fn regroup(
        &self,
        to: Option<i32>,
        f: impl FnOnce(Vec<usize>, usize) -> Option<Vec<usize>>,
    ) -> Option<Cow<'a, TensorProto>> {
        let t = self.small(0)?;
        let v = tensor::to_f64(&t).ok()?;
        let dt = to.unwrap_or(t.data_type());
        let dims = f(tensor::dims(&t), v.len())?;
        tensor::from_f64(self.name(), dt, &dims, &v).ok().map(Cow::Owned)
    }
}

/// A channel dim's width in the model and after alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Width {
    /// Channels the model has.
    pub logical: usize,
    /// Channels after padding.
    pub physical: usize,
}

/// What a cost rule sees: the op, the shapes the analysis inferred and the
/// widths the analysis gives its channel dims.
pub struct CostCx<'a> {
    /// The model.
    pub m: &'a Model,
    /// The op's node.
    pub n: NodeId,
    /// The op.
    pub p: &'a NodeProto,
    /// Inferred shapes.
    pub shapes: &'a HashMap<Outlet, Shape>,
    /// The channel dim of input 0, if the analysis followed it.
    pub input: Option<Width>,
    /// The channel dim of output 0, if the analysis followed it.
    pub output: Option<Width>,
    /// The physical length of input 0's flattened features (a Flatten, or a
    /// Reshape to `[N, C·H·W]`, before a dense layer), computed on demand.
    pub flat: &'a dyn Fn() -> Option<usize>,
}

impl CostCx<'_> {
    /// The product of the spatial dims (axes 2…) of `o`, if all are known.
    pub fn spatial(&self, o: Option<Outlet>) -> Option<u64> {
        let s = self.shapes.get(&o?)?;
        s.get(2..)?.iter().try_fold(1u64, |acc, d| d.and_then(|d| acc.checked_mul(u64::try_from(d).ok()?)))
    }

    /// The dims of the constant weight (input 1), negative dims read as 0.
    pub fn weight_dims(&self) -> Option<Vec<usize>> {
        let wd = self.m.input(self.n, 1).and_then(|o| self.m.const_dims(o))?;
        Some(wd.iter().map(|&d| d.max(0) as usize).collect())
    }
}

/// What kind of layer an op is, which says how the report treats its
/// channel dims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A conv: both dims are its own, one the analysis could not follow is
    /// reported as unanalysed.
    Conv,
    /// A dense layer: its input features (flattened channels, or its
    /// input's last axis) and its output features, reported as a conv's.
    Dense,
    /// A normalisation: its dims as the analysis gives them.
    Norm,
}

/// One layer of the report: what it is and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Kernel size.
    pub kernel: Vec<i64>,
    /// Strides.
    pub stride: Vec<i64>,
    /// Groups.
    pub groups: i64,
    /// Input channels (features for dense layers).
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Weight and bias elements.
    pub params: u64,
    /// Multiply-accumulates at the inferred shapes (None if unknown).
    pub macs: Option<u64>,
    /// Params after alignment.
    pub params_aligned: u64,
    /// MACs after alignment.
    pub macs_aligned: Option<u64>,
    /// What kind of layer it is.
    pub kind: LayerKind,
}

/// `a · b`, if `a` is known and it does not overflow.
pub fn mul(a: Option<u64>, b: u64) -> Option<u64> {
    a.and_then(|a| a.checked_mul(b))
}

/// The constant at input `slot` of `n` as integers.
pub fn const_ints(m: &Model, n: NodeId, slot: usize) -> Option<Vec<i64>> {
    tensor::to_i64(&*m.input_const(n, slot)?).ok()
}

/// The constant at input `slot` of `n` as floats.
pub fn const_floats(m: &Model, n: NodeId, slot: usize) -> Option<Vec<f64>> {
    tensor::to_f64(&*m.input_const(n, slot)?).ok()
}

/// Axes of Squeeze / Unsqueeze / a reduction: an attribute up to opset
/// `input_from - 1`, a constant input 1 from opset `input_from` on (none:
/// empty).
pub fn const_axes(m: &Model, n: NodeId, input_from: i64) -> Option<Vec<i64>> {
    if m.opset() >= input_from {
        match m.input(n, 1) {
            Some(_) => const_ints(m, n, 1),
            None => Some(vec![]),
        }
    } else {
        Some(attr_ints(m.op(n)?, "axes"))
    }
}

use Role as R;

const ZERO: Role = R::Elementwise { neutral: [Some(0.0), Some(0.0)], activation: [true, true] };

/// The ops align knows.
pub const TABLE: &[OpEntry] = &[
    // activations and other channel-wise maps
    e("Relu", R::ChannelWise, &elementwise::Map, false),
    e("LeakyRelu", R::ChannelWise, &elementwise::Map, false),
    e("Sigmoid", R::ChannelWise, &elementwise::Map, false),
    e("Tanh", R::ChannelWise, &elementwise::Map, false),
    e("HardSigmoid", R::ChannelWise, &elementwise::Map, false),
    e("HardSwish", R::ChannelWise, &elementwise::Map, false),
    e("Clip", R::ChannelWise, &elementwise::Map, false),
    e("Elu", R::ChannelWise, &elementwise::Map, false),
    e("Selu", R::ChannelWise, &elementwise::Map, false),
    e("Celu", R::ChannelWise, &elementwise::Map, false),
    e("Softsign", R::ChannelWise, &elementwise::Map, false),
    e("Softplus", R::ChannelWise, &elementwise::Map, false),
    e("Mish", R::ChannelWise, &elementwise::Map, false),
    e("Gelu", R::ChannelWise, &elementwise::Map, false),
    e("Erf", R::ChannelWise, &elementwise::Map, false),
    e("Sin", R::ChannelWise, &elementwise::Map, false),
    e("Cos", R::ChannelWise, &elementwise::Map, false),
    e("ThresholdedRelu", R::ChannelWise, &elementwise::Map, false),
    e("Identity", R::ChannelWise, &elementwise::Map, true),
    e("Dropout", R::ChannelWise, &elementwise::Map, false),
    e("Neg", R::ChannelWise, &elementwise::Map, true),
    e("Abs", R::ChannelWise, &elementwise::Map, true),
    e("Exp", R::ChannelWise, &elementwise::Map, false),
    e("Floor", R::ChannelWise, &elementwise::Map, true),
    e("Ceil", R::ChannelWise, &elementwise::Map, true),
    e("Round", R::ChannelWise, &elementwise::Map, true),
    e("Sign", R::ChannelWise, &elementwise::Map, false),
    e("Cast", R::ChannelWise, &elementwise::Map, true),
    e("MaxPool", R::ChannelWise, &pool::Pool, false),
    e("AveragePool", R::ChannelWise, &pool::Pool, false),
    e("LpPool", R::ChannelWise, &pool::Pool, false),
    e("GlobalAveragePool", R::ChannelWise, &pool::GlobalPool, false),
    e("GlobalMaxPool", R::ChannelWise, &pool::GlobalPool, false),
    e("GlobalLpPool", R::ChannelWise, &pool::GlobalPool, false),
    // element-wise with broadcasting
    e("Add", ZERO, &elementwise::Broadcast, true),
    e("Sub", ZERO, &elementwise::Broadcast, true),
    e("Mul", ZERO, &elementwise::Broadcast, true),
    e("Max", ZERO, &elementwise::Broadcast, true),
    e("Min", ZERO, &elementwise::Broadcast, true),
    e("Sum", ZERO, &elementwise::Broadcast, false),
    e("Div", R::Elementwise { neutral: [None, Some(1.0)], activation: [true, false] }, &elementwise::Broadcast, true),
    e("Pow", R::Elementwise { neutral: [None, Some(1.0)], activation: [false, false] }, &elementwise::Broadcast, true),
    e(
        "PRelu",
        R::Elementwise { neutral: [None, Some(0.0)], activation: [true, false] },
        &elementwise::Broadcast,
        false,
    ),
    // layers
    e("Conv", R::Conv, &conv::Conv, false),
    e("ConvTranspose", R::ConvTranspose, &conv::ConvTranspose, false),
    e("BatchNormalization", R::BatchNorm, &batch_norm::BatchNorm, false),
    e("Gemm", R::Dense, &dense::Dense, false),
    e("MatMul", R::Dense, &dense::Dense, false),
    // layout plumbing
    e("Concat", R::Concat, &concat::Concat, true),
    e("Split", R::Split, &split::Split, false),
    e("Slice", R::Slice, &slice::Slice, true),
    e("Resize", R::Resize, &resize::Resize, false),
    e("Upsample", R::Resize, &resize::Resize, false),
    e("Pad", R::Pad, &pad::Pad, false),
    e("Flatten", R::Flatten, &reshape::Flatten, true),
    e("Reshape", R::Flatten, &reshape::Reshape, true),
    // reductions
    e("ReduceMean", R::Reduce, &reduce::Reduce, true),
    e("ReduceSum", R::Reduce, &reduce::Reduce, true),
    e("ReduceMax", R::Reduce, &reduce::Reduce, true),
    e("ReduceMin", R::Reduce, &reduce::Reduce, true),
    e("ReduceProd", R::Reduce, &reduce::Reduce, true),
    e("ReduceL1", R::Reduce, &reduce::Reduce, false),
    e("ReduceL2", R::Reduce, &reduce::Reduce, false),
    e("ReduceLogSumExp", R::Reduce, &reduce::Reduce, false),
    e("ReduceSumSquare", R::Reduce, &reduce::Reduce, false),
    e("Shape", R::ShapeOf, &shape_of::ShapeOf, true),
    // ops that need exact channels
    e("Transpose", R::Permute, &mixing::Transpose, false),
    e("Softmax", R::Mixing, &mixing::Normalize, false),
    e("LogSoftmax", R::Mixing, &mixing::Normalize, false),
    e("Hardmax", R::Mixing, &mixing::Normalize, false),
    e("GroupNormalization", R::Mixing, &mixing::Normalize, false),
    e("LayerNormalization", R::Mixing, &mixing::Normalize, false),
    e("InstanceNormalization", R::Mixing, &mixing::Normalize, false),
    e("LRN", R::Mixing, &mixing::Normalize, false),
    e("DepthToSpace", R::Mixing, &Opaque, false),
    e("SpaceToDepth", R::Mixing, &Opaque, false),
    e("Squeeze", R::Permute, &reshape::Squeeze, true),
    e("Unsqueeze", R::Permute, &reshape::Squeeze, true),
    e("Einsum", R::Mixing, &mixing::Einsum, false),
    e("ScatterND", R::Mixing, &mixing::ScatterNd, false),
    e("ArgMax", R::Mixing, &Opaque, false),
    e("ArgMin", R::Mixing, &Opaque, false),
    e("TopK", R::Mixing, &mixing::TopK, false),
    e("Gather", R::Select, &shape_arith::Gather, true),
    e("GatherElements", R::Mixing, &mixing::GatherElements, false),
    e("GridSample", R::Mixing, &mixing::GridSample, false),
    e("Tile", R::Mixing, &mixing::Tile, false),
    e("Expand", R::Broadcast, &expand::Expand, true),
    e("CumSum", R::Mixing, &mixing::CumSum, false),
    e("NonMaxSuppression", R::Mixing, &Opaque, false),
    // element-wise maths a padded channel could turn into Inf or NaN, and booleans: pin
    e("Log", R::Mixing, &elementwise::Map, false),
    e("Sqrt", R::Mixing, &elementwise::Map, true),
    e("Reciprocal", R::Mixing, &elementwise::Map, false),
    e("Not", R::Mixing, &elementwise::Map, true),
    e("Equal", R::Mixing, &elementwise::Broadcast, true),
    e("Less", R::Mixing, &elementwise::Broadcast, true),
    e("Greater", R::Mixing, &elementwise::Broadcast, true),
    e("LessOrEqual", R::Mixing, &elementwise::Broadcast, true),
    e("GreaterOrEqual", R::Mixing, &elementwise::Broadcast, true),
    e("And", R::Mixing, &elementwise::Broadcast, true),
    e("Or", R::Mixing, &elementwise::Broadcast, true),
    e("Xor", R::Mixing, &elementwise::Broadcast, true),
    e("Where", R::Mixing, &elementwise::Broadcast, true),
    e("Mod", R::Mixing, &elementwise::Broadcast, true),
    e("Mean", R::Mixing, &elementwise::Broadcast, false),
    // constants and shape arithmetic
    e("Constant", R::Mixing, &constant::Constant, true),
    e("ConstantOfShape", R::Mixing, &constant::ConstantOfShape, true),
    e("Size", R::Mixing, &shape_of::Size, true),
    e("Range", R::Mixing, &shape_arith::Range, true),
];

/// True for the default ONNX domain ("" or "ai.onnx"): the only domain
/// whose ops align interprets.
pub fn standard(p: &NodeProto) -> bool {
    p.domain().is_empty() || p.domain() == "ai.onnx"
}

/// The channel role of a standard-domain op align knows.
pub fn role(p: &NodeProto) -> Option<Role> {
    entry(p).map(|e| e.role)
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
    use crate::testutil::{known, vi, Builder, Inferred};

    #[test]
    fn an_op_without_a_rule_is_unknown_unless_the_model_records_it() {
        let mut b = Builder::new(&[1, 4, 6, 6]);
        let d = b.unary("DepthToSpace", "x");
        let told = b.unary("SpaceToDepth", "x");
        let custom = b.unary("MyOp", "x");
        b.g.value_info.push(vi(&told, &[1, 16, 3, 3]));
        let inf = Inferred::of(&b);
        assert_eq!(inf.shape(&d), None);
        assert_eq!(inf.shape(&told), Some(known(&[1, 16, 3, 3])));
        assert_eq!(inf.shape(&custom), None);
        assert!(lookup("MyOp").is_none());
    }

    #[test]
    fn ops_of_another_domain_are_not_interpreted() {
        let mut b = Builder::new(&[1, 4, 6, 6]);
        let y = b.unary("Relu", "x");
        b.g.node[0].domain = Some("com.example".into());
        assert_eq!(Inferred::of(&b).shape(&y), None);
    }

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
