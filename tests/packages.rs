//! Models exported by the real packages' own code (fixtures/packages/:
//! ultralytics, torchvision, timm, segmentation-models-pytorch; TorchScript
//! and dynamo exporters; static and dynamic shapes). Every alignable channel
//! dim ends aligned, nothing is left unanalysed, every pin names a genuine
//! reason, and tract finds the outputs unchanged. A wrong weight in an
//! aligned export must fail verification (the negative control).

use crate::util;

use std::fs;
use std::path::{Path, PathBuf};
use util::*;

/// Reasons a channel dim of these exports may legitimately keep its width:
/// the model's contract (graph I/O) or an op that really mixes channels.
const GENUINE: &[&str] = &[
    "graph input",
    "graph output",
    "Reshape",
    "Softmax",
    "channel shuffle",
    "Transpose",
    "LayerNormalization",
    "cost: padding",
    // RT-DETR: its sin-cos position embedding is computed at run time at the
    // exact width (Add), inverse sigmoids (Log, Div by an activation),
    // deformable attention (Slice of computed offsets, GridSample), the
    // query selection (ReduceMax over classes, GatherElements, Flatten)
    "Add",
    "Div",
    "Log",
    "Slice",
    "GridSample",
    "Flatten",
    "ReduceMax",
    "GatherElements",
    // RT-DETR's decoder gathers its selected queries on the feature
    // layout's axis (once the input projections' `flatten(2)` passes it)
    "Gather",
    // EdgeNeXt's cross-covariance attention: q·kᵀ over channels (a product
    // of two activations whose layouts do not meet), its L2 normalisation
    // broadcast back by Expand
    "MatMul",
    "Expand",
];

/// The package exports, and the small models around timm blocks whose
/// exporter idioms (F.pad pads built at run time, `expand_as`) the sweep of
/// larger real models found unanalysed.
fn packages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["packages", "blocks"]
        .iter()
        .flat_map(|d| fs::read_dir(fixtures().join(d)).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "package fixtures missing: {v:?}");
    v
}

