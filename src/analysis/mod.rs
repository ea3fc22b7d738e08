//! Channel spaces: which channel dims align may pad, and which are pinned.
//!
//! Every activation tensor (rank ≥ 3, channels on axis 1) gets a *layout*: a
//! list of atoms, each a run of channels that must share one physical layout
//! with every atom it is joined to. Joins come from channel-wise ops
//! (activations, BN, pooling, Resize, element-wise ops of two tensors), from
//! Concat (output = concatenation of the inputs' layouts) and from
//! Split/Slice on the channel axis (the input is cut at the split points, so
//! a conv feeding a C2f Split pads each half). The joined atoms form a
//! union-find class — a channel space. Conv / ConvTranspose outputs start new
//! spaces; their inputs absorb any layout through zero weight rows.
//!
//! A space is *pinned* (kept at its exact width) when it reaches a graph
//! input or output, an op align does not know, or an op that mixes channels
//! in a way zero padding cannot express (Reshape, Transpose, Softmax over
//! channels, grouped convs, Div by an activation…). Every pin keeps its
//! reason. Every free space is padded to the next multiple.
//!
//! The atoms and their classes are [`atoms::Atoms`]; this file is the walk
//! that joins, cuts and pins them, op by op.

use crate::error::{Error, Result};
use crate::ir::infer;
use crate::ir::shapes::Shape;
use crate::ir::{Model, NodeId, Outlet};
use crate::ops::conv::KernelFormat;
use crate::ops::{reshape, Role};
use crate::tensor;
use std::collections::{BTreeSet, HashMap};

pub mod atoms;
mod cx;
pub use atoms::AtomId;
use atoms::Atoms;
pub use cx::ChannelCx;

/// The most channels a tensor may have for the analysis to give it a
/// layout: its channel maps hold one entry per channel, and a fuzzed graph
/// declaring 754 974 726 channels took 5.9 GB and 35 s to pad. Real models
/// stay far below (tens of thousands); a tensor above is left unanalysed.
pub const MAX_CHANNELS: usize = 1 << 20;

/// Settings of the analysis (and of the passes built on it).
#[derive(Debug, Clone)]
pub struct Options {
    /// Pad channel counts to multiples of this.
    pub multiple: usize,
    /// Shapes for graph inputs with symbolic dims.
    pub input_shapes: HashMap<String, Vec<i64>>,
    /// Whether ConvTranspose dims may be padded (the deconv pass runs).
    pub deconv: bool,
    /// Pad convs pinned by a graph output or an op that needs exact
    /// channels, and insert a Slice restoring them for that reader.
    pub slice_pinned: bool,
    /// The most padding may widen a channel dim, as a factor (3 → 8 is
    /// ×2.67; every layer reading or writing the dim grows by it): a dim
    /// over it keeps its width, pinned for cost with the numbers.
    pub max_growth: f64,
}

impl Options {
    /// The largest multiple align pads to.
    pub const MAX_MULTIPLE: usize = 4096;

    /// The default [`Options::max_growth`]: a dim may at most double. Over
    /// 45 models in onnxruntime (CPU, one thread) it keeps 92 % of the
    /// padding of no limit and brings the grouped-conv models no limit made
    /// ×1.3–1.6 slower back to ×1.01–1.08 (docs/benchmarks.md, "Cost of
    /// padding").
    pub const DEFAULT_MAX_GROWTH: f64 = 2.0;

