//! `align verify ORIGINAL CANDIDATE` and the fp32-noise criterion, end to end.

use crate::util;

use align::onnx::{self, ModelProto};
use prost::Message;
use std::fs;
use std::path::{Path, PathBuf};
use util::*;

fn save(m: &ModelProto, p: &Path) {
    fs::write(p, m.encode_to_vec()).unwrap();
}

/// `align MODEL -o OUT` with the defaults; returns OUT.
fn aligned(f: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("aligned.onnx");
    let o = align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn verify(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut v: Vec<&std::ffi::OsStr> = vec!["verify".as_ref()];
    v.extend(args);
    align_p(&v)
}

/// Multiplies the largest |weight| of the `k`-th Conv by `factor`.
fn scale_largest_weight(m: &mut ModelProto, k: usize, factor: f64) -> String {
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().filter(|n| n.op_type() == "Conv").nth(k).unwrap();
    let wname = conv.input[1].clone();
    let w = g.initializer.iter_mut().find(|t| t.name() == wname).unwrap();
    let mut v = align::tensor::to_f64(w).unwrap();
    let i = (0..v.len()).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs())).unwrap();
    v[i] *= factor;
    *w = align::tensor::rewrite(w, &align::tensor::dims(w), &v).unwrap();
    conv.name().to_string()
}

#[test]
fn a_correct_rewrite_is_equivalent_and_json_has_the_bound_and_margin() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let o = verify(&[f.as_os_str(), a.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["equivalent"], true);
    let v = &j["verification"];
    assert_eq!(v["criterion"], "fp32-noise");
    assert_eq!(v["passed"], true);
    assert_eq!(v["input_shapes"][0]["shape"], serde_json::json!([1, 3, 64, 64]));
    assert_eq!(v["trials"], 8, "a 64x64 input gets 8 automatic trials");
    let out = &v["outputs"][0];
    assert_eq!(out["name"], "output");
    assert_eq!(out["compared"], "values");
    let (dev, allowed, margin) =
        (out["deviation"].as_f64().unwrap(), out["allowed"].as_f64().unwrap(), out["margin"].as_f64().unwrap());
    assert!(dev > 0.0, "folding BN moves the outputs a little: {out}");
    assert!(margin > 0.0 && margin <= 1.0, "{out}");
    assert!((dev / allowed - margin).abs() < 1e-9, "{out}");
    assert!(out["noise"].as_f64().unwrap() > 0.0, "the original's own noise is measured: {out}");
    for k in ["scale", "slice", "statistic", "max_abs", "max_value", "elements", "mismatches"] {
        assert!(out.get(k).is_some(), "missing {k}: {out}");
    }
    // the text names the deviation, the bound and the margin
    let t = stdout(&verify(&[f.as_os_str(), a.as_os_str()]));
    assert!(t.contains("passed") && t.contains("is allowed (margin") && t.contains("fp32 noise"), "{t}");
    assert!(!t.contains("max rel"), "{t}");
}