#[test]
fn every_package_export_ends_with_every_alignable_dim_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    for f in packages() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let before = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
        assert!(before["totals"]["free_unaligned"].as_u64().unwrap() > 0, "{name}: fixture is not pruned");
        assert_eq!(before["totals"]["unanalysed"], 0, "{name}: {}", before["unanalysed"]);
        let out = tmp.path().join("a.onnx");
        // the default command, no flags: dynamic exports verify at batch 1
        // and at the imgsz their metadata records; a symbolic H, W without
        // such metadata is the one case align asks for a size
        let mut args = vec![f.display().to_string(), "--json".into(), "-o".into(), out.display().to_string()];
        if name.contains("dynbhw") && !name.starts_with("ultralytics") {
            let asked = align_p(&args);
            assert_eq!(asked.status.code(), Some(2), "{name}: {}", stderr(&asked));
            assert!(stderr(&asked).contains("--input-shape"), "{name}: {}", stderr(&asked));
            args.extend(["--input-shape".to_string(), "images=1x3x32x32".to_string()]);
        }
        let o = align_p(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let j = json(&o);
        assert_eq!(j["verification"]["passed"], true, "{name}: {}", j["verification"]);
        assert_eq!(j["unaligned_free_dims_after"], 0, "{name}");
        assert_eq!(j["unanalysed_dims_after"], 0, "{name}");
        assert_eq!(j["aligned_dims"], j["alignable_dims"], "{name}");
        for p in j["pinned"].as_array().unwrap() {
            for r in p["reasons"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(GENUINE.iter().any(|g| r.starts_with(g)), "{name}: pin without a genuine reason: {p}");
            }
        }
        let c = align_p(&["check".as_ref(), out.as_os_str()]);
        assert_eq!(c.status.code(), Some(0), "{name}: {}", stdout(&c));
        // symbolic input dims stay symbolic in the written model
        let symbolic = |m: &align::onnx::ModelProto| {
            m.graph.as_ref().unwrap().input.iter().map(|i| format!("{:?}", i.r#type)).collect::<Vec<_>>()
        };
        let (a, _) = align::onnx::load(&f).unwrap();
        let (b, _) = align::onnx::load(&out).unwrap();
        assert_eq!(symbolic(&a), symbolic(&b), "{name}: graph inputs changed");
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn shape_arithmetic_of_every_chunk_is_folded_in_one_run() {
    // ShuffleNetV2 computes every chunk(2) split point from Shape at run time;
    // one run folds all of them (no second run changes anything more)
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("packages/torchvision_shufflenetv2_op13.onnx");
    let once = tmp.path().join("once.onnx");
    let j = json(&align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), once.as_os_str()]));
    assert_eq!(j["unanalysed_dims_after"], 0);
    let (m, _) = align::onnx::load(&once).unwrap();
    assert!(m.graph.as_ref().unwrap().node.iter().all(|n| n.op_type() != "Shape"), "Shape arithmetic left");
    let twice = tmp.path().join("twice.onnx");
    let j2 = json(&align_p(&[once.as_os_str(), "--json".as_ref(), "-o".as_ref(), twice.as_os_str()]));
    assert_eq!(j2["unaligned_free_dims_before"], 0, "{j2}");
    let notes: Vec<String> = j2["passes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["notes"].as_array().unwrap().clone())
        .map(|n| n.to_string())
        .collect();
    assert!(notes.iter().all(|n| !n.contains("evaluated")), "a second run folded more: {notes:?}");
}

#[test]
fn grouped_convs_are_padded_per_group_with_group_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("packages/torchvision_regnety_group3_dynamo_op18.onnx");
    let out = tmp.path().join("a.onnx");
    assert!(align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]).status.success());
    let r = json(&align_p(&["report".as_ref(), out.as_os_str(), "--json".as_ref()]));
    let grouped: Vec<_> = r["layers"].as_array().unwrap().iter().filter(|l| l["groups"] == 3).collect();
    assert!(!grouped.is_empty());
    for l in grouped {
        // every group of 7, 13, 19 or 25 channels became 8, 16, 24 or 32
        let per_group = l["in_channels"].as_u64().unwrap() / 3;
        assert_eq!(per_group % 8, 0, "{l}");
        assert_eq!(l["out_channels"].as_u64().unwrap() % 24, 0, "{l}");
    }
}

#[test]
fn spatial_reductions_pass_layouts_and_channel_shuffles_pin_with_their_reason() {
    // dynamo's SE blocks: ReduceMean over H, W is channel-wise
    let f = fixtures().join("packages/torchvision_mobilenetv3small_dynamo_op18.onnx");
    let r = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
    assert!(!r["pinned"].to_string().contains("ReduceMean"), "{}", r["pinned"]);
    for p in r["pinned"].as_array().unwrap() {
        let why = p["reasons"].to_string();
        assert!(why.contains("graph ") || why.contains("cost: padding 3 → 8"), "graph I/O and a 3-channel stem: {p}");
    }
    let f = fixtures().join("packages/torchvision_shufflenetv2_op13.onnx");
    let r = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
    assert!(r["pinned"].to_string().contains("channel shuffle at Reshape"), "{}", r["pinned"]);
}

#[test]
fn a_wrong_weight_in_an_aligned_package_export_fails_verification() {
    // the negative control of this family: the largest weight of a middle
    // conv ×1.01 in align's own output must be caught, on every exporter kind
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "ultralytics_yolov8n_detect_op17.onnx",
        "ultralytics_yolov8n_detect_dynbhw_op17.onnx",
        "ultralytics_yolov8n_detect_fp16_op17.onnx",
        "torchvision_regnety_group3_dynamo_op18.onnx",
        "smp_unet_resnet18_op17.onnx",
        "timm_fastvit_t8_multiplier_op17.onnx",
        "timm_nfresnet_stdconv_op17.onnx",
        "timm_vit_pruned_op17.onnx",
        "timm_convnext_pruned_op17.onnx",
        "timm_levit_odd_op17.onnx",
        "timm_mvitv2_odd_op17.onnx",
        "timm_efficientvit_m_odd_op17.onnx",
        "timm_edgenext_odd_op17.onnx",
    ] {
        let f = fixtures().join("packages").join(name);
        let out = tmp.path().join("a.onnx");
        assert!(align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]).status.success());
        let o = align_p(&["verify".as_ref(), f.as_os_str(), out.as_os_str()]);
        assert_eq!(o.status.code(), Some(0), "{name}: the correct rewrite: {}", stderr(&o));
        wrong_weight_fails(&f, &out, |n| n.op_type() == "Conv");
    }
}

