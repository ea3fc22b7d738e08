//! The graph align rewrites: ONNX nodes on a petgraph `StableGraph`.
//!
//! * Nodes are graph inputs, initializers ([`NodeKind::Const`]) and ONNX
//!   operators whose `NodeProto` (attributes, name, domain, doc string) is kept
//!   verbatim. Node ids are stable across removals.
//! * Edges carry the producer's output slot and the consumer's input slot
//!   ([`Edge`]); an absent optional input (`""`) is simply a slot without edge.
//!   The tensor name belongs to the producer (its output name), so an edge can
//!   never disagree with the name the consumer sees.
//! * Graph outputs are explicit [`Outlet`]s with their `ValueInfoProto`.
//!
//! [`Model::import`] builds the graph and runs [`Model::check`];
//! [`Model::export`] writes nodes in topological order, preferring the
//! original order, so an untouched model round-trips node for node.

pub mod fold_shapes;
pub mod infer;
pub mod shapes;
pub mod values;

use crate::error::{Error, Result};
use crate::onnx::{self, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use petgraph::Direction::{Incoming, Outgoing};
use std::borrow::Cow;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Index of a node in the graph.
pub type NodeId = NodeIndex;

/// One output of a node: the tensor it produces at `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Outlet {
    /// Producing node.
    pub node: NodeId,
    /// Output slot of the producer.
    pub slot: usize,
}

/// Input slots from this one on are *implicit*: a tensor of the main graph
/// read by name inside a subgraph (If / Loop / Scan bodies) of the consumer.
/// They order the graph and keep the producer alive, but are no input of the
/// node's own (`n_inputs`, export and the passes ignore them).
pub const IMPLICIT_SLOT: usize = 1 << 20;

/// Producer output slot → consumer input slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Output slot of the source node.
    pub out_slot: usize,
    /// Input slot of the target node.
    pub in_slot: usize,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A graph input (or sparse initializer) supplied from outside.
    Input(String),
    /// An initializer.
    Const(TensorProto),
    /// An ONNX operator, kept verbatim (its `input` names are rebuilt from
    /// edges on export).
    Op(NodeProto),
}

/// A node and its position in the original file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Sort key: original position ×1024, so inserted nodes can sit between.
    pub order: u64,
}

/// A model: the graph plus every other part of the `ModelProto`, untouched.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model with the main graph's nodes, initializers, outputs and
    /// value_info moved into the fields below (graph inputs stay here).
    pub proto: ModelProto,
    /// The graph.
    pub g: StableDiGraph<Node, Edge>,
    /// Graph outputs in order.
    pub outputs: Vec<(Outlet, ValueInfoProto)>,
    /// Intermediate value_info, kept (and updated when a channel dim changes).
    pub value_info: Vec<ValueInfoProto>,
    names: HashSet<String>,
    next_order: u64,
    /// Initializers whose value is their stored data times a per-block
    /// factor not yet applied ([`Model::defer_scale`]).
    scaled: HashMap<NodeId, BlockScale>,
    /// Tensor names whose values a pass changed while keeping the name (a
    /// conv that absorbed the BatchNormalization after its Concat): no longer
    /// the original's tensors, so verification does not compare them.
    pub altered: HashSet<String>,
}

/// A factor per block of consecutive elements (element `i` times
/// `factors[i / block]`) that belongs to an initializer's value but is not
/// yet applied to its bytes. fold-bn defers its weight scaling this way so
/// that pad writes a folded and padded weight once; every reader of the
/// value ([`Model::const_value`], export) sees it applied.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockScale {
    /// Elements per block.
    pub block: usize,
    /// One factor per block.
    pub factors: Vec<f64>,
}

impl BlockScale {
    /// True when the scale applies to `t`: a float tensor whose data
    /// matches its dims, with one factor per block.
    pub fn fits(&self, t: &TensorProto) -> bool {
        crate::tensor::elem(t).is_some_and(|e| e.is_float())
            && crate::tensor::check_len(t).is_ok()
            && crate::tensor::numel(t).is_ok_and(|k| self.block > 0 && k.div_ceil(self.block) == self.factors.len())
    }

    /// `t` with the factors applied, in its own type.
    pub fn apply(&self, t: &TensorProto) -> Result<TensorProto> {
        if !self.fits(t) {
            return Err(Error::model(format!(
                "cannot scale '{}' ({} elements) by {} factors of blocks of {}",
                t.name(),
                crate::tensor::numel(t).unwrap_or(0),
                self.factors.len(),
                self.block
            )));
        }
        crate::tensor::scale_blocks(t, self.block, &self.factors)
    }
}