#[test]
fn injected_bugs_are_not_equivalent() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let (good, _) = onnx::load(&a).unwrap();
    // the largest weight of the first conv x1.01: a 1% error in one weight
    let mut m = good.clone();
    let node = scale_largest_weight(&mut m, 0, 1.01);
    let bug = tmp.path().join("bug.onnx");
    save(&m, &bug);
    let o = verify(&[f.as_os_str(), bug.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(1), "{node}: {}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["equivalent"], false);
    assert!(j["verification"]["margin"].as_f64().unwrap() > 1.0);
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("bug.onnx") && err.contains("not equivalent") && err.contains("margin"), "{err}");
    // a bias moved by 0.01
    let mut m = good.clone();
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().filter(|n| n.op_type() == "Conv" && n.input.len() > 2).nth(5).unwrap();
    let bname = conv.input[2].clone();
    let b = g.initializer.iter_mut().find(|t| t.name() == bname).unwrap();
    let mut v = align::tensor::to_f64(b).unwrap();
    v[0] += 0.01;
    *b = align::tensor::rewrite(b, &align::tensor::dims(b), &v).unwrap();
    save(&m, &bug);
    let o = verify(&[f.as_os_str(), bug.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAILED"));
}

#[test]
fn strict_mode_is_the_elementwise_test() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let o = verify(&[f.as_os_str(), a.as_os_str(), "--strict".as_ref(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "1e-4 + 1e-4·|a| holds for this fixture: {}", stderr(&o));
    let v = &json(&o)["verification"];
    assert_eq!(v["criterion"], "elementwise");
    assert_eq!(v["tolerance"]["atol"], 1e-4);
    assert!(v["outputs"][0]["noise"].is_null());
    // zero tolerance: BN folding moves outputs by ~1e-6, so this fails
    let o = verify(&[
        f.as_os_str(),
        a.as_os_str(),
        "--strict".as_ref(),
        "--atol".as_ref(),
        "0".as_ref(),
        "--rtol".as_ref(),
        "0".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // without --strict, --atol only loosens the numeric check: a huge atol
    // lets a bug through the tensors and outputs, but not through the
    // certificate, which holds every weight of align's padding exactly
    let (mut m, _) = onnx::load(&a).unwrap();
    scale_largest_weight(&mut m, 0, 1.01);
    let bug = tmp.path().join("bug.onnx");
    save(&m, &bug);
    assert_eq!(verify(&[f.as_os_str(), bug.as_os_str()]).status.code(), Some(1));
    let o = verify(&[f.as_os_str(), bug.as_os_str(), "--atol".as_ref(), "10".as_ref(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v = &json(&o)["verification"];
    assert_eq!(v["outputs"][0]["passed"], true, "{v}");
    assert_eq!(v["tensors"]["passed"], true, "{v}");
    assert_eq!(v["certificate"]["passed"], false, "{v}");
    assert!(v["certificate"]["first"].as_str().unwrap().contains("/focus/conv/conv/Conv"), "{v}");
}

#[test]
fn different_interfaces_are_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    // same input and output names, another output shape: not equivalent
    let other = fixtures().join("v3_csp_op13_bn.onnx");
    let o = verify(&[f.as_os_str(), other.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("output 'output' has shape") && err.contains("v3_csp_op13_bn.onnx"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // an output renamed: not equivalent
    let (mut m, _) = onnx::load(&f).unwrap();
    let g = m.graph.as_mut().unwrap();
    let last = g.node.iter_mut().find(|n| n.output.iter().any(|o| o == "output")).unwrap();
    for o in last.output.iter_mut().filter(|o| *o == "output") {
        *o = "dets".into();
    }
    g.output[0].name = Some("dets".into());
    let renamed = tmp.path().join("renamed.onnx");
    save(&m, &renamed);
    let o = verify(&[f.as_os_str(), renamed.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no output 'output'"), "{}", stderr(&o));
    // an input renamed: the same inputs cannot be fed, an input error
    let (mut m, _) = onnx::load(&f).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.input[0].name = Some("pixels".into());
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut().filter(|i| *i == "images") {
            *i = "pixels".into();
        }
    }
    let p = tmp.path().join("pixels.onnx");
    save(&m, &p);
    let o = verify(&[f.as_os_str(), p.as_os_str()]);
    assert_input_error(&o, "pixels.onnx", None, 0);
    assert!(stderr(&o).contains("'pixels'"), "{}", stderr(&o));
    // a missing file names that file
    let o = verify(&[f.as_os_str(), tmp.path().join("nope.onnx").as_os_str()]);
    assert_input_error(&o, "nope.onnx", None, 0);
    // bad options
    let o = verify(&[f.as_os_str(), f.as_os_str(), "--input-range".as_ref(), "1,0".as_ref()]);
    assert_input_error(&o, "v4_c3_deconv_bn_op13.onnx", None, 0);
    let o = verify(&[f.as_os_str(), f.as_os_str(), "--input-shape".as_ref(), "nope=1x3x64x64".as_ref()]);
    assert_input_error(&o, "v4_c3_deconv_bn_op13.onnx", None, 0);
}

/// The fixture with its input's batch and spatial dims made symbolic, as
/// `torch.onnx.export(dynamic_axes=…)` or ultralytics `dynamic=True` write it.
fn dynamic(f: &Path, imgsz: Option<&str>) -> ModelProto {
    use onnx::tensor_shape_proto::dimension::Value;
    let (mut m, _) = onnx::load(f).unwrap();
    let g = m.graph.as_mut().unwrap();
    let dims = match g.input[0].r#type.as_mut().unwrap().value.as_mut().unwrap() {
        onnx::type_proto::Value::TensorType(tt) => &mut tt.shape.as_mut().unwrap().dim,
        _ => unreachable!(),
    };
    for (i, name) in [(0, "batch"), (2, "height"), (3, "width")] {
        dims[i].value = Some(Value::DimParam(name.into()));
    }
    g.value_info.clear();
    if let Some(s) = imgsz {
        m.metadata_props.push(onnx::StringStringEntryProto { key: Some("imgsz".into()), value: Some(s.into()) });
    }
    m
}

#[test]
fn symbolic_batch_verifies_at_1_and_spatial_dims_come_from_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    // no size recorded: ask for --input-shape, exit 2, nothing written
    let d = tmp.path().join("dyn.onnx");
    save(&dynamic(&f, None), &d);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let o = align_p(&[d.as_os_str(), "-o".as_ref(), out.join("a.onnx").as_os_str()]);
    assert_input_error(&o, "dyn.onnx", Some(&out), 0);
    assert!(stderr(&o).contains("--input-shape images="), "{}", stderr(&o));
    let o = align_p(&[
        d.as_os_str(),
        "--input-shape".as_ref(),
        "images=1x3x64x64".as_ref(),
        "--json".as_ref(),
        "-o".as_ref(),
        out.join("a.onnx").as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ultralytics records the size: no flag needed, and the batch is 1
    let u = tmp.path().join("ultra.onnx");
    save(&dynamic(&f, Some("[64, 64]")), &u);
    let a = out.join("u.onnx");
    let o = align_p(&[u.as_os_str(), "--json".as_ref(), "-o".as_ref(), a.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json(&o)["verification"];
    assert_eq!(v["input_shapes"][0]["shape"], serde_json::json!([1, 3, 64, 64]));
    assert!(v["inputs"].as_str().unwrap().contains("[0, 1)"), "ultralytics inputs are in [0, 1]: {v}");
    // the written model keeps its symbolic dims
    let (m, _) = onnx::load(&a).unwrap();
    let (m0, _) = onnx::load(&u).unwrap();
    assert_eq!(m.graph.as_ref().unwrap().input, m0.graph.as_ref().unwrap().input);
    // and align verify takes it the same way
    assert_eq!(verify(&[u.as_os_str(), a.as_os_str()]).status.code(), Some(0));
}

/// A .npy file as numpy writes it (version 1, little-endian float32).
fn npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    for x in data {
        b.extend(x.to_le_bytes());
    }
    b
}

#[test]
fn real_inputs_from_an_npy_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    // two input sets: a leading axis of 2
    let data: Vec<f32> = (0..2 * 3 * 64 * 64).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let x = tmp.path().join("x.npy");
    fs::write(&x, npy(&[2, 1, 3, 64, 64], &data)).unwrap();
    let o = verify(&[f.as_os_str(), a.as_os_str(), "--inputs".as_ref(), x.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = &json(&o)["verification"];
    assert_eq!(v["trials"], 2);
    assert!(v["inputs"].as_str().unwrap().contains("x.npy"), "{v}");
    // a wrong shape is an input error naming the file
    fs::write(&x, npy(&[1, 3, 32, 32], &data[..3 * 32 * 32])).unwrap();
    let o = verify(&[f.as_os_str(), a.as_os_str(), "--inputs".as_ref(), x.as_os_str()]);
    assert_input_error(&o, "x.npy", None, 0);
}

/// `output` [1, 960, 8] → TopK over the boxes by column 4 → graph outputs
/// `scores` (values) and `picked` (indices).
fn with_topk(m: &mut ModelProto) {
    use onnx::{NodeProto, TensorProto, ValueInfoProto};
    let g = m.graph.as_mut().unwrap();
    let i64s = |name: &str, v: &[i64]| TensorProto {
        name: Some(name.into()),
        data_type: Some(7),
        dims: vec![v.len() as i64],
        int64_data: v.to_vec(),
        ..Default::default()
    };
    g.initializer.extend([
        i64s("sel.k", &[10]),
        i64s("sel.starts", &[4]),
        i64s("sel.ends", &[5]),
        i64s("sel.axes", &[2]),
    ]);
    let node = |op: &str, ins: &[&str], outs: &[&str], attrs: Vec<onnx::AttributeProto>| NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("/sel/{op}")),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    };
    let axis = onnx::AttributeProto { name: Some("axis".into()), i: Some(1), r#type: Some(2), ..Default::default() };
    g.node.push(node("Slice", &["output", "sel.starts", "sel.ends", "sel.axes"], &["conf"], vec![]));
    g.node.push(node("TopK", &["conf", "sel.k"], &["scores", "picked"], vec![axis]));
    g.output = ["scores", "picked"]
        .iter()
        .map(|n| ValueInfoProto { name: Some(n.to_string()), ..Default::default() })
        .collect();
}

#[test]
fn selected_outputs_are_compared_through_what_feeds_the_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let (mut m0, _) = onnx::load(&f).unwrap();
    let (mut m1, _) = onnx::load(&a).unwrap();
    with_topk(&mut m0);
    with_topk(&mut m1);
    let (p0, p1) = (tmp.path().join("topk.onnx"), tmp.path().join("topk.aligned.onnx"));
    save(&m0, &p0);
    save(&m1, &p1);
    let o = verify(&[p0.as_os_str(), p1.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = &json(&o)["verification"];
    let sel = v["selected"].as_array().unwrap();
    assert_eq!(sel.len(), 2, "{v}");
    assert_eq!(sel[0]["name"], "scores");
    assert_eq!(sel[0]["via"][0], "TopK '/sel/TopK'");
    let outs = v["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "{v}");
    assert_eq!(outs[0]["name"], "conf");
    assert_eq!(outs[0]["compared"], "input of TopK '/sel/TopK'");
    let t = stdout(&verify(&[p0.as_os_str(), p1.as_os_str()]));
    assert!(t.contains("scores: not compared by value") && t.contains("conf (input of TopK"), "{t}");
    // a bug before the selection is still caught
    scale_largest_weight(&mut m1, 0, 1.01);
    save(&m1, &p1);
    let o = verify(&[p0.as_os_str(), p1.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("first departure: output of BatchNormalization '/focus/conv/bn/BatchNormalization'"), "{err}");
}

/// What a CI gate meets: align's output damaged by hand or by another tool.
/// Every damage that changes the network gets exit 1 (not equivalent) or 2
/// (bad input) with one line naming the file; renaming nodes changes
/// nothing (exit 0); never a panic (exit 101).
#[test]
fn damaged_candidates_get_a_verdict_or_one_line_never_a_panic() {
    use onnx::{NodeProto, ValueInfoProto};
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let (good, _) = onnx::load(&a).unwrap();
    type Damage = fn(&mut onnx::GraphProto);
    let damages: Vec<(&str, Damage)> = vec![
        ("a node loses its outputs", |g| g.node[3].output.clear()),
        ("an ArgMax with no outputs", |g| {
            g.node.push(NodeProto {
                op_type: Some("ArgMax".into()),
                input: vec![g.node[0].output[0].clone()],
                ..Default::default()
            })
        }),
        ("a TopK and an NMS with no outputs and no names", |g| {
            for op in ["TopK", "NonMaxSuppression"] {
                g.node.push(NodeProto { op_type: Some(op.into()), ..Default::default() });
            }
        }),
        ("two nodes make one tensor", |g| g.node[5].output[0] = g.node[4].output[0].clone()),
        ("an output name empty", |g| g.node[2].output[0] = String::new()),
        ("a graph output listed twice", |g| {
            let o = g.output[0].clone();
            g.output.push(o)
        }),
        ("a graph output that is the graph input", |g| {
            let i = g.input[0].name().to_string();
            g.output.push(ValueInfoProto { name: Some(i), ..Default::default() })
        }),
        ("a node removed", |g| {
            g.node.remove(6);
        }),
        ("a weight's data cut short", |g| {
            let t = g.initializer.iter_mut().find(|t| t.dims.len() == 4).unwrap();
            if let Some(r) = t.raw_data.as_mut() {
                *r = r.slice(..r.len() / 2);
            } else {
                t.float_data.truncate(t.float_data.len() / 2);
            }
        }),
        ("two weights swapped", |g| {
            let ws: Vec<usize> = (0..g.initializer.len()).filter(|&i| g.initializer[i].dims.len() == 4).collect();
            let (a, b) = (ws[2], ws[3]);
            let na = g.initializer[a].name.clone();
            let nb = g.initializer[b].name.clone();
            g.initializer.swap(a, b);
            g.initializer[a].name = na;
            g.initializer[b].name = nb;
        }),
    ];
    for (what, damage) in damages {
        let mut m = good.clone();
        damage(m.graph.as_mut().unwrap());
        let bad = tmp.path().join("damaged.onnx");
        save(&m, &bad);
        let o = verify(&[f.as_os_str(), bad.as_os_str()]);
        let code = o.status.code();
        assert!(matches!(code, Some(1) | Some(2)), "{what}: exit {code:?}\n{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(err.contains("damaged.onnx") || err.contains("v4_c3"), "{what}: {err}");
    }
    let mut m = good.clone();
    m.graph.as_mut().unwrap().node.iter_mut().for_each(|n| n.name = None);
    let renamed = tmp.path().join("renamed.onnx");
    save(&m, &renamed);
    let o = verify(&[f.as_os_str(), renamed.as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "node names are not the network: {}", stderr(&o));
}

/// Another tool's rewrite (onnxoptimizer's `fuse_bn_into_conv`): BN folded
/// into the conv, which keeps its own output name for the folded values and
/// takes over the BN's readers. The name then means another tensor: it is
/// left out (its readers differ), the rest is compared by name and shape,
/// and a bug planted after the fold is still found where it was made.
#[test]
fn another_tool_s_fold_that_reuses_names_is_equivalent_and_a_bug_in_it_is_located() {
    use align::tensor::{dims, rewrite, to_f64};
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let (mut m, _) = onnx::load(&f).unwrap();
    let g = m.graph.as_mut().unwrap();
    let get = |g: &onnx::GraphProto, n: &str| to_f64(g.initializer.iter().find(|t| t.name() == n).unwrap()).unwrap();
    let mut folded = 0;
    while let Some(bi) = g.node.iter().position(|n| {
        n.op_type() == "BatchNormalization"
            && g.node.iter().any(|c| c.op_type() == "Conv" && c.output[0] == n.input[0] && c.input.len() == 2)
    }) {
        let bn = g.node.remove(bi);
        let ci = g.node.iter().position(|c| c.op_type() == "Conv" && c.output[0] == bn.input[0]).unwrap();
        let (gamma, beta, mean, var) =
            (get(g, &bn.input[1]), get(g, &bn.input[2]), get(g, &bn.input[3]), get(g, &bn.input[4]));
        let eps = bn.attribute.iter().find(|a| a.name() == "epsilon").map_or(1e-5, |a| a.f() as f64);
        let s: Vec<f64> = (0..gamma.len()).map(|o| gamma[o] / (var[o] + eps).sqrt()).collect();
        let wname = g.node[ci].input[1].clone();
        let wt = g.initializer.iter_mut().find(|t| t.name() == wname).unwrap();
        let mut w = to_f64(wt).unwrap();
        let per = w.len() / s.len();
        w.iter_mut().enumerate().for_each(|(i, v)| *v *= s[i / per]);
        *wt = rewrite(wt, &dims(wt), &w).unwrap();
        let b: Vec<f64> = (0..s.len()).map(|o| beta[o] - mean[o] * s[o]).collect();
        let bname = format!("{wname}.fused_bias");
        let mut bt = rewrite(wt, &[s.len()], &b).unwrap();
        bt.name = Some(bname.clone());
        g.initializer.push(bt);
        g.node[ci].input.push(bname);
        let conv_out = g.node[ci].output[0].clone();
        for n in g.node.iter_mut() {
            n.input.iter_mut().filter(|i| **i == bn.output[0]).for_each(|i| *i = conv_out.clone());
        }
        g.output.iter_mut().filter(|o| o.name() == bn.output[0]).for_each(|o| o.name = Some(conv_out.clone()));
        folded += 1;
    }
    assert!(folded > 10, "{folded}");
    let p = tmp.path().join("fused.onnx");
    save(&m, &p);
    let o = verify(&[f.as_os_str(), p.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let t = &json(&o)["verification"]["tensors"];
    assert_eq!(t["layout"], "names and shapes", "{t}");
    assert!(
        t["not_compared"]["read by other ops in the candidate (a name the rewrite reused)"].as_u64().unwrap() >= 10
    );
    assert!(t["compared"].as_u64().unwrap() > 50, "{t}");
    // negative control: one bias of a fused conv +0.01
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().filter(|n| n.op_type() == "Conv" && n.input.len() == 3).nth(5).unwrap().clone();
    let bt = g.initializer.iter_mut().find(|t| t.name() == conv.input[2]).unwrap();
    let mut b = to_f64(bt).unwrap();
    b[0] += 0.01;
    *bt = rewrite(bt, &dims(bt), &b).unwrap();
    save(&m, &p);
    let o = verify(&[f.as_os_str(), p.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("first departure"), "{}", stderr(&o));
}

/// One trial (what a 640×640 model gets): every probe is compared on it.
#[test]
fn a_single_trial_compares_every_shared_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let o = verify(&[f.as_os_str(), a.as_os_str(), "--trials".as_ref(), "1".as_ref(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = &json(&o)["verification"]["tensors"];
    assert_eq!(t["compared"], t["shared"], "{t}");
    assert!(t["padded"].as_u64().unwrap() > 50, "{t}");
}

#[test]
fn progress_is_told_every_comparison_up_to_the_total() {
    // what the CLI's progress bar shows: one unit per probe compared per
    // trial plus one per trial run, from 0 to the total, never beyond
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let a = aligned(&f, tmp.path());
    let (orig, _) = onnx::load(&f).unwrap();
    let (cand, _) = onnx::load(&a).unwrap();
    let seen = std::sync::Mutex::new(vec![]);
    let opts = align::verify::VerifyOptions { trials: 2, ..Default::default() };
    let v = align::verify::verify_observed(&orig, &cand, &Default::default(), &opts, None, &|d, t| {
        seen.lock().unwrap().push((d, t))
    })
    .unwrap();
    assert!(v.passed);
    let seen = seen.into_inner().unwrap();
    let total = seen[0].1;
    let compared = v.tensors.as_ref().unwrap().compared;
    assert_eq!(seen[0].0, 0);
    assert!(seen.iter().all(|&(d, t)| t == total && d <= total), "{seen:?}");
    assert_eq!(seen.iter().map(|s| s.0).max(), Some(total), "{seen:?}");
    // two trials of every probe (each has enough elements per channel), two runs
    assert_eq!(total, 2 * compared + 2, "{seen:?}");
    assert_eq!(seen.len(), total + 1);
}