/// In align's rewrite `out` of `f`, the largest weight of the middle node
/// `pick` selects ×1.01: `align verify` must fail (exit 1).
fn wrong_weight_fails(f: &Path, out: &Path, pick: impl Fn(&align::onnx::NodeProto) -> bool) {
    use prost::Message;
    let (mut m, _) = align::onnx::load(out).unwrap();
    let g = m.graph.as_mut().unwrap();
    let picked: Vec<_> = g.node.iter().filter(|n| pick(n)).map(|n| n.input[1].clone()).collect();
    let wname = &picked[picked.len() / 2];
    let w = g.initializer.iter_mut().find(|t| t.name() == wname).unwrap();
    let mut v = align::tensor::to_f64(w).unwrap();
    let i = (0..v.len()).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs())).unwrap();
    v[i] *= 1.01;
    *w = align::tensor::rewrite(w, &align::tensor::dims(w), &v).unwrap();
    let bad = out.with_file_name("bad.onnx");
    fs::write(&bad, m.encode_to_vec()).unwrap();
    let o = align_p(&["verify".as_ref(), f.as_os_str(), bad.as_os_str()]);
    assert_eq!(o.status.code(), Some(1), "{}: weight {wname}[{i}] ×1.01 passed: {}", f.display(), stdout(&o));
}

#[test]
fn transformer_mlps_pad_on_the_feature_axis_and_a_wrong_dense_weight_fails() {
    // timm ViT and ConvNeXt (channels-last MLP): every MLP hidden width is
    // padded on the feature axis (2 of [N, T, C], 3 of NHWC) and every other
    // dim is pinned by LayerNormalization, the graph I/O or the attention's
    // Reshapes; the negative control of the dense family: the largest
    // weight of the middle MLP's fc1 ×1.01 in align's output fails
    let tmp = tempfile::tempdir().unwrap();
    // onnxslim's export of the same ConvNeXt: each Linear is Reshape [-1, C]
    // → Gemm → Reshape back, the features on axis 1 of [N·H·W, C], and the
    // Reshape targets that spell the widths out are rewritten
    for (name, axis) in [
        ("timm_vit_pruned_op17.onnx", 2),
        ("timm_convnext_pruned_op17.onnx", 3),
        ("timm_convnext_pruned_slim_op17.onnx", 1),
    ] {
        let f = fixtures().join("packages").join(name);
        let r = json(&align_p(&["report".as_ref(), f.as_os_str(), "--json".as_ref()]));
        let fc1: Vec<_> =
            r["layers"].as_array().unwrap().iter().filter(|l| l["node"].to_string().contains("fc1")).collect();
        assert!(fc1.len() >= 2, "{name}");
        // attention: qkv out and proj in padded per head (ViT: head dims 11
        // and 13 → 16 in each of 3 heads; q, k and v each hold h runs)
        for l in r["layers"].as_array().unwrap().iter().filter(|l| l["node"].to_string().contains("attn/qkv")) {
            assert_eq!(l["out"]["aligned_to"], 144, "{name}: {l}");
            assert_eq!(l["out"]["pinned"].as_array().unwrap().len(), 0, "{name}: {l}");
        }
        for l in r["layers"].as_array().unwrap().iter().filter(|l| l["node"].to_string().contains("attn/proj")) {
            assert_eq!(l["in"]["aligned_to"], 48, "{name}: {l}");
        }
        for l in &fc1 {
            assert_eq!(l["out"]["axis"], axis, "{name}: {l}");
            assert_eq!(l["out"]["pinned"].as_array().unwrap().len(), 0, "{name}: {l}");
            assert_eq!(l["out"]["aligned_to"].as_u64().unwrap() % 8, 0, "{name}: {l}");
            assert!(l["in"]["pinned"].to_string().contains("LayerNormalization"), "{name}: {l}");
        }
        let out = tmp.path().join("a.onnx");
        assert!(align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]).status.success());
        wrong_weight_fails(&f, &out, |n| matches!(n.op_type(), "MatMul" | "Gemm") && n.name().contains("fc1"));
        if name.contains("vit") {
            // and a wrong qkv weight: the per-head padding is checked too
            wrong_weight_fails(&f, &out, |n| n.op_type() == "MatMul" && n.name().contains("attn/qkv"));
            // a padded head feature of q made non-zero (bias 1 at feature 12
            // of head 0, padded 11 → 16): k's zeros hide it from the scores,
            // but the padding's promise of zeros is checked
            use prost::Message;
            let (mut m, _) = align::onnx::load(&out).unwrap();
            let g = m.graph.as_mut().unwrap();
            let t = g.initializer.iter_mut().find(|t| t.name() == "blocks.0.attn.qkv.bias").unwrap();
            let mut v = align::tensor::to_f64(t).unwrap();
            assert_eq!((v.len(), v[12]), (144, 0.0));
            v[12] = 1.0;
            *t = align::tensor::rewrite(t, &align::tensor::dims(t), &v).unwrap();
            let bad = tmp.path().join("bad.onnx");
            fs::write(&bad, m.encode_to_vec()).unwrap();
            let o = align_p(&["verify".as_ref(), f.as_os_str(), bad.as_os_str()]);
            assert_eq!(o.status.code(), Some(1), "{name}: a padded head feature of 1 passed: {}", stdout(&o));
        }
    }
}

