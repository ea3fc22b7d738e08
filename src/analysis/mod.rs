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
use crate::ir::shapes::{self, Shape};
use crate::ir::{Model, NodeId, Outlet};
use crate::onnx::{attr_i, attr_ints};
use crate::ops::{slice, Role};
use crate::tensor;
use std::collections::{BTreeSet, HashMap};

mod atoms;
pub use atoms::AtomId;
use atoms::Atoms;

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
}

impl Default for Options {
    fn default() -> Options {
        Options { multiple: 8, input_shapes: HashMap::new(), deconv: true, slice_pinned: false }
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
    flats: HashMap<Outlet, Flat>,
    slice_pinned: bool,
    candidates: Vec<(Outlet, Reader, String)>,
    reader_list: Vec<(Outlet, Reader)>,
    /// Conv outputs padded although a reader needs their exact channels
    /// (`--slice-pinned`), with the reason; a Slice restores them.
    pub sliced: Vec<(Outlet, String)>,
    /// Every reader of a sliced tensor that needs the Slice.
    pub sliced_readers: Vec<(Outlet, Reader)>,
}

/// How an op the analysis stops at keeps the channels it touches.
enum Stop {
    /// A genuine reason: the op needs exact channels.
    Pin(String),
    /// The analysis could not follow: a gap of the tool.
    Gap(String),
}

impl Analysis {
    /// Analyses `m`, padding free spaces to `multiple`. `overrides` gives
    /// shapes for graph inputs with symbolic dims.
    pub fn run(m: &Model, opts: &Options) -> Result<Analysis> {
        let multiple = opts.multiple;
        let overrides = &opts.input_shapes;
        if multiple == 0 {
            return Err(Error::model("--multiple must be at least 1"));
        }
        let shapes = infer::infer(m, overrides);
        let mut a = Analysis {
            shapes,
            multiple,
            deconv: opts.deconv,
            atoms: Atoms::new(multiple),
            layouts: HashMap::new(),
            flats: HashMap::new(),
            slice_pinned: opts.slice_pinned,
            candidates: vec![],
            reader_list: vec![],
            sliced: vec![],
            sliced_readers: vec![],
        };
        for n in m.toposort() {
            match &m.g[n].kind {
                crate::ir::NodeKind::Input(name) => {
                    let o = Outlet { node: n, slot: 0 };
                    a.fresh(o, Some(format!("graph input '{name}'")));
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
        let conv_out = o.slot == 0
            && matches!(m.op_type(o.node), "Conv" | "ConvTranspose")
            && m.op(o.node).is_some_and(crate::ops::standard);
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
        s[1].and_then(|c| usize::try_from(c).ok())
    }

    /// Gives `o` a new single-atom layout (pinned when `why` is set).
    fn fresh(&mut self, o: Outlet, why: Option<String>) -> Option<Vec<AtomId>> {
        let c = self.channels(o)?;
        let l = vec![self.atoms.new_atom(c)];
        if let Some(w) = why {
            self.atoms.pin(&l, &w);
        }
        self.layouts.insert(o, l.clone());
        Some(l)
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
        if op == "BatchNormalization" && attr_i(p, "training_mode", 0) == 1 {
            return Err(Error::at(
                name,
                "BatchNormalization has training_mode=1 (a training graph); export the model in eval mode",
            ));
        }
        let entry = crate::ops::entry(p);
        let handled = match entry.map(|e| e.role) {
            Some(Role::Conv) => self.conv(m, n, &name)?,
            Some(Role::ConvTranspose) => self.conv_transpose(m, n, &name)?,
            Some(Role::BatchNorm) => self.batch_norm(m, n),
            Some(Role::ChannelWise) => self.channelwise(m, n),
            Some(Role::Elementwise { .. }) => self.elementwise(m, n)?,
            Some(Role::Concat) => self.concat(m, n),
            Some(Role::Split) => self.split(m, n),
            Some(Role::Slice) => self.slice(m, n),
            Some(Role::Resize) => self.resize(m, n),
            Some(Role::Pad) => self.pad(m, n),
            Some(Role::Flatten) => self.flatten(m, n),
            Some(Role::Reduce) => self.reduce(m, n),
            Some(Role::ShapeOf) => self.shape_reader(m, n),
            Some(Role::Dense) => self.dense(m, n),
            Some(Role::Broadcast) => self.expand(m, n),
            Some(Role::Mixing) | None => false,
        };
        if !handled {
            let blind = ins.iter().flatten().any(|o| !self.shapes.contains_key(o) && !m.is_const(*o));
            // A known op that really needs exact channels pins; anything the
            // analysis could not follow is a gap of the tool, never a pin.
            let stop = match entry {
                None if !crate::ops::standard(p) => Stop::Gap(format!("{}::{op} '{name}' (unknown op)", p.domain())),
                None => Stop::Gap(format!("{op} '{name}' (op not analysed)")),
                Some(_) if blind => Stop::Gap(format!("{op} '{name}' (input shape unknown)")),
                Some(_) if shuffle_part(m, n) => Stop::Pin(format!(
                    "channel shuffle at {op} '{name}' (Reshape → Transpose → Reshape interleaves channel blocks)"
                )),
                Some(e) if e.role.refusal_pins() => Stop::Pin(format!("{op} '{name}'")),
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
                if let Some(l) = self.fresh(o, None) {
                    match &stop {
                        Stop::Pin(why) => self.atoms.pin(&l, why),
                        Stop::Gap(why) => self.atoms.gap(&l, why),
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives output 0 the layout of input 0 (a channel-wise op), when the
    /// output has as many channels.
    fn pass(&mut self, m: &Model, n: NodeId) -> bool {
        let out = Outlet { node: n, slot: 0 };
        let Some(l) = m.input(n, 0).and_then(|o| self.layouts.get(&o).cloned()) else {
            return false;
        };
        if self.channels(out) != Some(self.atoms.size(&l)) {
            return false;
        }
        self.layouts.insert(out, l);
        true
    }

    /// BatchNormalization with constant 1-D parameters (padded γ0 β0 μ0 σ²1).
    fn batch_norm(&mut self, m: &Model, n: NodeId) -> bool {
        let consts = (1..5).all(|i| m.input(n, i).and_then(|o| m.const_dims(o)).is_some_and(|d| d.len() == 1));
        consts && m.op(n).unwrap().output.len() == 1 && self.pass(m, n)
    }

    /// Activations, pooling…: extra inputs must be scalars (Clip bounds) and
    /// extra outputs unread (MaxPool indices, Dropout mask).
    fn channelwise(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let extra_ok = (1..m.n_inputs(n))
            .all(|i| m.input(n, i).is_none_or(|o| m.const_dims(o).is_some_and(|d| d.iter().product::<i64>() <= 1)));
        let outputs_ok =
            p.output.iter().skip(1).all(|o| o.is_empty()) || m.consumers(Outlet { node: n, slot: 1 }).is_empty();
        extra_ok && outputs_ok && self.pass(m, n)
    }

    /// Resize / Upsample: channel scale 1, or sizes[1] equal to the channels.
    fn resize(&mut self, m: &Model, n: NodeId) -> bool {
        let Some(c) = m.input(n, 0).and_then(|o| self.layouts.get(&o)).map(|l| self.atoms.size(l)) else {
            return false;
        };
        let ok = match crate::ops::resize::resize_params(m, n) {
            Some((_, Some(sizes))) => sizes.get(1) == Some(&(c as i64)),
            Some((Some(sc), None)) => sc.get(1) == Some(&1.0) && sc.first() == Some(&1.0),
            // sizes computed at run time from the input's own shape (dynamic
            // H, W): the channel count read there is the padded one
            _ => m.input(n, 3).is_some_and(|s| own_batch_and_channels(m, s.node, m.input(n, 0))),
        };
        ok && self.pass(m, n)
    }

    /// Expand: over other axes the layout passes; one channel broadcast to C
    /// (a constant target) starts a free space, every channel a copy of the
    /// one (finite), and `pad` writes the padded width into the target.
    fn expand(&mut self, m: &Model, n: NodeId) -> bool {
        let out = Outlet { node: n, slot: 0 };
        let (Some(x), Some(c)) = (m.input(n, 0), self.channels(out)) else {
            return false;
        };
        if self.layouts.get(&x).is_some_and(|l| self.atoms.size(l) == c) {
            return self.pass(m, n);
        }
        let single = self.shapes.get(&x).is_some_and(|s| s.len() == self.shapes[&out].len() && s[1] == Some(1));
        if single && m.input(n, 1).is_some_and(|o| m.is_const(o)) {
            return self.fresh(out, None).is_some();
        }
        false
    }

    /// Pad with constant pads that leave batch and channels alone.
    fn pad(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let pads = if m.opset() >= 11 {
            m.input_const(n, 1).and_then(|t| tensor::to_i64(&t).ok())
        } else {
            Some(attr_ints(p, "pads"))
        };
        let rank = self.shapes.get(&Outlet { node: n, slot: 0 }).map(|s| s.len()).unwrap_or(0);
        let ok = pads.is_some_and(|v| {
            rank >= 3 && v.len() == 2 * rank && v[0] == 0 && v[1] == 0 && v[rank] == 0 && v[rank + 1] == 0
        }) && (m.opset() < 18 || m.input(n, 3).is_none())
            && (2..m.n_inputs(n)).all(|i| m.input(n, i).is_none_or(|o| m.is_const(o)));
        ok && self.pass(m, n)
    }

    /// The input layout and constant weight of a Conv / ConvTranspose that
    /// the analysis can follow (constant weight and bias, known input layout).
    fn conv_parts(&self, m: &Model, n: NodeId, name: &str) -> Result<Option<(Vec<AtomId>, crate::onnx::TensorProto)>> {
        let (Some(x), Some(w)) = (m.input(n, 0), m.input_const_header(n, 1)) else {
            return Ok(None);
        };
        if m.input(n, 2).is_some_and(|o| !m.is_const(o)) {
            return Ok(None);
        }
        let Some(lin) = self.layouts.get(&x).cloned() else {
            return Ok(None);
        };
        float_weight(&w, name)?;
        Ok(Some((lin, w)))
    }

    fn conv(&mut self, m: &Model, n: NodeId, name: &str) -> Result<bool> {
        let p = m.op(n).unwrap();
        let Some((lin, w)) = self.conv_parts(m, n, name)? else {
            return Ok(false);
        };
        let g = attr_i(p, "group", 1).max(1) as usize;
        let wd = tensor::dims(&w);
        if wd.len() < 3 {
            return Err(Error::at(name, format!("Conv weight has rank {}, expected at least 3", wd.len())));
        }
        let cin = self.atoms.size(&lin);
        if wd[1] * g != cin {
            return Err(Error::at(
                name,
                format!(
                    "Conv weight expects {} input channels ({} per group × group {g}) but {cin} are delivered",
                    wd[1] * g,
                    wd[1]
                ),
            ));
        }
        if !wd[0].is_multiple_of(g) {
            return Err(Error::at(name, format!("Conv has {} output channels, not divisible by group {g}", wd[0])));
        }
        let out = Outlet { node: n, slot: 0 };
        if g == 1 {
            self.fresh(out, None);
        } else if g == cin && wd[0] == cin && wd[1] == 1 {
            // Depthwise: output channel j reads input channel j only.
            self.layouts.insert(out, lin);
        } else if g == cin && wd[1] == 1 && wd[0] > cin && self.channels(out) == Some(wd[0]) {
            // Depthwise with channel multiplier m = C_out / C_in: outputs
            // c·m .. c·m + m read input channel c; padded, the output keeps
            // the input's layout with each channel repeated m times.
            let l = self.atoms.scaled(&lin, wd[0] / g);
            self.layouts.insert(out, l);
        } else if wd[1] >= 2 && self.channels(out) == Some(wd[0]) {
            // Grouped: group i reads input block i and writes output block i.
            // Every block is padded on its own, and all blocks of a side are
            // joined so they get the same physical width (`group` stays g).
            let (cg, og) = (wd[1], wd[0] / g);
            for i in 1..g {
                self.atoms.cut(&lin, i * cg);
            }
            let first = self.atoms.range(&lin, 0, cg);
            for i in 1..g {
                let block = self.atoms.range(&lin, i * cg, (i + 1) * cg);
                self.atoms.join(&first, &block);
            }
            let blocks: Vec<AtomId> = (0..g).map(|_| self.atoms.new_atom(og)).collect();
            for &b in &blocks[1..] {
                self.atoms.union_leaves(blocks[0], b);
            }
            self.layouts.insert(out, blocks);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn conv_transpose(&mut self, m: &Model, n: NodeId, name: &str) -> Result<bool> {
        let p = m.op(n).unwrap();
        let Some((lin, w)) = self.conv_parts(m, n, name)? else {
            return Ok(false);
        };
        let wd = tensor::dims(&w);
        let cin = self.atoms.size(&lin);
        if wd.len() < 3 || wd[0] != cin {
            return Err(Error::at(
                name,
                format!(
                    "ConvTranspose weight has {} input channels (axis 0) but {cin} are delivered",
                    wd.first().copied().unwrap_or(0)
                ),
            ));
        }
        let g = attr_i(p, "group", 1).max(1) as usize;
        if !cin.is_multiple_of(g) {
            return Err(Error::at(name, format!("ConvTranspose input channels {cin} not divisible by group {g}")));
        }
        if g != 1 {
            return Ok(false);
        }
        if !self.deconv {
            let why = format!("ConvTranspose '{name}' (deconv pass not selected)");
            self.atoms.pin(&lin, &why);
            self.fresh(Outlet { node: n, slot: 0 }, Some(why));
            return Ok(true);
        }
        self.fresh(Outlet { node: n, slot: 0 }, None);
        Ok(true)
    }

    fn elementwise(&mut self, m: &Model, n: NodeId) -> Result<bool> {
        let Some(role) = m.op(n).and_then(crate::ops::entry).map(|e| e.role) else {
            return Ok(false);
        };
        let out = Outlet { node: n, slot: 0 };
        let Some(c) = self.channels(out) else {
            return Ok(false);
        };
        let rank = self.shapes[&out].len();
        let mut joined: Vec<Vec<AtomId>> = vec![];
        for slot in 0..m.n_inputs(n) {
            let Some(o) = m.input(n, slot) else {
                return Ok(false);
            };
            let Some(sh) = self.shapes.get(&o).cloned() else {
                return Ok(false);
            };
            let ch_axis = (sh.len() + 1).checked_sub(rank);
            let ch = ch_axis.and_then(|i| sh.get(i).copied().flatten());
            if let Some(l) = self.layouts.get(&o).cloned().filter(|_| sh.len() == rank && ch == Some(c as i64)) {
                // An activation of this space.
                if !role.activation_ok(slot) {
                    return Ok(false); // a divisor, exponent or slope: 0/0 would be NaN
                }
                joined.push(l);
            } else if m.is_const(o) {
                if ch == Some(c as i64) && c != 1 && role.neutral(slot).is_none() {
                    return Ok(false);
                }
                if sh.len() > rank {
                    return Ok(false);
                }
            } else if ch.is_none_or(|v| v != 1) || sh.len() > rank {
                return Ok(false); // a non-constant that does not broadcast over channels
            }
        }
        let Some(first) = joined.first().cloned() else {
            return Ok(false);
        };
        if self.atoms.size(&first) != c {
            return Ok(false);
        }
        for l in &joined[1..] {
            self.atoms.join(&first, l);
        }
        self.layouts.insert(out, first);
        Ok(true)
    }

    fn concat(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let out = Outlet { node: n, slot: 0 };
        let Some(rank) = self.shapes.get(&out).map(|s| s.len()) else {
            return false;
        };
        let Some(ax) = shapes::axis(attr_i(p, "axis", 0), rank) else {
            return false;
        };
        let mut ls = vec![];
        for slot in 0..m.n_inputs(n) {
            match m.input(n, slot).and_then(|o| self.layouts.get(&o).cloned()) {
                Some(l) => ls.push(l),
                None => return false,
            }
        }
        if ax == 1 {
            self.layouts.insert(out, ls.concat());
        } else {
            if ls.iter().any(|l| self.atoms.size(l) != self.atoms.size(&ls[0])) {
                return false;
            }
            for l in &ls[1..] {
                self.atoms.join(&ls[0], l);
            }
            self.layouts.insert(out, ls[0].clone());
        }
        true
    }

    fn split(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let Some(x) = m.input(n, 0) else { return false };
        let Some(l) = self.layouts.get(&x).cloned() else {
            return false;
        };
        let Some(rank) = self.shapes.get(&x).map(|s| s.len()) else {
            return false;
        };
        let Some(ax) = shapes::axis(attr_i(p, "axis", 0), rank) else {
            return false;
        };
        if ax != 1 {
            for slot in 0..p.output.len() {
                self.layouts.insert(Outlet { node: n, slot }, l.clone());
            }
            return true;
        }
        let Some(sizes) = crate::ops::split::split_sizes(m, n, self.atoms.size(&l) as i64) else {
            return false;
        };
        let mut start = 0usize;
        for &s in &sizes {
            self.atoms.cut(&l, start);
            start += s as usize;
        }
        let mut start = 0usize;
        for (slot, &s) in sizes.iter().enumerate() {
            let r = self.atoms.range(&l, start, start + s as usize);
            self.layouts.insert(Outlet { node: n, slot }, r);
            start += s as usize;
        }
        true
    }

    fn slice(&mut self, m: &Model, n: NodeId) -> bool {
        let Some(x) = m.input(n, 0) else { return false };
        let Some(l) = self.layouts.get(&x).cloned() else {
            return false;
        };
        let Some(rank) = self.shapes.get(&x).map(|s| s.len()) else {
            return false;
        };
        let Some(params) = slice::slice_params(m, n, rank) else {
            return false;
        };
        let out = Outlet { node: n, slot: 0 };
        if m.op(n).is_some_and(|p| p.doc_string() == RESTORE_SLICE_DOC) && self.atoms.leaves(&l).len() == 1 {
            let why = format!("Slice '{}' (restores exact channels)", m.label(n));
            self.fresh(out, Some(why));
            return true;
        }
        let mut result = l.clone();
        for (ax, st, en, step) in params {
            if ax == 0 {
                continue;
            }
            if ax != 1 {
                continue;
            }
            if step != 1 {
                return false;
            }
            let c = self.atoms.size(&l) as i64;
            let (a, b) = slice::slice_range(c, st, en);
            self.atoms.cut(&l, a as usize);
            self.atoms.cut(&l, b as usize);
            result = self.atoms.range(&l, a as usize, b as usize);
        }
        self.layouts.insert(out, result);
        true
    }

    /// Flatten (or Reshape to [N, C·H·W]) of an activation feeding only a
    /// Gemm / MatMul: the features are channel-major, so the dense layer's
    /// weight absorbs the padded layout.
    fn flatten(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let Some(x) = m.input(n, 0) else { return false };
        let Some(l) = self.layouts.get(&x).cloned() else {
            return false;
        };
        let Some(sh) = self.shapes.get(&x) else {
            return false;
        };
        let out = Outlet { node: n, slot: 0 };
        let Some(osh) = self.shapes.get(&out) else {
            return false;
        };
        let spatial: Option<i64> = sh[2..].iter().try_fold(1i64, |a, d| d.map(|d| a * d));
        let Some(spatial) = spatial else { return false };
        let ok = match p.op_type() {
            "Flatten" => attr_i(p, "axis", 1) == 1,
            _ => osh.len() == 2 && osh[1] == Some(self.atoms.size(&l) as i64 * spatial),
        };
        if !ok || !dense_only(m, out) {
            return false;
        }
        self.flats.insert(out, Flat { layout: l, spatial: spatial as usize });
        true
    }

    /// A reduction over non-channel axes maps each channel to itself (a
    /// padded channel of finite values stays finite); over the channel axis
    /// it mixes channels and pins.
    fn reduce(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let Some(x) = m.input(n, 0) else { return false };
        let (Some(l), Some(rank)) = (self.layouts.get(&x).cloned(), self.shapes.get(&x).map(|s| s.len())) else {
            return false;
        };
        let from = if p.op_type() == "ReduceSum" { 13 } else { 18 };
        let axes = if m.opset() >= from {
            match m.input(n, 1) {
                Some(_) => match m.input_const(n, 1).and_then(|t| tensor::to_i64(&t).ok()) {
                    Some(v) => v,
                    None => return false,
                },
                None => vec![],
            }
        } else {
            attr_ints(p, "axes")
        };
        let axes: Option<Vec<usize>> = axes.iter().map(|&a| shapes::axis(a, rank)).collect();
        let Some(axes) = axes else { return false };
        if axes.is_empty() || axes.contains(&0) || axes.contains(&1) {
            return false; // all axes, or batch / channels
        }
        let out = Outlet { node: n, slot: 0 };
        if attr_i(p, "keepdims", 1) == 1 || rank - axes.len() >= 3 {
            if self.channels(out) != Some(self.atoms.size(&l)) {
                return false;
            }
            self.layouts.insert(out, l);
            return true;
        }
        // [N, C] after reducing every spatial axis: like a Flatten feeding a dense layer
        if rank - axes.len() == 2 && dense_only(m, out) {
            self.flats.insert(out, Flat { layout: l, spatial: 1 });
            return true;
        }
        false
    }

    /// `Shape(x)` reads x's dims; the channel count it reports would be the
    /// padded one. It does not pin x when nothing reads that element: every
    /// reader is a Gather of constant indices or a Slice of constant bounds
    /// that leaves it out (`x.shape[0]` for a batch-generic Reshape).
    fn shape_reader(&mut self, m: &Model, n: NodeId) -> bool {
        let p = m.op(n).unwrap();
        let Some(rank) = m.input(n, 0).and_then(|x| self.shapes.get(&x)).map(|s| s.len() as i64) else {
            return false;
        };
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank);
        let (a, b) = (clamp(attr_i(p, "start", 0)), clamp(attr_i(p, "end", rank)));
        if !(a..b).contains(&1) {
            return true;
        }
        let pos = 1 - a; // where the channel count sits in the output
        let len = b - a;
        m.consumers(Outlet { node: n, slot: 0 }).iter().all(|&(c, slot)| {
            slot == 0
                && match m.op_type(c) {
                    "Gather" => m
                        .input_const(c, 1)
                        .and_then(|t| tensor::to_i64(&t).ok())
                        .is_some_and(|idx| idx.iter().all(|&i| (if i < 0 { i + len } else { i }) != pos)),
                    "Slice" => {
                        slice::slice_params(m, c, 1).is_some_and(|sl| {
                            sl.iter().all(|&(_, st, en, step)| {
                                let (s, e) = slice::slice_range(len, st, en);
                                step == 1 && !(s..e).contains(&pos)
                            })
                        }) || sizes_of_own_resize(m, Outlet { node: c, slot: 0 }, m.input(n, 0))
                    }
                    "Concat" => a == 0 && b == 2 && sizes_of_own_resize(m, Outlet { node: n, slot: 0 }, m.input(n, 0)),
                    _ => false,
                }
        })
    }

    fn dense(&mut self, m: &Model, n: NodeId) -> bool {
        // Absorbs a flattened layout on input A; its output is a plain
        // rank-2 tensor with no layout.
        let Some(a) = m.input(n, 0) else { return false };
        self.flats.contains_key(&a) || !self.layouts.contains_key(&a)
    }

    // ---- results -----------------------------------------------------------

    /// The logical → physical channel map of an activation tensor.
    pub fn channel_map(&self, o: Outlet) -> Option<ChannelMap> {
        self.layouts.get(&o).map(|l| self.atoms.map_of(l))
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

/// True when `n` is one of the three ops of a channel shuffle:
/// Reshape [N, C, H, W] → [N, g, C/g, H, W], Transpose swapping axes 1 and 2,
/// Reshape back to rank 4. Such a shuffle is a fixed permutation of channels,
/// but its padded form interleaves the padding of the g blocks, which a
/// channel layout of contiguous runs cannot express: it pins, and says so.
fn shuffle_part(m: &Model, n: NodeId) -> bool {
    let is_swap = |t: NodeId| {
        m.op_type(t) == "Transpose"
            && m.op(t).is_some_and(|p| attr_ints(p, "perm") == [0, 2, 1, 3, 4] && crate::ops::standard(p))
    };
    let sole = |o: Outlet| {
        let c = m.consumers(o);
        (c.len() == 1).then(|| c[0].0)
    };
    let out = |x: NodeId| Outlet { node: x, slot: 0 };
    let from = |x: NodeId| m.input(x, 0).map(|o| o.node);
    match m.op_type(n) {
        "Transpose" => {
            is_swap(n)
                && from(n).is_some_and(|r| m.op_type(r) == "Reshape")
                && sole(out(n)).is_some_and(|r| m.op_type(r) == "Reshape")
        }
        "Reshape" => {
            sole(out(n)).is_some_and(|t| is_swap(t) && sole(out(t)).is_some_and(|r| m.op_type(r) == "Reshape"))
                || from(n).is_some_and(|t| is_swap(t) && from(t).is_some_and(|r| m.op_type(r) == "Reshape"))
        }
        _ => false,
    }
}

/// `x.shape[:2]` as a Shape with start 0, end 2, or Shape → Slice [0, 2).
fn batch_and_channels_of(m: &Model, o: Outlet) -> Option<Outlet> {
    let p = m.op(o.node)?;
    match p.op_type() {
        "Shape" if attr_i(p, "start", 0) == 0 && attr_i(p, "end", i64::MAX) == 2 => m.input(o.node, 0),
        "Slice" => {
            let sh = m.input(o.node, 0)?;
            let sp = m.op(sh.node)?;
            let whole = sp.op_type() == "Shape" && attr_i(sp, "start", 0) == 0 && sp.attribute.len() <= 1;
            let params = slice::slice_params(m, o.node, 1)?;
            (whole && params.len() == 1 && params[0].1 == 0 && params[0].2 == 2 && params[0].3 == 1)
                .then(|| m.input(sh.node, 0))
                .flatten()
        }
        _ => None,
    }
}

/// True when Concat `cat` starts with `x.shape[:2]` (F.interpolate's sizes
/// for a dynamic H, W): the batch and channel counts it passes on are x's own.
fn own_batch_and_channels(m: &Model, cat: NodeId, x: Option<Outlet>) -> bool {
    m.op(cat).is_some_and(|p| crate::ops::is(p, "Concat") && attr_i(p, "axis", 0) == 0)
        && m.input(cat, 0).and_then(|o| batch_and_channels_of(m, o)).is_some_and(|o| Some(o) == x)
}

/// True when `v` (x.shape[:2]) feeds only Concats that are the sizes of
/// Resizes of x itself: the channel count read there follows x's padding.
fn sizes_of_own_resize(m: &Model, v: Outlet, x: Option<Outlet>) -> bool {
    let readers = m.consumers(v);
    !readers.is_empty()
        && readers.iter().all(|&(cat, slot)| {
            slot == 0
                && own_batch_and_channels(m, cat, x)
                && m.consumers(Outlet { node: cat, slot: 0 })
                    .iter()
                    .all(|&(r, s)| s == 3 && m.op(r).is_some_and(|p| crate::ops::is(p, "Resize")) && m.input(r, 0) == x)
        })
}

/// True when every reader of `o` is a dense layer (Gemm / MatMul with a
/// constant weight) reading it as its input A: the weight absorbs any layout.
fn dense_only(m: &Model, o: Outlet) -> bool {
    let consumers = m.consumers(o);
    !consumers.is_empty()
        && consumers.iter().all(|&(c, slot)| {
            slot == 0
                && match m.op_type(c) {
                    "Gemm" => {
                        attr_i(m.op(c).unwrap(), "transA", 0) == 0 && m.input(c, 1).is_some_and(|o| m.is_const(o))
                    }
                    "MatMul" => m.input(c, 1).and_then(|o| m.const_dims(o)).is_some_and(|d| d.len() == 2),
                    _ => false,
                }
        })
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
