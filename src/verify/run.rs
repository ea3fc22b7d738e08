//! Loading a model into tract (from our bytes, with extra tensors as
//! outputs) and running it.

use super::*;

pub(crate) fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

pub(crate) fn datum(elem: i32) -> Option<DatumType> {
    Some(match elem {
        1 => DatumType::F32,
        10 => DatumType::F16,
        11 => DatumType::F64,
        7 => DatumType::I64,
        6 => DatumType::I32,
        _ => return None,
    })
}

/// `m` as tract's protobuf types, with `extra` tensors appended as graph
/// outputs. The model is encoded without its initializers' `raw_data`
/// (small) and decoded as tract's types; each weight is then copied into
/// tract's tensor once, straight from our bytes, whose mapped pages are
/// handed back. No encoding of the whole model is ever held.
pub(crate) fn tract_proto(
    m: &ModelProto,
    extra: &[String],
) -> std::result::Result<tract_onnx::pb::ModelProto, prost::DecodeError> {
    let mut light = m.clone(); // shares the weights' bytes
    let mut weights = Vec::new();
    if let Some(g) = light.graph.as_mut() {
        for (i, t) in g.initializer.iter_mut().enumerate() {
            if let Some(raw) = t.raw_data.take_if(|r| !r.is_empty()) {
                weights.push((i, raw));
            }
        }
    }
    let mut proto = tract_onnx::pb::ModelProto::decode(&light.encode_to_vec()[..])?;
    drop(light);
    if let Some(g) = proto.graph.as_mut() {
        for (i, raw) in weights {
            g.initializer[i].raw_data = raw.to_vec();
            crate::onnx::mapped::release(&raw);
        }
        g.output.extend(extra.iter().map(|n| tract_onnx::pb::ValueInfoProto { name: n.clone(), ..Default::default() }));
    }
    Ok(proto)
}

/// The error of a model tract cannot load or run.
fn cannot_run(which: &str, e: anyhow::Error) -> Error {
    Error::model(format!(
        "tract cannot run the {which} model, so it cannot be verified (--no-verify writes it unverified): {}",
        one_line(&e)
    ))
}

/// A runnable model.
pub(crate) type Runnable = std::sync::Arc<TypedRunnableModel>;

/// Loads `m` with `extra` tensors appended as graph outputs, typed at the
/// inputs' concrete shapes but not optimised yet (its outputs may still be
/// narrowed, [`optimise`]). `order` gives, for each of the model's real
/// inputs in its own order, the index into `specs`.
pub(crate) fn load_typed(
    m: &ModelProto,
    extra: &[String],
    specs: &[InputSpec],
    order: &[usize],
    which: &str,
) -> Result<TypedModel> {
    let fail = |e: anyhow::Error| cannot_run(which, e);
    let proto = tract_proto(m, extra).map_err(|e| fail(e.into()))?;
    let mut model = tract_onnx::onnx().model_for_proto_model(&proto).map_err(fail)?;
    drop(proto); // tract's graph has the weights now
                 // Intermediate value_info of dynamic exports (dynamo, onnxslim) names
                 // symbolic dims ('batch', 's53'); with the inputs made concrete those
                 // would contradict them. Keep their types, let tract infer their shapes.
    let inputs: HashSet<usize> = model.input_outlets().map_err(fail)?.iter().map(|o| o.node).collect();
    for node in model.nodes.iter_mut().filter(|n| !inputs.contains(&n.id)) {
        for o in &mut node.outputs {
            if o.fact.shape.dims().any(|d| Factoid::concretize(d).is_some_and(|t| t.to_i64().is_err())) {
                o.fact.shape = InferenceFact::default().shape;
            }
        }
    }
    for (i, &k) in order.iter().enumerate() {
        let s = &specs[k];
        let dt = datum(s.elem).ok_or_else(|| {
            Error::model(format!("input type {} is not supported for verification", crate::tensor::dtype_name(s.elem)))
        })?;
        model = model.with_input_fact(i, InferenceFact::dt_shape(dt, s.shape.clone())).map_err(fail)?;
    }
    model.into_typed().map_err(fail)
}

/// What an output of a typed model is: its element type and, when it is
/// concrete, its shape.
pub(crate) fn output_facts(m: &TypedModel) -> Vec<(DatumType, Option<Vec<usize>>)> {
    (0..m.output_outlets().map_or(0, |o| o.len()))
        .map(|i| match m.output_fact(i) {
            Ok(f) => (f.datum_type, f.shape.as_concrete().map(|s| s.to_vec())),
            Err(_) => (DatumType::Bool, None),
        })
        .collect()
}

/// Keeps the outputs at positions `keep` (in that order), taps the outputs
/// at positions `probes` ([`super::tap`]), then optimises.
pub(crate) fn optimise(mut m: TypedModel, keep: &[usize], probes: &[usize], which: &str) -> Result<Runnable> {
    let fail = |e: anyhow::Error| cannot_run(which, e);
    super::tap::wire(&mut m, keep, probes).map_err(fail)?;
    m.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
}
