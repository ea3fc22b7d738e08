//! Tensors of the main graph read only inside a subgraph (If branches, as in
//! torchvision's Faster R-CNN export): align keeps their producers, leaves
//! their channels alone and says the subgraph is why (a gap, not a pin).

use crate::util;

use std::fs;
use util::*;

#[test]
fn a_tensor_read_only_inside_an_if_branch_keeps_its_width_and_its_producer() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("subgraphs/if_reads_conv.onnx");
    let out = tmp.path().join("a.onnx");
    for extra in [&[][..], &["--no-verify"][..]] {
        let mut args = vec![f.display().to_string(), "--json".into(), "-o".into(), out.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = align_p(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let j = json(&o);
        let gaps = j["unanalysed"].to_string();
        assert!(gaps.contains("read inside a subgraph of If 'if'"), "{j}");
        assert!(!j["pinned"].to_string().contains("subgraph"), "a gap is not a pin: {j}");
        // the free branch beside it is still padded
        assert_eq!(j["unaligned_free_dims_after"], 0);
        assert!(j["unaligned_free_dims_before"].as_u64().unwrap() >= 1, "{j}");
        let (m, _) = align::onnx::load(&out).unwrap();
        let g = m.graph.unwrap();
        let y = g.output.iter().find(|o| o.name() == "y").unwrap();
        assert_eq!(align::ir::value_info_shape(y).unwrap()[1], Some(5), "the branch output keeps 5 channels");
        assert!(g.node.iter().any(|n| n.name() == "sigmoid_read_in_if"), "producer kept");
        let w = g.initializer.iter().find(|t| t.name() == "w").unwrap();
        assert_eq!(w.dims[0], 5, "the conv read in the branch is not padded");
        fs::remove_file(&out).unwrap();
    }
    // and the gate fails on the gap (5 channels it could not analyse)
    let c = align_p(&["check".as_ref(), f.as_os_str()]);
    assert_eq!(c.status.code(), Some(1), "{}", stdout(&c));
    assert!(stdout(&c).contains("subgraph"), "{}", stdout(&c));
}

#[test]
fn shape_arithmetic_read_only_inside_an_if_branch_is_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures().join("subgraphs/if_reads_shape.onnx");
    let out = tmp.path().join("a.onnx");
    let o = align_p(&[f.as_os_str(), "--no-verify".as_ref(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (m, _) = align::onnx::load(&out).unwrap();
    let g = m.graph.unwrap();
    let pos = |name: &str| g.node.iter().position(|n| n.name() == name);
    let (gather, iff) = (pos("gather_read_in_if").expect("Gather kept"), pos("if").unwrap());
    assert!(gather < iff, "the producer still comes before the If that reads it");
    assert!(pos("shape").is_some_and(|s| s < gather));
    // and tract runs the result: verification passes by default
    let o = align_p(&[f.as_os_str(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
}
