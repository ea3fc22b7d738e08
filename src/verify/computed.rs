//! Weights a model computes from constants at run time (timm's
//! weight-standardised convs: `F.batch_norm(w.reshape(1, out, -1), …,
//! training=True)` on a constant). align evaluates them once, in f64, and
//! writes them as constants (`ir::fold_shapes::fold_weights`); the original
//! computes them in f32 on every run, and its cancellations (w − mean) leave
//! a rounding difference that is not the fp32 noise of its activations, so
//! comparing the rewrite with the original directly would charge that
//! difference to the rewrite.
//!
//! So verification is done in two steps: every evaluated weight is compared
//! with what tract computes for the original (each row within [`ULPS`]
//! ulps of that row's largest weight: the f32 evaluation's own error is
//! about 1–2), and the rewrite is verified against the *reference*, the
//! original with those weights in place of the ops that compute them.

use super::*;
use crate::ir::fold_shapes::Evaluated;
use crate::onnx::{NodeProto, TensorProto};

/// What the comparison of the evaluated weights with the original's found.
#[derive(Debug, Clone, Serialize)]
pub struct WeightCheck {
    /// Weights the original computes from constants, evaluated by align.
    pub weights: usize,
    /// The largest difference from tract's values, in ulps of its row's
    /// largest weight (at most [`ULPS`] passes).
    pub worst_ulps: f64,
    /// The weight where it is (the tensor the original computes).
    pub worst: String,
    /// Every weight within [`ULPS`] ulps.
    pub passed: bool,
}

impl WeightCheck {
    /// One line for the summary.
    pub fn text(&self) -> String {
        format!(
            "  weights the original computes from constants: {} evaluated by align, {}: the largest difference \
             from tract's is {:.1} ulps of its row's largest weight ('{}'; {ULPS} allowed); the outputs are \
             compared with the original holding them\n",
            self.weights,
            if self.passed { "all agree" } else { "FAILED" },
            self.worst_ulps,
            self.worst
        )
    }
}

/// The original with every weight it computes from constants evaluated
/// (`None`: it computes none), and what was evaluated.
pub(crate) fn normalise(original: &ModelProto) -> Result<Option<(ModelProto, Vec<Evaluated>)>> {
    if constant_nodes(graph(original)?).iter().all(|n| crate::ops::constant::is_constant(n)) {
        return Ok(None); // nothing but Constant nodes computes from constants
    }
    let mut m = crate::ir::Model::import(original.clone())?; // shares the weights' bytes
    let evaluated = crate::ir::fold_shapes::fold_weights(&mut m)?;
    Ok((!evaluated.is_empty()).then(|| (m.into_export(), evaluated)))
}

/// The nodes of `g` computed from initializers alone, in graph order.
fn constant_nodes(g: &GraphProto) -> Vec<&NodeProto> {
    let mut known: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let mut out = vec![];
    for n in &g.node {
        if n.input.iter().all(|i| i.is_empty() || known.contains(i.as_str())) {
            known.extend(n.output.iter().map(|o| o.as_str()));
            out.push(n);
        }
    }
    out
}

/// Compares each evaluated weight (in `reference`) with the value tract
/// computes for it in `original`, row by row.
pub(crate) fn check(original: &ModelProto, reference: &ModelProto, evaluated: &[Evaluated]) -> Result<WeightCheck> {
    let g = graph(original)?;
    let mut initializer = g.initializer.clone(); // shares the bytes
    let node = spelled_out(constant_nodes(g), &mut initializer, original);
    let sub = ModelProto {
        graph: Some(GraphProto {
            node,
            initializer,
            output: evaluated
                .iter()
                .map(|e| ValueInfoProto { name: Some(e.tensor.clone()), ..Default::default() })
                .collect(),
            ..Default::default()
        }),
        ir_version: original.ir_version,
        opset_import: original.opset_import.clone(),
        ..Default::default()
    };
    let model = load_typed(&sub, &[], &[], &[], "original")?;
    let keep: Vec<usize> = (0..evaluated.len()).collect();
    let runnable = optimise(model, &keep, &[], "original")?;
    let values = run::guarded("original", || {
        runnable.run(tvec![]).map_err(|e| Error::model(format!("tract cannot evaluate the original's weights: {e}")))
    })?;
    let consts: HashMap<&str, &TensorProto> = graph(reference)?.initializer.iter().map(|t| (t.name(), t)).collect();
    let mut worst = (0.0f64, String::new());
    for (e, v) in evaluated.iter().zip(values.iter()) {
        let ours = consts
            .get(e.constant.as_str())
            .and_then(|t| crate::tensor::to_f64(t).ok())
            .ok_or_else(|| Error::model(format!("the evaluated weight '{}' is missing", e.constant)))?;
        let theirs: Vec<f64> = v
            .cast_to::<f64>()
            .map_err(|err| Error::model(format!("weight '{}': {err}", e.tensor)))?
            .to_plain_array_view::<f64>()
            .map_err(|err| Error::model(format!("weight '{}': {err}", e.tensor)))?
            .iter()
            .copied()
            .collect();
        let ulps = if theirs.len() == ours.len() {
            let rows = v.shape().first().copied().unwrap_or(1).max(1);
            row_ulps(&ours, &theirs, rows)
        } else {
            f64::INFINITY
        };
        if ulps > worst.0 || worst.1.is_empty() {
            worst = (ulps, e.tensor.clone());
        }
    }
    Ok(WeightCheck { weights: evaluated.len(), worst_ulps: worst.0, worst: worst.1, passed: worst.0 <= ULPS })
}

