//! Every class of bad input: exit 2, one line naming the file (and node),
//! no panic, nothing written.

use crate::util;

use align::onnx::{self, ModelProto, NodeProto, StringStringEntryProto, TensorProto};
use prost::Message;
use std::fs;
use std::path::{Path, PathBuf};
use util::*;

fn base_model() -> ModelProto {
    onnx::load(&fixtures().join("v4_c3_deconv_fused_op12.onnx")).unwrap().0
}

/// Writes `bytes` as `name` in a fresh temp dir and runs `align` on it;
/// asserts an input error naming the file, optionally a node / phrase.
fn expect_refused(name: &str, bytes: &[u8], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join(name);
    fs::write(&f, bytes).unwrap();
    for cmd in [vec![], vec!["report"], vec!["check"]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(|s| s.as_ref()).collect();
        args.push(f.as_os_str());
        let o = align_p(&args);
        assert_input_error(&o, name, Some(tmp.path()), 1);
        assert!(stderr(&o).contains(needle), "{cmd:?} {name}: expected '{needle}' in: {}", stderr(&o));
    }
}

fn graph(m: &mut ModelProto) -> &mut onnx::GraphProto {
    m.graph.as_mut().unwrap()
}

#[test]
fn unreadable_files() {
    expect_refused("empty.onnx", b"", "empty file");
    let good = fs::read(fixtures().join("v4_c3_deconv_fused_op12.onnx")).unwrap();
    expect_refused("truncated.onnx", &good[..good.len() / 2], "not an ONNX model");
    let mut x: u64 = 12345;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    expect_refused("random.onnx", &noise, "");
    expect_refused("text.onnx", b"this is not a model, just some text\n", "");
    let t = TensorProto { dims: vec![3], data_type: Some(1), float_data: vec![1.0, 2.0, 3.0], ..Default::default() };
    expect_refused("tensor.onnx", &t.encode_to_vec(), "not an ONNX model");
    let mut m = base_model();
    m.graph = None;
    expect_refused("nograph.onnx", &m.encode_to_vec(), "no graph");
}

#[test]
fn malformed_graphs_name_the_node() {
    // cycle: make the first conv read the output of the last node
    let mut m = base_model();
    let last = graph(&mut m).node.last().unwrap().output[0].clone();
    let i = graph(&mut m).node.iter().position(|n| n.op_type() == "Conv").unwrap();
    let conv_name = graph(&mut m).node[i].name().to_string();
    graph(&mut m).node[i].input[0] = last;
    expect_refused("cycle.onnx", &m.encode_to_vec(), "cycle");

    let mut m = base_model();
    graph(&mut m).node[i].input[0] = "nowhere".into();
    expect_refused(
        "dangling.onnx",
        &m.encode_to_vec(),
        &format!("node '{conv_name}': input 'nowhere' is not produced"),
    );

    let mut m = base_model();
    let dup = graph(&mut m).node[0].output[0].clone();
    graph(&mut m).node[i].output[0] = dup.clone();
    expect_refused("duplicate.onnx", &m.encode_to_vec(), &format!("tensor '{dup}' is produced more than once"));
}

#[test]
fn contradicting_weight_names_node_and_both_counts() {
    // give the second conv's weight one input channel more than it receives
    let mut m = base_model();
    let g = graph(&mut m);
    let conv: NodeProto = g.node.iter().filter(|n| n.op_type() == "Conv").nth(1).unwrap().clone();
    let w = g.initializer.iter_mut().find(|t| t.name() == conv.input[1]).unwrap();
    let d = align::tensor::dims(w);
    let cin = d[1];
    let map: Vec<usize> = (0..cin).collect();
    *w = align::tensor::scatter_axis(w, 1, &map, cin + 1, 0.0).unwrap();
    let msg = format!(
        "node '{}': Conv weight expects {} input channels ({} per group × group 1) but {cin} are delivered",
        conv.name(),
        cin + 1,
        cin + 1
    );
    expect_refused("contradiction.onnx", &m.encode_to_vec(), &msg);
}

#[test]
fn declared_dims_beyond_the_data_are_refused_without_allocating() {
    let mut m = base_model();
    let t = &mut graph(&mut m).initializer[0];
    t.dims = vec![1 << 20, 1 << 20];
    expect_refused("huge.onnx", &m.encode_to_vec(), "declares");
    let mut m = base_model();
    graph(&mut m).initializer[0].dims = vec![i64::MAX, 16];
    expect_refused("overflow.onnx", &m.encode_to_vec(), "overflows");
    let mut m = base_model();
    graph(&mut m).initializer[0].dims = vec![-3, 16];
    expect_refused("negative.onnx", &m.encode_to_vec(), "negative");
}

#[test]
fn training_mode_bn_is_refused() {
    let mut m = onnx::load(&fixtures().join("v4_c3_deconv_bn_op13.onnx")).unwrap().0;
    let bn = graph(&mut m).node.iter_mut().find(|n| n.op_type() == "BatchNormalization").unwrap();
    let name = bn.name().to_string();
    onnx::set_attr_i(bn, "training_mode", 1);
    m.opset_import[0].version = Some(15);
    expect_refused(
        "training.onnx",
        &m.encode_to_vec(),
        &format!("node '{name}': BatchNormalization has training_mode=1"),
    );
}

#[test]
fn unsupported_weight_type_is_refused() {
    let mut m = base_model();
    let g = graph(&mut m);
    let conv = g.node.iter().find(|n| n.op_type() == "Conv").unwrap().clone();
    let w = g.initializer.iter_mut().find(|t| t.name() == conv.input[1]).unwrap();
    let n = align::tensor::numel(w).unwrap();
    w.data_type = Some(3); // int8
    w.raw_data = Some(vec![1; n].into());
    expect_refused("int8.onnx", &m.encode_to_vec(), "int8");
}

