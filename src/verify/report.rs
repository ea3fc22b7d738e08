//! What a verification found, as the summary prints it and `--json` emits it.

use super::*;
/// came out over all trials.
#[derive(Debug, Clone, Serialize)]
pub struct OutputDiff {
    /// Tensor name.
    pub name: String,
    /// What was compared: `"values"` for a graph output, or e.g.
    /// `"input of TopK '/m/TopK'"` for a tensor compared in place of a
    /// selected output.
    pub compared: String,
    /// The deviation the verdict rests on: the candidate's largest |a − b|
    /// (or RMS of a − b, see `statistic`) in the worst slice.
    pub deviation: f64,
    /// What that deviation was allowed to be.
    pub allowed: f64,
    /// `deviation / allowed`: at most 1 passes; the closer to 0, the safer.
    pub margin: f64,
    /// `"max"` (largest |a − b|) or `"rms"` (root mean square of a − b),
    /// whichever was closer to its bound; `"elementwise"` in strict mode.
    pub statistic: Statistic,
    /// The original's own fp32 noise in that slice, same statistic
    /// (null in strict mode).
    pub noise: Option<f64>,
    /// The original's magnitude in that slice, same statistic (max |a| or
    /// RMS of a).
    pub scale: f64,
    /// The slice: e.g. `"[:, :, 4]"`, or `"all"`.
    pub slice: String,
    /// Elements compared per trial.
    pub elements: usize,
    /// Elements over their slice's bound (strict: over the tolerance),
    /// over all trials.
    pub mismatches: usize,
    /// Largest |a − b| anywhere in the tensor.
    pub max_abs: f64,
    /// Largest |a − b| / |a| over elements with a ≠ 0 (information only: near-zero
    /// elements make it large for no fault).
    pub max_rel: f64,
    /// Largest |a| anywhere in the tensor.
    pub max_value: f64,
    /// This tensor passed.
    pub passed: bool,
}

/// A graph output that is a discrete selection and was not compared by value.
#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    /// Graph output name.
    pub name: String,
    /// The selection ops it depends on, e.g. `TopK '/m/TopK'`.
    pub via: Vec<String>,
    /// The tensors compared instead (inputs of those ops).
    pub compared_instead: Vec<String>,
}

/// One graph input as it was fed.
#[derive(Debug, Clone, Serialize)]
pub struct InputSpec {
    /// Input name.
    pub name: String,
    /// Concrete shape used.
    pub shape: Vec<usize>,
    /// ONNX element type code.
    pub elem: i32,
}

/// Which statistic of a slice's deviation a verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// The largest |a − b|.
    Max,
    /// The root mean square of a − b.
    Rms,
    /// Every element against `atol + rtol·|a|` (strict mode).
    Elementwise,
}

impl Statistic {
    /// " RMS" for an RMS verdict, else nothing (for "off by … RMS").
    pub fn suffix(self) -> &'static str {
        if self == Statistic::Rms {
            " RMS"
        } else {
            ""
        }
    }
}

/// What a verification holds the candidate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// A multiple of the original's own fp32 rounding noise (the default).
    Fp32Noise,
    /// The same, with the noise of a float16 model.
    Fp16Noise,
    /// The same, with the noise of a bfloat16 model.
    Bf16Noise,
    /// Every element within `atol + rtol·|a|` (`--strict`).
    Elementwise,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// `"fp32-noise"` (default), `"fp16-noise"` / `"bf16-noise"` for
    /// half-precision models, or `"elementwise"` (strict).
    pub criterion: Criterion,
    /// The precision the models compute in: `"float32"`, or `"float16"` /
    /// `"bfloat16"` (then run in float32 on up-cast copies of both, the noise
    /// taken in the model's precision; see docs/verify.md).
    pub precision: String,
    /// Noise multiple and ulp floor of the fp32-noise bound (null in strict mode).
    pub bound: Option<Bound>,
    /// Trials run (input sets).
    pub trials: usize,
    /// Elementwise tolerances (strict mode: the test; otherwise accepted as equal).
    pub tolerance: Tolerance,
    /// The inputs: e.g. `"uniform [-1, 1)"` or `"file x.npz"`.
    pub inputs: String,
    /// Why those inputs: e.g. `"image input images"`, `"--input-range"`.
    pub inputs_why: String,
    /// The input shapes used.
    pub input_shapes: Vec<InputSpec>,
    /// Per compared tensor.
    pub outputs: Vec<OutputDiff>,
    /// Graph outputs compared through the inputs of their selection ops.
    pub selected: Vec<Selected>,
    /// `align verify` on a candidate recognised as align's padding of the
    /// original: its weights checked against the original's (null otherwise).
    pub certificate: Option<crate::certify::Certificate>,
    /// Weights the original computes from constants at run time, evaluated
    /// by align and compared with tract's (absent when it computes none);
    /// the outputs and tensors are then compared with the original holding
    /// them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computed_weights: Option<super::WeightCheck>,
    /// The intermediate tensors both models share, compared along the
    /// rewrite's layout (null in strict mode).
    pub tensors: Option<TensorCheck>,
    /// How tract ran a model it could not optimise ("… it ran
    /// decluttered"); empty when both were optimised.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tract: Vec<String>,
    /// Every compared tensor passed.
    pub passed: bool,
    /// The largest margin over all compared tensors.
    pub margin: f64,
    /// Time to load and optimise both models (ms).
    pub load_millis: f64,
    /// Time running all trials (ms).
    pub run_millis: f64,
}