/// `nodes` with each BatchNormalization whose parameters are computed
/// spelled out in element-wise ops, as ONNX defines it: tract-onnx 0.23
/// translates a BatchNormalization only with constant parameters, which a
/// standardised weight's are not once tract stops folding them (at real
/// sizes). With `training_mode=1` the mean and var are the batch's own
/// (ReduceMean over every axis but 1), not the inputs: the check is then
/// independent of the exporter's extra inputs as well as of align.
fn spelled_out(nodes: Vec<&NodeProto>, inits: &mut Vec<TensorProto>, m: &ModelProto) -> Vec<NodeProto> {
    let consts: HashSet<String> = inits.iter().map(|t| t.name().to_string()).collect();
    let skeleton = run::Skeleton::of(m);
    let opset = crate::onnx::opset(m);
    let mut out = vec![];
    for n in nodes {
        let computed = n.input.iter().skip(1).any(|i| !consts.contains(i));
        let rank = n.input.first().and_then(|x| skeleton.rank(x)).filter(|&r| r >= 2);
        let (true, Some(rank), true, [x, scale, b, mean, var], Some(y)) =
            (crate::ops::is(n, "BatchNormalization"), rank, computed, &n.input[..], n.output.first())
        else {
            out.push(n.clone());
            continue;
        };
        let at = |k: &str| format!("{y}__align_bn_{k}");
        let node = |op: &str, ins: Vec<String>, o: String, attribute: Vec<crate::onnx::AttributeProto>| NodeProto {
            op_type: Some(op.into()),
            input: ins,
            output: vec![o],
            attribute,
            ..Default::default()
        };
        // per-channel parameters as [C, 1, …] against x's [N, C, …]
        let shape = at("shape");
        let dims: Vec<f64> = std::iter::once(-1.0).chain(std::iter::repeat_n(1.0, rank - 2)).collect();
        if let Ok(t) = crate::tensor::from_f64(&shape, 7, &[rank - 1], &dims) {
            inits.push(t);
        }
        let per_channel = |v: &str, out: &mut Vec<NodeProto>| {
            let o = at(&format!("{v}_c"));
            out.push(node("Reshape", vec![v.to_string(), shape.clone()], o.clone(), vec![]));
            o
        };
        let (mean, var) = if crate::onnx::attr_i(n, "training_mode", 0) == 1 {
            let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != 1).collect();
            let reduce = |input: String, o: String, out: &mut Vec<NodeProto>, inits: &mut Vec<TensorProto>| {
                let keep = crate::onnx::AttributeProto {
                    name: Some("keepdims".into()),
                    i: Some(1),
                    r#type: Some(crate::onnx::attribute_proto::AttributeType::Int as i32),
                    ..Default::default()
                };
                if opset >= 18 {
                    let a = format!("{o}_axes");
                    if let Ok(t) = crate::tensor::from_f64(
                        &a,
                        7,
                        &[axes.len()],
                        &axes.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                    ) {
                        inits.push(t);
                    }
                    out.push(node("ReduceMean", vec![input, a], o.clone(), vec![keep]));
                } else {
                    let ax = crate::onnx::AttributeProto {
                        name: Some("axes".into()),
                        ints: axes.clone(),
                        r#type: Some(crate::onnx::attribute_proto::AttributeType::Ints as i32),
                        ..Default::default()
                    };
                    out.push(node("ReduceMean", vec![input], o.clone(), vec![ax, keep]));
                }
                o
            };
            let mean = reduce(x.clone(), at("mean"), &mut out, inits);
            out.push(node("Sub", vec![x.clone(), mean.clone()], at("dev"), vec![]));
            out.push(node("Mul", vec![at("dev"), at("dev")], at("dev2"), vec![]));
            let var = reduce(at("dev2"), at("var"), &mut out, inits);
            (mean, var)
        } else {
            (per_channel(mean, &mut out), per_channel(var, &mut out))
        };
        let eps = at("eps");
        let e = crate::onnx::attr_f(n, "epsilon", 1e-5) as f64;
        if let Ok(t) = crate::tensor::from_f64(&eps, 1, &[], &[e]) {
            inits.push(t);
        }
        let (scale, b) = (per_channel(scale, &mut out), per_channel(b, &mut out));
        out.push(node("Sub", vec![x.clone(), mean], at("centred"), vec![]));
        out.push(node("Add", vec![var, eps], at("var_eps"), vec![]));
        out.push(node("Sqrt", vec![at("var_eps")], at("std"), vec![]));
        out.push(node("Div", vec![at("centred"), at("std")], at("normed"), vec![]));
        out.push(node("Mul", vec![at("normed"), scale], at("scaled"), vec![]));
        out.push(node("Add", vec![at("scaled"), b], y.clone(), vec![]));
    }
    out
}

