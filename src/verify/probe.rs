//! Every tensor the rewrite kept, compared where it is made.
//!
//! Graph outputs alone let a small error through: a bias off by 0.01 at
//! 30 % depth reaches the outputs after a deep network has amplified the
//! fp32 rounding around it, and a multiple of the outputs' noise cannot tell
//! it from rounding. So verification also compares the intermediate
//! tensors the original and the candidate share (a *probe* each): the
//! candidate's real channels, read through the rewrite's [`Layout`], against
//! the original's tensor and that tensor's own noise floor, and its padded
//! channels against what the layout promises (exactly 0, or finite). The
//! first probe in the original's node order that departs is where the bug
//! was made.
//!
//! Each probe is tapped in both tract models ([`super::tap`]) and compared
//! while the three runs of a trial go on, so memory holds a few probes at a
//! time, not all of them.

use super::*;
use crate::analysis::ChannelMap;
use crate::layout::Layout;
use criterion::{Tally, Vals};
use report::{Departure, TensorCheck};
use select::node_label;
use std::collections::BTreeMap;

/// A tensor both models produce, which may be compared.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Tensor name.
    pub name: String,
    /// The original's node that makes it, e.g. `Conv '/model.4/cv1/conv/Conv'`.
    pub producer: String,
    /// Position of that node in the original's node list (topological).
    pub order: usize,
    /// Both models read it with the same ops (a multiset of op types, graph
    /// output or not). A tool that folds a BN into the conv before it may
    /// keep the conv's output name for the folded values: the name then
    /// means another tensor, and its readers show it.
    pub same_readers: bool,
}

/// For each tensor, the sorted op types that read it (and whether it is a
/// graph output).
fn readers(g: &GraphProto) -> HashMap<&str, Vec<&str>> {
    let mut r: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            r.entry(i.as_str()).or_default().push(n.op_type());
        }
    }
    for o in &g.output {
        r.entry(o.name()).or_default().push("(graph output)");
    }
    r.values_mut().for_each(|v| v.sort_unstable());
    r
}

/// Tensors the original makes that the candidate makes too under the same
/// name and that may be compared: not graph outputs (compared anyway), not
/// downstream of a selection (their shapes vary), not the output of a
/// Constant. ([`choose`] leaves out those a pass altered on purpose, once
/// the layout is known.)
pub(crate) fn candidates(ga: &GraphProto, gb: &GraphProto, skip: &HashSet<String>) -> Vec<Candidate> {
    let produced_b: HashSet<&str> = gb.node.iter().flat_map(|n| n.output.iter().map(|s| s.as_str())).collect();
    let (ra, rb) = (readers(ga), readers(gb));
    let outputs: HashSet<&str> = ga.output.iter().chain(&gb.output).map(|o| o.name()).collect();
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (order, n) in ga.node.iter().enumerate() {
        if n.op_type() == "Constant" {
            continue;
        }
        for t in &n.output {
            if t.is_empty()
                || outputs.contains(t.as_str())
                || !produced_b.contains(t.as_str())
                || skip.contains(t)
                || !seen.insert(t.clone())
            {
                continue;
            }
            out.push(Candidate {
                name: t.clone(),
                producer: format!("{} '{}'", n.op_type(), node_label(n)),
                order,
                same_readers: ra.get(t.as_str()) == rb.get(t.as_str()),
            });
        }
    }
    out
}

/// What the padded channels of a probe must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Promise {
    /// Exactly 0, bit for bit (zero filters through ops that keep 0 at 0).
    Zero,
    /// f(0) of the op that made them from exact zeros (0.5 after a
    /// Sigmoid), within a few f32 ulps (tract's kernels approximate).
    Value(f64),
    /// A finite value (nothing more is known).
    Finite,
}

impl Promise {
    /// Whether padded value `v` keeps the promise.
    fn kept(self, v: f64) -> bool {
        match self {
            Promise::Zero => v == 0.0,
            Promise::Value(c) => (v - c).abs() <= 8.0 * f32::EPSILON as f64 * c.abs().max(1.0),
            Promise::Finite => v.is_finite(),
        }
    }

    fn what(self) -> String {
        match self {
            Promise::Zero => "exactly 0".into(),
            Promise::Value(c) => format!("{c} (the value its op gives 0)"),
            Promise::Finite => "a finite value".into(),
        }
    }
}

/// A chosen probe.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub cand: Candidate,
    /// The original's shape.
    pub shape: Vec<usize>,
    /// Where its channels are in the candidate (`None`: same shape).
    pub map: Option<ChannelMap>,
    /// What its padded channels must hold.
    pub promise: Promise,
}