    /// Checks settings a front end was given (the CLI, the Python binding),
    /// with the message every front end shows: a multiple of 1 to
    /// [`Options::MAX_MULTIPLE`], input shapes of positive dims.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_MULTIPLE).contains(&self.multiple) {
            return Err(Error::model(format!("multiple must be 1–{}, not {}", Self::MAX_MULTIPLE, self.multiple)));
        }
        if self.max_growth.is_nan() || self.max_growth < 1.0 {
            return Err(Error::model(format!(
                "max growth must be at least 1 (a factor; inf for no limit), not {}",
                self.max_growth
            )));
        }
        let mut names: Vec<&String> = self.input_shapes.keys().collect();
        names.sort();
        for name in names {
            let dims = &self.input_shapes[name];
            if dims.is_empty() || dims.iter().any(|&d| d <= 0) {
                return Err(Error::model(format!(
                    "input shape of '{name}' is {dims:?}: dims must be positive integers like [1, 3, 640, 640]"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            multiple: 8,
            input_shapes: HashMap::new(),
            deconv: true,
            slice_pinned: false,
            max_growth: Options::DEFAULT_MAX_GROWTH,
        }
    }
}

/// How a flattened (rank-2) tensor's features map to channels.
#[derive(Debug, Clone)]
pub struct Flat {
    /// Channel layout of the tensor before Flatten.
    pub layout: Vec<AtomId>,
    /// Spatial elements per channel (H·W).
    pub spatial: usize,
}

/// Logical → physical channel positions of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMap {
    /// `map[i]` is where logical channel `i` lands.
    pub map: Vec<usize>,
    /// Physical channel count after padding.
    pub len: usize,
    /// The axis of the tensor these channels are on: 1 for activations
    /// (NCHW) and flattened features, the feature axis (the last, or where a
    /// Transpose moved it) for the outputs of dense layers.
    pub axis: usize,
}

impl ChannelMap {
    /// True when padding changes nothing.
    pub fn is_identity(&self) -> bool {
        self.len == self.map.len()
    }
    /// Expands a channel map over `spatial` elements per channel (Flatten).
    pub fn expand(&self, spatial: usize) -> ChannelMap {
        ChannelMap {
            map: self.map.iter().flat_map(|&c| (0..spatial).map(move |s| c * spatial + s)).collect(),
            len: self.len * spatial,
            axis: self.axis,
        }
    }
}

/// One channel dim of a layer, as the report and check show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dim {
    /// Channels the model has.
    pub logical: usize,
    /// Channels after padding.
    pub physical: usize,
    /// Sizes of the spaces making up this dim (more than one after Concat).
    pub parts: Vec<usize>,
    /// Some part is free and not a multiple.
    pub free_unaligned: bool,
    /// Some part is pinned (and analysed) and not a multiple.
    pub pinned_unaligned: bool,
    /// Some part could not be analysed and is not a multiple.
    pub unanalysed_unaligned: bool,
    /// Why parts of this dim are pinned.
    pub pins: BTreeSet<String>,
    /// Where the analysis stopped for parts of this dim.
    pub gaps: BTreeSet<String>,
    /// The axis of a dense layer's features, when they are not a conv's
    /// channels (axis 1) or flattened ones.
    pub axis: Option<usize>,
}

/// Who reads a tensor that needs its exact channel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Input `slot` of an op.
    Input(NodeId, usize),
    /// Graph output number `i`.
    Output(usize),
}

/// Doc string of the Slice nodes `--slice-pinned` inserts. The analysis
/// treats such a Slice as a view of its single-part input (padding sits at
/// the end of the part, so physical and logical offsets agree) instead of
/// cutting the input's space.
pub const RESTORE_SLICE_DOC: &str =
    "align: restores the exact channels of a padded tensor for a consumer that needs them";

/// The result of the channel analysis of a model.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Inferred shapes.
    pub shapes: HashMap<Outlet, Shape>,
    /// The multiple channels are padded to.
    pub multiple: usize,
    deconv: bool,
    atoms: Atoms,
    layouts: HashMap<Outlet, Vec<AtomId>>,
    /// The axis of each layout that is not on axis 1 of a tensor of rank
    /// ≥ 3 (features of dense layers: see [`ChannelCx::placed`]).
    axes: HashMap<Outlet, usize>,
    flats: HashMap<Outlet, Flat>,
    slice_pinned: bool,
    candidates: Vec<(Outlet, Reader, String)>,
    reader_list: Vec<(Outlet, Reader)>,
    /// Conv outputs padded although a reader needs their exact channels
    /// (`--slice-pinned`), with the reason; a Slice restores them.
    pub sliced: Vec<(Outlet, String)>,
    /// Every reader of a sliced tensor that needs the Slice.
    pub sliced_readers: Vec<(Outlet, Reader)>,
    /// Products of two activations contracting padded features: (op, A, B).
    contractions: Vec<(NodeId, Outlet, Outlet)>,
}

/// How an op the analysis stops at keeps the channels it touches.
enum Stop {
    /// A genuine reason: the op needs exact channels.
    Pin(String),
    /// The analysis could not follow: a gap of the tool.
    Gap(String),
}