/// The largest |a − b| of each of `rows` rows in f32 ulps of the row's
/// largest |a|, the worst row's.
fn row_ulps(a: &[f64], b: &[f64], rows: usize) -> f64 {
    let per = a.len().div_ceil(rows).max(1);
    a.chunks(per)
        .zip(b.chunks(per))
        .map(|(x, y)| {
            let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs())) * f32::EPSILON as f64;
            let d = x.iter().zip(y).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            if d == 0.0 {
                0.0
            } else if scale > 0.0 && d.is_finite() {
                d / scale
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::row_ulps;

    #[test]
    fn differences_count_in_ulps_of_their_rows_largest_value() {
        let eps = f32::EPSILON as f64;
        let a = [1.0, 0.001, 4.0, 0.5];
        assert_eq!(row_ulps(&a, &a, 2), 0.0);
        // 2 ulps of row 0's largest (1.0) on its small element
        let b = [1.0, 0.001 + 2.0 * eps, 4.0, 0.5];
        assert!((row_ulps(&a, &b, 2) - 2.0).abs() < 1e-9);
        // the same absolute difference in row 1 is half an ulp of 4.0
        let c = [1.0, 0.001, 4.0, 0.5 + 2.0 * eps];
        assert!((row_ulps(&a, &c, 2) - 0.5).abs() < 1e-9);
        assert_eq!(row_ulps(&[0.0, 0.0], &[0.0, 1e-30], 1), f64::INFINITY);
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    #[test]
    fn an_evaluated_weight_off_by_a_little_fails_the_weight_check() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/packages/timm_nfresnet_stdconv_op17.onnx");
        let (original, _) = crate::onnx::load(&path).unwrap();
        let (mut reference, evaluated) = normalise(&original).unwrap().expect("it computes its weights");
        assert_eq!(evaluated.len(), 17);
        let ok = check(&original, &reference, &evaluated).unwrap();
        assert!(ok.passed && ok.worst_ulps < 4.0, "{ok:?}");
        // the negative control: one evaluated weight x1.0001 (its largest
        // element), as a wrong epsilon or a biased variance would leave it
        let name = &evaluated[evaluated.len() / 2].constant;
        let g = reference.graph.as_mut().unwrap();
        let t = g.initializer.iter_mut().find(|t| t.name() == name.as_str()).unwrap();
        let mut v = crate::tensor::to_f64(t).unwrap();
        let i = (0..v.len()).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs())).unwrap();
        v[i] *= 1.0001;
        *t = crate::tensor::rewrite(t, &crate::tensor::dims(t), &v).unwrap();
        let bad = check(&original, &reference, &evaluated).unwrap();
        eprintln!("weight check, one weight x1.0001: {bad:?}");
        assert!(!bad.passed && bad.worst_ulps > 100.0, "{bad:?}");
    }
}
