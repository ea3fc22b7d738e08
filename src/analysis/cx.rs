//! What an op family's channel rule ([`crate::ops::Rules::channels`]) sees
//! of the analysis: the op, the shapes, the layouts found so far, and the
//! union-find of atoms it joins, cuts and pins. The walk
//! ([`super::Analysis::run`]) builds one per op; the rules live in the
//! family files of `src/ops/`.

use super::atoms::Atoms;
use super::{float_weight, Analysis, AtomId, Flat};
use crate::error::Result;
use crate::ir::shapes::Shape;
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::{NodeProto, TensorProto};
use crate::ops::Role;

/// One op, seen by its family's channel rule.
pub struct ChannelCx<'a> {
    /// The model.
    pub m: &'a Model,
    /// The op's node.
    pub n: NodeId,
    /// The op.
    pub p: &'a NodeProto,
    /// The op's name, for errors and reasons.
    pub name: &'a str,
    /// The op's channel role.
    pub role: Role,
    pub(super) a: &'a mut Analysis,
}

impl ChannelCx<'_> {
    /// Input `slot` of the op.
    pub fn input(&self, slot: usize) -> Option<Outlet> {
        self.m.input(self.n, slot)
    }

    /// Output `slot` of the op.
    pub fn out(&self, slot: usize) -> Outlet {
        Outlet { node: self.n, slot }
    }

    /// The inferred shape of `o`.
    pub fn shape(&self, o: Outlet) -> Option<&Shape> {
        self.a.shapes.get(&o)
    }

    /// The rank of `o`, when its shape is inferred.
    pub fn rank(&self, o: Outlet) -> Option<usize> {
        self.shape(o).map(|s| s.len())
    }

    /// Channel count of an activation tensor (rank ≥ 3, known axis 1).
    pub fn channels(&self, o: Outlet) -> Option<usize> {
        self.a.channels(o)
    }

    /// The channel layout of activation `o` (channels on axis 1), if it has
    /// one. A layout on another axis is only seen through
    /// [`ChannelCx::placed`].
    pub fn layout(&self, o: Outlet) -> Option<Vec<AtomId>> {
        if self.a.axes.contains_key(&o) {
            return None;
        }
        self.a.layouts.get(&o).cloned()
    }

    /// The layout of `o` and the axis it is on, whichever axis that is (the
    /// rules that read it say so: [`crate::ops::Rules::any_axis`]).
    pub fn placed(&self, o: Outlet) -> Option<(Vec<AtomId>, usize)> {
        Some((self.a.layouts.get(&o)?.clone(), self.a.axis(o)?))
    }

    /// Whether `o`'s layout is on another axis than an activation's channels.
    pub fn is_feature(&self, o: Outlet) -> bool {
        self.a.is_feature(o)
    }

    /// The width of axis `axis` of `o` (rank ≥ 2), as a channel count.
    pub fn channels_on(&self, o: Outlet, axis: usize) -> Option<usize> {
        self.a.channels_on(o, axis)
    }

    /// Gives `o` the layout `l` on `axis`.
    pub fn set_on(&mut self, o: Outlet, l: Vec<AtomId>, axis: usize) {
        self.a.place(o, l, axis);
    }

    /// Gives `o` a new single-atom layout on `axis` (pinned when `why` is set).
    pub fn fresh_on(&mut self, o: Outlet, axis: usize, why: Option<String>) -> Option<Vec<AtomId>> {
        self.a.fresh_on(o, axis, why)
    }

    /// The layout of input `slot`.
    pub fn input_layout(&self, slot: usize) -> Option<Vec<AtomId>> {
        self.input(slot).and_then(|o| self.layout(o))
    }

    /// Gives output `o` the layout `l`.
    pub fn set(&mut self, o: Outlet, l: Vec<AtomId>) {
        self.a.axes.remove(&o);
        self.a.layouts.insert(o, l);
    }

    /// Gives output `o` a new single-atom layout (pinned when `why` is set).
    pub fn fresh(&mut self, o: Outlet, why: Option<String>) -> Option<Vec<AtomId>> {
        self.a.fresh(o, why)
    }

    /// The atoms: sizes, joins, cuts, pins.
    pub fn atoms(&mut self) -> &mut Atoms {
        &mut self.a.atoms
    }

    /// Whether every atom of layout `l` is pinned: a width it keeps, or a
    /// refused op's stand-in layout.
    pub fn all_pinned(&mut self, l: &[AtomId]) -> bool {
        let atoms = self.atoms();
        atoms.leaves(l).iter().all(|&leaf| atoms.fixed(leaf))
    }

    /// The logical width of layout `l`.
    pub fn width(&self, l: &[AtomId]) -> usize {
        self.a.atoms.size(l)
    }

    /// Records that `o` is a flattened activation whose features are `f`.
    pub fn set_flat(&mut self, o: Outlet, f: Flat) {
        self.a.flats.insert(o, f);
    }

    /// Whether `o` is a flattened activation.
    pub fn is_flat(&self, o: Outlet) -> bool {
        self.a.flats.contains_key(&o)
    }

    /// Records that this op contracts the padded features of `a` and `b`
    /// (q·kᵀ): exact only when one of them holds zeros there, which the
    /// analysis checks once the whole walk is known ([`super::Analysis::run`]).
    pub fn contract(&mut self, a: Outlet, b: Outlet) {
        self.a.contractions.push((self.n, a, b));
    }

    /// Whether ConvTranspose dims may be padded.
    pub fn deconv(&self) -> bool {
        self.a.deconv
    }

    /// Gives output 0 the layout of input 0 (a channel-wise op), when the
    /// output has as many channels (a layout on another axis than 1: as
    /// many on that axis, at the same rank).
    pub fn pass(&mut self) -> bool {
        let out = self.out(0);
        let Some(x) = self.input(0) else { return false };
        let Some((l, axis)) = self.placed(x) else {
            return false;
        };
        let width = if self.is_feature(x) {
            self.channels_on(out, axis).filter(|_| self.rank(out) == self.rank(x))
        } else {
            self.channels(out)
        };
        if width != Some(self.width(&l)) {
            return false;
        }
        self.set_on(out, l, axis);
        true
    }

    /// A channel-wise op (activations, pooling…): extra inputs must be
    /// scalars (Clip bounds) and extra outputs unread (MaxPool indices,
    /// Dropout mask); output 0 gets input 0's layout.
    pub fn channelwise(&mut self) -> bool {
        let m = self.m;
        let extra_ok = (1..m.n_inputs(self.n)).all(|i| {
            self.input(i).is_none_or(|o| {
                m.const_dims(o)
                    .is_some_and(|d| d.iter().try_fold(1i64, |a, &x| a.checked_mul(x)).is_some_and(|n| n <= 1))
            })
        });
        let outputs_ok = self.p.output.iter().skip(1).all(|o| o.is_empty()) || m.consumers(self.out(1)).is_empty();
        extra_ok && outputs_ok && self.pass()
    }

    /// The input layout and constant weight of a Conv / ConvTranspose the
    /// analysis can follow (constant weight and bias, known input layout);
    /// a weight of a type align cannot do arithmetic on is an error.
    pub fn conv_parts(&self) -> Result<Option<(Vec<AtomId>, TensorProto)>> {
        let (Some(x), Some(w)) = (self.input(0), self.m.input_const_header(self.n, 1)) else {
            return Ok(None);
        };
        if self.input(2).is_some_and(|o| !self.m.is_const(o)) {
            return Ok(None);
        }
        let Some(lin) = self.layout(x) else {
            return Ok(None);
        };
        float_weight(&w, self.name)?;
        Ok(Some((lin, w)))
    }
}
