//! float16 and bfloat16 models verified in float32.
//!
//! tract runs half-precision graphs slowly on CPUs (many of its kernels have
//! no f16 path), and a verified `align` of a float16 YOLO ran for minutes.
//! The rewrite's exactness does not depend on the precision it is checked
//! in: zero filters, zero weight rows and padded per-channel constants are
//! neutral in any float type, and the real weights are the original's (or
//! the BatchNormalization fold of them, rounded once into the model's type:
//! the certificate checks that in the model's own precision). So both models
//! are copied with every f16 / bf16 weight, constant, Cast target and
//! declared type made f32, and tract runs the copies.
//!
//! What changes is the noise to compare against: a half-precision model
//! rounds every op to 11 (f16) or 8 (bf16) significant bits, and the fold's
//! weights were rounded that coarsely too. The perturbed run therefore
//! moves the inputs by one ulp of the model's precision, not of f32, and
//! the ulp term of each tensor's bound is taken in that precision
//! ([`Precision::eps`]).

use crate::onnx::{type_proto, AttributeProto, GraphProto, ModelProto, TensorProto, TypeProto};

/// ONNX element types.
const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const BFLOAT16: i32 = 16;

/// The precision a model computes in: the coarsest float type it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// float32 (or float64): tract runs the models as they are.
    F32,
    /// float16 somewhere: run up-cast to f32.
    F16,
    /// bfloat16 somewhere: run up-cast to f32.
    BF16,
}

impl Precision {
    /// Machine epsilon of the precision (2⁻²³, 2⁻¹⁰, 2⁻⁷).
    pub fn eps(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F16 => half::f16::EPSILON.to_f64(),
            Precision::BF16 => half::bf16::EPSILON.to_f64(),
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::F16 => "float16",
            Precision::BF16 => "bfloat16",
        }
    }

    fn of_elem(e: i32) -> Precision {
        match e {
            FLOAT16 => Precision::F16,
            BFLOAT16 => Precision::BF16,
            _ => Precision::F32,
        }
    }
}

/// The coarsest float precision `m` declares anywhere: weights, constants,
/// Cast targets, graph inputs, outputs and value_info, subgraphs included.
pub fn precision(m: &ModelProto) -> Precision {
    let mut p = Precision::F32;
    if let Some(g) = &m.graph {
        visit(g, &mut |e| p = p.max(Precision::of_elem(e)));
    }
    p
}

/// Calls `f` with every element type `g` declares.
fn visit(g: &GraphProto, f: &mut dyn FnMut(i32)) {
    for t in &g.initializer {
        f(t.data_type.unwrap_or(0));
    }
    for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
        if let Some(t) = &v.r#type {
            type_elems(t, f);
        }
    }
    for n in &g.node {
        for a in &n.attribute {
            if a.name() == "to" {
                f(a.i.unwrap_or(0) as i32);
            }
            for t in a.t.iter().chain(&a.tensors) {
                f(t.data_type.unwrap_or(0));
            }
            for sub in a.g.iter().chain(&a.graphs) {
                visit(sub, f);
            }
        }
    }
}

fn type_elems(t: &TypeProto, f: &mut dyn FnMut(i32)) {
    match &t.value {
        Some(type_proto::Value::TensorType(x)) => f(x.elem_type.unwrap_or(0)),
        Some(type_proto::Value::SparseTensorType(x)) => f(x.elem_type.unwrap_or(0)),
        Some(type_proto::Value::SequenceType(x)) => x.elem_type.iter().for_each(|e| type_elems(e, f)),
        Some(type_proto::Value::OptionalType(x)) => x.elem_type.iter().for_each(|e| type_elems(e, f)),
        _ => {}
    }
}

/// A copy of `m` with every f16 / bf16 tensor, Cast target and declared
/// type made f32 (weights converted exactly: every half value is an f32).
pub fn upcast(m: &ModelProto) -> crate::error::Result<ModelProto> {
    let mut m = m.clone(); // shares the weights' bytes; only half tensors are copied
    if let Some(g) = m.graph.as_mut() {
        upcast_graph(g)?;
    }
    Ok(m)
}