/// The probes chosen among `cands` by the typed models' facts (positions
/// `first + i` of `facts_a` / `facts_b`), how many of `cands` are float
/// tensors, and the reasons the others were not compared.
pub(crate) fn choose(
    cands: &[Candidate],
    facts_a: &[(DatumType, Option<Vec<usize>>)],
    facts_b: &[(DatumType, Option<Vec<usize>>)],
    first: usize,
    layout: &Layout,
) -> (Vec<(usize, Probe)>, usize, BTreeMap<String, usize>) {
    let mut floats = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut skip = |why: &str| *skipped.entry(why.to_string()).or_default() += 1;
    let mut chosen: Vec<(usize, Probe)> = vec![];
    for (i, c) in cands.iter().enumerate() {
        let ((da, sa), (db, sb)) = (&facts_a[first + i], &facts_b[first + i]);
        if !da.is_float() || !db.is_float() || layout.altered.contains(&c.name) {
            continue; // shape arithmetic, masks, indices: not activations
        }
        floats += 1;
        if layout.maps.is_empty() && !c.same_readers {
            skip("read by other ops in the candidate (a name the rewrite reused)");
            continue;
        }
        let (Some(sa), Some(sb)) = (sa, sb) else {
            skip("shape not static");
            continue;
        };
        let map = layout.maps.get(&c.name).filter(|cm| sa.len() >= 2 && sa.get(cm.axis) == Some(&cm.map.len()));
        let expected: Vec<usize> = match map {
            Some(cm) => sa.iter().enumerate().map(|(k, &d)| if k == cm.axis { cm.len } else { d }).collect(),
            None => sa.clone(),
        };
        if *sb != expected {
            skip("shape differs from what the layout gives");
            continue;
        }
        let promise = match (layout.zero_padded.contains(&c.name), layout.padded_values.get(&c.name)) {
            (true, _) => Promise::Zero,
            (false, Some(&v)) => Promise::Value(v),
            (false, None) => Promise::Finite,
        };
        chosen.push((i, Probe { cand: c.clone(), shape: sa.clone(), map: map.cloned(), promise }));
    }
    (chosen, floats, skipped)
}

/// A probe's verdict, and its departure if it failed.
pub(crate) type Judged = (OutputDiff, Option<Departure>);

/// One probe's comparison in progress.
pub(crate) struct Tracked {
    pub probe: Probe,
    pub tally: Tally,
    /// The first padded channel found off its promise: (physical channel, value).
    pub padding: Option<(usize, f64)>,
}

impl Tracked {
    pub(crate) fn new(probe: Probe, trials: usize, opts: &VerifyOptions, eps: f64) -> Tracked {
        // judged per channel: a wrong filter or bias shows in its own
        // channel (the features of a dense layer: on their axis)
        let axis = probe.map.as_ref().map_or(1, |cm| cm.axis);
        let axes: Vec<usize> = if probe.shape.len() >= 2 { vec![axis] } else { vec![] };
        let tally = Tally::new(&probe.cand.name, "", &probe.shape, &axes, true, trials, true, opts).in_precision(eps);
        Tracked { probe, tally, padding: None }
    }

    /// Adds one trial: the original's tensor `a`, the candidate's `b`, the
    /// original's on perturbed inputs `n`.
    pub(crate) fn add(&mut self, a: &Tensor, b: &Tensor, n: Option<&Tensor>, tol: Tolerance) -> Result<()> {
        fn f32s(t: &Tensor) -> Option<&[f32]> {
            if t.datum_type() != DatumType::F32 {
                return None;
            }
            t.to_plain_array_view::<f32>().ok()?.to_slice()
        }
        // the fast path reads channels on axis 1
        let on_1 = self.probe.map.as_ref().is_none_or(|cm| cm.axis == 1);
        if let (true, Some(x), Some(y), Some(z)) = (self.tally.by_channel() && on_1, f32s(a), f32s(b), n.map(f32s)) {
            let map = self.probe.map.as_ref().map(|cm| (&cm.map[..], cm.len));
            if let Some(cm) = &self.probe.map {
                if self.padding.is_none() {
                    self.padding = padded_off_promise(&Vals::F32(y), b.shape(), cm, self.probe.promise);
                }
            }
            self.tally.add_f32_channels(x, y, map, z, tol);
            return Ok(());
        }
        let x = Vals::of(a)?;
        let z = n.map(Vals::of).transpose()?;
        match &self.probe.map {
            None => self.tally.add(&x, &Vals::of(b)?, z.as_ref(), tol),
            Some(cm) => {
                let y = Vals::of(b)?;
                let (real, bad) = split_channels(&y, b.shape(), cm, self.probe.promise);
                if self.padding.is_none() {
                    self.padding = bad;
                }
                match real {
                    Gathered::F32(v) => self.tally.add(&x, &Vals::F32(&v), z.as_ref(), tol),
                    Gathered::F64(v) => self.tally.add(&x, &Vals::F64(v), z.as_ref(), tol),
                }
            }
        }
        Ok(())
    }

