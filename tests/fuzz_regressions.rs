//! Every reproducer the fuzzer found (fuzz/regressions/) runs clean: no
//! panic, no stack overflow, no runaway time or memory. Each file is a
//! whole model; the pipeline is load → report → passes → export → report.

use crate::util;

use align::onnx::ModelProto;
use prost::Message;
use std::time::{Duration, Instant};

/// Runs the pipeline in a thread with a big enough stack to tell real
/// recursion bugs from test-harness limits, and a time limit: a run that
/// does not end within it fails the test (its thread is left behind).
fn run_bounded(name: &str, bytes: Vec<u8>, limit: Duration) {
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(|| util::pipeline(&bytes, tempfile::tempdir().unwrap().path()));
            let _ = tx.send(r.is_ok());
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(ok) => assert!(ok, "{name}: panicked"),
        Err(_) => panic!("{name}: still running after {limit:?}"),
    }
    assert!(t.elapsed() < limit, "{name}: took {:?}", t.elapsed());
}

#[test]
fn fuzz_reproducers_run_clean() {
    let dir = util::fixtures().join("../fuzz/regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "onnx") {
            run_bounded(&p.display().to_string(), std::fs::read(&p).unwrap(), Duration::from_secs(10));
            n += 1;
        }
    }
    assert!(n >= 9, "reproducers found: {n}");
}

#[test]
fn a_60000_node_chain_does_not_overflow_the_stack() {
    use align::onnx::{GraphProto, NodeProto, OperatorSetIdProto};
    let name = |i: usize| format!("t{i}");
    let node = (0..60_000)
        .map(|i| NodeProto {
            op_type: Some("Relu".into()),
            input: vec![if i == 0 { "x".into() } else { name(i - 1) }],
            output: vec![name(i)],
            ..Default::default()
        })
        .collect();
    let g = GraphProto { node, input: vec![util_vi("x")], output: vec![util_vi(&name(59_999))], ..Default::default() };
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(g),
        ..Default::default()
    };
    // the main thread's default 8 MiB stack, as the binary has
    run_bounded("chain", m.encode_to_vec(), Duration::from_secs(60));
}

fn util_vi(name: &str) -> align::onnx::ValueInfoProto {
    align::onnx::ValueInfoProto { name: Some(name.into()), ..Default::default() }
}

#[test]
fn a_model_tract_panics_on_gets_one_line_and_exit_2_never_a_panic() {
    // found by the verify_align target: a Split with axis −4 on a rank-1
    // tensor makes tract-onnx 0.23's Split rules index the shape out of
    // range and panic while loading, in `align` and in `align verify`
    // alike; a BatchNormalization on a rank-1 tensor (a graph input, or an
    // intermediate tensor whose rank only inference knows) crashes them
    // outright (segfault), so does an element-wise op reading a constant of
    // no elements: both are refused before tract sees them
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a.onnx");
    for (file, says) in [
        ("tract_split_axis_panic.onnx", "tract panicked"),
        ("tract_batchnorm_rank1_segfault.onnx", "reads a tensor of rank 1"),
        ("tract_batchnorm_rank1_intermediate.onnx", "BatchNormalization 'bn' reads a tensor of rank 1"),
        ("tract_empty_constant_operand_abort.onnx", "Pow 'pow6' reads 't3', a tensor with no elements"),
        ("tract_empty_activation_operand_abort.onnx", "Pow 'pow10' reads 't7', a tensor with no elements"),
    ] {
        let f = util::fixtures().join("../fuzz/regressions").join(file);
        for args in
            [vec![f.as_os_str(), "-o".as_ref(), out.as_os_str()], vec!["verify".as_ref(), f.as_os_str(), f.as_os_str()]]
        {
            let o = util::align_p(&args);
            let err = util::stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains("tract") && err.contains(says) && !err.contains("panicked at"), "{args:?}: {err}");
            assert!(!out.exists(), "{args:?}: wrote {}", out.display());
        }
    }
}