impl Analysis {
    /// Analyses `m`, padding free spaces to `multiple`; a layer dim that
    /// padding would widen more than `max_growth` keeps its width (pinned
    /// for cost; the walk runs again with those pins until no dim is over).
    pub fn run(m: &Model, opts: &Options) -> Result<Analysis> {
        opts.validate()?;
        let mut cost: Vec<(Outlet, String)> = vec![];
        loop {
            let a = Analysis::walk(m, opts, &cost)?;
            let mut over: Vec<(Outlet, String)> = crate::report::over_budget(m, &a, opts.max_growth);
            over.extend(a.inexact_contractions(m));
            let over: Vec<(Outlet, String)> =
                over.into_iter().filter(|(o, _)| !cost.iter().any(|(c, _)| c == o)).collect();
            if over.is_empty() {
                return Ok(a);
            }
            cost.extend(over);
        }
    }

    /// The contractions of padded features (q·kᵀ) where neither side is
    /// promised exact zeros in its padding (`layout::Layout::of`'s fill
    /// rules): their space keeps its width, with the reason.
    fn inexact_contractions(&self, m: &Model) -> Vec<(Outlet, String)> {
        if self.contractions.is_empty() {
            return vec![];
        }
        let layout = crate::layout::Layout::of(m, self, &Default::default(), "");
        let mut out = vec![];
        for &(n, a, b) in &self.contractions {
            let padded = |o: Outlet| layout.maps.contains_key(m.tensor_name(o));
            let zero = |o: Outlet| layout.zero_padded.contains(m.tensor_name(o));
            if (padded(a) || padded(b)) && !zero(a) && !zero(b) {
                let why = format!(
                    "{} '{}' contracts padded features that are not exactly zero on either side",
                    m.op_type(n),
                    m.label(n)
                );
                out.extend([(a, why.clone()), (b, why)]);
            }
        }
        out
    }

    /// One walk of the analysis, with the spaces of `cost` pinned for cost.
    fn walk(m: &Model, opts: &Options, cost: &[(Outlet, String)]) -> Result<Analysis> {
        let (multiple, overrides) = (opts.multiple, &opts.input_shapes);
        let shapes = infer::infer(m, overrides);
        let mut a = Analysis {
            shapes,
            multiple,
            deconv: opts.deconv,
            atoms: Atoms::new(multiple),
            layouts: HashMap::new(),
            axes: HashMap::new(),
            flats: HashMap::new(),
            slice_pinned: opts.slice_pinned,
            candidates: vec![],
            reader_list: vec![],
            sliced: vec![],
            sliced_readers: vec![],
            contractions: vec![],
        };
        for n in m.toposort() {
            match &m.g[n].kind {
                crate::ir::NodeKind::Input(name) => {
                    let o = Outlet { node: n, slot: 0 };
                    if let Some(axis) = a.kept_axis(m, o, None) {
                        a.fresh_on(o, axis, Some(format!("graph input '{name}'")));
                    }
                }
                crate::ir::NodeKind::Const(_) => {}
                crate::ir::NodeKind::Op(_) => a.op(m, n)?,
            }
        }
        // Subgraphs (If / Loop / Scan bodies) are not analysed: what they
        // read from the main graph keeps its exact width, as a gap.
        for n in m.ops() {
            for o in m.implicit_inputs(n) {
                let why =
                    format!("read inside a subgraph of {} '{}' (subgraphs are not analysed)", m.op_type(n), m.label(n));
                a.gap_outlet(o, &why);
            }
        }
        for (i, (o, vi)) in m.outputs.iter().enumerate() {
            let why = format!("graph output '{}'", vi.name());
            a.pin_or_slice(m, *o, Reader::Output(i), &why);
        }
        for (o, why) in cost {
            a.pin_outlet(*o, why);
        }
        a.atoms.settle();
        // A candidate whose space is pinned anyway, or cut into several
        // parts, cannot be restored by one Slice: it is pinned after all.
        for (o, _, why) in std::mem::take(&mut a.candidates) {
            let l = a.layouts[&o].clone();
            let leaves = a.atoms.leaves(&l);
            if leaves.len() == 1 && !a.atoms.fixed(leaves[0]) {
                a.sliced.push((o, why));
            } else {
                a.atoms.pin(&l, &why);
            }
        }
        let sliced: Vec<Outlet> = a.sliced.iter().map(|(o, _)| *o).collect();
        a.sliced_readers = std::mem::take(&mut a.reader_list).into_iter().filter(|(o, _)| sliced.contains(o)).collect();
        a.atoms.settle();
        Ok(a)
    }