/// Where the candidate first departs from the original: the earliest
/// compared tensor, in the original's node order, that failed.
#[derive(Debug, Clone, Serialize)]
pub struct Departure {
    /// Tensor name.
    pub tensor: String,
    /// The original's node that makes it, e.g. `Conv '/model.4/cv1/conv/Conv'`.
    pub producer: String,
    /// What is wrong, in words.
    pub what: String,
    /// Where in the tensor: e.g. `"[:, 17, :, :]"` (channel 17).
    pub slice: String,
    /// The deviation.
    pub deviation: f64,
    /// What it was allowed to be.
    pub allowed: f64,
    /// `deviation / allowed`.
    pub margin: f64,
    /// Position of the producer in the original's node list.
    pub order: usize,
}

/// The comparison of the intermediate tensors.
#[derive(Debug, Clone, Serialize)]
pub struct TensorCheck {
    /// Where the correspondence came from: align's own rewrite, re-derived
    /// from the original, or names and shapes alone.
    pub layout: String,
    /// Tensors both models make under one name (graph outputs aside).
    pub shared: usize,
    /// Of those, compared.
    pub compared: usize,
    /// Of those compared, padded in the candidate (real channels compared
    /// through the layout, padded channels checked against its promise).
    pub padded: usize,
    /// Float tensors not compared, by reason (integer and boolean tensors
    /// are shape arithmetic and are not counted).
    pub not_compared: std::collections::BTreeMap<String, usize>,
    /// No compared tensor departed.
    pub passed: bool,
    /// The earliest departure in the original's node order.
    pub first_departure: Option<Departure>,
    /// How many compared tensors departed.
    pub departures: usize,
    /// The compared tensor with the largest margin.
    pub worst: Option<OutputDiff>,
    /// Every compared tensor that failed.
    pub failed: Vec<OutputDiff>,
}

impl Departure {
    /// One line: `output of Conv '…' ('tensor') at [:, 17, :, :]: real channels off by …`.
    pub fn line(&self) -> String {
        let at = if self.slice == "all" || self.slice.starts_with("padded") {
            String::new()
        } else {
            format!(" at {}", self.slice)
        };
        let margin = if self.margin.is_finite() { format!(" (margin {:.2})", self.margin) } else { String::new() };
        format!("output of {} ('{}'){at}: {}{margin}", self.producer, self.tensor, self.what)
    }
}

/// The constants of the fp32-noise bound.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bound {
    /// [`NOISE_MULTIPLE`].
    pub noise_multiple: f64,
    /// [`ULPS`].
    pub ulps: f64,
}

fn sci(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.1e}")
    }
}

