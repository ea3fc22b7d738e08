//! End-to-end tests of the `align` binary on the shipped fixtures.

use crate::util;

use align::onnx;
use std::fs;
use util::*;

#[test]
fn round_trip_without_passes_is_faithful_on_every_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures() {
        let out = tmp.path().join("rt.onnx");
        let o = align_p(&[
            f.as_os_str(),
            "--passes".as_ref(),
            "none".as_ref(),
            "--no-verify".as_ref(),
            "-q".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        let (a, _) = onnx::load(&f).unwrap();
        let (b, _) = onnx::load(&out).unwrap();
        assert!(a == b, "{}: round trip changed the model", f.display());
        if !f.to_string_lossy().contains("dynamo") {
            assert_eq!(fs::read(&f).unwrap(), fs::read(&out).unwrap(), "{}: bytes differ", f.display());
        }
    }
}

#[test]
fn align_every_generated_fixture_leaves_no_free_unaligned_dim() {
    let tmp = tempfile::tempdir().unwrap();
    for f in generated_fixtures() {
        let out = tmp.path().join("a.onnx");
        let before = fs::read(&f).unwrap();
        let o = align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        assert_eq!(fs::read(&f).unwrap(), before, "input modified");
        let j = json(&o);
        let v = &j["verification"];
        assert_eq!(v["passed"], true, "{}", f.display());
        for out in v["outputs"].as_array().unwrap() {
            assert!(out["max_abs"].as_f64().unwrap() <= 1e-4, "{}: {out}", f.display());
            assert!(out["max_value"].as_f64().unwrap() > 0.0, "{}: output is all zero", f.display());
        }
        assert_eq!(j["unaligned_free_dims_after"], 0, "{}", f.display());
        // the written model passes the gate and no BN is left to fold
        let c = align_p(&["check".as_ref(), out.as_os_str()]);
        assert_eq!(c.status.code(), Some(0), "{}: {}", f.display(), stdout(&c));
        let (m, _) = onnx::load(&out).unwrap();
        let mut ir = align::ir::Model::import(m).unwrap();
        assert_eq!(align::passes::fold_bn::run(&mut ir).unwrap().0, 0, "{}: foldable BN left", f.display());
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn pruned_fixtures_really_get_padded() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["v4_c3_deconv_bn_op13.onnx", "v3_csp_leaky_hswish_op11.onnx", "dynamo_op18/model.onnx"] {
        let f = fixtures().join(name);
        let out = tmp.path().join("a.onnx");
        let j = json(&align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]));
        assert!(j["unaligned_free_dims_before"].as_u64().unwrap() > 10, "{name}: {j}");
        assert!(j["params_after"].as_u64().unwrap() > j["params_before"].as_u64().unwrap());
    }
}

#[test]
fn bn_is_folded_including_after_concat() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a.onnx");
    let f = fixtures().join("v3_csp_leaky_hswish_op11.onnx");
    let j = json(&align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]));
    let fold = &j["passes"][0];
    assert_eq!(fold["pass"], "fold-bn");
    assert_eq!(fold["changed"], 4, "{fold}");
    let (m, _) = onnx::load(&out).unwrap();
    assert!(m.graph.unwrap().node.iter().all(|n| n.op_type() != "BatchNormalization"));
}