    /// Pins the space of `o` because `reader` needs its exact layout — or,
    /// with `slice_pinned`, records that a Slice may restore that layout for
    /// this reader so the conv producing `o` can still be padded.
    fn pin_or_slice(&mut self, m: &Model, o: Outlet, reader: Reader, why: &str) {
        let conv_out = o.slot == 0 && m.op(o.node).and_then(KernelFormat::of).is_some();
        if self.slice_pinned && conv_out && self.layouts.contains_key(&o) {
            self.candidates.push((o, reader, why.to_string()));
            self.reader_list.push((o, reader));
        } else {
            self.pin_outlet(o, why);
        }
    }

    /// Marks the layout (or flattened layout) of `o` as a gap.
    fn gap_outlet(&mut self, o: Outlet, why: &str) {
        if let Some(l) = self.layouts.get(&o).cloned() {
            self.atoms.gap(&l, why);
        }
        if let Some(f) = self.flats.get(&o).cloned() {
            self.atoms.gap(&f.layout, why);
        }
    }

    fn pin_outlet(&mut self, o: Outlet, why: &str) {
        if let Some(l) = self.layouts.get(&o).cloned() {
            self.atoms.pin(&l, why);
        }
        if let Some(f) = self.flats.get(&o).cloned() {
            self.atoms.pin(&f.layout, why);
        }
    }

    /// Channel count of an activation tensor (rank ≥ 3, known axis 1).
    fn channels(&self, o: Outlet) -> Option<usize> {
        let s = self.shapes.get(&o)?;
        if s.len() < 3 {
            return None;
        }
        s[1].and_then(|c| usize::try_from(c).ok()).filter(|&c| c <= MAX_CHANNELS)
    }

    /// The width of axis `axis` of `o` (rank ≥ 2, known), as a channel count.
    fn channels_on(&self, o: Outlet, axis: usize) -> Option<usize> {
        let s = self.shapes.get(&o)?;
        if s.len() < 2 {
            return None;
        }
        s.get(axis).copied().flatten().and_then(|c| usize::try_from(c).ok()).filter(|&c| c <= MAX_CHANNELS)
    }

    /// Gives `o` a new single-atom layout (pinned when `why` is set).
    fn fresh(&mut self, o: Outlet, why: Option<String>) -> Option<Vec<AtomId>> {
        self.fresh_on(o, 1, why)
    }

    /// Gives `o` a new single-atom layout on `axis` (pinned when `why` is
    /// set). Axis 1 of a tensor of rank ≥ 3 is an activation's channels;
    /// any other axis (and a rank-2 tensor's) is recorded in `axes`.
    fn fresh_on(&mut self, o: Outlet, axis: usize, why: Option<String>) -> Option<Vec<AtomId>> {
        let c = if axis == 1 { self.channels(o) } else { None }.or_else(|| self.features_at(o, axis))?;
        let l = vec![self.atoms.new_atom(c)];
        if let Some(w) = why {
            self.atoms.pin(&l, &w);
        }
        self.place(o, l.clone(), axis);
        Some(l)
    }

    /// The width of a feature axis: a layout other than an activation's
    /// channels (axis 1 of rank ≥ 3) is only given where features are,
    /// i.e. where dense layers put them.
    fn features_at(&self, o: Outlet, axis: usize) -> Option<usize> {
        let rank = self.shapes.get(&o)?.len();
        (axis != 1 || rank == 2).then(|| self.channels_on(o, axis)).flatten()
    }

    /// Records layout `l` of `o` on `axis`.
    fn place(&mut self, o: Outlet, l: Vec<AtomId>, axis: usize) {
        let activation = axis == 1 && self.shapes.get(&o).is_some_and(|s| s.len() >= 3);
        if activation {
            self.axes.remove(&o);
        } else {
            self.axes.insert(o, axis);
        }
        self.layouts.insert(o, l);
    }