#[test]
fn levit_pads_its_residual_stream_heads_and_mlps_and_folds_its_head_batchnorms() {
    // timm LeViT has no LayerNorm: its residual stream (stage widths 21, 45,
    // 67) is a channel space from the stem conv (`flatten(2)` keeps the
    // channels whole, the Transpose moves them to the features) through
    // every LinearNorm (MatMul → Flatten to [N·T, C] → BatchNorm1d →
    // Reshape back), the tokens subsampled by a strided Slice, to the pooled
    // `x.mean(1)` and the heads' BatchNorm1d → Gemm. Each head's qkv run is
    // split into key, key and value dims (7, 7, 14 → 8, 8, 16).
    let f = fixtures().join("packages/timm_levit_odd_op17.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a.onnx");
    let j = json(&align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]));
    assert_eq!(j["verification"]["passed"], true, "{}", j["verification"]);
    let r = json(&align_p(&["report".as_ref(), out.as_os_str(), "--json".as_ref()]));
    let layer = |name: &str| {
        r["layers"].as_array().unwrap().iter().find(|l| l["node"].as_str().unwrap().contains(name)).cloned().unwrap()
    };
    let qkv = layer("stages.0/blocks/blocks.0/attn/qkv/linear/MatMul");
    assert_eq!((qkv["in_channels"].as_u64(), qkv["out_channels"].as_u64()), (Some(24), Some(96)), "{qkv}");
    let ln1 = layer("stages.2/blocks/blocks.0/mlp/ln1/linear/MatMul");
    assert_eq!((ln1["in_channels"].as_u64(), ln1["out_channels"].as_u64()), (Some(72), Some(96)), "{ln1}");
    let head = layer("/head/linear/Gemm");
    assert_eq!(head["in_channels"], 72, "{head}");
    assert_eq!(r["totals"]["free_unaligned"], 0, "{}", r["totals"]);
    // the two heads' BatchNorm1d folded into their Gemm (weight and bias
    // certified); the 22 LinearNorms' kept (folding them into the MatMul
    // costs int8 accuracy: fold_bn's module doc), padded neutrally
    let (m, _) = align::onnx::load(&out).unwrap();
    let ops = |t: &str| m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == t).count();
    assert_eq!((ops("BatchNormalization"), ops("Gemm")), (22, 2));
    assert_eq!(j["certificate"]["passed"], true, "{}", j["certificate"]);
    assert_eq!(j["certificate"]["folded"], 4, "{}", j["certificate"]);
    // negative controls: a qkv weight, a padded BatchNorm1d's scale, a folded
    // head weight ×1.01
    wrong_weight_fails(&f, &out, |n| n.op_type() == "MatMul" && n.name().contains("qkv"));
    wrong_weight_fails(&f, &out, |n| n.op_type() == "BatchNormalization");
    wrong_weight_fails(&f, &out, |n| n.op_type() == "Gemm");
}

