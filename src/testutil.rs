//! Small ONNX graphs built in code for unit tests of the passes.

use crate::onnx::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, ValueInfoProto,
};

/// A float32 value info of a fixed shape.
pub fn vi(name: &str, shape: &[i64]) -> ValueInfoProto {
    crate::onnx::tensor_info(name, 1, &shape.iter().map(|&d| Some(d)).collect::<Vec<_>>())
}

/// Builds a graph node by node, with deterministic pseudo-random weights.
pub struct Builder {
    /// The graph so far.
    pub g: GraphProto,
    seed: u64,
    count: usize,
    /// Opset to declare.
    pub opset: i64,
}

impl Builder {
    /// A graph with one input `x` of `shape`.
    pub fn new(shape: &[i64]) -> Builder {
        let g = GraphProto { name: Some("test".into()), input: vec![vi("x", shape)], ..Default::default() };
        Builder { g, seed: 42, count: 0, opset: 13 }
    }

    fn rand(&mut self) -> f32 {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn name(&mut self, base: &str) -> String {
        self.count += 1;
        format!("{base}{}", self.count)
    }

    /// Adds an f32 initializer.
    pub fn init(&mut self, base: &str, dims: &[i64], values: Vec<f32>) -> String {
        let name = self.name(base);
        self.g.initializer.push(TensorProto {
            name: Some(name.clone()),
            data_type: Some(1),
            dims: dims.to_vec(),
            float_data: values,
            ..Default::default()
        });
        name
    }

    /// Adds a random f32 initializer (values in [lo, hi)).
    pub fn rand_init(&mut self, base: &str, dims: &[i64], lo: f32, hi: f32) -> String {
        let n: i64 = dims.iter().product();
        let v = (0..n).map(|_| lo + (self.rand() + 1.0) / 2.0 * (hi - lo)).collect();
        self.init(base, dims, v)
    }

    /// Adds an int64 initializer.
    pub fn ints(&mut self, base: &str, values: &[i64]) -> String {
        let name = self.name(base);
        self.g.initializer.push(TensorProto {
            name: Some(name.clone()),
            data_type: Some(7),
            dims: vec![values.len() as i64],
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds a node; returns its output names.
    pub fn node(&mut self, op: &str, inputs: &[&str], n_out: usize, attrs: Vec<AttributeProto>) -> Vec<String> {
        let name = self.name(op);
        let outputs: Vec<String> = (0..n_out).map(|i| format!("{name}_o{i}")).collect();
        self.g.node.push(NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            attribute: attrs,
            ..Default::default()
        });
        outputs
    }

    /// Conv with random weights (and bias when `bias`).
    pub fn conv(&mut self, x: &str, cin: i64, cout: i64, k: i64, group: i64, bias: bool) -> String {
        let w = self.rand_init("w", &[cout, cin / group, k, k], -0.5, 0.5);
        let mut ins = vec![x.to_string(), w];
        if bias {
            ins.push(self.rand_init("b", &[cout], -0.2, 0.2));
        }
        let ins: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
        let pad = k / 2;
        self.node(
            "Conv",
            &ins,
            1,
            vec![
                ints_attr("pads", &[pad, pad, pad, pad]),
                int_attr("group", group),
                ints_attr("kernel_shape", &[k, k]),
            ],
        )
        .remove(0)
    }

    /// ConvTranspose 2x2 stride 2 with random weights and bias.
    pub fn deconv(&mut self, x: &str, cin: i64, cout: i64) -> String {
        let w = self.rand_init("w", &[cin, cout, 2, 2], -0.5, 0.5);
        let b = self.rand_init("b", &[cout], -0.2, 0.2);
        self.node("ConvTranspose", &[x, &w, &b], 1, vec![ints_attr("strides", &[2, 2])]).remove(0)
    }

    /// BatchNormalization with random statistics.
    pub fn bn(&mut self, x: &str, c: i64) -> String {
        let s = self.rand_init("gamma", &[c], 0.5, 1.5);
        let b = self.rand_init("beta", &[c], -0.3, 0.3);
        let m = self.rand_init("mean", &[c], -0.3, 0.3);
        let v = self.rand_init("var", &[c], 0.5, 2.0);
        self.node("BatchNormalization", &[x, &s, &b, &m, &v], 1, vec![]).remove(0)
    }

    /// A one-input, one-output op.
    pub fn unary(&mut self, op: &str, x: &str) -> String {
        self.node(op, &[x], 1, vec![]).remove(0)
    }

    /// Makes dim `axis` of input `x` symbolic (a `dim_param`).
    pub fn symbolic(&mut self, axis: usize) {
        let Some(type_proto::Value::TensorType(t)) = self.g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            unreachable!("Builder::new declares a tensor input")
        };
        let dim = &mut t.shape.as_mut().expect("a shape").dim[axis];
        dim.value = Some(tensor_shape_proto::dimension::Value::DimParam("N".into()));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, shape: &[i64]) {
        self.g.output.push(vi(name, shape));
    }

    /// The finished model.
    pub fn model(&self) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            producer_name: Some("align-tests".into()),
            graph: Some(self.g.clone()),
            ..Default::default()
        }
    }
}

