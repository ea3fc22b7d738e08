//! The structure-aware generator both graph fuzz targets share: the
//! fuzzer's bytes drive it to build a *plausible* CNN graph (Conv,
//! ConvTranspose, BN, activations, pooling, element-wise ops with
//! per-channel constants, Concat, Split, Slice, Resize, Pad, Flatten→Gemm,
//! Reshape→MatMul, unknown ops…) whose weights, dims, attributes and wiring
//! are mostly consistent but sometimes off.

use align::onnx::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value as DimValue, tensor_shape_proto::Dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

const FLOAT: i32 = 1;
const INT64: i32 = 7;

struct G<'a, 'b> {
    u: &'a mut Unstructured<'b>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    value_info: Vec<ValueInfoProto>,
    /// Tensors so far: name and the shape the generator believes it has.
    tensors: Vec<(String, Vec<i64>)>,
    next: usize,
    opset: i64,
}

fn ai(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}
fn aints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints: v, r#type: Some(AttributeType::Ints as i32), ..Default::default() }
}
fn af(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}
fn afs(name: &str, v: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        floats: v,
        r#type: Some(AttributeType::Floats as i32),
        ..Default::default()
    }
}
fn as_(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    }
}
fn at(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        t: Some(t),
        r#type: Some(AttributeType::Tensor as i32),
        ..Default::default()
    }
}

fn vi(name: &str, shape: Option<&[i64]>, symbolic: bool) -> ValueInfoProto {
    let shape = shape.map(|s| TensorShapeProto {
        dim: s
            .iter()
            .enumerate()
            .map(|(i, &d)| Dimension {
                value: Some(if symbolic && i == 0 { DimValue::DimParam("N".into()) } else { DimValue::DimValue(d) }),
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(FLOAT), shape })),
            denotation: None,
        }),
        ..Default::default()
    }
}