impl Verification {
    /// The verification as the summary prints it.
    pub fn text(&self) -> String {
        let shapes: Vec<String> = self
            .input_shapes
            .iter()
            .map(|s| format!("{}={}", s.name, s.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")))
            .collect();
        let how = if self.criterion == Criterion::Elementwise {
            format!("elementwise |a−b| ≤ {:e} + {:e}·|a|", self.tolerance.atol, self.tolerance.rtol)
        } else {
            let noise = match self.criterion {
                Criterion::Fp16Noise => "float16",
                Criterion::Bf16Noise => "bfloat16",
                Criterion::Fp32Noise | Criterion::Elementwise => "fp32",
            };
            let copies = match self.precision.as_str() {
                "float32" => String::new(),
                p => format!(" ({p} model, run in float32 on up-cast copies)"),
            };
            format!("within {}× the original's {noise} noise{copies}", NOISE_MULTIPLE)
        };
        let mut t = format!(
            "verification ({how}; {} trial{} of {} {} ({})): {}, closest margin {:.2}\n",
            self.trials,
            if self.trials == 1 { "" } else { "s" },
            self.inputs,
            shapes.join(" "),
            self.inputs_why,
            if self.passed { "passed" } else { "FAILED" },
            self.margin
        );
        for n in &self.tract {
            t += &format!("  {n}\n");
        }
        for o in &self.outputs {
            let what = if o.compared == "values" { String::new() } else { format!(" ({})", o.compared) };
            if o.max_abs == 0.0 && o.passed {
                t += &format!("  {}{what}: identical to the original, bit for bit\n", o.name);
                continue;
            }
            let stat = o.statistic.suffix();
            let at = if o.slice == "all" { String::new() } else { format!(" at {}{}", o.name, o.slice) };
            t += &format!(
                "  {}{what}: off by up to {}{stat} where {}{stat} is allowed (margin {:.2}{})",
                o.name,
                sci(o.deviation),
                sci(o.allowed),
                o.margin,
                if o.passed { "" } else { ", FAILED" }
            );
            let what = if o.statistic == Statistic::Rms { "RMS" } else { "largest" };
            match o.noise {
                Some(n) => {
                    t += &format!(
                        "{at}; there the original's own noise is {} and its {what} value {}",
                        sci(n),
                        sci(o.scale)
                    )
                }
                None => t += &format!("{at}; values up to {}", sci(o.max_value)),
            }
            if o.mismatches > 0 {
                t += &format!("; {} element(s) over", o.mismatches);
            }
            t += "\n";
        }
        if let Some(w) = &self.computed_weights {
            t += &w.text();
        }
        if let Some(c) = &self.certificate {
            t += "  ";
            t += &c.text();
        }
        if let Some(c) = self.tensors.as_ref().filter(|c| c.compared == 0) {
            t += &format!(
                "  intermediate tensors ({}): none of {} shared could be compared: the outputs alone were\n",
                c.layout, c.shared
            );
        } else if let Some(c) = &self.tensors {
            let left: usize = c.not_compared.values().sum();
            let why: Vec<String> = c.not_compared.iter().map(|(k, v)| format!("{v} {k}")).collect();
            t += &format!(
                "  intermediate tensors ({}): {} of {} shared compared ({} padded){}",
                c.layout,
                c.compared,
                c.shared,
                c.padded,
                if left > 0 { format!(", not compared: {}", why.join(", ")) } else { String::new() }
            );
            match (&c.first_departure, &c.worst) {
                (Some(d), _) => t += &format!("; {} departed\n  first departure: {}\n", c.departures, d.line()),
                (None, Some(w)) => {
                    t += &format!("; all within their noise, closest margin {:.2} at '{}'\n", w.margin, w.name)
                }
                (None, None) => t += "\n",
            }
        }
        for s in &self.selected {
            t += &format!(
                "  {}: not compared by value: it is selected by {}, which fp32 noise can reorder; compared instead: {}\n",
                s.name,
                s.via.join(", "),
                s.compared_instead.join(", ")
            );
        }
        t
    }

    /// Why the verification failed, in one line: where the candidate first
    /// departs from the original (an intermediate tensor, else the worst
    /// output), and what the certificate found.
    pub fn failure_line(&self) -> String {
        let mut parts = vec![];
        if let Some(d) = self.tensors.as_ref().and_then(|t| t.first_departure.as_ref()) {
            parts.push(format!("first departure: {}", d.line()));
        } else if let Some(w) = self.worst().filter(|w| !w.passed) {
            parts.push(format!(
                "'{}' is off by {:.3e} where {:.3e} is allowed (margin {:.2}{})",
                w.name,
                w.deviation,
                w.allowed,
                w.margin,
                if w.mismatches > 0 { format!(", {} elements over", w.mismatches) } else { String::new() }
            ));
        }
        if let Some(why) = self.certificate.as_ref().and_then(|c| c.failure_line()) {
            parts.push(why);
        }
        if parts.is_empty() {
            parts.push("no compared tensor departed".into());
        }
        parts.join("; ")
    }

    /// The compared tensor with the largest margin.
    pub fn worst(&self) -> Option<&OutputDiff> {
        self.outputs.iter().max_by(|x, y| x.margin.total_cmp(&y.margin))
    }
}