/// How deep constant folding follows a chain (Identity of Identity…).
const MAX_CONST_DEPTH: usize = 64;

/// A short name for an operator node: its name, else its first output.
pub fn op_name(n: &NodeProto) -> String {
    match n.name() {
        "" => n.output.first().cloned().unwrap_or_else(|| n.op_type().to_string()),
        s => s.to_string(),
    }
}

impl Model {
    /// Builds the graph from a model (with external data already resolved).
    pub fn import(mut proto: ModelProto) -> Result<Model> {
        let mut graph: GraphProto = proto.graph.take().ok_or_else(|| Error::model("the model has no graph"))?;
        let mut g = StableDiGraph::new();
        let mut producer: HashMap<String, Outlet> = HashMap::new();
        let mut names = HashSet::new();
        let define = |name: &str, o: Outlet, by: &str, producer: &mut HashMap<String, Outlet>| -> Result<()> {
            if name.is_empty() {
                return Ok(());
            }
            if producer.insert(name.to_string(), o).is_some() {
                return Err(Error::at(by, format!("tensor '{name}' is produced more than once")));
            }
            Ok(())
        };
        let mut order = 0u64;
        let mut bump = || {
            order += 1024;
            order
        };
        for t in std::mem::take(&mut graph.initializer) {
            crate::tensor::check_len(&t)?;
            let name = t.name().to_string();
            let id = g.add_node(Node { kind: NodeKind::Const(t), order: bump() });
            define(&name, Outlet { node: id, slot: 0 }, &name, &mut producer)?;
            names.insert(name);
        }
        let sparse: Vec<String> =
            graph.sparse_initializer.iter().filter_map(|s| s.values.as_ref().map(|v| v.name().to_string())).collect();
        for name in graph.input.iter().map(|vi| vi.name().to_string()).chain(sparse) {
            if producer.contains_key(&name) {
                continue; // an initializer also listed as input (IR < 4)
            }
            let id = g.add_node(Node { kind: NodeKind::Input(name.clone()), order: bump() });
            define(&name, Outlet { node: id, slot: 0 }, &name, &mut producer)?;
            names.insert(name);
        }
        let nodes = std::mem::take(&mut graph.node);
        let mut ids = Vec::with_capacity(nodes.len());
        for n in nodes {
            let label = op_name(&n);
            if !n.name().is_empty() {
                names.insert(n.name().to_string());
            }
            let outs = n.output.clone();
            let id = g.add_node(Node { kind: NodeKind::Op(n), order: bump() });
            for (slot, o) in outs.iter().enumerate() {
                define(o, Outlet { node: id, slot }, &label, &mut producer)?;
                names.insert(o.clone());
            }
            ids.push(id);
        }
        for &id in &ids {
            let NodeKind::Op(n) = &g[id].kind else { unreachable!() };
            let label = op_name(n);
            let ins = n.input.clone();
            for (slot, name) in ins.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                let o = *producer.get(name).ok_or_else(|| {
                    Error::at(&label, format!("input '{name}' is not produced by any node, initializer or graph input"))
                })?;
                g.add_edge(o.node, id, Edge { out_slot: o.slot, in_slot: slot });
            }
            // tensors of this graph that the node's subgraphs read by name
            let NodeKind::Op(n) = &g[id].kind else { unreachable!() };
            let implicit: Vec<Outlet> =
                subgraph_reads(n).iter().filter_map(|name| producer.get(name).copied()).collect();
            for (k, o) in implicit.into_iter().enumerate() {
                g.add_edge(o.node, id, Edge { out_slot: o.slot, in_slot: IMPLICIT_SLOT + k });
            }
        }
        let mut outputs = Vec::new();
        for vi in std::mem::take(&mut graph.output) {
            let o = *producer
                .get(vi.name())
                .ok_or_else(|| Error::model(format!("graph output '{}' is not produced by any node", vi.name())))?;
            outputs.push((o, vi));
        }
        let value_info = std::mem::take(&mut graph.value_info);
        proto.graph = Some(graph);
        let m = Model {
            proto,
            g,
            outputs,
            value_info,
            names,
            next_order: order + 1024,
            scaled: HashMap::new(),
            altered: HashSet::new(),
        };
        m.check()?;
        Ok(m)
    }

    /// Writes the model back: nodes in topological order (original order
    /// where possible), initializers in original order, names rebuilt from
    /// edges.
    pub fn export(&self) -> ModelProto {
        let mut proto = self.proto.clone();
        let mut graph = proto.graph.take().unwrap_or_default();
        let mut consts: Vec<NodeId> =
            self.g.node_indices().filter(|&n| matches!(self.g[n].kind, NodeKind::Const(_))).collect();
        consts.sort_by_key(|&n| self.g[n].order);
        graph.initializer = consts
            .iter()
            .map(|&n| match &self.g[n].kind {
                NodeKind::Const(t) => self.applied(n, t),
                _ => unreachable!(),
            })
            .collect();
        let const_dims: HashMap<&str, &[i64]> = consts
            .iter()
            .filter_map(|&n| match &self.g[n].kind {
                NodeKind::Const(t) => Some((t.name(), t.dims.as_slice())),
                _ => None,
            })
            .collect();
        // IR < 4 requires every initializer to be a graph input; new ones
        // (folded biases, padded copies) are not, and adding inputs would
        // change the model's contract, so such a model moves to IR 4.
        let listed: HashSet<&str> = graph.input.iter().map(|vi| vi.name()).collect();
        if proto.ir_version.unwrap_or(0) < 4 && const_dims.keys().any(|n| !listed.contains(n)) {
            proto.ir_version = Some(4);
        }
        graph.node = self
            .toposort()
            .into_iter()
            .filter_map(|id| match &self.g[id].kind {
                NodeKind::Op(n) => {
                    let mut n = n.clone();
                    for e in self.g.edges_directed(id, Incoming).filter(|e| e.weight().in_slot < IMPLICIT_SLOT) {
                        let w = e.weight();
                        if n.input.len() <= w.in_slot {
                            n.input.resize(w.in_slot + 1, String::new());
                        }
                        n.input[w.in_slot] =
                            self.tensor_name(Outlet { node: e.source(), slot: w.out_slot }).to_string();
                    }
                    Some(n)
                }
                _ => None,
            })
            .collect();
        graph.output = self
            .outputs
            .iter()
            .map(|(o, vi)| {
                let mut vi = vi.clone();
                vi.name = Some(self.tensor_name(*o).to_string());
                vi
            })
            .collect();
        let live: HashSet<&str> = self.g.node_indices().flat_map(|n| self.output_names(n)).collect();
        graph.value_info = self.value_info.iter().filter(|vi| live.contains(vi.name())).cloned().collect();
        for vi in &mut graph.value_info {
            if let Some(dims) = const_dims.get(vi.name()) {
                set_value_info_dims(vi, dims);
            }
        }
        proto.graph = Some(graph);
        proto
    }

    /// [`Model::export`] without copying the weights: the initializers are
    /// moved into the result.
    pub fn into_export(mut self) -> ModelProto {
        let mut moved = HashMap::new();
        for n in self.g.node_indices().collect::<Vec<_>>() {
            if let NodeKind::Const(t) = &mut self.g[n].kind {
                let stub = TensorProto { name: t.name.clone(), dims: t.dims.clone(), ..Default::default() };
                let full = std::mem::replace(t, stub);
                let full = match self.scaled.remove(&n) {
                    Some(s) => s.apply(&full).expect("defer_scale checked the scale applies"),
                    None => full,
                };
                moved.insert(full.name().to_string(), full);
            }
        }
        let mut proto = self.export();
        if let Some(g) = proto.graph.as_mut() {
            for t in &mut g.initializer {
                if let Some(full) = moved.remove(t.name()) {
                    *t = full;
                }
            }
        }
        proto
    }

    /// Node ids in a topological order that keeps the original order where
    /// the edges allow it (Kahn's algorithm, smallest `order` first).
    pub fn toposort(&self) -> Vec<NodeId> {
        let mut indeg: HashMap<NodeId, usize> = self.g.node_indices().map(|n| (n, 0)).collect();
        for e in self.g.edge_references() {
            *indeg.get_mut(&e.target()).unwrap() += 1;
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<(u64, NodeId)>> =
            indeg.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| std::cmp::Reverse((self.g[n].order, n))).collect();
        let mut out = Vec::with_capacity(indeg.len());
        while let Some(std::cmp::Reverse((_, n))) = ready.pop() {
            out.push(n);
            for e in self.g.edges_directed(n, Outgoing) {
                let d = indeg.get_mut(&e.target()).unwrap();
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse((self.g[e.target()].order, e.target())));
                }
            }
        }
        out
    }

    /// The invariants every pass must keep: acyclic; every input slot fed at
    /// most once and within the node's input list; outputs referenced exist;
    /// tensor names unique; constants' data matches their dims.
    pub fn check(&self) -> Result<()> {
        // Kahn's algorithm is iterative (deep graphs must not overflow the
        // stack): whatever it cannot order lies on or behind a cycle.
        let order = self.toposort();
        if order.len() != self.g.node_count() {
            let done: HashSet<NodeId> = order.into_iter().collect();
            let mut stuck: Vec<NodeId> = self.g.node_indices().filter(|n| !done.contains(n)).collect();
            stuck.sort_by_key(|&n| self.g[n].order);
            let names: Vec<String> = stuck.iter().take(5).map(|&n| self.label(n)).collect();
            return Err(Error::at(
                names[0].clone(),
                format!("the graph has a cycle: {} node(s) can never run, e.g. {}", stuck.len(), names.join(", ")),
            ));
        }
        let mut seen = HashSet::new();
        for n in self.g.node_indices() {
            for name in self.output_names(n) {
                if !name.is_empty() && !seen.insert(name) {
                    return Err(Error::at(self.label(n), format!("tensor '{name}' is produced more than once")));
                }
            }
            if let NodeKind::Const(t) = &self.g[n].kind {
                crate::tensor::check_len(t)?;
            }
            let mut slots = HashSet::new();
            for e in self.g.edges_directed(n, Incoming) {
                let w = e.weight();
                if !slots.insert(w.in_slot) {
                    return Err(Error::at(self.label(n), format!("input slot {} is fed twice", w.in_slot)));
                }
                if w.out_slot >= self.output_names(e.source()).len() {
                    return Err(Error::at(
                        self.label(n),
                        format!("reads output {} of '{}', which does not exist", w.out_slot, self.label(e.source())),
                    ));
                }
            }
        }
        for (o, vi) in &self.outputs {
            if !self.g.contains_node(o.node) || o.slot >= self.output_names(o.node).len() {
                return Err(Error::model(format!("graph output '{}' lost its producer", vi.name())));
            }
        }
        Ok(())
    }

    /// The tensor names a node produces, by slot.
    pub fn output_names(&self, n: NodeId) -> Vec<&str> {
        match &self.g[n].kind {
            NodeKind::Input(name) => vec![name.as_str()],
            NodeKind::Const(t) => vec![t.name()],
            NodeKind::Op(p) => p.output.iter().map(|s| s.as_str()).collect(),
        }
    }

    /// The name of the tensor at an outlet.
    pub fn tensor_name(&self, o: Outlet) -> &str {
        self.output_names(o.node).get(o.slot).copied().unwrap_or("")
    }

    /// A name for messages: the op's name (or first output), or the tensor's.
    pub fn label(&self, n: NodeId) -> String {
        match &self.g[n].kind {
            NodeKind::Op(p) => op_name(p),
            _ => self.output_names(n)[0].to_string(),
        }
    }

    /// The operator at `n`, if it is one.
    pub fn op(&self, n: NodeId) -> Option<&NodeProto> {
        match &self.g[n].kind {
            NodeKind::Op(p) => Some(p),
            _ => None,
        }
    }

    /// Mutable operator at `n`.
    pub fn op_mut(&mut self, n: NodeId) -> Option<&mut NodeProto> {
        match &mut self.g[n].kind {
            NodeKind::Op(p) => Some(p),
            _ => None,
        }
    }

    /// The op type at `n` ("" for inputs and initializers).
    pub fn op_type(&self, n: NodeId) -> &str {
        self.op(n).map(|p| p.op_type()).unwrap_or("")
    }

    /// Operator nodes in topological order.
    pub fn ops(&self) -> Vec<NodeId> {
        self.toposort().into_iter().filter(|&n| self.op(n).is_some()).collect()
    }

    /// Number of input slots of an op (its `input` list length).
    pub fn n_inputs(&self, n: NodeId) -> usize {
        let declared = self.op(n).map_or(0, |p| p.input.len());
        let fed = self
            .g
            .edges_directed(n, Incoming)
            .map(|e| e.weight().in_slot)
            .filter(|&s| s < IMPLICIT_SLOT)
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        declared.max(fed)
    }

    /// Tensors of the main graph that the subgraphs of `n` read by name.
    pub fn implicit_inputs(&self, n: NodeId) -> Vec<Outlet> {
        self.g
            .edges_directed(n, Incoming)
            .filter(|e| e.weight().in_slot >= IMPLICIT_SLOT)
            .map(|e| Outlet { node: e.source(), slot: e.weight().out_slot })
            .collect()
    }

    fn input_edge(&self, n: NodeId, slot: usize) -> Option<EdgeIndex> {
        self.g.edges_directed(n, Incoming).find(|e| e.weight().in_slot == slot).map(|e| e.id())
    }

    /// The outlet feeding input `slot` of `n` (None when absent).
    pub fn input(&self, n: NodeId, slot: usize) -> Option<Outlet> {
        let e = self.input_edge(n, slot)?;
        let (src, _) = self.g.edge_endpoints(e)?;
        Some(Outlet { node: src, slot: self.g[e].out_slot })
    }

    /// Every (consumer, input slot) reading the tensor at `o`.
    pub fn consumers(&self, o: Outlet) -> Vec<(NodeId, usize)> {
        let mut v: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(o.node, Outgoing)
            .filter(|e| e.weight().out_slot == o.slot)
            .map(|e| (e.target(), e.weight().in_slot))
            .collect();
        v.sort();
        v
    }

    /// True when the tensor at `o` is a graph output.
    pub fn is_graph_output(&self, o: Outlet) -> bool {
        self.outputs.iter().any(|(x, _)| *x == o)
    }

    /// Feeds input `slot` of `n` from `o`, replacing any previous edge.
    pub fn set_input(&mut self, n: NodeId, slot: usize, o: Outlet) {
        if let Some(e) = self.input_edge(n, slot) {
            self.g.remove_edge(e);
        }
        self.g.add_edge(o.node, n, Edge { out_slot: o.slot, in_slot: slot });
        if let NodeKind::Op(p) = &mut self.g[n].kind {
            if p.input.len() <= slot {
                p.input.resize(slot + 1, String::new());
            }
            p.input[slot] = "?".into(); // rebuilt from the edge on export
        }
    }

    /// Moves every consumer of `from` (and graph outputs) to read `to`.
    pub fn rewire(&mut self, from: Outlet, to: Outlet) {
        for (c, slot) in self.consumers(from) {
            self.set_input(c, slot, to);
        }
        for (o, _) in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }

    /// A tensor name not used anywhere in the model, derived from `base`.
    pub fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds an initializer named after `t.name` (made unique), placed after
    /// all existing ones.
    pub fn add_const(&mut self, mut t: TensorProto) -> Outlet {
        let name = self.unique_name(t.name());
        t.name = Some(name);
        self.next_order += 1024;
        let id = self.g.add_node(Node { kind: NodeKind::Const(t), order: self.next_order });
        Outlet { node: id, slot: 0 }
    }

    /// Replaces the constant read by input `slot` of `n` with `t`. An
    /// initializer read only here is updated in place (keeping its name);
    /// otherwise a new initializer is added for this consumer alone.
    pub fn replace_input_const(&mut self, n: NodeId, slot: usize, mut t: TensorProto) {
        if let Some(o) = self.input(n, slot) {
            // An initializer that is also a graph input (IR < 4) is part of
            // the model's contract: never change it in place.
            let sole = self.sole_const(o);
            if let NodeKind::Const(old) = &mut self.g[o.node].kind {
                if sole {
                    t.name = old.name.clone();
                    *old = t;
                    self.scaled.remove(&o.node);
                    return;
                }
            }
        }
        let base = self
            .input(n, slot)
            .map(|o| self.tensor_name(o).to_string())
            .unwrap_or_else(|| format!("{}_in{slot}", self.label(n)));
        t.name = Some(if base.is_empty() { "align_const".to_string() } else { base });
        let o = self.add_const(t);
        self.set_input(n, slot, o);
    }

    /// True when `o` is an initializer that only one input reads, that is no
    /// graph output and no graph input (IR < 4 lists initializers as inputs:
    /// part of the model's contract, never changed in place).
    fn sole_const(&self, o: Outlet) -> bool {
        let listed =
            self.proto.graph.as_ref().is_some_and(|g| g.input.iter().any(|vi| vi.name() == self.tensor_name(o)));
        matches!(self.g[o.node].kind, NodeKind::Const(_))
            && self.consumers(o).len() == 1
            && !self.is_graph_output(o)
            && !listed
    }

    /// Multiplies the constant at input `slot` of `n` by `scale`: deferred
    /// (recorded, applied when the value is read or written) when it is an
    /// initializer read only here — composed with a scale already deferred
    /// there — else applied now through [`Model::replace_input_const`].
    pub fn defer_scale(&mut self, n: NodeId, slot: usize, scale: BlockScale) -> Result<()> {
        let Some(o) = self.input(n, slot) else { return Ok(()) };
        // deferred only where applying it later cannot fail
        let fits = self.const_unscaled(o).is_some_and(|(t, _)| scale.fits(t));
        if fits && self.sole_const(o) {
            match self.scaled.get_mut(&o.node) {
                None => {
                    self.scaled.insert(o.node, scale);
                    return Ok(());
                }
                // a second scale of the same blocks (a chain of folds):
                // composed in f64, so the value is rounded once
                Some(s) if s.block == scale.block && s.factors.len() == scale.factors.len() => {
                    s.factors.iter_mut().zip(&scale.factors).for_each(|(f, g)| *f *= g);
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        let Some(t) = self.input_const(n, slot).map(|t| t.into_owned()) else { return Ok(()) };
        let t = scale.apply(&t)?;
        self.replace_input_const(n, slot, t);
        Ok(())
    }

    /// The initializer at `o` as stored, with the scale its value still
    /// owes (for a rewrite that applies the scale in the same pass).
    pub fn const_unscaled(&self, o: Outlet) -> Option<(&TensorProto, Option<&BlockScale>)> {
        match &self.g[o.node].kind {
            NodeKind::Const(t) => Some((t, self.scaled.get(&o.node))),
            _ => None,
        }
    }

    /// Dims and data type of the constant at input `slot` of `n` (a tensor
    /// without data), without applying a deferred scale.
    pub fn input_const_header(&self, n: NodeId, slot: usize) -> Option<TensorProto> {
        let o = self.input(n, slot)?;
        let header = |t: &TensorProto| TensorProto {
            name: t.name.clone(),
            data_type: t.data_type,
            dims: t.dims.clone(),
            ..Default::default()
        };
        match self.const_unscaled(o) {
            Some((t, _)) => Some(header(t)),
            None => self.const_value(o).map(|t| header(&t)),
        }
    }

    /// The value of initializer `n` (stored data `t`), its deferred scale applied.
    fn applied(&self, n: NodeId, t: &TensorProto) -> TensorProto {
        match self.scaled.get(&n) {
            Some(s) => s.apply(t).expect("defer_scale checked the scale applies"),
            None => t.clone(),
        }
    }

    /// Adds an operator node (its inputs are wired with [`Model::set_input`]),
    /// sorted just after `anchor` on export.
    pub fn add_op(&mut self, node: NodeProto, anchor: NodeId) -> NodeId {
        for o in &node.output {
            self.names.insert(o.clone());
        }
        let order = self.g[anchor].order + 1;
        self.g.add_node(Node { kind: NodeKind::Op(node), order })
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, n: NodeId) {
        self.g.remove_node(n);
        self.scaled.remove(&n);
    }

    /// Removes initializers and pure constant-producing ops (Constant,
    /// Identity, ConstantOfShape) that nothing reads any more. Initializers
    /// listed as graph inputs stay. Returns how many nodes went.
    pub fn cleanup(&mut self) -> usize {
        let listed: HashSet<String> = self
            .proto
            .graph
            .as_ref()
            .map(|g| g.input.iter().map(|v| v.name().to_string()).collect())
            .unwrap_or_default();
        let mut removed = 0;
        loop {
            let dead: Vec<NodeId> = self
                .g
                .node_indices()
                .filter(|&n| {
                    let pure = match &self.g[n].kind {
                        NodeKind::Const(t) => !listed.contains(t.name()),
                        NodeKind::Op(p) => crate::ops::entry(p).is_some_and(|e| e.pure),
                        NodeKind::Input(_) => false,
                    };
                    pure && self.g.edges_directed(n, Outgoing).next().is_none()
                        && !self.outputs.iter().any(|(o, _)| o.node == n)
                })
                .collect();
            if dead.is_empty() {
                return removed;
            }
            for n in dead {
                self.g.remove_node(n);
                self.scaled.remove(&n);
                removed += 1;
            }
        }
    }

    /// The constant value of the tensor at `o`, if it is one: an
    /// initializer, or an op its family folds ([`crate::ops::Rules::fold`]:
    /// a Constant node, Identity of a constant, ConstantOfShape of a
    /// constant shape, Unsqueeze / Squeeze / Cast / Reshape / Concat of small
    /// constants).
    pub fn const_value(&self, o: Outlet) -> Option<Cow<'_, TensorProto>> {
        self.const_at(o, 0)
    }

    /// The dims of the constant at `o`, without materialising a
    /// ConstantOfShape (cheap: use it when only existence or dims matter).
    pub fn const_dims(&self, o: Outlet) -> Option<Vec<i64>> {
        self.const_dims_at(o, 0)
    }

    /// True when the tensor at `o` is a constant.
    pub fn is_const(&self, o: Outlet) -> bool {
        self.const_dims(o).is_some()
    }

    /// [`Model::const_dims`] `depth` folds down a chain: an initializer's
    /// dims, else the op's family's [`crate::ops::Rules::fold_dims`].
    pub(crate) fn const_dims_at(&self, o: Outlet, depth: usize) -> Option<Vec<i64>> {
        if depth > MAX_CONST_DEPTH {
            return None;
        }
        match &self.g[o.node].kind {
            NodeKind::Const(t) => Some(t.dims.clone()),
            NodeKind::Input(_) => None,
            NodeKind::Op(p) => crate::ops::entry(p)?.rules.fold_dims(&self.fold_cx(o, p, depth)),
        }
    }

    /// [`Model::const_value`] `depth` folds down a chain: an initializer
    /// (its deferred scale applied), else the op's family's
    /// [`crate::ops::Rules::fold`].
    pub(crate) fn const_at(&self, o: Outlet, depth: usize) -> Option<Cow<'_, TensorProto>> {
        if depth > MAX_CONST_DEPTH {
            return None;
        }
        match &self.g[o.node].kind {
            NodeKind::Const(t) => match self.scaled.get(&o.node) {
                Some(s) => s.apply(t).ok().map(Cow::Owned),
                None => Some(Cow::Borrowed(t)),
            },
            NodeKind::Input(_) => None,
            NodeKind::Op(p) => crate::ops::entry(p)?.rules.fold(&self.fold_cx(o, p, depth)),
        }
    }

    fn fold_cx<'a>(&'a self, o: Outlet, p: &'a NodeProto, depth: usize) -> crate::ops::FoldCx<'a> {
        crate::ops::FoldCx { m: self, n: o.node, p, depth }
    }

    /// The constant at input `slot` of `n`.
    pub fn input_const(&self, n: NodeId, slot: usize) -> Option<Cow<'_, TensorProto>> {
        self.const_value(self.input(n, slot)?)
    }

    /// Updates the channel dim (axis `axis`) recorded for a tensor in
    /// value_info and graph outputs.
    pub fn set_channel_dim(&mut self, name: &str, axis: usize, c: usize) {
        for vi in self.value_info.iter_mut().filter(|v| v.name() == name) {
            set_dim(vi, axis, c as i64);
        }
    }

    /// The opset of the default domain.
    pub fn opset(&self) -> i64 {
        onnx::opset(&self.proto)
    }
}

