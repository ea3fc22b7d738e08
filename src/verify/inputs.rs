//! The inputs both models run on: concrete shapes, seeded random values in
//! the range the model was made for, and their one-ulp perturbation.

use super::*;
use run::datum;

/// Automatic trials keep about this many input elements in play in total
/// (see [`auto_trials`]).
pub const AUTO_TRIAL_ELEMENTS: usize = 1 << 20;

/// The number of random trials when none is asked for: enough inputs to
/// reach [`AUTO_TRIAL_ELEMENTS`] input elements in total, 1 to 8. A 640×640
/// image is one trial, 320×320 four, a 64×64 fixture eight. A conv sees
/// every spatial position of every trial, so this keeps the evidence per
/// channel about constant while the cost stays about one 640×640 run.
pub fn auto_trials(specs: &[InputSpec]) -> usize {
    let elements: usize = specs.iter().map(|s| s.shape.iter().product::<usize>()).sum();
    AUTO_TRIAL_ELEMENTS.div_ceil(elements.max(1)).clamp(1, 8)
}

/// splitmix64: a tiny deterministic generator for test inputs.
pub(crate) struct Rng(pub u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// (`imgsz`, e.g. `"[640, 640]"` or `"640"`).
pub(crate) fn metadata_imgsz(m: &ModelProto) -> Option<Vec<usize>> {
    let v = m.metadata_props.iter().find(|p| p.key() == "imgsz")?.value();
    let dims: Vec<usize> = v
        .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()?;
    match dims.len() {
        1 => Some(vec![dims[0], dims[0]]),
        2 => Some(dims),
        _ => None,
    }
}

/// The concrete shape and element type of every real graph input: an
/// override from `overrides` (`--input-shape`) first; otherwise the declared
/// shape, with a symbolic batch dim (axis 0) set to 1 and symbolic spatial
/// dims (axes 2, 3 of a rank-4 input) taken from the model's `imgsz`
/// metadata where it has one. Any other symbolic dim is an input error
/// asking for `--input-shape`.
pub fn resolve_inputs(m: &ModelProto, overrides: &HashMap<String, Vec<i64>>) -> Result<Vec<InputSpec>> {
    let g = graph(m)?;
    let inputs = real_inputs(g);
    for name in overrides.keys() {
        if !inputs.iter().any(|vi| vi.name() == name) {
            let names: Vec<&str> = inputs.iter().map(|vi| vi.name()).collect();
            return Err(Error::model(format!(
                "--input-shape names '{name}', which is not a graph input (inputs: {})",
                names.join(", ")
            )));
        }
    }
    let imgsz = metadata_imgsz(m);
    let mut out = vec![];
    for vi in inputs {
        let name = vi.name().to_string();
        let elem = value_info_elem(vi).unwrap_or(1);
        let declared = value_info_shape(vi);
        let hint = |what: String| {
            Error::model(format!(
                "graph input '{name}' {what}; pass --input-shape {name}=DIMS, e.g. {name}=1x3x640x640"
            ))
        };
        let shape: Vec<usize> = match overrides.get(&name) {
            Some(s) => {
                if let Some(d) = &declared {
                    if d.len() != s.len() {
                        return Err(Error::model(format!(
                            "--input-shape gives '{name}' {} dims, the model declares {}",
                            s.len(),
                            d.len()
                        )));
                    }
                    for (i, (&want, have)) in s.iter().zip(d).enumerate() {
                        if let Some(h) = have {
                            if *h != want {
                                return Err(Error::model(format!(
                                    "--input-shape gives '{name}' dim {i} = {want}, the model fixes it at {h}"
                                )));
                            }
                        }
                    }
                }
                s.iter().map(|&d| d as usize).collect()
            }
            None => {
                let d = declared.ok_or_else(|| hint("has no shape".into()))?;
                let mut s = vec![];
                for (i, dim) in d.iter().enumerate() {
                    s.push(match (dim, i) {
                        (Some(v), _) => *v as usize,
                        (None, 0) => 1,
                        (None, 2 | 3) if d.len() == 4 && imgsz.is_some() => imgsz.as_ref().unwrap()[i - 2],
                        (None, _) => {
                            return Err(hint(format!(
                                "has a symbolic dim at axis {i} and the model records no input size (metadata 'imgsz')"
                            )))
                        }
                    });
                }
                s
            }
        };
        out.push(InputSpec { name, shape, elem });
    }
    Ok(out)
}

/// The input range used when none is given, and why: images scaled to
/// [0, 1) for a model that takes images (every float input of rank 4 with
/// 1, 3 or 4 channels, or an ultralytics export with metadata `imgsz`);
/// [−1, 1) otherwise. Detectors fed [−1, 1) run in a regime where their fp32
/// noise is tens of times what it is on images, which hides bugs.
pub fn default_input_range(m: &ModelProto) -> ((f64, f64), String) {
    if metadata_imgsz(m).is_some() {
        return ((0.0, 1.0), "the model records an image size (metadata 'imgsz')".into());
    }
    let Ok(g) = graph(m) else { return ((-1.0, 1.0), "the model has no graph".into()) };
    let inputs = real_inputs(g);
    let image =
        |vi: &ValueInfoProto| value_info_shape(vi).is_some_and(|s| s.len() == 4 && matches!(s[1], Some(1 | 3 | 4)));
    let floats: Vec<&ValueInfoProto> =
        inputs.into_iter().filter(|vi| matches!(value_info_elem(vi), Some(1 | 10 | 11 | 16))).collect();
    if !floats.is_empty() && floats.iter().all(|vi| image(vi)) {
        let names: Vec<&str> = floats.iter().map(|vi| vi.name()).collect();
        return ((0.0, 1.0), format!("image input{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", ")));
    }
    ((-1.0, 1.0), "no image input: float inputs are not all NCHW with 1, 3 or 4 channels".into())
}

pub(crate) fn tensor_of(spec: &InputSpec, values: &[f64]) -> Result<Tensor> {
    let dt = datum(spec.elem).unwrap_or(DatumType::F32);
    if dt.is_float() {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
        if dt == DatumType::F64 {
            let v: Vec<f64> = values.to_vec();
            return Tensor::from_shape(&spec.shape, &v).map_err(terr);
        }
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    } else {
        let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
        let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    }
}

pub(crate) fn random_input(spec: &InputSpec, range: (f64, f64), rng: &mut Rng) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let dt = datum(spec.elem).unwrap_or(DatumType::F32);
    if !dt.is_float() {
        // integer inputs (indices, sizes): zeros are valid everywhere
        return Tensor::zero_dt(dt, &spec.shape).map_err(terr);
    }
    let v: Vec<f32> = (0..n).map(|_| (range.0 + (range.1 - range.0) * rng.unit()) as f32).collect();
    let t = Tensor::from_shape(&spec.shape, &v).map_err(terr)?;
    if dt == DatumType::F32 {
        Ok(t)
    } else {
        t.cast_to_dt(dt).map(|c| c.into_owned()).map_err(terr)
    }
}

/// Every element of `t` moved to one of its two neighbours (`step` gives
/// them; None keeps the element), chosen by `rng`.
pub(crate) fn nudged<T: Datum + Copy>(t: &Tensor, rng: &mut Rng, step: impl Fn(T) -> Option<(T, T)>) -> Result<Tensor> {
    let v: Vec<T> = t
        .to_plain_array_view::<T>()
        .map_err(terr)?
        .iter()
        .map(|&x| match step(x) {
            Some((up, down)) => {
                if rng.next() & 1 == 0 {
                    up
                } else {
                    down
                }
            }
            None => x,
        })
        .collect();
    Tensor::from_shape(t.shape(), &v).map_err(terr)
}

/// The input moved by one ulp per element, in a random direction (zeros
/// and integers stay): one ulp of its own type, or where the model computes
/// in a coarser precision (machine epsilon `eps` above f32's: a float16
/// model fed float32 images), by that precision's relative step.
pub(crate) fn perturbed(t: &Tensor, rng: &mut Rng, eps: f64) -> Result<Tensor> {
    let coarse = eps > f32::EPSILON as f64;
    match t.datum_type() {
        DatumType::F32 if !coarse => {
            nudged(t, rng, |x: f32| (x != 0.0 && x.is_finite()).then(|| (x.next_up(), x.next_down())))
        }
        DatumType::F64 if !coarse => {
            nudged(t, rng, |x: f64| (x != 0.0 && x.is_finite()).then(|| (x.next_up(), x.next_down())))
        }
        DatumType::F32 | DatumType::F64 | DatumType::F16 => {
            // one ulp of the precision, relative: scale in f32, round back
            let own = if t.datum_type() == DatumType::F16 { half::f16::EPSILON.to_f64() } else { 0.0 };
            let step = eps.max(own) as f32;
            let f = t.cast_to::<f32>().map_err(terr)?;
            let v: Vec<f32> = f
                .to_plain_array_view::<f32>()
                .map_err(terr)?
                .iter()
                .map(|&x| x * if rng.next() & 1 == 0 { 1.0 + step } else { 1.0 - step })
                .collect();
            let p = Tensor::from_shape(t.shape(), &v).map_err(terr)?;
            p.cast_to_dt(t.datum_type()).map(|c| c.into_owned()).map_err(terr)
        }
        _ => Ok(t.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::onnx::StringStringEntryProto;

    /// A model with one input of element type `elem` and `dims` (None: symbolic).
    fn with_input(name: &str, elem: i32, dims: &[Option<i64>]) -> ModelProto {
        let vi = crate::onnx::tensor_info(name, elem, dims);
        ModelProto { graph: Some(GraphProto { input: vec![vi], ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn image_models_get_0_1_and_others_minus_1_1() {
        let img = with_input("x", 1, &[Some(1), Some(3), Some(64), Some(64)]);
        let (r, why) = default_input_range(&img);
        assert_eq!(r, (0.0, 1.0));
        assert!(why.contains("image input x"), "{why}");
        assert_eq!(default_input_range(&with_input("x", 1, &[Some(1), Some(1), None, None])).0, (0.0, 1.0));
        // 16 channels is a feature map, not an image; rank 3 is a sequence
        assert_eq!(default_input_range(&with_input("x", 1, &[Some(1), Some(16), Some(8), Some(8)])).0, (-1.0, 1.0));
        assert_eq!(default_input_range(&with_input("x", 1, &[Some(1), Some(3), Some(8)])).0, (-1.0, 1.0));
        // integer inputs (token ids) are not images
        assert_eq!(default_input_range(&with_input("x", 7, &[Some(1), Some(3), Some(8), Some(8)])).0, (-1.0, 1.0));
    }

    #[test]
    fn symbolic_batch_is_1_and_spatial_dims_come_from_imgsz() {
        let mut m = with_input("images", 1, &[None, Some(3), None, None]);
        let e = resolve_inputs(&m, &HashMap::new()).unwrap_err();
        assert!(e.msg.contains("--input-shape images=") && e.msg.contains("axis 2"), "{e}");
        m.metadata_props.push(StringStringEntryProto { key: Some("imgsz".into()), value: Some("[320, 256]".into()) });
        assert_eq!(resolve_inputs(&m, &HashMap::new()).unwrap()[0].shape, vec![1, 3, 320, 256]);
        assert_eq!(default_input_range(&m).0, (0.0, 1.0));
        let o = HashMap::from([("images".to_string(), vec![2, 3, 64, 64])]);
        assert_eq!(resolve_inputs(&m, &o).unwrap()[0].shape, vec![2, 3, 64, 64]);
        let o = HashMap::from([("images".to_string(), vec![1, 4, 64, 64])]);
        assert!(resolve_inputs(&m, &o).unwrap_err().msg.contains("fixes it at 3"));
        let o = HashMap::from([("nope".to_string(), vec![1])]);
        assert!(resolve_inputs(&m, &o).unwrap_err().msg.contains("not a graph input"));
    }
}
