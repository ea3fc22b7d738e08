//! Deterministic mutation test (CI's stand-in for the fuzzer): seeded byte
//! flips, truncations and semantic edits of real fixtures must never panic —
//! every outcome is a model or an `Err`.

use crate::util;

use align::onnx::{self, ModelProto};
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn semantic(m: &mut ModelProto, r: &mut Rng) {
    let g = m.graph.as_mut().unwrap();
    match r.below(6) {
        0 if !g.initializer.is_empty() => {
            let i = r.below(g.initializer.len());
            let t = &mut g.initializer[i];
            if !t.dims.is_empty() {
                let d = r.below(t.dims.len());
                t.dims[d] = [0, 1, -1, 3, 1 << 20, i64::MAX][r.below(6)];
            }
        }
        1 if !g.node.is_empty() => {
            let i = r.below(g.node.len());
            let n = &mut g.node[i];
            if let Some(a) = n.attribute.first_mut() {
                a.i = Some([0, -1, 2, 1000, i64::MIN][r.below(5)]);
                if !a.ints.is_empty() {
                    let k = r.below(a.ints.len());
                    a.ints[k] = [0, -5, 7, i64::MAX][r.below(4)];
                }
            }
        }
        2 if g.node.len() > 2 => {
            let (a, b) = (r.below(g.node.len()), r.below(g.node.len()));
            if !g.node[a].input.is_empty() && !g.node[b].output.is_empty() {
                g.node[a].input[0] = g.node[b].output[0].clone();
            }
        }
        3 if !g.node.is_empty() => {
            let i = r.below(g.node.len());
            g.node.remove(i);
        }
        4 if !g.initializer.is_empty() => {
            let i = r.below(g.initializer.len());
            let t = &mut g.initializer[i];
            t.data_type = Some([0, 2, 3, 7, 8, 10, 11, 16, 99][r.below(9)]);
        }
        _ => {
            if let Some(n) = g.node.get_mut(0) {
                n.op_type = Some(
                    ["Conv", "BatchNormalization", "Split", "Concat", "Slice", "Resize", "Foo"][r.below(7)].into(),
                );
            }
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures =
        ["v4_c3_deconv_fused_op12.onnx", "v3_csp_leaky_hswish_op11.onnx", "third_party/pytorch_operator_conv.onnx"];
    let mut r = Rng(0x9E3779B97F4A7C15);
    // ALIGN_MUTATIONS raises the count for a longer local run.
    let per: usize = std::env::var("ALIGN_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let mut runs = 0;
    for f in fixtures {
        let good = std::fs::read(util::fixtures().join(f)).unwrap();
        let (model, _) = onnx::decode(&good, dir.path()).unwrap();
        for i in 0..per {
            let bytes = match i % 3 {
                0 => {
                    let mut b = good.clone();
                    for _ in 0..1 + r.below(8) {
                        let p = r.below(b.len());
                        b[p] ^= 1 << r.below(8);
                    }
                    b
                }
                1 => good[..r.below(good.len())].to_vec(),
                _ => {
                    let mut m = model.clone();
                    for _ in 0..1 + r.below(3) {
                        semantic(&mut m, &mut r);
                    }
                    m.encode_to_vec()
                }
            };
            let res = catch_unwind(AssertUnwindSafe(|| util::pipeline(&bytes, dir.path())));
            if res.is_err() {
                let keep = std::env::temp_dir().join(format!("align-mutation-{i}.onnx"));
                std::fs::write(&keep, &bytes).unwrap();
                panic!("{f}: mutation {i} panicked; input kept at {}", keep.display());
            }
            runs += 1;
        }
    }
    assert_eq!(runs, 3 * per);
}
