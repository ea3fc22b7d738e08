//! Verification on damaged rewrites: the fuzzer's bytes build a plausible
//! CNN (`gen::build`), align rewrites it, and then the same bytes damage the
//! rewrite the way a hand edit or another tool might (a node without
//! outputs, names emptied or duplicated, a graph output that is an input, a
//! node removed, a selection op with nothing attached, weights swapped or
//! cut short) before `align::verify::verify` compares it with the original.
//! Any verdict or `Err` is an accepted outcome; a panic is a bug. Each run
//! costs two tract loads, so this target is slower than the others.
//! `ALIGN_FUZZ_DUMP=some/dir/` writes `original.onnx` before align's passes
//! and `candidate.onnx` before verifying (a crash input as a reproducer).
#![no_main]

#[path = "gen.rs"]
mod gen;

use align::ir::Model;
use align::onnx::{GraphProto, NodeProto, ValueInfoProto};
use align::passes::{self, Options, Pass};
use align::verify::{self, VerifyOptions};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

/// One damage, chosen by the fuzzer, applied to the rewrite's graph.
fn damage(u: &mut Unstructured, g: &mut GraphProto) -> Result<()> {
    let n = g.node.len();
    let pick = |u: &mut Unstructured, n: usize| -> Result<Option<usize>> {
        if n == 0 {
            Ok(None)
        } else {
            Ok(Some(u.choose_index(n)?))
        }
    };
    match u.int_in_range(0..=9)? {
        0 => {
            if let Some(i) = pick(u, n)? {
                g.node[i].output.clear();
            }
        }
        1 => {
            let op = ["ArgMax", "TopK", "NonMaxSuppression"][u.choose_index(3)?];
            let input = g.node.first().and_then(|x| x.output.first().cloned()).into_iter().collect();
            g.node.push(NodeProto { op_type: Some(op.into()), input, ..Default::default() });
        }
        2 => g.node.iter_mut().for_each(|x| x.name = None),
        3 => {
            if let (Some(i), Some(j)) = (pick(u, n)?, pick(u, n)?) {
                if let Some(o) = g.node[j].output.first().cloned() {
                    if let Some(slot) = g.node[i].output.first_mut() {
                        *slot = o;
                    }
                }
            }
        }
        4 => {
            if let Some(i) = pick(u, n)? {
                if let Some(o) = g.node[i].output.first_mut() {
                    o.clear();
                }
            }
        }
        5 => {
            if let Some(o) = g.output.first().cloned() {
                g.output.push(o);
            }
        }
        6 => {
            if let Some(i) = g.input.first().map(|v| v.name().to_string()) {
                g.output.push(ValueInfoProto { name: Some(i), ..Default::default() });
            }
        }
        7 => {
            if let Some(i) = pick(u, n)? {
                g.node.remove(i);
            }
        }
        8 => {
            let k = g.initializer.len();
            if k >= 2 {
                let (a, b) = (u.choose_index(k)?, u.choose_index(k)?);
                let (na, nb) = (g.initializer[a].name.clone(), g.initializer[b].name.clone());
                g.initializer.swap(a, b);
                g.initializer[a].name = na;
                g.initializer[b].name = nb;
            }
        }
        _ => {
            if let Some(t) = g.initializer.iter_mut().find(|t| !t.float_data.is_empty()) {
                let half = t.float_data.len() / 2;
                t.float_data.truncate(half);
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(original) = gen::build(&mut u) else {
        return;
    };
    let dump = std::env::var_os("ALIGN_FUZZ_DUMP").map(std::path::PathBuf::from);
    if let Some(dir) = &dump {
        // the original first: a hang or crash in align's own passes has it too
        use prost::Message;
        std::fs::write(dir.join("original.onnx"), original.encode_to_vec()).expect("write ALIGN_FUZZ_DUMP");
    }
    let Ok(mut m) = Model::import(original.clone()) else {
        return;
    };
    if passes::run(&mut m, &Pass::all(), &Options::default()).is_err() {
        return;
    }
    let mut candidate = m.export();
    let k = u.int_in_range(0..=2u8).unwrap_or(0);
    for _ in 0..k {
        if let Some(g) = candidate.graph.as_mut() {
            if damage(&mut u, g).is_err() {
                break;
            }
        }
    }
    if let Some(dir) = &dump {
        // a crash input as two ONNX files: `align verify original.onnx candidate.onnx`
        use prost::Message;
        std::fs::write(dir.join("candidate.onnx"), candidate.encode_to_vec()).expect("write ALIGN_FUZZ_DUMP");
    }
    let opts = VerifyOptions { trials: 1, ..Default::default() };
    let _ = verify::verify(&original, &candidate, &HashMap::new(), &opts);
});