    /// The axis the (fixed) layout of a refused op's output `o` goes on: the
    /// axis of a feature layout it read (`placed_in`: axis, rank) when `o`
    /// has that rank; its last axis when dense layers read it (their input
    /// features: a graph input, a LayerNormalization, a Reshape merging
    /// heads, RT-DETR's gathered queries); else 1 (channels) for a tensor of
    /// rank ≥ 3 and none for one of lower rank.
    fn kept_axis(&self, m: &Model, o: Outlet, placed_in: Option<(usize, usize)>) -> Option<usize> {
        let rank = self.shapes.get(&o).map_or(0, |s| s.len());
        match placed_in {
            Some((axis, r)) if r == rank => Some(axis),
            _ if rank >= 2 && crate::ops::dense::dense_reads(m, o) => Some(rank - 1),
            _ => (rank >= 3).then_some(1),
        }
    }

    // ---- ops ---------------------------------------------------------------

    fn op(&mut self, m: &Model, n: NodeId) -> Result<()> {
        let p = m.op(n).unwrap();
        let name = crate::ir::op_name(p);
        let op = p.op_type();
        let out0 = Outlet { node: n, slot: 0 };
        if m.is_const(out0) {
            return Ok(()); // a constant operand, not an activation
        }
        let ins: Vec<Option<Outlet>> = (0..m.n_inputs(n)).map(|i| m.input(n, i)).collect();
        let entry = crate::ops::entry(p);
        // A layout on another axis than 1 (the features of dense layers)
        // reaches only the rules that know axes; any other op stops there.
        let placed_in = ins.iter().flatten().find_map(|o| {
            let axis = *self.axes.get(o)?;
            Some((axis, self.shapes.get(o)?.len()))
        });
        let handled = match entry {
            Some(e) if e.role != Role::Mixing && (placed_in.is_none() || e.rules.any_axis()) => {
                let mut cx = ChannelCx { m, n, p, name: &name, role: e.role, a: self };
                e.rules.channels(&mut cx)?
            }
            _ => false,
        };
        if !handled {
            let blind = ins.iter().flatten().any(|o| !self.shapes.contains_key(o) && !m.is_const(*o));
            // A known op that really needs exact channels pins; anything the
            // analysis could not follow is a gap of the tool, never a pin.
            let stop = match entry {
                None if !crate::ops::standard(p) => Stop::Gap(format!("{}::{op} '{name}' (unknown op)", p.domain())),
                None => Stop::Gap(format!("{op} '{name}' (op not analysed)")),
                Some(_) if blind => Stop::Gap(format!("{op} '{name}' (input shape unknown)")),
                Some(_) if reshape::shuffle_part(m, n) => Stop::Pin(format!(
                    "channel shuffle at {op} '{name}' (Reshape → Transpose → Reshape interleaves channel blocks)"
                )),
                Some(e) if e.role.refusal_pins() => Stop::Pin(format!(
                    "{op} '{name}'{}",
                    e.rules.pin_note(p).map(|s| format!(" ({s})")).unwrap_or_default()
                )),
                Some(_) if placed_in.is_some() => Stop::Gap(format!(
                    "{op} '{name}' (reads features on axis {}, not analysed)",
                    placed_in.map_or(0, |(a, _)| a)
                )),
                Some(_) => Stop::Gap(format!("{op} '{name}' (case not analysed)")),
            };
            for (slot, o) in ins.iter().enumerate() {
                let Some(o) = *o else { continue };
                match &stop {
                    Stop::Pin(why) => self.pin_or_slice(m, o, Reader::Input(n, slot), why),
                    Stop::Gap(why) => self.gap_outlet(o, why),
                }
            }
            for slot in 0..p.output.len() {
                let o = Outlet { node: n, slot };
                self.layouts.remove(&o);
                self.axes.remove(&o);
                // a Transpose moves axes: its output's is not its input's
                let same_axes = entry.is_none_or(|e| e.role != Role::Permute);
                let l =
                    self.kept_axis(m, o, placed_in.filter(|_| same_axes)).and_then(|axis| self.fresh_on(o, axis, None));
                if let Some(l) = l {
                    match &stop {
                        Stop::Pin(why) => self.atoms.pin(&l, why),
                        Stop::Gap(why) => self.atoms.gap(&l, why),
                    }
                }
            }
        }
        Ok(())
    }

    // ---- results -----------------------------------------------------------

    /// The logical → physical channel map of an activation tensor (or of
    /// the features of a dense layer's output, on their axis).
    pub fn channel_map(&self, o: Outlet) -> Option<ChannelMap> {
        let axis = self.axis(o)?;
        self.layouts.get(&o).map(|l| ChannelMap { axis, ..self.atoms.map_of(l) })
    }

