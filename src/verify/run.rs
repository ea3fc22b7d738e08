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
/// outputs, and its weights. The model is encoded without its
/// initializers' `raw_data` (small) and decoded as tract's types; each such
/// initializer is marked as external data whose offset is its index in the
/// returned [`Weights`], which tract reads one tensor at a time while it
/// builds its graph. No copy of the whole model is ever held beside tract's.
pub(crate) fn tract_proto(
    m: &ModelProto,
    extra: &[String],
) -> std::result::Result<(tract_onnx::pb::ModelProto, Weights), prost::DecodeError> {
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
    let entry = |key: &str, value: String| tract_onnx::pb::StringStringEntryProto { key: key.into(), value };
    if let Some(g) = proto.graph.as_mut() {
        for (k, (i, raw)) in weights.iter().enumerate() {
            let t = &mut g.initializer[*i];
            t.data_location = Some(tract_onnx::pb::tensor_proto::DataLocation::External as i32);
            t.external_data = vec![
                entry("location", ".".into()),
                entry("offset", k.to_string()),
                entry("length", raw.len().to_string()),
            ];
        }
        g.output.extend(extra.iter().map(|n| tract_onnx::pb::ValueInfoProto { name: n.clone(), ..Default::default() }));
        drop_unread_batch_norm_outputs(g);
    }
    Ok((proto, Weights(weights.into_iter().map(|(_, raw)| raw).collect())))
}

/// A BatchNormalization with `training_mode=1` (what torch exports for a
/// weight standardised at run time, timm's `StdConv2d`) declares its running
/// mean and var as outputs 1 and 2; tract-onnx 0.23 implements one output
/// and refuses the node. Where nothing reads them they are dropped, and
/// tract computes Y with the mean and var inputs, which torch's export
/// computes as the batch's own statistics: the value ONNX defines (align's
/// own evaluation, `ir::fold_shapes::fold_weights`, computes the statistics
/// itself, so a graph whose inputs are not them fails verification).
fn drop_unread_batch_norm_outputs(g: &mut tract_onnx::pb::GraphProto) {
    let read: HashSet<String> =
        g.node.iter().flat_map(|n| n.input.iter().cloned()).chain(g.output.iter().map(|o| o.name.clone())).collect();
    for n in g.node.iter_mut().filter(|n| n.op_type == "BatchNormalization" && n.output.len() > 1) {
        if n.output[1..].iter().all(|o| o.is_empty() || !read.contains(o)) {
            n.output.truncate(1);
        }
    }
}

/// The weights of a model handed to tract ([`tract_proto`]): tract asks for
/// weight `k` as external data at offset `k` (the path it resolves is the
/// root directory, which always exists, and is not read). Each is copied
/// once, into the buffer tract builds its tensor from, and its mapped pages
/// are handed back.
pub(crate) struct Weights(Vec<bytes::Bytes>);

impl tract_onnx::data_resolver::ModelDataResolver for Weights {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        _p: &std::path::Path,
        offset: usize,
        _length: Option<usize>,
    ) -> TractResult<()> {
        let raw = self.0.get(offset).ok_or_else(|| anyhow::anyhow!("no weight {offset}"))?;
        buf.extend_from_slice(raw);
        crate::onnx::mapped::release(raw);
        Ok(())
    }
}

/// The directory tract resolves the external data of [`tract_proto`] in.
const WEIGHTS_DIR: &str = "/";

thread_local! {
    /// Set while this thread is inside [`guarded`]: a panic here is tract's,
    /// caught and reported as an error, so the panic hook stays quiet.
    static IN_TRACT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a call into tract, turning a panic inside it into an error
/// naming `which` model. tract panics on some malformed graphs (its Split
/// rules index the shape with an axis out of range, found by the
/// `verify_align` fuzz target); align must give one line and exit 2
/// instead. The process's panic hook is wrapped once so that such a panic
/// prints nothing; every other panic still goes to the previous hook.
pub(crate) fn guarded<T>(which: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_with: a panic while this thread's locals are torn down
            // must not panic again inside the hook
            if !IN_TRACT.try_with(|t| t.get()).unwrap_or(false) {
                previous(info)
            }
        }));
    });
    let outer = IN_TRACT.with(|t| t.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_TRACT.with(|t| t.set(outer));
    r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(Error::model(format!(
            "tract cannot run the {which} model, so it cannot be verified (--no-verify writes it unverified): \
             tract panicked: {}",
            msg.replace('\n', " ")
        )))
    })
}