#[test]
fn float16_exports_are_verified_in_float32_against_the_noise_they_can_have() {
    // onnxconverter-common's float16 conversions (float32 graph I/O, Casts
    // inside). tract ran the ultralytics one in f16 for seconds at 128 px
    // (minutes at 640) and could not run the MobileNetV3's f16 Gemm at all;
    // the up-cast copies run in f32. Where align folds no BatchNormalization
    // the copies differ by f32 rounding only and are held to fp32 noise;
    // where it folds, the fold was rounded into float16 and the noise is
    // float16's, and the certificate checks each folded weight to 1 ulp.
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    for (name, criterion) in [
        ("ultralytics_yolov8n_detect_fp16_op17.onnx", "fp32-noise"),
        ("torchvision_mobilenetv3small_bn_fp16_op13.onnx", "fp16-noise"),
    ] {
        let f = fixtures().join("packages").join(name);
        let out = tmp.path().join("a.onnx");
        let o = align_p(&[f.as_os_str(), "--json".as_ref(), "-o".as_ref(), out.as_os_str()]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v = &json(&o)["verification"];
        assert_eq!(v["precision"], "float16", "{name}: {v}");
        assert_eq!(v["criterion"], criterion, "{name}: {v}");
        assert_eq!(v["passed"], true, "{name}: {v}");
        assert!(v["tensors"]["compared"].as_u64().unwrap() > 100, "{name}: {v}");
        // the aligned model is float16 too, weights and all
        let (mut m, _) = align::onnx::load(&out).unwrap();
        let g = m.graph.as_mut().unwrap();
        let halves = g.initializer.iter().filter(|t| t.data_type == Some(10)).count();
        assert!(halves > 50, "{name}: {halves} float16 initializers");
        // negative control: the largest weight of a middle conv x1.01 (ten
        // float16 ulps) is named
        let convs: Vec<_> = g.node.iter().filter(|n| n.op_type() == "Conv").map(|n| n.input[1].clone()).collect();
        let w = g.initializer.iter_mut().find(|t| t.name() == convs[convs.len() / 2]).unwrap();
        let mut v = align::tensor::to_f64(w).unwrap();
        let i = (0..v.len()).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs())).unwrap();
        v[i] *= 1.01;
        *w = align::tensor::rewrite(w, &align::tensor::dims(w), &v).unwrap();
        let bad = tmp.path().join("bad.onnx");
        fs::write(&bad, m.encode_to_vec()).unwrap();
        let o = align_p(&["verify".as_ref(), f.as_os_str(), bad.as_os_str(), "--json".as_ref()]);
        assert_eq!(o.status.code(), Some(1), "{name}: the bug passed: {}", stdout(&o));
        if criterion == "fp16-noise" {
            assert_eq!(json(&o)["verification"]["certificate"]["passed"], false, "{name}: {}", stdout(&o));
        }
    }
}

#[test]
fn a_dynamic_resize_whose_sizes_read_the_input_shape_stays_right_at_every_size() {
    // torchvision ASPP with dynamic b, h, w: the pooling branch resizes to
    // Concat(Shape(x)[0:2], H, W) at run time; the padded model must agree
    // with the original at sizes other than the one align analysed
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("blocks/torchvision_aspp_dynbhw_op17.onnx");
    let out = tmp.path().join("a.onnx");
    let o = align_p(&[
        f.as_os_str(),
        "--json".as_ref(),
        "--input-shape".as_ref(),
        "images=1x3x32x32".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["unanalysed_dims_after"], 0, "{j}");
    assert!(!j["pinned"].to_string().contains("Resize"), "{}", j["pinned"]);
    for shape in ["images=2x3x48x40", "images=1x3x24x56"] {
        let v = align_p(&["verify".as_ref(), f.as_os_str(), out.as_os_str(), "--input-shape".as_ref(), shape.as_ref()]);
        assert_eq!(v.status.code(), Some(0), "{shape}: {}{}", stdout(&v), stderr(&v));
    }
}
