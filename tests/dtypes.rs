//! fp16, bf16 and f64 weights are padded in their own type.

use crate::util;

use align::onnx::{self, tensor_proto::DataType, ModelProto};

/// The fused v4 fixture with every float initializer converted to `dt`.
fn converted(dt: DataType) -> ModelProto {
    let (mut m, _) = onnx::load(&util::fixtures().join("v4_c3_deconv_fused_op12.onnx")).unwrap();
    for t in &mut m.graph.as_mut().unwrap().initializer {
        if t.data_type() == DataType::Float as i32 {
            let v = align::tensor::to_f64(t).unwrap();
            let mut n = align::tensor::from_f64(t.name(), dt as i32, &align::tensor::dims(t), &v).unwrap();
            n.name = t.name.clone();
            *t = n;
        }
    }
    m
}

#[test]
fn weights_keep_their_type_and_values_when_padded() {
    for dt in [DataType::Float16, DataType::Bfloat16, DataType::Double] {
        let m = converted(dt);
        let mut ir = align::ir::Model::import(m.clone()).unwrap();
        let opts = align::passes::Options::default();
        align::passes::run(&mut ir, &[align::passes::Pass::Deconv, align::passes::Pass::Pad], &opts).unwrap();
        let out = ir.export();
        let before = m.graph.as_ref().unwrap();
        let after = out.graph.as_ref().unwrap();
        let mut padded = 0;
        for t in &after.initializer {
            let Some(orig) = before.initializer.iter().find(|o| o.name() == t.name()) else { continue };
            assert_eq!(t.data_type, orig.data_type, "{:?}: '{}' changed type", dt, t.name());
            let (a, b) = (align::tensor::to_f64(orig).unwrap(), align::tensor::to_f64(t).unwrap());
            if a.len() != b.len() {
                padded += 1;
                // padding adds zeros and moves values, never changes them:
                // the multiset of nonzero values is the same
                let mut x: Vec<f64> = a.into_iter().filter(|v| *v != 0.0).collect();
                let mut y: Vec<f64> = b.into_iter().filter(|v| *v != 0.0).collect();
                x.sort_by(f64::total_cmp);
                y.sort_by(f64::total_cmp);
                assert_eq!(x, y, "{:?}: '{}' values changed", dt, t.name());
            }
        }
        assert!(padded > 20, "{dt:?}: only {padded} tensors padded");
        let r = align::report::build(&align::ir::Model::import(out).unwrap(), &opts).unwrap();
        assert_eq!(r.totals.free_unaligned, 0, "{dt:?}");
    }
}