impl G<'_, '_> {
    fn int(&mut self, lo: i64, hi: i64) -> Result<i64> {
        self.u.int_in_range(lo..=hi)
    }
    fn chance(&mut self, one_in: u8) -> Result<bool> {
        Ok(self.u.int_in_range(0..=one_in.saturating_sub(1))? == 0)
    }
    /// `v`, or now and then something else.
    fn sloppy(&mut self, v: i64) -> Result<i64> {
        Ok(if self.chance(12)? { self.int(-2, 20)? } else { v })
    }
    fn fresh(&mut self, base: &str) -> String {
        self.next += 1;
        format!("{base}{}", self.next)
    }
    fn pick(&mut self) -> Result<(String, Vec<i64>)> {
        let n = self.tensors.len();
        // prefer recent tensors
        let back = self.int(0, (n as i64 - 1).min(3))? as usize;
        let i = if self.chance(4)? { self.u.choose_index(n)? } else { n - 1 - back };
        Ok(self.tensors[i].clone())
    }
    fn channels(s: &[i64]) -> i64 {
        s.get(1).copied().unwrap_or(1).max(1)
    }
    fn values(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let b = if i < 8 { self.u.arbitrary::<u8>()? } else { (i * 37 % 251) as u8 };
            v.push(match b {
                0 => 0.0,
                1 => -1.0,
                2 => f32::NAN,
                3 => f32::INFINITY,
                _ => (b as f32 - 128.0) / 64.0,
            });
        }
        Ok(v)
    }
    /// A float constant with `dims`, as an initializer, a Constant node, an
    /// Identity of an initializer or (when all values may be equal) a
    /// ConstantOfShape. Returns the tensor name.
    fn fconst(&mut self, base: &str, dims: Vec<i64>) -> Result<String> {
        let n: i64 = dims.iter().map(|&d| d.max(0)).product();
        let n = n.min(4096) as usize;
        let vals = self.values(n)?;
        let name = self.fresh(base);
        let t =
            TensorProto { name: Some(name.clone()), data_type: Some(FLOAT), dims: dims.clone(), ..Default::default() };
        let t = if self.chance(2)? {
            TensorProto { raw_data: Some(vals.iter().flat_map(|v| v.to_le_bytes()).collect()), ..t }
        } else {
            TensorProto { float_data: vals, ..t }
        };
        match self.int(0, 7)? {
            0 => {
                let t = TensorProto { name: None, ..t };
                self.nodes.push(NodeProto {
                    op_type: Some("Constant".into()),
                    output: vec![name.clone()],
                    attribute: vec![at("value", t)],
                    ..Default::default()
                });
                Ok(name)
            }
            1 => {
                let src = self.fresh("ci");
                self.inits.push(TensorProto { name: Some(src.clone()), ..t });
                self.nodes.push(NodeProto {
                    op_type: Some("Identity".into()),
                    input: vec![src],
                    output: vec![name.clone()],
                    ..Default::default()
                });
                Ok(name)
            }
            2 => {
                let shape = self.iconst("shape", dims)?;
                let v = self.values(1)?;
                let value = TensorProto { data_type: Some(FLOAT), dims: vec![1], float_data: v, ..Default::default() };
                let attribute = if self.chance(2)? { vec![at("value", value)] } else { vec![] };
                self.nodes.push(NodeProto {
                    op_type: Some("ConstantOfShape".into()),
                    input: vec![shape],
                    output: vec![name.clone()],
                    attribute,
                    ..Default::default()
                });
                Ok(name)
            }
            _ => {
                self.inits.push(t);
                Ok(name)
            }
        }
    }
    /// An int64 constant (initializer or Constant node).
    fn iconst(&mut self, base: &str, vals: Vec<i64>) -> Result<String> {
        let name = self.fresh(base);
        let t = TensorProto {
            name: Some(name.clone()),
            data_type: Some(INT64),
            dims: vec![vals.len() as i64],
            int64_data: vals,
            ..Default::default()
        };
        if self.chance(5)? {
            self.nodes.push(NodeProto {
                op_type: Some("Constant".into()),
                output: vec![name.clone()],
                attribute: vec![at("value", TensorProto { name: None, ..t })],
                ..Default::default()
            });
        } else {
            self.inits.push(t);
        }
        Ok(name)
    }
    fn node(&mut self, op: &str, input: Vec<String>, nout: usize, attrs: Vec<AttributeProto>) -> Vec<String> {
        let output: Vec<String> = (0..nout).map(|_| self.fresh("t")).collect();
        let name = self.fresh(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name),
            input,
            output: output.clone(),
            attribute: attrs,
            ..Default::default()
        });
        output
    }
    fn push(&mut self, name: String, shape: Vec<i64>) -> Result<()> {
        if self.chance(6)? {
            self.value_info.push(vi(&name, Some(&shape), false));
        }
        self.tensors.push((name, shape));
        Ok(())
    }

    fn conv(&mut self, transpose: bool) -> Result<()> {
        let (x, s) = self.pick()?;
        let cin = Self::channels(&s);
        let g = match self.int(0, 5)? {
            0 => cin,
            1 => 2,
            2 => self.int(0, 9)?,
            _ => 1,
        };
        let g1 = g.max(1);
        let cout = if g == cin && !transpose && self.chance(2)? { cin } else { self.int(1, 20)? };
        let k = self.int(1, 3)?;
        let rank = if s.len() >= 3 && !self.chance(16)? { s.len() } else { self.int(1, 5)? as usize };
        let mut wd = if transpose { vec![cin, cout / g1] } else { vec![cout, cin / g1] };
        wd.resize(rank.max(2), k);
        wd.truncate(rank);
        for d in wd.iter_mut() {
            *d = self.sloppy(*d)?;
        }
        let w = self.fconst("w", wd)?;
        let mut ins = vec![x, w];
        if self.chance(2)? {
            let bc = if transpose { (cout / g1) * g1 } else { cout };
            let bc = self.sloppy(bc)?;
            let b = self.fconst("b", vec![bc])?;
            ins.push(b);
        } else if self.chance(10)? {
            ins.push(String::new());
        }
        let nd = s.len().saturating_sub(2);
        let mut attrs = vec![];
        if g != 1 || self.chance(4)? {
            attrs.push(ai("group", g));
        }
        let stride = if self.chance(3)? { 2 } else { 1 };
        if stride != 1 || self.chance(5)? {
            let mut v = vec![stride; nd];
            if self.chance(10)? {
                v.push(self.int(-1, 3)?);
            }
            attrs.push(aints("strides", v));
        }
        let pad = if k == 3 && self.chance(2)? { 1 } else { 0 };
        if pad != 0 || self.chance(6)? {
            let mut v = vec![pad; 2 * nd];
            if self.chance(10)? {
                v.pop();
            }
            attrs.push(aints("pads", v));
        }
        if self.chance(8)? {
            attrs.push(aints("dilations", vec![self.int(0, 2)?; nd]));
        }
        if self.chance(8)? {
            attrs.push(aints("kernel_shape", vec![k; nd]));
        }
        if self.chance(10)? {
            attrs.push(as_("auto_pad", ["SAME_UPPER", "VALID", "SAME_LOWER", "NOTSET"][self.u.choose_index(4)?]));
        }
        if transpose && self.chance(5)? {
            attrs.push(aints("output_padding", vec![self.int(0, 2)?; nd]));
        }
        if transpose && self.chance(8)? {
            let mut os: Vec<i64> = s.iter().skip(2).map(|&d| d * stride).collect();
            if self.chance(2)? {
                os.insert(0, cout);
                os.insert(0, 1);
            }
            attrs.push(aints("output_shape", os));
        }
        let op = if transpose { "ConvTranspose" } else { "Conv" };
        let y = self.node(op, ins, 1, attrs).remove(0);
        let mut os = s.clone();
        if os.len() >= 2 {
            os[1] = if transpose { (cout / g1) * g1 } else { cout };
        }
        for d in os.iter_mut().skip(2) {
            *d = if transpose { *d * stride } else { (*d + stride - 1) / stride };
        }
        self.push(y, os)
    }

    fn bn(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let c = Self::channels(&s);
        let mut ins = vec![x];
        for _ in 0..4 {
            let cc = self.sloppy(c)?;
            let dims = if self.chance(16)? { vec![cc, 1] } else { vec![cc] };
            let name = self.fconst("bn", dims)?;
            ins.push(name);
        }
        let mut attrs = vec![];
        if self.chance(4)? {
            attrs.push(af("epsilon", [1e-5, 0.0, -1.0, 1e-3][self.u.choose_index(4)?]));
        }
        if self.chance(20)? {
            attrs.push(ai("training_mode", self.int(0, 1)?));
        }
        let nout = if self.chance(12)? { 3 } else { 1 };
        let y = self.node("BatchNormalization", ins, nout, attrs).remove(0);
        self.push(y, s)
    }

    fn unary(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        const OPS: &[&str] = &[
            "Relu",
            "Sigmoid",
            "LeakyRelu",
            "Clip",
            "HardSwish",
            "Identity",
            "Softmax",
            "MaxPool",
            "AveragePool",
            "GlobalAveragePool",
            "Dropout",
            "Tanh",
            "Neg",
            "Transpose",
            "Exp",
        ];
        let op = OPS[self.u.choose_index(OPS.len())?];
        let nd = s.len().saturating_sub(2);
        let mut attrs = vec![];
        let mut ins = vec![x];
        let mut os = s.clone();
        match op {
            "MaxPool" | "AveragePool" => {
                let k = self.int(1, 3)?;
                attrs.push(aints("kernel_shape", vec![k; nd]));
                if self.chance(2)? {
                    attrs.push(aints("strides", vec![k; nd]));
                    for d in os.iter_mut().skip(2) {
                        *d = (*d / k).max(1);
                    }
                }
                if self.chance(6)? {
                    attrs.push(ai("ceil_mode", 1));
                }
            }
            "GlobalAveragePool" => {
                for d in os.iter_mut().skip(2) {
                    *d = 1;
                }
            }
            "Softmax" => attrs.push(ai("axis", self.int(-1, 1)?)),
            "Clip" if self.opset >= 11 && self.chance(2)? => {
                let lo = self.fconst("lo", vec![])?;
                ins.push(lo);
                let hi_dims = if self.chance(6)? { vec![2] } else { vec![] };
                let hi = self.fconst("hi", hi_dims)?;
                ins.push(hi);
            }
            "Transpose" => {
                let mut p: Vec<i64> = (0..s.len() as i64).collect();
                if p.len() >= 4 {
                    p.swap(2, 3);
                }
                if self.chance(3)? && p.len() >= 2 {
                    p.swap(0, 1);
                    os.swap(0, 1);
                }
                attrs.push(aints("perm", p));
            }
            _ => {}
        }
        let nout = if op == "Dropout" && self.chance(3)? { 2 } else { 1 };
        let y = self.node(op, ins, nout, attrs).remove(0);
        self.push(y, os)
    }

    fn binary(&mut self) -> Result<()> {
        const OPS: &[&str] = &["Add", "Mul", "Sub", "Div", "Max", "Min", "Pow", "PRelu", "Sum"];
        let op = OPS[self.u.choose_index(OPS.len())?];
        let (a, s) = self.pick()?;
        let c = Self::channels(&s);
        let b = if self.chance(3)? {
            self.pick()?.0
        } else {
            let cc = self.sloppy(c)?;
            let dims = match self.int(0, 5)? {
                0 => vec![cc, 1, 1],
                1 => vec![1, cc, 1, 1],
                2 => vec![cc],
                3 => vec![],
                4 => vec![1],
                _ => vec![cc, 1],
            };
            if self.chance(5)? {
                // per-channel constant reshaped / unsqueezed at run time
                let base = self.fconst("k", vec![cc])?;
                if self.opset >= 13 && self.chance(2)? {
                    let axes = self.iconst("axes", vec![1, 2])?;
                    self.node("Unsqueeze", vec![base, axes], 1, vec![]).remove(0)
                } else {
                    let shape = self.iconst("shape", dims)?;
                    self.node("Reshape", vec![base, shape], 1, vec![]).remove(0)
                }
            } else {
                self.fconst("k", dims)?
            }
        };
        let ins = if self.chance(6)? { vec![b, a] } else { vec![a, b] };
        let y = self.node(op, ins, 1, vec![]).remove(0);
        self.push(y, s)
    }

    fn concat(&mut self) -> Result<()> {
        let n = self.int(1, 3)?;
        let mut ins = vec![];
        let mut shape = vec![];
        let mut c = 0;
        for _ in 0..n {
            let (t, s) = self.pick()?;
            c += Self::channels(&s);
            shape = s;
            ins.push(t);
        }
        let axis = match self.int(0, 5)? {
            0 => 0,
            1 => -3,
            2 => self.int(-5, 5)?,
            _ => 1,
        };
        let y = self.node("Concat", ins, 1, vec![ai("axis", axis)]).remove(0);
        if shape.len() >= 2 && axis == 1 {
            shape[1] = c;
        }
        self.push(y, shape)
    }

    fn split(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let c = Self::channels(&s);
        let nout = self.int(1, 3)? as usize;
        let mut sizes: Vec<i64> = vec![c / nout as i64; nout];
        sizes[0] += c - sizes.iter().sum::<i64>();
        for v in sizes.iter_mut() {
            *v = self.sloppy(*v)?;
        }
        let axis = if self.chance(5)? { self.int(-4, 3)? } else { 1 };
        let mut ins = vec![x];
        let mut attrs = vec![ai("axis", axis)];
        match self.int(0, 2)? {
            0 if self.opset >= 13 => {
                let sp = self.iconst("split", sizes.clone())?;
                ins.push(sp);
            }
            0 => attrs.push(aints("split", sizes.clone())),
            1 if self.opset >= 18 => attrs.push(ai("num_outputs", self.sloppy(nout as i64)?)),
            _ => {}
        }
        let outs = self.node("Split", ins, nout, attrs);
        for (o, sz) in outs.into_iter().zip(sizes) {
            let mut sh = s.clone();
            if sh.len() >= 2 {
                sh[1] = sz.max(1);
            }
            self.push(o, sh)?;
        }
        Ok(())
    }

    fn slice(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let c = Self::channels(&s);
        let st = self.int(-c - 2, c + 2)?;
        let en = if self.chance(6)? { i64::MAX } else { self.int(-c - 2, c + 2)? };
        let axis = if self.chance(5)? { self.int(-4, 3)? } else { 1 };
        let step = if self.chance(6)? { self.int(-2, 2)? } else { 1 };
        let y = if self.opset >= 10 {
            let mut ins = vec![x, self.iconst("starts", vec![st])?, self.iconst("ends", vec![en])?];
            if self.chance(4)? || step != 1 {
                ins.push(self.iconst("axes", vec![axis])?);
                if step != 1 || self.chance(3)? {
                    ins.push(self.iconst("steps", vec![step])?);
                }
            }
            self.node("Slice", ins, 1, vec![]).remove(0)
        } else {
            let attrs = vec![aints("starts", vec![st]), aints("ends", vec![en]), aints("axes", vec![axis])];
            self.node("Slice", vec![x], 1, attrs).remove(0)
        };
        let mut sh = s.clone();
        if sh.len() >= 2 {
            sh[1] = (en.clamp(0, c) - st.clamp(0, c)).max(1);
        }
        self.push(y, sh)
    }

    fn resize(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let mut os = s.clone();
        for d in os.iter_mut().skip(2) {
            *d *= 2;
        }
        let scales: Vec<f32> = s.iter().enumerate().map(|(i, _)| if i < 2 { 1.0 } else { 2.0 }).collect();
        let y = if self.opset < 10 {
            if self.opset >= 9 {
                let sc = self.fconst_vals("scales", scales)?;
                self.node("Upsample", vec![x, sc], 1, vec![as_("mode", "nearest")]).remove(0)
            } else {
                self.node("Upsample", vec![x], 1, vec![afs("scales", scales)]).remove(0)
            }
        } else if self.opset < 11 {
            let sc = self.fconst_vals("scales", scales)?;
            self.node("Resize", vec![x, sc], 1, vec![]).remove(0)
        } else if self.chance(2)? {
            let mut sizes = os.clone();
            for v in sizes.iter_mut() {
                *v = self.sloppy(*v)?;
            }
            let sz = self.iconst("sizes", sizes)?;
            self.node("Resize", vec![x, String::new(), String::new(), sz], 1, vec![]).remove(0)
        } else {
            let mut scales = scales;
            if self.chance(8)? {
                scales.truncate(2);
            }
            let roi = self.fconst_vals("roi", vec![])?;
            let sc = self.fconst_vals("scales", scales)?;
            self.node("Resize", vec![x, roi, sc], 1, vec![as_("mode", "nearest")]).remove(0)
        };
        self.push(y, os)
    }

    fn fconst_vals(&mut self, base: &str, vals: Vec<f32>) -> Result<String> {
        let name = self.fresh(base);
        self.inits.push(TensorProto {
            name: Some(name.clone()),
            data_type: Some(FLOAT),
            dims: vec![vals.len() as i64],
            float_data: vals,
            ..Default::default()
        });
        Ok(name)
    }

    fn pad(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let r = s.len();
        let mut pads = vec![0i64; 2 * r];
        for (i, p) in pads.iter_mut().enumerate() {
            if i % r >= 2 || self.chance(10)? {
                *p = self.int(0, 1)?;
            }
        }
        let mut os = s.clone();
        for i in 0..r {
            os[i] += pads[i] + pads[i + r];
        }
        let y = if self.opset >= 11 {
            let p = self.iconst("pads", pads)?;
            self.node("Pad", vec![x, p], 1, vec![]).remove(0)
        } else {
            self.node("Pad", vec![x], 1, vec![aints("pads", pads)]).remove(0)
        };
        self.push(y, os)
    }

    fn dense(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        let feat: i64 = s.iter().skip(1).product();
        let f = if self.chance(2)? {
            let axis = if self.chance(8)? { 2 } else { 1 };
            self.node("Flatten", vec![x], 1, vec![ai("axis", axis)]).remove(0)
        } else {
            let d1 = if self.chance(2)? { -1 } else { feat };
            let shape = self.iconst("shape", vec![s.first().copied().unwrap_or(1), d1])?;
            self.node("Reshape", vec![x, shape], 1, vec![]).remove(0)
        };
        let n = self.int(1, 6)?;
        let feat_s = self.sloppy(feat)?;
        let y = if self.chance(2)? {
            let tb = self.chance(2)?;
            let wd = if tb { vec![n, feat_s] } else { vec![feat_s, n] };
            let w = self.fconst("fc", wd)?;
            let mut ins = vec![f, w];
            if self.chance(2)? {
                ins.push(self.fconst("fcb", vec![n])?);
            }
            self.node("Gemm", ins, 1, vec![ai("transB", tb as i64)]).remove(0)
        } else {
            let w = self.fconst("mm", vec![feat_s, n])?;
            self.node("MatMul", vec![f, w], 1, vec![]).remove(0)
        };
        self.push(y, vec![s.first().copied().unwrap_or(1), n])
    }

    fn other(&mut self) -> Result<()> {
        let (x, s) = self.pick()?;
        match self.int(0, 2)? {
            0 => {
                let nout = self.int(1, 2)? as usize;
                let outs = self.node("Mystery", vec![x], nout, vec![]);
                if let Some(p) = self.nodes.last_mut() {
                    p.domain = Some("com.example".into());
                }
                for o in outs {
                    self.push(o, s.clone())?;
                }
                Ok(())
            }
            1 => {
                let shape = self.iconst("shape", s.iter().map(|_| 0).collect())?;
                let y = self.node("Reshape", vec![x, shape], 1, vec![]).remove(0);
                self.push(y, s)
            }
            _ => {
                let y = self.node("Shape", vec![x], 1, vec![]).remove(0);
                let r = s.len() as i64;
                self.push(y, vec![r])
            }
        }
    }
}