/// Names a node's subgraphs (attributes of type GRAPH / GRAPHS, nested
/// ones included) read from outside themselves.
fn subgraph_reads(n: &NodeProto) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for a in &n.attribute {
        for sub in a.g.iter().chain(a.graphs.iter()) {
            for name in free_names(sub) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Names a graph reads but does not define (its inputs, initializers and
/// node outputs are defined), through its nodes and their subgraphs.
fn free_names(g: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = g.input.iter().map(|v| v.name()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name()));
    defined.extend(g.sparse_initializer.iter().filter_map(|s| s.values.as_ref()).map(|t| t.name()));
    defined.extend(g.node.iter().flat_map(|n| n.output.iter().map(|s| s.as_str())));
    let mut out: Vec<String> = vec![];
    for n in &g.node {
        for name in n.input.iter().cloned().chain(subgraph_reads(n)) {
            if !name.is_empty() && !defined.contains(name.as_str()) && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn set_dim(vi: &mut ValueInfoProto, axis: usize, v: i64) {
    use crate::onnx::tensor_shape_proto::{dimension::Value, Dimension};
    if let Some(crate::onnx::type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        if let Some(d) = tt.shape.as_mut().and_then(|s| s.dim.get_mut(axis)) {
            *d = Dimension { value: Some(Value::DimValue(v)), denotation: d.denotation.take() };
        }
    }
}

fn set_value_info_dims(vi: &mut ValueInfoProto, dims: &[i64]) {
    if let Some(crate::onnx::type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        if let Some(s) = tt.shape.as_mut() {
            if s.dim.len() == dims.len() {
                for (i, &d) in dims.iter().enumerate() {
                    set_dim_raw(&mut s.dim[i], d);
                }
            }
        }
    }
}

fn set_dim_raw(d: &mut crate::onnx::tensor_shape_proto::Dimension, v: i64) {
    d.value = Some(crate::onnx::tensor_shape_proto::dimension::Value::DimValue(v));
}

/// Shape of a `ValueInfoProto` with symbolic or unknown dims as `None`.
pub fn value_info_shape(vi: &ValueInfoProto) -> Option<Vec<Option<i64>>> {
    use crate::onnx::tensor_shape_proto::dimension::Value;
    match vi.r#type.as_ref()?.value.as_ref()? {
        crate::onnx::type_proto::Value::TensorType(tt) => Some(
            tt.shape
                .as_ref()?
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(Value::DimValue(v)) if v > 0 => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Element type of a `ValueInfoProto`.
pub fn value_info_elem(vi: &ValueInfoProto) -> Option<i32> {
    match vi.r#type.as_ref()?.value.as_ref()? {
        crate::onnx::type_proto::Value::TensorType(tt) => tt.elem_type,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Builder;

    /// A conv `c` with weight 4×3×1×1 and a second reader of its weight
    /// when `shared`.
    fn conv_model(shared: bool) -> (Model, NodeId, NodeId) {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let c = b.conv("x", 3, 4, 1, 1, false);
        if shared {
            let w = b.g.node[0].input[1].clone();
            let d = b.node("Conv", &["x", &w], 1, vec![]).remove(0);
            b.output(&d, &[1, 4, 4, 4]);
        }
        b.output(&c, &[1, 4, 4, 4]);
        let m = Model::import(b.model()).unwrap();
        let convs: Vec<NodeId> = m.ops().into_iter().filter(|&n| m.op_type(n) == "Conv").collect();
        (m, convs[0], *convs.last().unwrap())
    }

    fn scale() -> BlockScale {
        BlockScale { block: 3, factors: vec![2.0, -1.0, 0.5, 3.0] }
    }

    #[test]
    fn a_deferred_scale_is_seen_by_every_reader_and_cleared_by_a_rewrite() {
        let (mut m, c, _) = conv_model(false);
        let before = m.input_const(c, 1).unwrap().into_owned();
        let want = scale().apply(&before).unwrap();
        m.defer_scale(c, 1, scale()).unwrap();
        // stored bytes unchanged, the value scaled
        let (stored, pending) = m.const_unscaled(m.input(c, 1).unwrap()).unwrap();
        assert_eq!(stored, &before);
        assert_eq!(pending, Some(&scale()));
        assert_eq!(m.input_const(c, 1).unwrap().into_owned(), want);
        assert_eq!(m.input_const_header(c, 1).unwrap().dims, before.dims);
        let exported = |m: &Model| m.export().graph.unwrap().initializer[0].clone();
        assert_eq!(exported(&m), want);
        assert_eq!(m.clone().into_export().graph.unwrap().initializer[0], want);
        // a rewrite in place is the whole value: nothing more is applied
        m.replace_input_const(c, 1, before.clone());
        assert_eq!(m.const_unscaled(m.input(c, 1).unwrap()).unwrap().1, None);
        assert_eq!(exported(&m), before);
    }

    #[test]
    fn a_shared_weight_is_scaled_for_its_reader_alone_and_at_once() {
        let (mut m, c, d) = conv_model(true);
        let before = m.input_const(c, 1).unwrap().into_owned();
        m.defer_scale(c, 1, scale()).unwrap();
        assert_ne!(m.input(c, 1), m.input(d, 1), "the reader got its own copy");
        assert_eq!(m.const_unscaled(m.input(c, 1).unwrap()).unwrap().1, None, "applied, not deferred");
        assert_eq!(m.input_const(c, 1).unwrap().into_owned().raw_data, scale().apply(&before).unwrap().raw_data);
        assert_eq!(m.input_const(d, 1).unwrap().into_owned(), before, "the other reader keeps the original");
    }

    #[test]
    fn a_scale_that_does_not_fit_is_an_error_not_a_deferral() {
        let (mut m, c, _) = conv_model(false);
        let wrong = BlockScale { block: 3, factors: vec![1.0; 3] };
        assert!(m.defer_scale(c, 1, wrong).is_err());
        assert!(m.scaled.is_empty());
    }

    #[test]
    fn a_removed_initializer_takes_its_scale_along() {
        let (mut m, c, _) = conv_model(false);
        m.defer_scale(c, 1, scale()).unwrap();
        let w = m.input(c, 1).unwrap().node;
        m.remove(c);
        m.cleanup();
        assert!(!m.g.contains_node(w));
        assert!(m.scaled.is_empty(), "no scale left for a reused node id");
    }
}