/// Graphs that crash tract-onnx 0.23.9 outright (a segfault in release
/// builds, a non-unwinding panic in debug ones: neither is something
/// [`guarded`] can catch), refused before tract sees them. Each was found by
/// the `verify_align` fuzz target (reproducers in `fuzz/regressions/`):
///
/// - a BatchNormalization whose input has rank < 2 (the ONNX operator needs
///   N, C, …; tract's rules read the channel dim of a rank-1 shape out of
///   bounds);
/// - an element-wise op with an operand of no elements, constant or not
///   (tract's declutter reads it as a scalar: `Tensor::to_scalar_tensor` on
///   empty data, from its Gelu / Pow pattern detection).
///
/// Ranks and constants are the declared ones or those align's own shape
/// inference finds ([`Skeleton`]).
pub(crate) fn refuse_tract_crashers(m: &ModelProto) -> std::result::Result<(), String> {
    let Some(g) = m.graph.as_ref() else { return Ok(()) };
    let sk = Skeleton::of(m);
    for n in g.node.iter().filter(|n| crate::ops::is(n, "BatchNormalization")) {
        let Some(x) = n.input.first() else { continue };
        if let Some(r) = sk.rank(x).filter(|&r| r < 2) {
            return Err(format!(
                "BatchNormalization '{}' reads a tensor of rank {r}, and it needs rank 2 or more (N, C, ...)",
                n.name()
            ));
        }
    }
    for n in &g.node {
        let elementwise = matches!(crate::ops::role(n), Some(crate::ops::Role::Elementwise { .. }));
        if let Some(x) = n.input.iter().filter(|_| elementwise).find(|x| sk.empty(x)) {
            return Err(format!("{} '{}' reads '{x}', a tensor with no elements", n.op_type(), n.name()));
        }
    }
    Ok(())
}

/// What align's own inference knows of a graph: shapes and constants, from
/// a skeleton of it (initializers of more than 64 elements become graph
/// inputs of their dims: shapes need their dims, never their values), so a
/// large model is not copied. A graph align cannot import gives only its
/// declared shapes.
pub(crate) struct Skeleton {
    declared: HashMap<String, usize>,
    /// Tensor name → its inferred shape.
    inferred: HashMap<String, crate::ir::shapes::Shape>,
}

impl Skeleton {
    pub(crate) fn of(m: &ModelProto) -> Skeleton {
        let Some(g) = m.graph.as_ref() else { return Skeleton { declared: HashMap::new(), inferred: HashMap::new() } };
        let declared = g.input.iter().chain(&g.value_info).chain(&g.output);
        let declared = declared.filter_map(|v| Some((v.name().to_string(), crate::ir::value_info_shape(v)?.len())));
        let mut skeleton = crate::onnx::GraphProto {
            node: g.node.clone(),
            input: g.input.clone(),
            output: g.output.clone(),
            value_info: g.value_info.clone(),
            ..Default::default()
        };
        for t in &g.initializer {
            if crate::tensor::numel(t).is_ok_and(|n| n <= 64) {
                skeleton.initializer.push(t.clone());
            } else {
                let dims: Vec<Option<i64>> = t.dims.iter().map(|&d| Some(d)).collect();
                skeleton.input.push(crate::onnx::tensor_info(t.name(), t.data_type(), &dims));
            }
        }
        let proto = ModelProto { graph: Some(skeleton), opset_import: m.opset_import.clone(), ..Default::default() };
        let mut inferred = HashMap::new();
        if let Ok(model) = crate::ir::Model::import(proto) {
            for (o, shape) in crate::ir::infer::infer(&model, &HashMap::new()) {
                inferred.insert(model.tensor_name(o).to_string(), shape);
            }
        }
        Skeleton { declared: declared.collect(), inferred }
    }

    /// The rank of tensor `name`, declared or inferred.
    pub(crate) fn rank(&self, name: &str) -> Option<usize> {
        self.declared.get(name).copied().or_else(|| Some(self.inferred.get(name)?.len()))
    }

    /// Whether tensor `name` has no elements (a dim known to be 0).
    fn empty(&self, name: &str) -> bool {
        self.inferred.get(name).is_some_and(|s| s.contains(&Some(0)))
    }
}

/// The error of a model tract cannot load or run.
pub(crate) fn cannot_run(which: &str, e: anyhow::Error) -> Error {
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
    guarded(which, || load_typed_unguarded(m, extra, specs, order, which))
}