    /// The verdict, and the departure if there is one.
    pub(crate) fn finish(self) -> Judged {
        let mut d = self.tally.finish().diff;
        d.compared = if self.probe.map.is_some() { "real channels".into() } else { "values".into() };
        let departure = if let Some((ch, v)) = self.padding {
            d.passed = false;
            d.margin = f64::INFINITY;
            Some(Departure {
                tensor: self.probe.cand.name.clone(),
                producer: self.probe.cand.producer.clone(),
                what: format!("padded channel {ch} holds {v:e} where {} was promised", self.probe.promise.what()),
                slice: format!("padded channel {ch}"),
                deviation: v.abs(),
                allowed: 0.0,
                margin: f64::INFINITY,
                order: self.probe.cand.order,
            })
        } else if !d.passed {
            Some(Departure {
                tensor: self.probe.cand.name.clone(),
                producer: self.probe.cand.producer.clone(),
                what: format!(
                    "{} off by {:.1e}{} where {:.1e} is allowed",
                    if self.probe.map.is_some() { "real channels" } else { "values" },
                    d.deviation,
                    d.statistic.suffix(),
                    d.allowed
                ),
                slice: d.slice.clone(),
                deviation: d.deviation,
                allowed: d.allowed,
                margin: d.margin,
                order: self.probe.cand.order,
            })
        } else {
            None
        };
        (d, departure)
    }
}

/// Real channels gathered in the original's layout, in the type they came in.
enum Gathered {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The candidate's real channels of a padded tensor (values in the
/// original's layout) and the first padded channel off its promise.
fn split_channels(y: &Vals, shape: &[usize], cm: &ChannelMap, promise: Promise) -> (Gathered, Option<(usize, f64)>) {
    let (outer, inner) = around(shape, cm.axis);
    let runs = (0..outer).flat_map(|o| cm.map.iter().map(move |&c| (o * cm.len + c) * inner));
    let real = match y {
        Vals::F32(v) => Gathered::F32(runs.flat_map(|base| v[base..base + inner].iter().copied()).collect()),
        Vals::F64(v) => Gathered::F64(runs.flat_map(|base| v[base..base + inner].iter().copied()).collect()),
    };
    (real, padded_off_promise(y, shape, cm, promise))
}

/// The element counts before and after axis `axis` of `shape`.
fn around(shape: &[usize], axis: usize) -> (usize, usize) {
    let axis = axis.min(shape.len());
    (shape[..axis].iter().product(), shape.get(axis + 1..).map_or(1, |s| s.iter().product()))
}

/// The first padded channel of a candidate tensor off its promise:
/// (physical channel, value).
fn padded_off_promise(y: &Vals, shape: &[usize], cm: &ChannelMap, promise: Promise) -> Option<(usize, f64)> {
    let (outer, inner) = around(shape, cm.axis);
    let mut is_real = vec![false; cm.len];
    for &c in &cm.map {
        is_real[c] = true;
    }
    let mut bad = None;
    'outer: for o in 0..outer {
        for c in (0..cm.len).filter(|&c| !is_real[c]) {
            let base = (o * cm.len + c) * inner;
            for i in base..base + inner {
                let v = y.get(i);
                if !promise.kept(v) {
                    bad = Some((c, v));
                    break 'outer;
                }
            }
        }
    }
    bad
}

/// The probes' results as the report keeps them.
pub(crate) fn summarise(
    results: Vec<Judged>,
    candidates: usize,
    skipped: BTreeMap<String, usize>,
    layout: &Layout,
) -> TensorCheck {
    let compared = results.len();
    let padded = results.iter().filter(|(d, _)| d.compared == "real channels").count();
    let mut departures: Vec<Departure> = results.iter().filter_map(|(_, dep)| dep.clone()).collect();
    departures.sort_by_key(|d| d.order);
    let worst = results.iter().map(|(d, _)| d).max_by(|x, y| x.margin.total_cmp(&y.margin)).cloned();
    let failed: Vec<OutputDiff> = results.into_iter().filter(|(d, _)| !d.passed).map(|(d, _)| d).collect();
    TensorCheck {
        layout: if layout.maps.is_empty() && layout.source.is_empty() {
            "by name and shape".into()
        } else {
            layout.source.clone()
        },
        shared: candidates,
        compared,
        padded,
        not_compared: skipped,
        passed: departures.is_empty(),
        first_departure: departures.first().cloned(),
        departures: departures.len(),
        worst,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_channels_keep_the_promise_of_the_op_that_made_them() {
        // a [1, 3, 1, 2] candidate tensor whose real channel is physical 1
        let cm = ChannelMap { map: vec![1], len: 3, axis: 1 };
        let at = |vals: [f32; 6], p: Promise| padded_off_promise(&Vals::F32(&vals), &[1, 3, 1, 2], &cm, p);
        let sig = [0.5, 0.5, 0.9, 0.1, 0.5, 0.5];
        assert_eq!(at(sig, Promise::Value(0.5)), None);
        assert_eq!(at(sig, Promise::Zero), Some((0, 0.5)));
        let off = [0.5, 0.5, 0.9, 0.1, 0.5, 0.5001];
        assert_eq!(at(off, Promise::Value(0.5)), Some((2, 0.5001f32 as f64)));
        assert_eq!(at(off, Promise::Finite), None);
        assert_eq!(at([0.0, f32::NAN, 1.0, 1.0, 0.0, 0.0], Promise::Finite).map(|x| x.0), Some(0));
    }
}