#[test]
fn default_output_sits_beside_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("net.onnx");
    fs::copy(fixtures().join("v4_c3_deconv_fused_op12.onnx"), &f).unwrap();
    let o = align_p(&[f.as_os_str(), "-q".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("net.aligned.onnx").is_file());
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

#[test]
fn multiples_of_16_and_32() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    for m in ["16", "32"] {
        let out = tmp.path().join(format!("a{m}.onnx"));
        let o =
            align_p(&[f.as_os_str(), "--multiple".as_ref(), m.as_ref(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let c = align_p(&["check".as_ref(), out.as_os_str(), "--multiple".as_ref(), m.as_ref()]);
        assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
    }
}

#[test]
fn check_fails_on_pruned_and_passes_on_aligned() {
    let f = fixtures().join("v4_c3_deconv_fused_op12.onnx");
    let o = align_p(&["check".as_ref(), f.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.status.code(), Some(1));
    let j = json(&o);
    assert_eq!(j["ok"], false);
    let off = j["offenders"].as_array().unwrap();
    assert!(!off.is_empty());
    for x in off {
        let (c, p) = (x["channels"].as_u64().unwrap(), x["padded_to"].as_u64().unwrap());
        assert!(p > c && p % 8 == 0, "{x}");
        assert!(x["side"] == "in" || x["side"] == "out");
    }
    let text = stdout(&align_p(&["check".as_ref(), f.as_os_str()]));
    assert!(text.contains("unaligned:") && text.contains("FAIL"), "{text}");

    let a = fixtures().join("aligned_op13.onnx");
    assert_eq!(align_p(&["check".as_ref(), a.as_os_str()]).status.code(), Some(0));
    // the graph input (12 channels after Focus) is pinned and unaligned: --strict fails
    let s = align_p(&["check".as_ref(), a.as_os_str(), "--strict".as_ref()]);
    assert_eq!(s.status.code(), Some(1), "{}", stdout(&s));
    assert!(stdout(&s).contains("graph input 'images'"));
}

#[test]
fn report_lists_layers_with_required_fields() {
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let o = align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let layers = j["layers"].as_array().unwrap();
    assert!(layers.len() >= 29);
    for l in layers {
        for k in ["node", "op", "in_channels", "out_channels", "groups", "params", "macs", "aligned"] {
            assert!(l.get(k).is_some(), "missing {k} in {l}");
        }
    }
    let deconv = layers.iter().find(|l| l["op"] == "ConvTranspose").expect("a ConvTranspose row");
    assert_eq!(deconv["in_channels"], 37);
    assert_eq!(deconv["out_channels"], 32);
    assert_eq!(deconv["in"]["aligned_to"], 40);
    assert_eq!(deconv["out"]["aligned_to"], 32);
    // a 1x1 conv's MACs = out·in·H·W
    let conv = layers.iter().find(|l| l["op"] == "Conv" && l["kernel"] == serde_json::json!([1, 1])).unwrap();
    assert!(conv["macs"].as_u64().unwrap() > 0);
    let pinned = j["pinned"].as_array().unwrap();
    assert!(pinned.iter().any(|p| p["reasons"].to_string().contains("Reshape")), "{pinned:?}");
    let text = stdout(&align_p(&["report".as_ref(), f.as_os_str()]));
    assert!(text.contains("ConvTranspose") && text.contains("37→40") && text.contains("pinned:"), "{text}");
}

#[test]
fn deconv_dims_are_pinned_without_the_deconv_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let out = tmp.path().join("a.onnx");
    let o = align_p(&[
        f.as_os_str(),
        "--passes".as_ref(),
        "fold-bn,pad".as_ref(),
        "--json".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert!(j["pinned"].to_string().contains("deconv pass not selected"), "{j}");
}

#[test]
fn failed_verification_exits_1_and_writes_nothing() {
    // Folding BN moves outputs by ~1e-6: the strict elementwise test with
    // zero tolerance must fail.
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let out = tmp.path().join("a.onnx");
    let o = align_p(&[
        f.as_os_str(),
        "--strict".as_ref(),
        "--atol".as_ref(),
        "0".as_ref(),
        "--rtol".as_ref(),
        "0".as_ref(),
        "-q".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("verification failed") && err.contains("v4_c3_deconv_bn_op13.onnx"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written");
}

/// Graph inputs (with initializers listed as inputs in IR < 4) and outputs
/// are the model's contract: names, types and shapes never change.
#[test]
fn graph_inputs_and_outputs_never_change() {
    let tmp = tempfile::tempdir().unwrap();
    for (f, multiple) in [
        (fixtures().join("third_party/light_squeezenet.onnx"), "32"),
        (fixtures().join("third_party/light_resnet50.onnx"), "8"),
        (fixtures().join("v3_csp_op13_bn.onnx"), "16"),
    ] {
        let out = tmp.path().join("a.onnx");
        let o = align_p(&[
            f.as_os_str(),
            "--no-verify".as_ref(),
            "-q".as_ref(),
            "--multiple".as_ref(),
            multiple.as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (a, _) = onnx::load(&f).unwrap();
        let (b, _) = onnx::load(&out).unwrap();
        let (ga, gb) = (a.graph.as_ref().unwrap(), b.graph.as_ref().unwrap());
        assert_eq!(ga.input, gb.input, "{}", f.display());
        assert_eq!(ga.output, gb.output, "{}", f.display());
        // a listed initializer keeps its value
        for vi in &gb.input {
            let ta = ga.initializer.iter().find(|t| t.name() == vi.name());
            let tb = gb.initializer.iter().find(|t| t.name() == vi.name());
            assert_eq!(ta, tb, "{}: initializer input '{}' changed", f.display(), vi.name());
        }
        // IR < 4: every initializer must be a graph input (onnx.checker rule)
        if b.ir_version() < 4 {
            for t in &gb.initializer {
                assert!(
                    gb.input.iter().any(|vi| vi.name() == t.name()),
                    "{}: '{}' not an input",
                    f.display(),
                    t.name()
                );
            }
        }
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn models_tract_cannot_run_need_no_verify_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures().into_iter().filter(|p| tract_cannot_run(p)) {
        let out = tmp.path().join("a.onnx");
        let o = align_p(&[f.as_os_str(), "-o".as_ref(), out.as_os_str()]);
        assert_input_error(&o, f.file_name().unwrap().to_str().unwrap(), Some(tmp.path()), 0);
        assert!(stderr(&o).contains("--no-verify"), "{}", stderr(&o));
        let o = align_p(&[f.as_os_str(), "--no-verify".as_ref(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j = json(&o);
        assert_eq!(j["unaligned_free_dims_after"], 0);
        // what align could not analyse (the custom op's tensors) fails the gate
        let gaps = j["unanalysed_dims_after"].as_u64().unwrap();
        let code = align_p(&["check".as_ref(), out.as_os_str()]).status.code();
        assert_eq!(code, Some(if gaps > 0 { 1 } else { 0 }), "{j}");
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn unknown_op_is_unanalysed_and_stops_only_the_spaces_it_touches() {
    let f = fixtures().join("realworld/unknown_op.onnx");
    let j = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
    // an op align does not know is a gap of the tool, never a pin
    let text = j["unanalysed"].to_string();
    assert!(text.contains("com.example::MyOp"), "{text}");
    assert!(!j["pinned"].to_string().contains("com.example::MyOp"), "{j}");
    assert!(j["totals"]["unanalysed"].as_u64().unwrap() > 0, "{j}");
    // the conv after the unknown op still gets its own output aligned, and the
    // Concat of the pinned branch with a free one pads only the free part
    let fuse = j["layers"].as_array().unwrap().iter().find(|l| l["node"] == "/fuse/fuse.0/Conv").unwrap();
    assert_eq!(fuse["in"]["parts"], serde_json::json!([18, 18]));
    assert_eq!(fuse["in"]["aligned_to"], 42);
    assert_eq!(fuse["out"]["aligned_to"], 16);
}

#[test]
fn chunk_shape_arithmetic_is_evaluated_and_the_halves_padded() {
    // C2f exported with .chunk(): Shape → Gather → Add → Div → Mul → Slice
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("realworld/c2f_chunk_op17.onnx");
    let before = json(&align_p(&["check".as_ref(), f.as_os_str(), "--json".as_ref()]));
    assert!(before["offenders"].as_array().unwrap().len() >= 10, "{before}");
    let out = tmp.path().join("a.onnx");
    let j = json(&align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]));
    assert_eq!(j["verification"]["passed"], true);
    assert_eq!(j["unaligned_free_dims_after"], 0);
    let (m, _) = onnx::load(&out).unwrap();
    assert!(m.graph.unwrap().node.iter().all(|n| n.op_type() != "Shape"), "shape arithmetic removed");
    assert_eq!(align_p(&["check".as_ref(), out.as_os_str()]).status.code(), Some(0));
}

#[test]
fn check_never_passes_convs_it_cannot_analyse() {
    // the same model with its split point fed from outside: not evaluable
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = onnx::load(&fixtures().join("realworld/c2f_chunk_op17.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let mut vi = g.input[0].clone();
    vi.name = Some("split_at".into());
    if let Some(onnx::type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        tt.elem_type = Some(7);
        tt.shape.as_mut().unwrap().dim.truncate(1);
    }
    g.input.push(vi);
    let slice = g.node.iter_mut().find(|n| n.name() == "/c2f/Slice").unwrap();
    slice.input[2] = "split_at".into();
    let f = tmp.path().join("dyn.onnx");
    fs::write(&f, m.encode_to_vec()).unwrap();
    let o = align_p(&["check".as_ref(), f.as_os_str(), "--json".as_ref()]);
    let j = json(&o);
    let gaps = j["unanalysed"].as_array().unwrap();
    assert!(gaps.iter().any(|p| p["unanalysed"].to_string().contains("shape unknown")), "{gaps:?}");
    assert!(!j["pinned"].to_string().contains("shape unknown"), "a gap is never counted as a pin: {j}");
    // an unanalysed unaligned dim fails the gate without --strict
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn slice_pinned_pads_detect_convs_behind_a_restoring_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("v3_csp_op13_bn.onnx");
    let out = tmp.path().join("a.onnx");
    let o = align_p(&[f.as_os_str(), "--slice-pinned".as_ref(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["verification"]["passed"], true);
    let (a, _) = onnx::load(&f).unwrap();
    let (b, _) = onnx::load(&out).unwrap();
    let (ga, gb) = (a.graph.unwrap(), b.graph.unwrap());
    assert_eq!(ga.input, gb.input);
    assert_eq!(ga.output, gb.output);
    let restoring =
        |g: &onnx::GraphProto| g.node.iter().filter(|n| n.doc_string() == align::analysis::RESTORE_SLICE_DOC).count();
    assert_eq!(restoring(&ga), 0);
    assert_eq!(restoring(&gb), 2, "one Slice per Detect conv");
    // the aligned model's Detect convs are 256 wide and check passes
    let r = json(&align_p(&["report".as_ref(), out.as_os_str(), "--json".as_ref()]));
    let detect: Vec<_> =
        r["layers"].as_array().unwrap().iter().filter(|l| l["node"].as_str().unwrap().starts_with("/detect")).collect();
    assert_eq!(detect.len(), 2);
    for l in detect {
        assert_eq!(l["out_channels"], 256, "{l}");
    }
    assert_eq!(align_p(&["check".as_ref(), out.as_os_str()]).status.code(), Some(0));
    // without the option the same convs stay at 255
    let plain = tmp.path().join("p.onnx");
    assert!(align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), plain.as_os_str()]).status.success());
    let r = json(&align_p(&["report".as_ref(), plain.as_os_str(), "--json".as_ref()]));
    assert!(r["layers"].as_array().unwrap().iter().any(|l| l["out_channels"] == 255));
}

#[test]
fn report_svg_draws_every_conv_and_marks_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("realworld/yolov8_c2f_op17.onnx");
    let svg = tmp.path().join("r.svg");
    let o = align_p(&["report".as_ref(), f.as_os_str(), "--svg".as_ref(), svg.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    let j = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
    let convs: Vec<_> = j["layers"].as_array().unwrap().iter().filter(|l| l["op"] == "Conv").collect();
    for l in &convs {
        assert!(s.contains(&format!("<title>{}</title>", l["node"].as_str().unwrap())), "{l}");
    }
    assert!(s.contains("#e8902a"), "pinned dims are drawn");
    assert!(s.contains("pinned: Reshape"), "tooltips say why");
    assert!(s.contains("11 → 16"), "padding is labelled");
    // an unwritable target is an input error, and nothing is left behind
    let o = align_p(&["report".as_ref(), f.as_os_str(), "--svg".as_ref(), tmp.path().join("no/r.svg").as_os_str()]);
    assert_input_error(&o, "yolov8_c2f_op17.onnx", Some(tmp.path()), 1);
}

#[test]
fn large_models_are_saved_with_external_data_and_load_back() {
    // the 2 GiB protobuf limit, lowered so a fixture crosses it
    let tmp = tempfile::tempdir().unwrap();
    let (m, _) = onnx::load(&fixtures().join("v4_c3_deconv_bn_op13.onnx")).unwrap();
    let out = tmp.path().join("big.onnx");
    onnx::save(&m, &out, 100_000).unwrap();
    let data = tmp.path().join("big.onnx.data");
    assert!(data.is_file(), "external data written beside the model");
    assert!(fs::metadata(&out).unwrap().len() < 100_000);
    let (back, external) = onnx::load(&out).unwrap();
    assert!(external);
    assert!(back == m, "the model loads back equal");
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files: {names:?}");
    // and the CLI aligns it like any model
    let o = align_p(&[out.as_os_str(), "-q".as_ref(), "-o".as_ref(), tmp.path().join("a.onnx").as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_staged_model_lands_on_commit_and_vanishes_when_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, _) = onnx::load(&fixtures().join("v4_c3_deconv_bn_op13.onnx")).unwrap();
    let out = tmp.path().join("m.onnx");
    let count = || fs::read_dir(tmp.path()).unwrap().count();
    // dropped: the temporary file goes, nothing lands
    let staged = onnx::stage(&m, &out, onnx::PROTOBUF_LIMIT).unwrap();
    assert!(staged.is_inline() && staged.temp_path().is_file() && !out.exists());
    let (back, _) = onnx::load(staged.temp_path()).unwrap();
    assert!(back == m, "the staged file is the model");
    drop(staged);
    assert_eq!(count(), 0);
    // committed: exactly the model, no temporary left
    onnx::stage(&m, &out, onnx::PROTOBUF_LIMIT).unwrap().commit().unwrap();
    assert_eq!(fs::read(&out).unwrap(), prost::Message::encode_to_vec(&m));
    assert_eq!(count(), 1);
    // with external data: two files, both land together
    let big = tmp.path().join("big.onnx");
    let staged = onnx::stage(&m, &big, 100_000).unwrap();
    assert!(!staged.is_inline());
    assert_eq!(count(), 3, "model, its data, the first output");
    drop(staged);
    assert_eq!(count(), 1);
    onnx::stage(&m, &big, 100_000).unwrap().commit().unwrap();
    assert!(big.is_file() && tmp.path().join("big.onnx.data").is_file());
    assert!(onnx::load(&big).unwrap().0 == m);
}

// ---- several models per `check` / `report` (the CI gate) ----

#[test]
fn check_gates_several_models_with_one_block_each() {
    let ok = fixtures().join("aligned_op13.onnx");
    let bad = fixtures().join("v4_c3_deconv_bn_op13.onnx");
    let o = align_p(&["check".as_ref(), ok.as_os_str(), bad.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let (first, second) = out.split_once(&format!("== {}\n", bad.display())).expect("a block per model");
    assert!(first.starts_with(&format!("== {}\n", ok.display())) && first.contains("\nok: "), "{out}");
    assert!(!first.contains("unaligned: "), "{out}");
    assert!(second.contains("unaligned: ") && second.contains("FAIL: "), "{out}");
    assert!(out.trim_end().ends_with("1 of 2 models failed the check"), "{out}");
    // the order does not matter, and two good models pass
    assert_eq!(align_p(&["check".as_ref(), bad.as_os_str(), ok.as_os_str()]).status.code(), Some(1));
    let o = align_p(&["check".as_ref(), ok.as_os_str(), ok.as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).trim_end().ends_with("all 2 models ok"), "{}", stdout(&o));
}

#[test]
fn an_unreadable_model_among_several_fails_in_its_block_and_the_others_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.onnx");
    fs::write(&junk, b"not a model").unwrap();
    let missing = tmp.path().join("missing.onnx");
    let ok = fixtures().join("aligned_op13.onnx");
    let o = align_p(&["check".as_ref(), junk.as_os_str(), ok.as_os_str(), missing.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "not a usage error: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("== {}\nerror: not an ONNX model", junk.display())), "{out}");
    let ok_block = out.split(&format!("== {}\n", ok.display())).nth(1).expect("a block for the good model");
    assert!(ok_block.split("\n== ").next().unwrap().contains("\nok: "), "{out}");
    assert!(out.contains(&format!("== {}\nerror: cannot read: no such file", missing.display())), "{out}");
    assert!(out.trim_end().ends_with("2 of 3 models failed the check"), "{out}");
    // report too: the readable model is reported, the run fails
    let o = align_p(&["report".as_ref(), ok.as_os_str(), junk.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("1 of 2 models could not be read"), "{}", stdout(&o));
    // one model alone keeps the input-error contract: exit 2, one line on stderr
    let o = align_p(&["check".as_ref(), junk.as_os_str()]);
    assert_input_error(&o, "junk.onnx", None, 0);
}

#[test]
fn github_format_annotates_each_offender_and_escapes_the_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    // a comma and a colon in the name must not end the file= property
    let model = tmp.path().join("v4,c3:x.onnx");
    fs::copy(fixtures().join("v4_c3_deconv_bn_op13.onnx"), &model).unwrap();
    let junk = tmp.path().join("junk.onnx");
    fs::write(&junk, b"").unwrap();
    let ok = fixtures().join("aligned_op13.onnx");
    let j = json(&align_p(&["check".as_ref(), model.as_os_str(), "--json".as_ref()]));
    let offenders = j["offenders"].as_array().unwrap().len();
    let pinned = j["pinned"].as_array().unwrap().len();
    assert!(offenders > 10 && pinned > 0, "{j}");
    let o = align_p(&[
        "check".as_ref(),
        model.as_os_str(),
        junk.as_os_str(),
        ok.as_os_str(),
        "--format".as_ref(),
        "github".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let escaped = model.display().to_string().replace(',', "%2C").replace(':', "%3A");
    let lines: Vec<&str> = out.lines().collect();
    let errors = lines.iter().filter(|l| l.starts_with(&format!("::error file={escaped},"))).count();
    assert_eq!(errors, offenders, "{out}");
    let notices = lines.iter().filter(|l| l.starts_with(&format!("::notice file={escaped},"))).count();
    assert_eq!(notices, pinned, "pinned dims are notices without --strict: {out}");
    let junk_err = format!("::error file={},title=align%3A cannot check the model::empty file", junk.display());
    assert!(lines.iter().any(|l| l.starts_with(&junk_err)), "{out}");
    assert!(!lines.iter().any(|l| l.starts_with(&format!("::error file={}", ok.display()))), "{out}");
    for l in &lines {
        assert!(l.starts_with("::") || l.contains(": ok: ") || l.contains(": FAIL: ") || l.contains("models"), "{l}");
    }
    // --strict turns the pinned notices into errors
    let o =
        align_p(&["check".as_ref(), model.as_os_str(), "--strict".as_ref(), "--format".as_ref(), "github".as_ref()]);
    let errors = stdout(&o).lines().filter(|l| l.starts_with("::error ")).count();
    assert_eq!(errors, offenders + pinned, "{}", stdout(&o));
    // an aligned model gives no error annotation (its pinned input is a notice)
    let o = align_p(&["check".as_ref(), ok.as_os_str(), "--format".as_ref(), "github".as_ref()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains("::error"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("::notice file={},", ok.display())), "{}", stdout(&o));
}

#[test]
fn json_format_gives_one_object_per_model_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.onnx");
    fs::write(&junk, b"junk").unwrap();
    let ok = fixtures().join("aligned_op13.onnx");
    let bad = fixtures().join("v3_csp_op13_bn.onnx");
    for cmd in ["check", "report"] {
        let o = align_p(&[
            cmd.as_ref(),
            ok.as_os_str(),
            bad.as_os_str(),
            junk.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        let objs: Vec<serde_json::Value> =
            stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert_eq!(objs.len(), 3, "{cmd}: {}", stdout(&o));
        for (v, f) in objs.iter().zip([&ok, &bad, &junk]) {
            assert_eq!(v["file"], f.display().to_string(), "{cmd}");
        }
        assert!(objs[2]["error"].as_str().unwrap().contains("not an ONNX model"), "{cmd}");
        assert_eq!(objs[2]["ok"], false);
        if cmd == "check" {
            assert_eq!((&objs[0]["ok"], &objs[1]["ok"]), (&true.into(), &false.into()));
        } else {
            assert!(!objs[1]["layers"].as_array().unwrap().is_empty());
        }
    }
    // --json is --format json
    let a = stdout(&align_p(&["check".as_ref(), ok.as_os_str(), bad.as_os_str(), "--json".as_ref()]));
    let b =
        stdout(&align_p(&["check".as_ref(), ok.as_os_str(), bad.as_os_str(), "--format".as_ref(), "json".as_ref()]));
    assert_eq!(a, b);
}

#[test]
fn usage_errors_of_the_gate_exit_2() {
    let ok = fixtures().join("aligned_op13.onnx");
    let p = ok.as_os_str();
    for args in [
        vec!["check".as_ref(), p, p, "--input-shape".as_ref(), "images".as_ref()],
        vec!["report".as_ref(), p, p, "--svg".as_ref(), "w.svg".as_ref()],
        vec!["check".as_ref(), p, "--format".as_ref(), "xml".as_ref()],
        vec!["check".as_ref(), p, "--format".as_ref(), "text".as_ref(), "--json".as_ref()],
        vec!["check".as_ref()],
    ] {
        let o = align_p(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: nothing checked: {}", stdout(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
}