fn load_typed_unguarded(
    m: &ModelProto,
    extra: &[String],
    specs: &[InputSpec],
    order: &[usize],
    which: &str,
) -> Result<TypedModel> {
    let fail = |e: anyhow::Error| cannot_run(which, e);
    refuse_tract_crashers(m).map_err(|e| fail(anyhow::anyhow!(e)))?;
    let (proto, weights) = tract_proto(m, extra).map_err(|e| fail(e.into()))?;
    let onnx = tract_onnx::onnx();
    let onnx = tract_onnx::model::Onnx { provider: std::sync::Arc::new(weights), ..onnx };
    let parsed = onnx.parse(&proto, Some(WEIGHTS_DIR)).map_err(fail)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(fail(anyhow::anyhow!("could not resolve inputs {:?}", parsed.unresolved_inputs)));
    }
    let mut model = parsed.model;
    drop((proto, onnx)); // tract's graph has the weights now
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

/// Hands the heap memory freed while tract loaded and optimised the models
/// back to the system. Loading leaves much of it free (each weight as
/// tract first builds it, beside the packed copy its kernels use), but in
/// glibc's arenas, which the run threads do not draw from: without this the
/// runs would add their activations on top of it. A few milliseconds.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the outputs at positions `keep` (in that order), taps the outputs
/// at positions `probes` ([`super::tap`]), then optimises.
pub(crate) fn optimise(mut m: TypedModel, keep: &[usize], probes: &[usize], which: &str) -> Result<Runnable> {
    let fail = |e: anyhow::Error| cannot_run(which, e);
    guarded(which, move || {
        super::tap::wire(&mut m, keep, probes).map_err(fail)?;
        m.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
    })
}

/// [`optimise`] for a model tract could not optimise (`why`: its error;
/// its declutter pulling a Downsample over an axis op it cannot transform,
/// "Invalid axis"): the same wiring, run decluttered, or else as loaded.
/// Slower, but the same arithmetic, so verification still judges it; the
/// note says which path ran. `m` is a fresh load: optimising consumed the
/// first (keeping a copy for this rare case would hold every weight twice).
pub(crate) fn unoptimised(
    mut m: TypedModel,
    keep: &[usize],
    probes: &[usize],
    which: &str,
    why: &Error,
) -> Result<(Runnable, String)> {
    let fail = |e: anyhow::Error| cannot_run(which, e);
    guarded(which, move || {
        super::tap::wire(&mut m, keep, probes).map_err(fail)?;
        unoptimised_path(m, which, &why.msg).map_err(fail)
    })
}

/// `m` decluttered, else as loaded, with the note saying which.
fn unoptimised_path(m: TypedModel, which: &str, why: &str) -> anyhow::Result<(Runnable, String)> {
    if let Ok(r) = m.clone().into_decluttered().and_then(|d| d.into_runnable()) {
        return Ok((r, format!("tract could not optimise the {which} ({why}): it ran decluttered")));
    }
    let r = m.into_runnable()?;
    Ok((r, format!("tract could not optimise or declutter the {which} ({why}): it ran as loaded")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::change_axes::AxisOp;
    use tract_onnx::tract_core::ops::downsample::Downsample;

    /// x [1, 4, 8] → Unsqueeze at 1 → Downsample on that axis (stride 2):
    /// tract's declutter fails on it ("Pulling Downsample over AddAxis:
    /// Invalid axis", the error issue 18 reported pulling a Downsample over
    /// a Reshape), though the model is well defined.
    fn unoptimisable() -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 4, 8])).unwrap();
        let a = m.wire_node("add", AxisOp::Add(1), &[x]).unwrap();
        let d = m.wire_node("down", Downsample::new(1, 2, 0), &a).unwrap();
        let y = m.wire_node("squeeze", AxisOp::Rm(1), &d).unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }

    #[test]
    fn a_model_tract_cannot_optimise_still_runs_and_says_how() {
        let e = optimise(unoptimisable(), &[0], &[], "original").err().map(|e| e.msg).unwrap_or_default();
        assert!(e.contains("Invalid axis"), "tract optimises it now; the fallback needs another witness: {e}");
        let (r, note) = unoptimised_path(unoptimisable(), "original", "Invalid axis").unwrap();
        assert!(note.contains("could not optimise") && note.contains("Invalid axis"), "{note}");
        let x = Tensor::from_shape(&[1, 4, 8], &(0..32).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        let y = r.run(tvec![x.clone().into()]).unwrap();
        let vals = |t: &Tensor| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>();
        assert_eq!(vals(&y[0].clone().into_tensor()), vals(&x), "the same values");
    }
}
