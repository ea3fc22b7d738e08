//! Property test: random small CNNs (widths 1–40, a random mix of the ops
//! the pad pass supports) are aligned and must verify in tract with no free
//! unaligned dim left. The case count is bounded for CI (`PROPTEST_CASES`
//! raises it).

use crate::testutil::{align_and_verify, free_unaligned, int_attr, ints_attr, Builder};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Layer {
    Conv { cout: i64, k: i64, bias: bool },
    Depthwise,
    Act(usize),
    Bn,
    Residual,
    ConcatBranch { c: i64 },
    SplitBranch { first: i64 },
    MaxPool,
    Deconv { cout: i64 },
    Upsample,
    ChannelSlice { start: i64 },
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        3 => (1i64..=40, prop_oneof![Just(1i64), Just(3)], any::<bool>()).prop_map(|(cout, k, bias)| Layer::Conv { cout, k, bias }),
        1 => Just(Layer::Depthwise),
        2 => (0usize..6).prop_map(Layer::Act),
        1 => Just(Layer::Bn),
        1 => Just(Layer::Residual),
        1 => (1i64..=40).prop_map(|c| Layer::ConcatBranch { c }),
        1 => (1i64..=39).prop_map(|first| Layer::SplitBranch { first }),
        1 => Just(Layer::MaxPool),
        1 => (1i64..=40).prop_map(|cout| Layer::Deconv { cout }),
        1 => Just(Layer::Upsample),
        1 => (1i64..=39).prop_map(|start| Layer::ChannelSlice { start }),
    ]
}

/// Builds the network; returns the builder with its output declared.
fn build(c0: i64, layers: &[Layer]) -> Builder {
    let mut b = Builder::new(&[1, c0, 8, 8]);
    let (mut x, mut c, mut hw) = ("x".to_string(), c0, 8i64);
    for l in layers {
        match *l {
            Layer::Conv { cout, k, bias } => {
                x = b.conv(&x, c, cout, k, 1, bias);
                c = cout;
            }
            Layer::Depthwise => x = b.conv(&x, c, c, 3, c, true),
            Layer::Act(kind) => {
                x = match kind {
                    0 => b.unary("Relu", &x),
                    1 => {
                        let s = b.unary("Sigmoid", &x);
                        b.node("Mul", &[&x, &s], 1, vec![]).remove(0)
                    }
                    2 => b.unary("LeakyRelu", &x),
                    3 => {
                        let s = b.unary("HardSigmoid", &x);
                        b.node("Mul", &[&x, &s], 1, vec![]).remove(0)
                    }
                    4 => b.unary("Tanh", &x),
                    _ => b.node("Clip", &[&x], 1, vec![]).remove(0),
                }
            }
            Layer::Bn => x = b.bn(&x, c),
            Layer::Residual => {
                let y = b.conv(&x, c, c, 3, 1, true);
                x = b.node("Add", &[&x, &y], 1, vec![]).remove(0);
            }
            Layer::ConcatBranch { c: c2 } => {
                let y = b.conv(&x, c, c2, 1, 1, false);
                x = b.node("Concat", &[&x, &y], 1, vec![int_attr("axis", 1)]).remove(0);
                c += c2;
            }
            Layer::SplitBranch { first } if first < c => {
                let sizes = b.ints("split", &[first, c - first]);
                let parts = b.node("Split", &[&x, &sizes], 2, vec![int_attr("axis", 1)]);
                let y = b.conv(&parts[1], c - first, c - first, 3, 1, true);
                x = b.node("Concat", &[&parts[0], &y], 1, vec![int_attr("axis", 1)]).remove(0);
            }
            Layer::ChannelSlice { start } if start < c => {
                let (s, e, a) = (b.ints("st", &[start]), b.ints("en", &[c]), b.ints("ax", &[1]));
                x = b.node("Slice", &[&x, &s, &e, &a], 1, vec![]).remove(0);
                c -= start;
            }
            Layer::MaxPool => {
                let attrs = vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("pads", &[1, 1, 1, 1])];
                x = b.node("MaxPool", &[&x], 1, attrs).remove(0);
            }
            Layer::Deconv { cout } if hw <= 16 => {
                x = b.deconv(&x, c, cout);
                c = cout;
                hw *= 2;
            }
            Layer::Upsample if hw <= 16 => {
                let scales = b.init("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
                let attrs = vec![crate::onnx::AttributeProto {
                    name: Some("mode".into()),
                    s: Some(b"nearest".to_vec()),
                    r#type: Some(crate::onnx::attribute_proto::AttributeType::String as i32),
                    ..Default::default()
                }];
                x = b.node("Resize", &[&x, "", &scales], 1, attrs).remove(0);
                hw *= 2;
            }
            _ => {}
        }
    }
    let out = b.conv(&x, c, 3, 1, 1, true);
    b.output(&out, &[1, 3, hw, hw]);
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_cnns_align_and_verify(c0 in 1i64..=8, layers in prop::collection::vec(layer(), 1..9), multiple in prop_oneof![Just(8usize), Just(16)]) {
        let b = build(c0, &layers);
        let (out, _, v) = align_and_verify(&b.model(), multiple);
        prop_assert!(v.passed, "verification failed: {:?}; tensors: {:?}; certificate: {:?}", v.outputs, v.tensors.as_ref().map(|t| (&t.first_departure, &t.failed)), v.certificate.as_ref().map(|c| c.text()));
        prop_assert!(v.outputs.iter().all(|o| o.max_value > 0.0), "all-zero output: {:?}", v.outputs);
        prop_assert_eq!(free_unaligned(&out, multiple), 0);
    }
}
