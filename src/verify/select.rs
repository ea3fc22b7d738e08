//! Outputs that are a discrete selection (TopK, ArgMax, ArgMin, NMS) and the
//! tensors compared instead.

use super::*;

/// Ops whose outputs are a discrete selection of their inputs.
const SELECTION_OPS: [&str; 4] = ["TopK", "ArgMax", "ArgMin", "NonMaxSuppression"];

/// A node's name for messages: its name, else its first named output, else
/// its position (a node may have neither).
pub(crate) fn node_label(n: &crate::onnx::NodeProto) -> String {
    if !n.name().is_empty() {
        return n.name().to_string();
    }
    n.output.iter().find(|o| !o.is_empty()).cloned().unwrap_or_else(|| "(unnamed)".into())
}

/// Graph outputs that depend on a selection op, the ops, and the tensors
/// that feed them.
pub(crate) struct Selections {
    /// every tensor that depends on a selection op (its shape may vary)
    pub tainted_tensors: HashSet<String>,
    /// graph output → selection ops it depends on (`TopK '/m/TopK'`)
    pub tainted: HashMap<String, Vec<String>>,
    /// tensors to compare instead, with what they feed
    pub feeders: Vec<(String, String)>,
    /// feeder → the selection ops it feeds
    pub feeds: HashMap<String, Vec<String>>,
}

pub(crate) fn selections(g: &GraphProto) -> Selections {
    let mut constants: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    constants.extend(g.input.iter().map(|v| v.name()));
    for n in g.node.iter().filter(|n| n.op_type() == "Constant") {
        constants.extend(n.output.iter().map(|s| s.as_str()));
    }
    // tensor → the selection ops it depends on; a fixpoint, so node order does not matter
    let mut via: HashMap<&str, Vec<String>> = HashMap::new();
    loop {
        let mut changed = false;
        for n in &g.node {
            let mut ops: Vec<String> = vec![];
            if SELECTION_OPS.contains(&n.op_type()) {
                ops.push(format!("{} '{}'", n.op_type(), node_label(n)));
            }
            for i in &n.input {
                if let Some(v) = via.get(i.as_str()) {
                    ops.extend(v.iter().cloned());
                }
            }
            ops.sort();
            ops.dedup();
            if ops.is_empty() {
                continue;
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                let e = via.entry(o.as_str()).or_default();
                if *e != ops {
                    *e = ops.clone();
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    let mut feeders: Vec<(String, String)> = vec![];
    let mut feeds: HashMap<String, Vec<String>> = HashMap::new();
    for n in g.node.iter().filter(|n| SELECTION_OPS.contains(&n.op_type())) {
        let label = format!("input of {} '{}'", n.op_type(), node_label(n));
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if constants.contains(i.as_str()) || via.contains_key(i.as_str()) || outputs.contains(i.as_str()) {
                continue;
            }
            feeds.entry(i.clone()).or_default().push(label["input of ".len()..].to_string());
            match feeders.iter_mut().find(|(t, _)| t == i) {
                Some((_, l)) => *l += &format!(", {}", &label["input of ".len()..]),
                None => feeders.push((i.clone(), label.clone())),
            }
        }
    }
    let tainted =
        g.output.iter().filter_map(|o| via.get(o.name()).map(|v| (o.name().to_string(), v.clone()))).collect();
    let tainted_tensors = via.keys().map(|t| t.to_string()).collect();
    Selections { tainted, feeders, feeds, tainted_tensors }
}