    /// Whether `o` is laid out as features: on another axis than an
    /// activation's channels (axis 1 of rank ≥ 3), rank-2 features included.
    pub fn is_feature(&self, o: Outlet) -> bool {
        self.axes.contains_key(&o)
    }

    /// The axis `o`'s layout is on: 1 for an activation's channels, the
    /// feature axis for the outputs of dense layers (and where ops move
    /// them); `None`: no layout.
    pub fn axis(&self, o: Outlet) -> Option<usize> {
        self.layouts.contains_key(&o).then(|| self.axes.get(&o).copied().unwrap_or(1))
    }

    /// The map of a flattened tensor's features (for Gemm / MatMul rows).
    pub fn flat_map(&self, o: Outlet) -> Option<ChannelMap> {
        self.flats.get(&o).map(|f| self.atoms.map_of(&f.layout).expand(f.spatial))
    }

    /// Physical offsets of the leaf boundaries of `o`'s layout, as
    /// (logical offset, physical offset) pairs, ending with the totals.
    pub fn boundaries(&self, o: Outlet) -> Option<Vec<(usize, usize)>> {
        let l = self.layouts.get(&o)?;
        let mut out = vec![(0, 0)];
        let (mut lo, mut ph) = (0, 0);
        for leaf in self.atoms.leaves(l) {
            lo += self.atoms.atom_size(leaf);
            ph += self.atoms.leaf_width(leaf);
            out.push((lo, ph));
        }
        Some(out)
    }

    /// The channel dim of tensor `o` for reporting.
    pub fn dim(&self, o: Outlet) -> Option<Dim> {
        if let Some(l) = self.layouts.get(&o).or_else(|| self.flats.get(&o).map(|f| &f.layout)) {
            let leaves = self.atoms.leaves(l);
            let mut d = Dim {
                logical: 0,
                physical: 0,
                parts: vec![],
                free_unaligned: false,
                pinned_unaligned: false,
                unanalysed_unaligned: false,
                pins: BTreeSet::new(),
                gaps: BTreeSet::new(),
                axis: self.axes.get(&o).copied().filter(|_| self.layouts.contains_key(&o)),
            };
            for leaf in leaves {
                let s = self.atoms.atom_size(leaf);
                let (pins, gaps) = self.atoms.reasons(leaf);
                d.logical += s;
                d.physical += self.atoms.leaf_width(leaf);
                d.parts.push(s);
                if !s.is_multiple_of(self.multiple) {
                    if !gaps.is_empty() {
                        d.unanalysed_unaligned = true;
                    } else if !pins.is_empty() {
                        d.pinned_unaligned = true;
                    } else {
                        d.free_unaligned = true;
                    }
                }
                d.pins.extend(pins.iter().cloned());
                d.gaps.extend(gaps.iter().cloned());
            }
            return Some(d);
        }
        None
    }
}

/// Refuses weights align cannot do arithmetic on.
fn float_weight(w: &crate::onnx::TensorProto, node: &str) -> Result<()> {
    match tensor::elem(w) {
        Some(e) if e.is_float() => Ok(()),
        _ => Err(Error::at(
            node,
            format!(
                "weight '{}' has type {}; align handles float16, bfloat16, float and double weights",
                w.name(),
                tensor::dtype_name(w.data_type())
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Options;
    use std::collections::HashMap;

    #[test]
    fn options_validate_what_every_front_end_is_given() {
        let ok = Options::default();
        assert!(ok.validate().is_ok());
        for multiple in [0, Options::MAX_MULTIPLE + 1] {
            let e = Options { multiple, ..Options::default() }.validate().unwrap_err();
            assert_eq!(e.to_string(), format!("multiple must be 1–4096, not {multiple}"));
        }
        assert!(Options { multiple: Options::MAX_MULTIPLE, ..Options::default() }.validate().is_ok());
        for dims in [vec![], vec![1, 0, 64, 64], vec![1, -3]] {
            let input_shapes = HashMap::from([("images".to_string(), dims.clone())]);
            let e = Options { input_shapes, ..Options::default() }.validate().unwrap_err();
            assert!(e.to_string().contains("input shape of 'images'"), "{dims:?}: {e}");
        }
    }
}
