//! fold-bn: fold BatchNormalization into the convolutions that feed it.
//!
//! Before: `Y = BN(Conv(X, W, b))` (or ConvTranspose, or
//! `BN(Concat(Conv₁(…), Conv₂(…), …))` on the channel axis — YOLOv5 v3's
//! BottleneckCSP — or a Gemm: a BatchNorm1d after a Linear on `[N, C]`).
//! After: `Y = Conv(X, W', b')`; the BN is gone and its output name is kept
//! (the conv now produces it), so consumers and graph outputs are untouched.
//!
//!
//! A BatchNorm1d before a Gemm that alone reads it (timm LeViT's NormLinear
//! heads) folds into the Gemm: its input columns are scaled and its bias
//! becomes `b + W·t`. One after a MatMul through a Flatten (LeViT's
//! LinearNorm: `MatMul → Flatten [N·T, C] → BN`) is kept: folding it was
//! built and measured, and it made onnxruntime's int8 model 4.5 % worse
//! (the MatMul output's per-tensor activation range then spans the BN's
//! per-feature scales; onnxruntime folds nothing there, so the original
//! keeps the finer range). It is padded neutrally instead (docs/support.md).
//!
//! Conditions: the BN is in the default domain, not `training_mode=1`
//! (refused with an error; a weight computed from constants, as timm's
//! weight-standardised convs compute theirs with one, is evaluated first:
//! `ir::fold_shapes::fold_weights`), has one used output and constant 1-D parameters;
//! each folded conv has constant weights (and bias, if any), group-compatible
//! shapes, and its output is read by nothing but the BN (or the Concat);
//! the Concat, if any, is on the channel axis and read only by the BN.
//!
//! Formula, per output channel `o`: `s = γ/√(σ²+ε)`, `W'[o] = s·W[o]`,
//! `b' = s·(b − μ) + β` (a conv without bias gets one). For ConvTranspose
//! the weight is `(C_in, C_out/group, k…)`: output channel
//! `o = g·(C_out/group) + j` scales `W[i, j]` for the inputs `i` of group `g`.
//! Arithmetic is in f64 per element (the BN parameters as vectors, each weight
//! product rounded once into the weight's own type: no f64 copy of a weight).
//! The bias is written at once; the weight's scale is deferred on the IR
//! ([`Model::defer_scale`]) when the conv alone reads it, so pad applies it
//! while writing the padded weight and each weight is written once (export
//! applies the scales pad did not consume).

use crate::error::{Error, Result};
use crate::ir::{op_name, BlockScale, Model, NodeId, Outlet};
use crate::onnx::{attr_f, attr_i};
use crate::ops::conv::KernelFormat;
use crate::tensor;

/// Folds every foldable BatchNormalization. Returns (count, notes).
pub fn run(m: &mut Model) -> Result<(usize, Vec<String>)> {
    // a weight standardised at run time (a BatchNormalization with
    // training_mode=1 on a constant) is a constant: evaluated first
    let evaluated = crate::ir::fold_shapes::fold_weights(m)?;
    let mut notes = vec![];
    let mut exact = Biases::new();
    for n in m.ops() {
        if !m.op(n).is_some_and(|p| crate::ops::is(p, "BatchNormalization")) {
            continue;
        }
        let p = m.op(n).unwrap();
        let name = op_name(p);
        if attr_i(p, "training_mode", 0) == 1 {
            return Err(Error::at(
                name,
                "BatchNormalization has training_mode=1 (a training graph); export the model in eval mode",
            ));
        }
        if let Some(note) = try_fold(m, n, &mut exact)? {
            notes.push(note);
        } else if let Some(note) = fold_into_next_gemm(m, n)? {
            notes.push(note);
        }
    }
    let folded = notes.len();
    notes.extend(evaluated.iter().map(|e| e.note()));
    Ok((folded, notes))
}