fn is_half(e: Option<i32>) -> bool {
    matches!(e, Some(FLOAT16 | BFLOAT16))
}

fn upcast_graph(g: &mut GraphProto) -> crate::error::Result<()> {
    for t in &mut g.initializer {
        upcast_tensor(t)?;
    }
    for v in g.input.iter_mut().chain(&mut g.output).chain(&mut g.value_info) {
        if let Some(t) = v.r#type.as_mut() {
            upcast_type(t);
        }
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            upcast_attr(a)?;
        }
    }
    Ok(())
}

fn upcast_attr(a: &mut AttributeProto) -> crate::error::Result<()> {
    if a.name() == "to" && is_half(a.i.map(|i| i as i32)) {
        a.i = Some(FLOAT as i64);
    }
    for t in a.t.iter_mut().chain(&mut a.tensors) {
        upcast_tensor(t)?;
    }
    for sub in a.g.iter_mut().chain(&mut a.graphs) {
        upcast_graph(sub)?;
    }
    Ok(())
}

fn upcast_type(t: &mut TypeProto) {
    match t.value.as_mut() {
        Some(type_proto::Value::TensorType(x)) if is_half(x.elem_type) => x.elem_type = Some(FLOAT),
        Some(type_proto::Value::SparseTensorType(x)) if is_half(x.elem_type) => x.elem_type = Some(FLOAT),
        Some(type_proto::Value::SequenceType(x)) => x.elem_type.iter_mut().for_each(|e| upcast_type(e)),
        Some(type_proto::Value::OptionalType(x)) => x.elem_type.iter_mut().for_each(|e| upcast_type(e)),
        _ => {}
    }
}

fn upcast_tensor(t: &mut TensorProto) -> crate::error::Result<()> {
    if !is_half(t.data_type) {
        return Ok(());
    }
    let v = crate::tensor::Values::of(t)?;
    let raw: Vec<u8> = (0..v.len()).flat_map(|i| (v.get(i) as f32).to_le_bytes()).collect();
    drop(v);
    t.data_type = Some(FLOAT);
    t.int32_data.clear();
    t.raw_data = Some(raw.into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Builder;

    #[test]
    fn a_half_model_is_copied_in_f32_with_the_same_values() {
        let mut b = Builder::new(&[1, 3, 4, 4]);
        let y = b.conv("x", 3, 5, 3, 1, true);
        b.output(&y, &[1, 5, 2, 2]);
        let mut m = b.model();
        assert_eq!(precision(&m), Precision::F32);
        // make the conv weight f16 and add a Cast to f16
        let g = m.graph.as_mut().unwrap();
        let w = &mut g.initializer[0];
        let vals: Vec<f64> = {
            let v = crate::tensor::Values::of(w).unwrap();
            (0..v.len()).map(|i| half::f16::from_f64(v.get(i)).to_f64()).collect()
        };
        *w = crate::tensor::from_f64(w.name(), FLOAT16, &crate::tensor::dims(w), &vals).unwrap();
        g.node[0].attribute.push(AttributeProto {
            name: Some("to".into()),
            i: Some(FLOAT16 as i64),
            ..Default::default()
        });
        assert_eq!(precision(&m), Precision::F16);
        let up = upcast(&m).unwrap();
        assert_eq!(precision(&up), Precision::F32);
        let w = &up.graph.as_ref().unwrap().initializer[0];
        assert_eq!(w.data_type, Some(FLOAT));
        let v = crate::tensor::Values::of(w).unwrap();
        assert!((0..v.len()).all(|i| v.get(i) == vals[i]), "values changed");
        assert!(Precision::F16.eps() > Precision::F32.eps() && Precision::BF16.eps() > Precision::F16.eps());
    }
}