fn with_external(dir: &Path, location: &str) -> PathBuf {
    let mut m = base_model();
    let t = &mut graph(&mut m).initializer[0];
    let raw = t.raw_data.take().unwrap();
    t.data_location = Some(onnx::tensor_proto::DataLocation::External as i32);
    let kv = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
    t.external_data = vec![kv("location", location), kv("offset", "0"), kv("length", &raw.len().to_string())];
    let f = dir.join("ext.onnx");
    fs::write(&f, m.encode_to_vec()).unwrap();
    f
}

#[test]
fn external_data_must_stay_inside_the_model_folder() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    fs::create_dir(&dir).unwrap();
    fs::write(outer.path().join("secret.bin"), vec![0u8; 4096]).unwrap();
    for (loc, needle) in [
        ("../secret.bin", "escapes the model's folder"),
        (outer.path().join("secret.bin").to_str().unwrap(), "not a relative path"),
        ("missing.data", "no such file"),
    ] {
        let f = with_external(&dir, loc);
        let o = align_p(&[f.as_os_str()]);
        assert_input_error(&o, "ext.onnx", Some(&dir), 1);
        assert!(stderr(&o).contains(needle), "{loc}: {}", stderr(&o));
    }
    // a link inside the folder that points outside is refused too
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outer.path().join("secret.bin"), dir.join("link.bin")).unwrap();
        let f = with_external(&dir, "link.bin");
        let o = align_p(&[f.as_os_str()]);
        assert_input_error(&o, "ext.onnx", Some(&dir), 2);
        assert!(stderr(&o).contains("escapes"), "{}", stderr(&o));
    }
    // and one shorter than declared
    let f = with_external(&dir, "short.bin");
    fs::write(dir.join("short.bin"), [0u8; 3]).unwrap();
    let o = align_p(&[f.as_os_str()]);
    assert_input_error(&o, "ext.onnx", Some(&dir), 3);
    assert!(stderr(&o).contains("beyond the end"), "{}", stderr(&o));
}

#[test]
fn paths_and_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let o = align_p(&[tmp.path().as_os_str()]);
    assert_input_error(&o, &tmp.path().display().to_string(), Some(tmp.path()), 0);
    assert!(stderr(&o).contains("directory"));

    let missing = tmp.path().join("missing.onnx");
    let o = align_p(&[missing.as_os_str()]);
    assert_input_error(&o, "missing.onnx", Some(tmp.path()), 0);
    assert!(stderr(&o).contains("no such file"));

    let f = tmp.path().join("m.onnx");
    fs::copy(fixtures().join("v4_c3_deconv_fused_op12.onnx"), &f).unwrap();
    let before = fs::read(&f).unwrap();
    let o = align_p(&[f.as_os_str(), "-o".as_ref(), f.as_os_str()]);
    assert_input_error(&o, "m.onnx", Some(tmp.path()), 1);
    assert!(stderr(&o).contains("never overwrites"));
    // the same file under another spelling
    let other = tmp.path().join(".").join("m.onnx");
    let o = align_p(&[f.as_os_str(), "-o".as_ref(), other.as_os_str()]);
    assert_input_error(&o, "m.onnx", Some(tmp.path()), 1);
    assert_eq!(fs::read(&f).unwrap(), before);

    let nodir = tmp.path().join("nope/out.onnx");
    let o = align_p(&[f.as_os_str(), "-o".as_ref(), nodir.as_os_str()]);
    assert_input_error(&o, "m.onnx", Some(tmp.path()), 1);
    assert!(stderr(&o).contains("does not exist"));

    for bad in ["0", "-8", "x"] {
        let o = align_p(&[f.as_os_str(), format!("--multiple={bad}").as_ref()]);
        assert_eq!(o.status.code(), Some(2), "--multiple {bad}");
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("--multiple"));
    }
    let o = align_p(&[f.as_os_str(), "--passes".as_ref(), "fold-bn,shrink".as_ref()]);
    assert_input_error(&o, "m.onnx", Some(tmp.path()), 1);
    assert!(stderr(&o).contains("unknown pass 'shrink'"));
}

#[test]
fn symbolic_batch_verifies_at_1_without_input_shape() {
    use onnx::tensor_shape_proto::dimension::Value;
    let mut m = base_model();
    let g = graph(&mut m);
    for vi in g.input.iter_mut().chain(g.output.iter_mut()) {
        if let Some(onnx::type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            tt.shape.as_mut().unwrap().dim[0].value = Some(Value::DimParam("N".into()));
        }
    }
    g.value_info.clear();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("dyn.onnx");
    fs::write(&f, m.encode_to_vec()).unwrap();
    // report and check work on the symbolic model
    let o = align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o)["totals"]["free_unaligned"].as_u64().unwrap() > 0);
    // a symbolic batch verifies at 1 without a flag (dynamic_axes exports)
    let o = align_p(&[f.as_os_str(), "--json".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["verification"]["input_shapes"][0]["shape"][0], 1);
    let (out, _) = onnx::load(&tmp.path().join("dyn.aligned.onnx")).unwrap();
    assert_eq!(out.graph.unwrap().input, m.graph.as_ref().unwrap().input, "the symbolic input stays symbolic");
    let o = align_p(&[
        f.as_os_str(),
        "--input-shape".as_ref(),
        "images=1x3x64x64".as_ref(),
        "-q".as_ref(),
        "-o".as_ref(),
        tmp.path().join("c.onnx").as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = align_p(&[
        f.as_os_str(),
        "--input-shape".as_ref(),
        "images=2x3".as_ref(),
        "-o".as_ref(),
        tmp.path().join("b.onnx").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}