/// BN parameters as per-channel (scale s, shift t): y = s·x + t.
fn bn_affine(m: &Model, n: NodeId) -> Option<(Vec<f64>, Vec<f64>)> {
    let p = m.op(n)?;
    let eps = attr_f(p, "epsilon", 1e-5) as f64;
    let get = |i| m.input_const(n, i).filter(|t| t.dims.len() == 1).and_then(|t| tensor::to_f64(&t).ok());
    let (g, b, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let c = g.len();
    if b.len() != c || mean.len() != c || var.len() != c {
        return None;
    }
    let s: Vec<f64> = (0..c).map(|i| g[i] / (var[i] + eps).sqrt()).collect();
    if s.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let t = (0..c).map(|i| b[i] - mean[i] * s[i]).collect();
    Some((s, t))
}

/// True when `o` is read only by `reader` (once) and is not a graph output.
fn sole_reader(m: &Model, o: Outlet, reader: NodeId) -> bool {
    let c = m.consumers(o);
    c.len() == 1 && c[0].0 == reader && !m.is_graph_output(o)
}

/// A conv (or ConvTranspose) that can absorb an affine on its outputs:
/// returns its output channel count.
fn foldable_conv(m: &Model, o: Outlet, reader: NodeId) -> Option<usize> {
    let p = m.op(o.node)?;
    if !crate::ops::standard(p) || o.slot != 0 || !sole_reader(m, o, reader) {
        return None;
    }
    let w = m.input_const(o.node, 1)?;
    let e = tensor::elem(&w)?;
    if !e.is_float() || w.dims.len() < 3 {
        return None;
    }
    if m.input(o.node, 2).is_some() && m.input_const(o.node, 2).is_none() {
        return None;
    }
    let g = attr_i(p, "group", 1).max(1) as usize;
    let wd = tensor::dims(&w);
    // degenerate shapes (a zero dim, a group that does not divide the
    // channels) are left alone: folding needs whole per-channel slices
    if wd.contains(&0) {
        return None;
    }
    match KernelFormat::of(p)? {
        KernelFormat::Oihw => Some(wd[KernelFormat::Oihw.o_axis()]),
        KernelFormat::Iohw if wd[0].is_multiple_of(g) && g <= wd[0] => Some(wd[KernelFormat::Iohw.o_axis()] * g),
        KernelFormat::Iohw => None,
    }
}

/// A Gemm that can absorb an affine on its output features (a BatchNorm1d
/// after a Linear on `[N, C]`): transA 0, alpha and beta 1, a constant 2-D
/// weight and a constant bias of one value per feature (or none). Returns
/// its output feature count.
fn foldable_dense(m: &Model, o: Outlet, reader: NodeId) -> Option<usize> {
    let p = m.op(o.node)?;
    if !crate::ops::is(p, "Gemm") || o.slot != 0 || !sole_reader(m, o, reader) {
        return None;
    }
    if attr_i(p, "transA", 0) != 0 || attr_f(p, "alpha", 1.0) != 1.0 || attr_f(p, "beta", 1.0) != 1.0 {
        return None;
    }
    let w = m.input_const(o.node, 1)?;
    let wd = tensor::dims(&w);
    if !tensor::elem(&w)?.is_float() || wd.len() != 2 || wd.contains(&0) {
        return None;
    }
    let n = wd[1 - crate::ops::dense::weight_in_axis(p)];
    match m.input(o.node, 2) {
        None => Some(n),
        Some(c) => m.const_dims(c).filter(|d| d.iter().product::<i64>() == n as i64).map(|_| n),
    }
}

/// The biases folds wrote, in f64 by conv: a chain of BatchNormalizations
/// folded one after the other into one conv composes its biases in f64 and
/// rounds once (as the weights' deferred scales do), so the result is the
/// chain's fold, not a rounding of a rounding.
type Biases = std::collections::HashMap<NodeId, Vec<f64>>;

/// Applies y = s·x + t to the outputs of conv `c` (channels `s.len()`),
/// or of a Gemm (features `s.len()`).
fn fold_into(m: &mut Model, c: NodeId, s: &[f64], t: &[f64], exact: &mut Biases) -> Result<()> {
    let p = m.op(c).unwrap().clone();
    let w = m.input_const_header(c, 1).unwrap();
    let wd = tensor::dims(&w);
    let g = attr_i(&p, "group", 1).max(1) as usize;
    let inner: usize = wd[2.min(wd.len())..].iter().product();
    // output channel o scales its filters (Conv: rows of wd[1]·inner;
    // ConvTranspose: runs of inner at (i, j), o = group(i)·cout_g + j;
    // Gemm: a row of [N, K] with transB, else a column of [K, N]).
    // Deferred: pad applies it while it writes the padded weight, so the
    // weight is written once; export applies what pad did not.
    let scale = match KernelFormat::of(&p) {
        Some(KernelFormat::Oihw) => BlockScale { block: wd[1] * inner, factors: s.to_vec() },
        Some(KernelFormat::Iohw) => {
            let (cin_g, cout_g) = (wd[0] / g, wd[1]);
            let factors = (0..wd[0] * cout_g).map(|b| s[(b / cout_g / cin_g) * cout_g + b % cout_g]).collect();
            BlockScale { block: inner, factors }
        }
        None => dense_scale(&wd, 1 - crate::ops::dense::weight_in_axis(&p), s),
    };
    let bias = match (exact.remove(&c), m.input_const(c, 2)) {
        (Some(b), _) => b,
        (None, Some(b)) => tensor::to_f64(&b)?,
        (None, None) => vec![0.0; s.len()],
    };
    if bias.len() != s.len() {
        return Err(Error::at(op_name(&p), format!("bias has {} values for {} output channels", bias.len(), s.len())));
    }
    let nb: Vec<f64> = (0..s.len()).map(|o| bias[o] * s[o] + t[o]).collect();
    m.defer_scale(c, 1, scale).map_err(|e| e.in_node(&op_name(&p)))?;
    exact.insert(c, nb.clone());
    match m.input_const(c, 2).map(|b| b.into_owned()) {
        Some(b) => {
            let nbt = tensor::rewrite(&b, &tensor::dims(&b), &nb)?;
            m.replace_input_const(c, 2, nbt);
        }
        None => {
            let name = format!("{}_bias", op_name(&p));
            let bt = tensor::from_f64(&name, w.data_type(), &[s.len()], &nb)?;
            let o = m.add_const(bt);
            m.set_input(c, 2, o);
        }
    }
    Ok(())
}

/// The scale of a 2-D dense weight `wd` that multiplies its features on
/// `axis` (the output's, or the input's) by `s`.
fn dense_scale(wd: &[usize], axis: usize, s: &[f64]) -> BlockScale {
    if axis == 0 {
        // rows: one block of wd[1] per row
        BlockScale { block: wd[1], factors: s.to_vec() }
    } else {
        // columns: element e is in column e % wd[1]
        BlockScale { block: 1, factors: (0..wd[0] * wd[1]).map(|e| s[e % wd[1]]).collect() }
    }
}

/// `BN → Gemm` (the Gemm alone reads the BN; transA 0, alpha and beta 1, a
/// constant 2-D weight and bias, or none): the Gemm absorbs the affine on
/// its input features.
fn fold_into_next_gemm(m: &mut Model, n: NodeId) -> Result<Option<String>> {
    let out = Outlet { node: n, slot: 0 };
    let Some(x) = m.input(n, 0) else { return Ok(None) };
    let Some((s, t)) = bn_affine(m, n) else { return Ok(None) };
    let p = m.op(n).unwrap();
    if (1..p.output.len()).any(|k| !p.output[k].is_empty() && !m.consumers(Outlet { node: n, slot: k }).is_empty()) {
        return Ok(None);
    }
    let readers = m.consumers(out);
    let [(g, 0)] = readers[..] else { return Ok(None) };
    let Some(p) = m.op(g).cloned() else { return Ok(None) };
    if !crate::ops::is(&p, "Gemm")
        || attr_i(&p, "transA", 0) != 0
        || attr_f(&p, "alpha", 1.0) != 1.0
        || attr_f(&p, "beta", 1.0) != 1.0
        || m.is_graph_output(out)
    {
        return Ok(None);
    }
    let Some(w) = m.input_const(g, 1).map(|w| w.into_owned()) else { return Ok(None) };
    let wd = tensor::dims(&w);
    let ia = crate::ops::dense::weight_in_axis(&p);
    if !tensor::elem(&w).is_some_and(|e| e.is_float()) || wd.len() != 2 || wd[ia] != s.len() || wd.contains(&0) {
        return Ok(None);
    }
    let nout = wd[1 - ia];
    let bias = match m.input(g, 2) {
        None => None,
        Some(_) => match m.input_const(g, 2).map(|b| b.into_owned()) {
            Some(b) if tensor::dims(&b).iter().product::<usize>() == nout => Some(b),
            _ => return Ok(None),
        },
    };
    // b' = b + W·t, from the original weight, in f64
    let wv = tensor::to_f64(&w)?;
    let k = s.len();
    let at = |o: usize, i: usize| if ia == 1 { wv[o * k + i] } else { wv[i * nout + o] };
    let b0 = match &bias {
        Some(b) => tensor::to_f64(b)?,
        None => vec![0.0; nout],
    };
    let nb: Vec<f64> = (0..nout).map(|o| b0[o] + (0..k).map(|i| at(o, i) * t[i]).sum::<f64>()).collect();
    let gname = op_name(&p);
    m.defer_scale(g, 1, dense_scale(&wd, ia, &s)).map_err(|e| e.in_node(&gname))?;
    match bias {
        Some(b) => {
            let nbt = tensor::rewrite(&b, &tensor::dims(&b), &nb)?;
            m.replace_input_const(g, 2, nbt);
        }
        None => {
            let bt = tensor::from_f64(&format!("{gname}_bias"), w.data_type(), &[nout], &nb)?;
            let o = m.add_const(bt);
            m.set_input(g, 2, o);
        }
    }
    let name = op_name(m.op(n).unwrap());
    m.remove(n);
    m.set_input(g, 0, x);
    Ok(Some(format!("{name} → {} (before it)", m.label(g))))
}

/// Removes BN `n`, letting `x` (its input) take over its output name.
fn bypass(m: &mut Model, n: NodeId, x: Outlet) {
    let out = Outlet { node: n, slot: 0 };
    let bn_name = m.tensor_name(out).to_string();
    let consumers = m.consumers(out);
    let outputs: Vec<usize> = m.outputs.iter().enumerate().filter(|(_, (o, _))| *o == out).map(|(i, _)| i).collect();
    m.remove(n);
    if let Some(p) = m.op_mut(x.node) {
        p.output[x.slot] = bn_name;
    }
    for (c, slot) in consumers {
        m.set_input(c, slot, x);
    }
    for i in outputs {
        m.outputs[i].0 = x;
    }
}

fn try_fold(m: &mut Model, n: NodeId, exact: &mut Biases) -> Result<Option<String>> {
    let p = m.op(n).unwrap();
    let name = op_name(p);
    let extra_used =
        (1..p.output.len()).any(|s| !p.output[s].is_empty() && !m.consumers(Outlet { node: n, slot: s }).is_empty());
    let Some(x) = m.input(n, 0) else {
        return Ok(None);
    };
    let Some((s, t)) = bn_affine(m, n) else {
        return Ok(None);
    };
    if extra_used {
        return Ok(None);
    }
    let c = s.len();
    // Conv / ConvTranspose → BN, or Gemm → BN (a BatchNorm1d after a Linear)
    let layer = foldable_conv(m, x, n).map(|w| (w, "")).or_else(|| foldable_dense(m, x, n).map(|w| (w, " features")));
    if let Some((width, what)) = layer {
        if width != c {
            return Err(Error::at(
                name,
                format!("BatchNormalization has {c} channels but '{}' produces {width}{what}", m.label(x.node)),
            ));
        }
        let into = m.label(x.node);
        fold_into(m, x.node, &s, &t, exact)?;
        bypass(m, n, x);
        return Ok(Some(format!("{name} → {into}")));
    }
    // Concat(conv…) → BN
    let Some(cp) = m.op(x.node) else {
        return Ok(None);
    };
    if !crate::ops::is(cp, "Concat") || x.slot != 0 || !sole_reader(m, x, n) {
        return Ok(None);
    }
    let ax = attr_i(cp, "axis", 0);
    let k = m.n_inputs(x.node);
    let parts: Option<Vec<(Outlet, usize)>> = (0..k)
        .map(|i| {
            let o = m.input(x.node, i)?;
            let nc = foldable_conv(m, o, x.node)?;
            // a conv feeding the Concat twice is read twice: not foldable
            Some((o, nc))
        })
        .collect();
    let Some(parts) = parts else { return Ok(None) };
    let rank = parts.first().and_then(|(o, _)| m.input_const(o.node, 1)).map(|w| w.dims.len() as i64).unwrap_or(0);
    if !(ax == 1 || ax == 1 - rank) || parts.iter().map(|(_, c)| c).sum::<usize>() != c {
        return Ok(None);
    }
    let mut start = 0;
    let mut names = vec![];
    for (o, nc) in parts {
        fold_into(m, o.node, &s[start..start + nc], &t[start..start + nc], exact)?;
        let kept = m.tensor_name(o).to_string();
        m.altered.insert(kept);
        names.push(m.label(o.node));
        start += nc;
    }
    let cat = m.label(x.node);
    bypass(m, n, x);
    Ok(Some(format!("{name} → {cat} ({})", names.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{int_attr, Builder};
    use crate::verify::verify;

    fn folded(b: &Builder) -> (usize, crate::onnx::ModelProto) {
        let mut m = Model::import(b.model()).unwrap();
        let (n, _) = run(&mut m).unwrap();
        m.cleanup();
        m.check().unwrap();
        (n, m.export())
    }

    fn count(m: &crate::onnx::ModelProto, op: &str) -> usize {
        m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == op).count()
    }

    fn agrees(a: &crate::onnx::ModelProto, b: &crate::onnx::ModelProto) -> bool {
        let v = verify(
            a,
            b,
            &Default::default(),
            &crate::verify::VerifyOptions { trials: 2, seed: 1, ..Default::default() },
        )
        .unwrap();
        if !v.passed {
            eprintln!("{}", v.text());
        }
        v.passed
    }

    /// `b` folded, with value `i` of the first initializer `pick` finds
    /// off by 0.05: the negative control of a fold.
    fn folded_off(b: &Builder, pick: impl Fn(&crate::onnx::TensorProto) -> bool, i: usize) -> crate::onnx::ModelProto {
        let (_, mut out) = folded(b);
        let t = out.graph.as_mut().unwrap().initializer.iter_mut().find(|t| pick(t)).unwrap();
        let mut v = tensor::to_f64(t).unwrap();
        v[i] += 0.05;
        *t = tensor::rewrite(t, &tensor::dims(t), &v).unwrap();
        out
    }

    #[test]
    fn conv_bn_folds_and_gets_a_bias() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, false);
        let y = b.bn(&c, 7);
        let r = b.unary("Relu", &y);
        b.output(&r, &[1, 7, 8, 8]);
        let (n, out) = folded(&b);
        assert_eq!(n, 1);
        assert_eq!(count(&out, "BatchNormalization"), 0);
        assert_eq!(out.graph.as_ref().unwrap().node[0].input.len(), 3);
        assert!(agrees(&b.model(), &out));
    }

    #[test]
    fn a_chain_of_bns_rounds_the_bias_once() {
        // folded one after the other, the bias used to be rounded after
        // each fold: 2 ulps from the chain's fold, which the certificate
        // rejects (found by the proptest: Conv → depthwise → BN → BN)
        for seed_shift in 0..8 {
            let mut b = Builder::new(&[1, 9, 4, 4]);
            for _ in 0..seed_shift {
                b.rand_init("skip", &[1], 0.0, 1.0);
            }
            let c = b.conv("x", 9, 9, 3, 9, true);
            let y = b.bn(&c, 9);
            let y = b.bn(&y, 9);
            let y = b.bn(&y, 9);
            b.output(&y, &[1, 9, 4, 4]);
            let (n, out) = folded(&b);
            assert_eq!(n, 3);
            let cert = crate::certify::certify(&b.model(), &out, &Default::default()).unwrap();
            assert!(cert.passed, "{}", cert.text());
        }
    }

    #[test]
    fn conv_bn_no_fuse_when_conv_output_is_read_twice() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, true);
        let y = b.bn(&c, 7);
        let r = b.unary("Relu", &c);
        b.output(&y, &[1, 7, 8, 8]);
        b.output(&r, &[1, 7, 8, 8]);
        let (n, out) = folded(&b);
        assert_eq!(n, 0);
        assert_eq!(count(&out, "BatchNormalization"), 1);
    }

    #[test]
    fn bn_that_is_a_graph_output_keeps_its_name() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, true);
        let y = b.bn(&c, 7);
        b.output(&y, &[1, 7, 8, 8]);
        let (n, out) = folded(&b);
        assert_eq!(n, 1);
        assert_eq!(out.graph.as_ref().unwrap().output[0].name(), y);
        assert!(agrees(&b.model(), &out));
    }

    #[test]
    fn concat_bn_folds_slice_by_slice() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c1 = b.conv("x", 5, 3, 1, 1, false);
        let c2 = b.conv("x", 5, 4, 3, 1, true);
        let cat = b.node("Concat", &[&c1, &c2], 1, vec![int_attr("axis", 1)]).remove(0);
        let y = b.bn(&cat, 7);
        let r = b.unary("LeakyRelu", &y);
        b.output(&r, &[1, 7, 8, 8]);
        let (n, out) = folded(&b);
        assert_eq!(n, 1);
        assert_eq!(count(&out, "BatchNormalization"), 0);
        assert!(agrees(&b.model(), &out));
    }

    #[test]
    fn concat_bn_no_fuse_when_an_input_is_not_a_conv() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c1 = b.conv("x", 5, 3, 1, 1, false);
        let cat = b.node("Concat", &["x", &c1], 1, vec![int_attr("axis", 1)]).remove(0);
        let y = b.bn(&cat, 8);
        b.output(&y, &[1, 8, 8, 8]);
        let (n, _) = folded(&b);
        assert_eq!(n, 0);
    }

    #[test]
    fn conv_transpose_bn_folds_on_weight_axis_1() {
        let mut b = Builder::new(&[1, 5, 4, 4]);
        let d = b.deconv("x", 5, 6);
        let y = b.bn(&d, 6);
        b.output(&y, &[1, 6, 8, 8]);
        let (n, out) = folded(&b);
        assert_eq!(n, 1);
        assert!(agrees(&b.model(), &out));
    }

    #[test]
    fn training_mode_is_refused() {
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, true);
        let y = b.bn(&c, 7);
        b.g.node.last_mut().unwrap().attribute.push(int_attr("training_mode", 1));
        b.opset = 15;
        b.output(&y, &[1, 7, 8, 8]);
        let mut m = Model::import(b.model()).unwrap();
        let e = run(&mut m).unwrap_err();
        assert!(e.msg.contains("training_mode=1"), "{e}");
        assert!(e.node.is_some());
    }

    /// `[1, 6]` → Gemm (10 features, bias or not, transB or not) → BN →
    /// Relu → Gemm (3): a BatchNorm1d after a Linear.
    fn gemm_bn(trans_b: bool, bias: bool) -> Builder {
        let mut b = Builder::new(&[1, 6]);
        let w = if trans_b { b.rand_init("w", &[10, 6], -1.0, 1.0) } else { b.rand_init("w", &[6, 10], -1.0, 1.0) };
        let mut ins = vec!["x".to_string(), w];
        if bias {
            ins.push(b.rand_init("c", &[10], -1.0, 1.0));
        }
        let ins: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
        let g = b.node("Gemm", &ins, 1, vec![int_attr("transB", i64::from(trans_b))]).remove(0);
        let y = b.bn(&g, 10);
        let r = b.unary("Relu", &y);
        let w2 = b.rand_init("w2", &[10, 3], -1.0, 1.0);
        let out = b.node("Gemm", &[&r, &w2], 1, vec![]).remove(0);
        b.output(&out, &[1, 3]);
        b
    }

    #[test]
    fn gemm_bn_folds_into_the_gemm_on_its_features() {
        for (trans_b, bias) in [(true, true), (false, true), (true, false), (false, false)] {
            let b = gemm_bn(trans_b, bias);
            let (n, out) = folded(&b);
            assert_eq!((n, count(&out, "BatchNormalization")), (1, 0), "transB {trans_b} bias {bias}");
            assert!(agrees(&b.model(), &out), "transB {trans_b} bias {bias}");
            // the whole job: folded, the hidden width padded 10 → 16, and the
            // certificate recomputes the fold on the features
            let o = crate::pipeline::align_model(b.model(), &Default::default(), &|_| {}).unwrap();
            assert!(o.failure().is_none(), "transB {trans_b} bias {bias}: {:?}", o.failure());
            let cert = o.summary.certificate.as_ref().unwrap();
            assert!(cert.passed && cert.folded >= 1, "{cert:?}");
            let w = o.model.graph.as_ref().unwrap().initializer.iter().find(|t| t.name().starts_with("w2")).unwrap();
            assert_eq!(w.dims, vec![16, 3]);
        }
    }

    #[test]
    fn a_wrong_gemm_fold_is_caught_by_verification() {
        // negative control of the dense fold: the folded bias off by 0.05
        let b = gemm_bn(true, true);
        assert!(!agrees(&b.model(), &folded_off(&b, |t| t.name().starts_with('c'), 4)));
    }

    /// With the output of node `k` of `b` also a graph output (`dims`), the
    /// BN is not folded.
    fn keeps_its_bn(mut b: Builder, k: usize, dims: &[i64]) {
        let o = b.g.node[k].output[0].clone();
        b.output(&o, dims);
        let (n, out) = folded(&b);
        assert_eq!((n, count(&out, "BatchNormalization")), (0, 1));
    }

    #[test]
    fn a_gemm_read_twice_keeps_its_bn() {
        keeps_its_bn(gemm_bn(true, true), 0, &[1, 10]);
    }

    #[test]
    fn a_wrong_fold_is_caught_by_verification() {
        // Negative control: the same fold with one weight off must fail.
        let mut b = Builder::new(&[1, 5, 8, 8]);
        let c = b.conv("x", 5, 7, 3, 1, true);
        let y = b.bn(&c, 7);
        b.output(&y, &[1, 7, 8, 8]);
        assert!(!agrees(&b.model(), &folded_off(&b, |t| t.dims.len() == 4, 10)));
    }

    /// LeViT's LinearNorm: `[1, 4, 6]` → MatMul (13 features, no bias) →
    /// Flatten [4, 13] → BatchNorm1d → Reshape back (its target from
    /// Shape(MatMul)) → Relu → MatMul (3).
    fn linear_norm() -> Builder {
        let mut b = Builder::new(&[1, 4, 6]);
        let w = b.rand_init("w", &[6, 13], -1.0, 1.0);
        let mm = b.node("MatMul", &["x", &w], 1, vec![]).remove(0);
        let f = b.node("Flatten", &[&mm], 1, vec![int_attr("axis", 2)]).remove(0);
        let y = b.bn(&f, 13);
        let sh = b.unary("Shape", &mm);
        let r = b.node("Reshape", &[&y, &sh], 1, vec![]).remove(0);
        let a = b.unary("Relu", &r);
        let w2 = b.rand_init("w2", &[13, 3], -1.0, 1.0);
        let out = b.node("MatMul", &[&a, &w2], 1, vec![]).remove(0);
        b.output(&out, &[1, 4, 3]);
        b
    }

    /// LeViT's NormLinear head: `[1, 6]` → BatchNorm1d → Gemm (5 outputs).
    fn norm_linear(trans_b: bool, bias: bool) -> Builder {
        let mut b = Builder::new(&[1, 6]);
        let r = b.unary("Relu", "x");
        let y = b.bn(&r, 6);
        let w = if trans_b { b.rand_init("w", &[5, 6], -1.0, 1.0) } else { b.rand_init("w", &[6, 5], -1.0, 1.0) };
        let mut ins = vec![y, w];
        if bias {
            ins.push(b.rand_init("c", &[5], -1.0, 1.0));
        }
        let ins: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
        let g = b.node("Gemm", &ins, 1, vec![int_attr("transB", i64::from(trans_b))]).remove(0);
        b.output(&g, &[1, 5]);
        b
    }

    /// The whole job on `b`: it must pass, with a certificate that checked
    /// at least one folded constant.
    fn aligned_and_certified(b: &Builder) -> crate::onnx::ModelProto {
        let o = crate::pipeline::align_model(b.model(), &Default::default(), &|_| {}).unwrap();
        assert!(o.failure().is_none(), "{:?}", o.failure());
        let cert = o.summary.certificate.as_ref().unwrap();
        assert!(cert.passed && cert.folded >= 1, "{cert:?}");
        o.model
    }

    #[test]
    fn a_batchnorm1d_after_a_flattened_matmul_is_kept_and_padded_neutrally() {
        // folding it would move the MatMul output's int8 range (see the
        // module doc); the hidden width 13 → 16 is padded through the
        // Flatten, the BN (γ 0, β 0, mean 0, var 1) and the Reshape back
        let b = linear_norm();
        let (n, out) = folded(&b);
        assert_eq!((n, count(&out, "BatchNormalization")), (0, 1));
        let o = crate::pipeline::align_model(b.model(), &Default::default(), &|_| {}).unwrap();
        assert!(o.failure().is_none(), "{:?}", o.failure());
        assert!(o.summary.certificate.as_ref().unwrap().passed);
        let w2 = o.model.graph.as_ref().unwrap().initializer.iter().find(|t| t.name().starts_with("w2")).unwrap();
        assert_eq!(w2.dims, vec![16, 3]);
    }

    #[test]
    fn a_batchnorm1d_before_a_gemm_folds_into_its_input_features() {
        for (trans_b, bias) in [(true, true), (false, true), (true, false), (false, false)] {
            let b = norm_linear(trans_b, bias);
            let (n, out) = folded(&b);
            assert_eq!((n, count(&out, "BatchNormalization")), (1, 0), "transB {trans_b} bias {bias}");
            assert_eq!(out.graph.as_ref().unwrap().node.last().unwrap().input.len(), 3, "a bias b + W·t");
            assert!(agrees(&b.model(), &out), "transB {trans_b} bias {bias}");
            aligned_and_certified(&b);
        }
        // negative control: one folded weight off by 0.05
        let b = norm_linear(true, true);
        assert!(!agrees(&b.model(), &folded_off(&b, |t| t.dims == [5, 6], 7)));
    }

    #[test]
    fn a_batchnorm1d_read_by_more_than_its_gemm_is_kept() {
        keeps_its_bn(norm_linear(true, true), 1, &[1, 6]);
    }
}
