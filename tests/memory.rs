//! Peak memory of `align --no-verify` on a large model stays within 1.5× the
//! model's size (issue 12).
//!
//! The model is built here: 13 Conv + BatchNormalization + Relu layers with
//! odd widths (3 → 61 → … → 509 → 10) and about 80 MB of f32 weights, so every
//! conv is folded and then padded. Loading copies nothing (weights are views
//! of the file's map), pages of weights already rewritten or written are
//! handed back, and the output is encoded straight into the file; without any
//! one of these the peak is 1.7–2.7× the model. Measured by the kernel: the
//! child's maximum resident set (`getrusage(RUSAGE_CHILDREN)`), so this file
//! must hold this one test and spawn nothing else, and it is a test binary
//! of its own: a child spawned by a vfork counts its parent's resident set
//! at the spawn in its peak, and the other integration tests (`tests.rs`)
//! hold models in memory while they run (1.25× alone, 1.63× beside them). Linux only (ru_maxrss
//! units and page release differ elsewhere).
#![cfg(target_os = "linux")]

mod util;

use align::onnx::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

fn value_info(name: &str, shape: &[i64]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], values: impl Iterator<Item = f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(DataType::Float as i32),
        dims: dims.to_vec(),
        raw_data: Some(values.flat_map(f32::to_le_bytes).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[String], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{output}")),
        input: inputs.to_vec(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Writes Conv(3×3) + BN + Relu layers with the given widths on a 1×3×8×8
/// input to `w`, one tensor at a time: the file is a concatenation of
/// `ModelProto`s, which protobuf merges (a repeated field appends), so this
/// process never holds the model; its peak would count in the child's.
fn write_big_model(widths: &[i64], w: &mut impl std::io::Write) {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut part = |g: &mut GraphProto| {
        let m = ModelProto { graph: Some(std::mem::take(g)), ..Default::default() };
        w.write_all(&m.encode_to_vec()).unwrap();
    };
    let mut g = GraphProto { name: Some("big".into()), ..Default::default() };
    g.input.push(value_info("x", &[1, 3, 8, 8]));
    let (mut x, mut cin) = ("x".to_string(), 3);
    for (i, &c) in widths.iter().enumerate() {
        let w = format!("w{i}");
        g.initializer.push(tensor(&w, &[c, cin, 3, 3], (0..c * cin * 9).map(|_| rand() * 0.1)));
        let pads =
            AttributeProto { name: Some("pads".into()), r#type: Some(7), ints: vec![1; 4], ..Default::default() };
        g.node.push(node("Conv", &[x, w], &format!("conv{i}"), vec![pads]));
        let bn: Vec<String> = ["scale", "bias", "mean", "var"].iter().map(|p| format!("bn{i}_{p}")).collect();
        g.initializer.push(tensor(&bn[0], &[c], (0..c).map(|_| 1.0 + rand())));
        g.initializer.push(tensor(&bn[1], &[c], (0..c).map(|_| rand())));
        g.initializer.push(tensor(&bn[2], &[c], (0..c).map(|_| rand())));
        g.initializer.push(tensor(&bn[3], &[c], (0..c).map(|_| 1.0 + rand())));
        let mut inputs = vec![format!("conv{i}")];
        inputs.extend(bn);
        g.node.push(node("BatchNormalization", &inputs, &format!("bn{i}"), vec![]));
        g.node.push(node("Relu", &[format!("bn{i}")], &format!("relu{i}"), vec![]));
        (x, cin) = (format!("relu{i}"), c);
        part(&mut g);
    }
    g.output.push(value_info(&x, &[1, cin, 8, 8]));
    part(&mut g);
    let header = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        ..Default::default()
    };
    w.write_all(&header.encode_to_vec()).unwrap();
}

/// Largest resident set of any child this process has waited for, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) }, 0);
    r.ru_maxrss as u64 * 1024 // KiB on Linux
}

#[test]
fn peak_memory_is_within_one_and_a_half_times_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.onnx");
    let output = dir.path().join("big.aligned.onnx");
    let widths = [61, 123, 251, 509, 509, 509, 509, 509, 509, 509, 509, 251, 10];
    write_big_model(&widths, &mut std::io::BufWriter::new(std::fs::File::create(&input).unwrap()));
    let size = std::fs::metadata(&input).unwrap().len();
    assert!(size > 70_000_000, "the model is {size} bytes");

    let o = util::align_p(&[
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--no-verify".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let peak = children_max_rss();

    // it did the work: every BN folded, every width padded
    let j = util::json(&o);
    assert_eq!(j["passes"][0]["pass"], "fold-bn");
    assert_eq!(j["passes"][0]["changed"], widths.len());
    assert!(j["unaligned_free_dims_before"].as_u64().unwrap() > 0);
    assert_eq!(j["unaligned_free_dims_after"], 0);
    let out = std::fs::metadata(&output).unwrap().len();
    assert!(out > size, "the padded model is larger: {out} vs {size}");

    let ratio = peak as f64 / size as f64;
    eprintln!("peak RSS {:.1} MB for a {:.1} MB model: {ratio:.2}×", peak as f64 / 1e6, size as f64 / 1e6);
    assert!(ratio <= 1.5, "peak RSS {peak} bytes is {ratio:.2}× the {size}-byte model (bound 1.5×)");
}