/// A plausible CNN graph built from the fuzzer's bytes (see the module doc).
pub fn build(u: &mut Unstructured) -> Result<ModelProto> {
    let opset = [9, 11, 12, 13, 13, 17, 18, 21][u.choose_index(8)?];
    let mut g = G { u, nodes: vec![], inits: vec![], value_info: vec![], tensors: vec![], next: 0, opset };
    let rank = if g.chance(10)? { g.int(1, 5)? as usize } else { 4 };
    let mut shape = vec![1, g.int(1, 12)?];
    while shape.len() < rank {
        shape.push(g.int(1, 5)?);
    }
    shape.truncate(rank);
    let symbolic = g.chance(10)?;
    g.tensors.push(("x".into(), shape.clone()));
    let n_ops = g.int(1, 12)?;
    for _ in 0..n_ops {
        match g.int(0, 15)? {
            0..=3 => g.conv(false)?,
            4 => g.conv(true)?,
            5 | 6 => g.bn()?,
            7 | 8 => g.unary()?,
            9 => g.binary()?,
            10 => g.concat()?,
            11 => g.split()?,
            12 => g.slice()?,
            13 => g.resize()?,
            14 => {
                if g.chance(2)? {
                    g.pad()?
                } else {
                    g.dense()?
                }
            }
            _ => g.other()?,
        }
    }
    let mut outputs = vec![g.tensors.last().unwrap().clone()];
    for t in g.tensors.clone().into_iter().skip(1) {
        if g.chance(6)? && !outputs.iter().any(|(n, _)| *n == t.0) {
            outputs.push(t);
        }
    }
    let with_shapes = !g.chance(5)?;
    let ir = if opset <= 9 && g.chance(2)? { 3 } else { 8 };
    let mut inputs = vec![vi("x", Some(&shape), symbolic)];
    if ir == 3 {
        for t in &g.inits {
            inputs.push(vi(t.name(), Some(&t.dims), false));
        }
    }
    let graph = GraphProto {
        name: Some("g".into()),
        node: g.nodes,
        initializer: g.inits,
        input: inputs,
        output: outputs.iter().map(|(n, s)| vi(n, with_shapes.then_some(s.as_slice()), symbolic)).collect(),
        value_info: g.value_info,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(ir),
        opset_import: vec![
            OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) },
            OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) },
        ],
        graph: Some(graph),
        ..Default::default()
    })
}