/// Shapes and values inferred on a built model, by tensor name.
pub struct Inferred {
    m: crate::ir::Model,
    shapes: std::collections::HashMap<crate::ir::Outlet, crate::ir::shapes::Shape>,
    values: std::collections::HashMap<crate::ir::Outlet, crate::ir::values::Value>,
}

impl Inferred {
    /// Imports the builder's model and runs the inference walk on it.
    pub fn of(b: &Builder) -> Inferred {
        let m = crate::ir::Model::import(b.model()).expect("import");
        let (shapes, values) = crate::ir::infer::infer_with_values(&m, &Default::default());
        Inferred { m, shapes, values }
    }

    fn outlet(&self, name: &str) -> crate::ir::Outlet {
        let n = self.m.ops().into_iter().find(|&n| self.m.output_names(n).contains(&name)).expect("an op output");
        crate::ir::Outlet { node: n, slot: self.m.output_names(n).iter().position(|&o| o == name).unwrap() }
    }

    /// The shape inferred for op output `name`.
    pub fn shape(&self, name: &str) -> Option<Vec<Option<i64>>> {
        self.shapes.get(&self.outlet(name)).cloned()
    }

    /// The value computed for op output `name`.
    pub fn value(&self, name: &str) -> Option<crate::ir::values::Value> {
        self.values.get(&self.outlet(name)).cloned()
    }

    /// The cost of the op producing `name` as a layer, its input and output
    /// channel dims aligned to `input` / `output` and a flattened input to
    /// `flat` (`None`: not followed by the analysis).
    pub fn cost(
        &self,
        name: &str,
        input: Option<crate::ops::Width>,
        output: Option<crate::ops::Width>,
        flat: Option<usize>,
    ) -> Option<crate::ops::Cost> {
        let o = self.outlet(name);
        let p = self.m.op(o.node)?;
        let flat = || flat;
        let cx = crate::ops::CostCx { m: &self.m, n: o.node, p, shapes: &self.shapes, input, output, flat: &flat };
        crate::ops::entry(p)?.rules.cost(&cx)
    }

    /// The constant the IR folds op output `name` into, as (dims, elements).
    pub fn folded(&self, name: &str) -> Option<(Vec<i64>, Vec<f64>)> {
        let t = self.m.const_value(self.outlet(name))?;
        Some((t.dims.clone(), crate::tensor::to_f64(&t).expect("a numeric constant")))
    }

    /// The dims the IR gives the constant at op output `name`.
    pub fn folded_dims(&self, name: &str) -> Option<Vec<i64>> {
        self.m.const_dims(self.outlet(name))
    }

    /// The value computed for op output `name` as integers (all known).
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.value(name)?.ints()
    }
}

/// A channel dim of `logical` channels padded to `physical`.
pub fn width(logical: usize, physical: usize) -> Option<crate::ops::Width> {
    Some(crate::ops::Width { logical, physical })
}

/// A fully known shape.
pub fn known(dims: &[i64]) -> Vec<Option<i64>> {
    dims.iter().map(|&d| Some(d)).collect()
}

/// A float attribute.
pub fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}

/// An int attribute.
pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

/// An ints attribute.
pub fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

/// Runs the passes on `model` and verifies with tract; returns the rewritten
/// model, the pass reports and whether verification passed.
pub fn align_and_verify(
    model: &ModelProto,
    multiple: usize,
) -> (ModelProto, Vec<crate::passes::PassReport>, crate::verify::Verification) {
    let mut m = crate::ir::Model::import(model.clone()).expect("import");
    let opts = crate::passes::Options { multiple, ..Default::default() };
    let reports = crate::passes::run(&mut m, &crate::passes::Pass::all(), &opts).expect("passes");
    let out = m.export();
    let v = crate::verify::verify(
        model,
        &out,
        &Default::default(),
        &crate::verify::VerifyOptions { trials: 2, seed: 7, ..Default::default() },
    )
    .expect("verify runs");
    (out, reports, v)
}

/// Channel count (axis 1) of every value_info / output, by name, from a
/// report of the aligned model: number of free dims not a multiple.
pub fn free_unaligned(model: &ModelProto, multiple: usize) -> usize {
    let m = crate::ir::Model::import(model.clone()).unwrap();
    let opts = crate::passes::Options { multiple, ..Default::default() };
    crate::report::build(&m, &opts).unwrap().totals.free_unaligned
}
