//! The fp32-noise criterion: per-slice statistics of the candidate's deviation
//! against the original's own noise, and the elementwise (strict) test.

use super::*;

/// The candidate's deviation may be this many times the original's own fp32
/// noise (calibrated in `docs/verify.md`).
pub const NOISE_MULTIPLE: f64 = 16.0;

/// Whatever the measured noise, a deviation of this many fp32 ulps
/// (ε₃₂ = 2⁻²³) of the slice's magnitude is accepted.
pub const ULPS: f64 = 16.0;

/// Slices along an axis are compared separately only when each holds at
/// least this many elements over all trials.
pub(crate) const MIN_SLICE: usize = 32;

/// ... and when the axis has at most this many indices: channels, columns
/// of a detection output, rows of a feature map are kinds of element; the
/// box index of a [1, 4032, 85] output is a sample index, and the largest of
/// thousands of per-box ratios of four dominant elements is noise.
pub(crate) const MAX_SLICES: usize = 1024;

/// An output's values: f32 outputs (the common case) read in place, others
/// converted to f64.
pub(crate) enum Vals<'a> {
    F32(&'a [f32]),
    F64(Vec<f64>),
}

impl<'a> Vals<'a> {
    pub(crate) fn of(t: &'a Tensor) -> Result<Vals<'a>> {
        if t.datum_type() == DatumType::F32 {
            if let Some(v) = t.to_plain_array_view::<f32>().map_err(terr)?.to_slice() {
                return Ok(Vals::F32(v));
            }
        }
        let c = t.cast_to::<f64>().map_err(terr)?;
        Ok(Vals::F64(c.to_plain_array_view::<f64>().map_err(terr)?.iter().copied().collect()))
    }
    pub(crate) fn len(&self) -> usize {
        match self {
            Vals::F32(v) => v.len(),
            Vals::F64(v) => v.len(),
        }
    }
    #[inline]
    pub(crate) fn get(&self, i: usize) -> f64 {
        match self {
            Vals::F32(v) => v[i] as f64,
            Vals::F64(v) => v[i],
        }
    }
}

/// Statistics of one slice of a compared tensor.
#[derive(Clone, Copy, Default)]
pub(crate) struct Acc {
    n: u64,
    sum_d2: f64,
    max_d: f64,
    sum_n2: f64,
    max_n: f64,
    n_noise: u64,
    sum_a2: f64,
    max_a: f64,
}

/// |p − q| for comparison: 0 when both are NaN or equal, infinite when one
/// is NaN or they are infinities of opposite signs.
#[inline]
fn difference(p: f64, q: f64) -> f64 {
    if p.is_nan() || q.is_nan() {
        return if p.is_nan() == q.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if p == q {
        return 0.0;
    }
    let v = (p - q).abs();
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
}

/// Records one element's difference and magnitude in the tensor-wide
/// figures of `d` (largest |a − b|, |a|, relative difference).
#[inline]
fn note_element(d: &mut OutputDiff, p: f64, diff: f64, mag: f64) {
    d.max_abs = d.max_abs.max(diff);
    d.max_value = d.max_value.max(mag);
    if diff > 0.0 && p != 0.0 && p.is_finite() {
        d.max_rel = d.max_rel.max(diff / p.abs());
    }
}

/// The sums [`Tally::add_f32_channels`] takes of one block of f32
/// elements: original `x`, candidate `y`, perturbed run `z`.
#[derive(Default)]
struct BlockSums {
    /// Σ dv², dv = |x − y| where beyond the tolerances, else 0.
    d2: f64,
    /// Σ x².
    a2: f64,
    /// Σ (z − x)² over the finite z, and how many.
    n2: f64,
    nn: u64,
    /// Largest dv, |x − y|, |x| and |z − x|.
    max_dv: f32,
    max_d: f32,
    max_a: f32,
    max_n: f32,
}

/// Lanes of [`BlockSums::lanes`]: independent accumulators the compiler
/// keeps in one vector register each.
const LANES: usize = 8;
/// Elements summed in f32 lanes before the partial sums go into f64 (keeps
/// the f32 sums' relative error below 1e-4).
const FLUSH: usize = 1024;

impl BlockSums {
    /// The sums with LANES independent f32 accumulators (vectorised), or
    /// `None` when an element of `x`, `x − y` or `z − x` is not finite.
    #[inline]
    fn lanes(x: &[f32], y: &[f32], z: Option<&[f32]>, atol: f32, rtol: f32) -> Option<BlockSums> {
        match z {
            Some(z) => Self::lanes_of::<true>(x, y, z, atol, rtol),
            None => Self::lanes_of::<false>(x, y, x, atol, rtol),
        }
    }

    /// [`BlockSums::lanes`], with the noise sums when `NOISE` (else `z` is
    /// not read).
    fn lanes_of<const NOISE: bool>(x: &[f32], y: &[f32], z: &[f32], atol: f32, rtol: f32) -> Option<BlockSums> {
        let mut b = BlockSums::default();
        let mut bad = false;
        for ((xc, yc), zc) in x.chunks(FLUSH).zip(y.chunks(FLUSH)).zip(z.chunks(FLUSH)) {
            let (mut d2, mut a2, mut n2) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
            let (mut mdv, mut md, mut ma, mut mn) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
            // x · 0 is 0 for a finite x and NaN otherwise: a sum of such
            // terms is NaN exactly when some element is not finite
            let mut fin = [0f32; LANES];
            let mut add = |p: &[f32; LANES], q: &[f32; LANES], r: &[f32; LANES]| {
                for l in 0..LANES {
                    let d = (p[l] - q[l]).abs();
                    let mag = p[l].abs();
                    let dv = if d <= atol + rtol * mag { 0.0 } else { d };
                    d2[l] += dv * dv;
                    a2[l] += mag * mag;
                    mdv[l] = if dv > mdv[l] { dv } else { mdv[l] };
                    md[l] = if d > md[l] { d } else { md[l] };
                    ma[l] = if mag > ma[l] { mag } else { ma[l] };
                    let mut f = d * 0.0 + mag * 0.0;
                    if NOISE {
                        let e = (r[l] - p[l]).abs();
                        n2[l] += e * e;
                        mn[l] = if e > mn[l] { e } else { mn[l] };
                        f += e * 0.0;
                    }
                    fin[l] += f;
                }
            };
            let mut it = xc.chunks_exact(LANES).zip(yc.chunks_exact(LANES)).zip(zc.chunks_exact(LANES));
            for ((p, q), r) in &mut it {
                add(p.try_into().expect("LANES"), q.try_into().expect("LANES"), r.try_into().expect("LANES"));
            }
            let full = xc.len() / LANES * LANES;
            if full < xc.len() {
                // the tail, padded with zeros (which add nothing but a count)
                let n = xc.len() - full;
                let pad = |c: &[f32]| {
                    let mut v = [0f32; LANES];
                    v[..n].copy_from_slice(&c[full..]);
                    v
                };
                add(&pad(xc), &pad(yc), &pad(zc));
            }
            bad |= fin.iter().any(|f| f.is_nan());
            b.d2 += d2.iter().map(|&v| v as f64).sum::<f64>();
            b.a2 += a2.iter().map(|&v| v as f64).sum::<f64>();
            b.n2 += n2.iter().map(|&v| v as f64).sum::<f64>();
            b.nn += if NOISE { xc.len() as u64 } else { 0 };
            b.max_dv = mdv.iter().fold(b.max_dv, |m, &v| m.max(v));
            b.max_d = md.iter().fold(b.max_d, |m, &v| m.max(v));
            b.max_a = ma.iter().fold(b.max_a, |m, &v| m.max(v));
            b.max_n = mn.iter().fold(b.max_n, |m, &v| m.max(v));
        }
        (!bad).then_some(b)
    }

    /// The sums element by element, leaving out the elements where `x` or
    /// `x − y` is not finite (the general loop judges those) and the noise
    /// where `z` is not.
    fn scalar(x: &[f32], y: &[f32], z: Option<&[f32]>, atol: f32, rtol: f32) -> BlockSums {
        let mut b = BlockSums::default();
        for i in 0..x.len() {
            let (p, q) = (x[i], y[i]);
            let d = (p - q).abs();
            if !(d.is_finite() && p.is_finite()) {
                continue;
            }
            let mag = p.abs();
            b.max_d = b.max_d.max(d);
            let dv = if d <= atol + rtol * mag { 0.0 } else { d };
            b.d2 += (dv as f64) * (dv as f64);
            b.max_dv = b.max_dv.max(dv);
            b.a2 += (mag as f64) * (mag as f64);
            b.max_a = b.max_a.max(mag);
            if let Some(z) = z {
                let n = z[i];
                if n.is_finite() {
                    let e = (n - p).abs() as f64;
                    b.n2 += e * e;
                    b.max_n = b.max_n.max(e as f32);
                    b.nn += 1;
                }
            }
        }
        b
    }
}

impl Acc {
    /// Adds one element: its deviation `dv` (0 when within the
    /// tolerances), the original's magnitude, the noise run's |n − a|.
    #[inline]
    fn push(&mut self, dv: f64, mag: f64, noise: Option<f64>) {
        self.n += 1;
        self.sum_d2 += dv * dv;
        self.max_d = self.max_d.max(dv);
        self.sum_a2 += mag * mag;
        self.max_a = self.max_a.max(mag);
        if let Some(n) = noise {
            self.n_noise += 1;
            self.sum_n2 += n * n;
            self.max_n = self.max_n.max(n);
        }
    }

    fn rms(sum: f64, n: u64) -> f64 {
        if n == 0 {
            0.0
        } else {
            (sum / n as f64).sqrt()
        }
    }
    /// (margin, deviation, allowed, noise, scale, statistic) of this slice.
    /// The ulp term of the bound is taken of the slice's magnitude, or of
    /// `floor` where that is larger (see [`Tally::new`]).
    fn judge(&self, n_total: u64, floor: f64, rms_only: bool, eps: f64) -> (f64, f64, f64, f64, f64, Statistic) {
        let ratio = |d: f64, a: f64| {
            if d == 0.0 {
                0.0
            } else if a == 0.0 {
                f64::INFINITY
            } else {
                d / a
            }
        };
        let (rd, rn, ra) =
            (Self::rms(self.sum_d2, self.n), Self::rms(self.sum_n2, self.n_noise), Self::rms(self.sum_a2, self.n));
        let r_allowed = NOISE_MULTIPLE * rn + ULPS * eps * ra.max(floor);
        let m_allowed = self.element_bound(n_total, floor, eps);
        let (rm, mm) = (ratio(rd, r_allowed), ratio(self.max_d, m_allowed));
        if rm > mm || rms_only {
            (rm, rd, r_allowed, rn, ra, Statistic::Rms)
        } else {
            (mm, self.max_d, m_allowed, self.max_noise(n_total), self.max_a, Statistic::Max)
        }
    }
    /// The element bound of this slice (its `max` statistic).
    /// The largest noise of one run is a noisy estimate of the largest
    /// noise the slice can show, and the worst of many slices is judged; it
    /// is taken as at least what the slice's RMS noise predicts for the
    /// largest of all `n_total` elements compared (√(2·ln n_total) RMS, the
    /// expected maximum of that many Gaussian samples).
    fn max_noise(&self, n_total: u64) -> f64 {
        let rn = Self::rms(self.sum_n2, self.n_noise);
        self.max_n.max(rn * (2.0 * (n_total.max(2) as f64).ln()).sqrt())
    }
    fn element_bound(&self, n_total: u64, floor: f64, eps: f64) -> f64 {
        NOISE_MULTIPLE * self.max_noise(n_total) + ULPS * eps * self.max_a.max(floor)
    }
}

/// The outputs of one trial: original, candidate, original on the perturbed input.
pub(crate) struct TrialOut {
    pub a: Vec<Tensor>,
    pub b: Vec<Tensor>,
    pub n: Option<Vec<Tensor>>,
}

pub(crate) fn slice_label(rank: usize, axis: Option<usize>, index: usize) -> String {
    match axis {
        None => "all".into(),
        Some(ax) => {
            let parts: Vec<String> = (0..rank).map(|i| if i == ax { index.to_string() } else { ":".into() }).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// The statistics of one compared tensor, gathered trial by trial: the
/// candidate's deviation and the original's own noise per slice along each
/// axis that [`Tally::new`] chose, or over the whole tensor.
pub(crate) struct Tally {
    shape: Vec<usize>,
    strides: Vec<usize>,
    axes: Vec<usize>,
    accs: Vec<Vec<Acc>>,
    whole: Acc,
    d: OutputDiff,
    /// strict mode or integers: (margin, deviation, allowed) of the worst element
    strict_worst: (f64, f64, f64),
    elementwise: bool,
    is_float: bool,
    trials: usize,
    /// An intermediate tensor: judged by RMS only, the ulp term at least
    /// that of the whole tensor's RMS (see [`Tally::new`]).
    intermediate: bool,
    /// Machine epsilon of the precision the model computes in (the ulp
    /// term of the bound; f32's unless [`Tally::in_precision`]).
    eps: f64,
}

/// What [`Tally::finish`] decided, and what a second pass needs to count
/// the elements over their slice's bound.
pub(crate) struct Verdict {
    pub diff: OutputDiff,
    /// The axis the verdict was taken along (None: the whole tensor).
    pub axis: Option<usize>,
    slices: Vec<Acc>,
    n_total: u64,
    floor: f64,
    eps: f64,
}

impl Verdict {
    /// The element bound of the slice element `i` falls in.
    fn element_bound(&self, shape: &[usize], i: usize) -> f64 {
        let g = self.axis.map_or(0, |ax| (i / shape[ax + 1..].iter().product::<usize>()) % shape[ax]);
        self.slices[g].element_bound(self.n_total, self.floor, self.eps)
    }
}

impl Tally {
    /// A tally for a tensor of `shape` over `trials` trials. `axes` are the
    /// candidate axes of slicing (each kept when its slices are big enough
    /// and not too many); `is_float` false or strict mode compare elementwise.
    ///
    /// An `intermediate` tensor is judged per slice by its RMS deviation
    /// only, with the ulp term at least that of the whole tensor's RMS
    /// magnitude. Its elements are not final: tract fuses an activation into
    /// the conv before it in one model and not in the other (a padded input
    /// changes the kernel), and its sigmoid and exp approximations differ
    /// between those paths by a fraction of an ulp *of their range*, not of
    /// each value: a channel saturated at 1e-12 comes out as 6e-8, and
    /// x·sigmoid(x) at x = −300 as 1e-3 instead of 0, in single elements (seen
    /// on ultralytics YOLO11n at 640). A wrong weight, bias or channel order
    /// moves a whole channel, which the RMS sees at 10²–10⁴ times its bound.
    /// Graph outputs keep both statistics at the per-slice scale, as
    /// calibrated in docs/verify.md.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: &str,
        compared: &str,
        shape: &[usize],
        axes: &[usize],
        is_float: bool,
        trials: usize,
        intermediate: bool,
        opts: &VerifyOptions,
    ) -> Tally {
        let rank = shape.len();
        let numel: usize = shape.iter().product();
        let strides: Vec<usize> = (0..rank).map(|i| shape[i + 1..].iter().product()).collect();
        let axes: Vec<usize> = axes
            .iter()
            .copied()
            .filter(|&ax| {
                ax < rank && shape[ax] >= 2 && shape[ax] <= MAX_SLICES && numel / shape[ax] * trials >= MIN_SLICE
            })
            .collect();
        Tally {
            eps: f32::EPSILON as f64,
            accs: axes.iter().map(|&ax| vec![Acc::default(); shape[ax]]).collect(),
            axes,
            shape: shape.to_vec(),
            strides,
            whole: Acc::default(),
            d: OutputDiff {
                name: name.to_string(),
                compared: compared.to_string(),
                deviation: 0.0,
                allowed: 0.0,
                margin: 0.0,
                statistic: Statistic::Max, // set by `finish`
                noise: None,
                scale: 0.0,
                slice: "all".into(),
                elements: numel,
                mismatches: 0,
                max_abs: 0.0,
                max_rel: 0.0,
                max_value: 0.0,
                passed: true,
            },
            strict_worst: (0.0, 0.0, 0.0),
            elementwise: opts.strict || !is_float,
            is_float,
            trials,
            intermediate,
        }
    }

    /// Adds one trial: the original `x`, the candidate `y` (same shape), and
    /// the original on the perturbed inputs `z`.
    pub(crate) fn add(&mut self, x: &Vals, y: &Vals, z: Option<&Vals>, tol: Tolerance) {
        if self.by_channel() {
            return self.add_by_channel(x, y, z, tol);
        }
        let (axes, strides, shape) = (&self.axes, &self.strides, &self.shape);
        let d = &mut self.d;
        // the slice index along each candidate axis, advanced element by element
        let mut cur = vec![0usize; axes.len()];
        let mut left: Vec<usize> = axes.iter().map(|&ax| strides[ax]).collect();
        for i in 0..x.len() {
            if i > 0 {
                for (j, &ax) in axes.iter().enumerate() {
                    left[j] -= 1;
                    if left[j] == 0 {
                        left[j] = strides[ax];
                        cur[j] = if cur[j] + 1 == shape[ax] { 0 } else { cur[j] + 1 };
                    }
                }
            }
            let (p, q) = (x.get(i), y.get(i));
            let diff = difference(p, q);
            let mag = if p.is_finite() { p.abs() } else { 0.0 };
            note_element(d, p, diff, mag);
            let bound = tol.atol + tol.rtol * mag;
            if self.elementwise {
                let b = if self.is_float { bound } else { 0.0 };
                if diff > b {
                    d.mismatches += 1;
                }
                let m = if diff == 0.0 {
                    0.0
                } else if b == 0.0 {
                    f64::INFINITY
                } else {
                    diff / b
                };
                if m > self.strict_worst.0 {
                    self.strict_worst = (m, diff, b);
                }
                continue;
            }
            let dv = if diff <= bound { 0.0 } else { diff };
            let nz = z.map(|z| z.get(i)).filter(|n| n.is_finite() && p.is_finite()).map(|n| (n - p).abs());
            let add = |acc: &mut Acc| acc.push(dv, mag, nz);
            if axes.is_empty() {
                add(&mut self.whole);
            }
            for (j, &c) in cur.iter().enumerate() {
                add(&mut self.accs[j][c]);
            }
        }
    }

    /// The tally for a model that computes in a precision of machine
    /// epsilon `eps` (f16, bf16: see [`super::upcast`]).
    pub(crate) fn in_precision(mut self, eps: f64) -> Tally {
        self.eps = eps;
        self
    }

    /// Whether [`Tally::add_f32_channels`] applies: an intermediate tensor
    /// judged per channel or whole, by the noise criterion.
    pub(crate) fn by_channel(&self) -> bool {
        self.intermediate && !self.elementwise && (self.axes.is_empty() || self.axes == [1])
    }

    /// [`Tally::add_by_channel`] for f32 tensors read in place, the
    /// candidate's channel `c` at `map[c]` of its `physical` channels (its
    /// real channels; `None`: the same layout as the original). The
    /// differences are taken in f32 (exact for values within a factor of 2,
    /// Sterbenz), accumulated in f64 per channel; `max_rel` (information
    /// only) is not kept for intermediate tensors.
    pub(crate) fn add_f32_channels(
        &mut self,
        x: &[f32],
        y: &[f32],
        map: Option<(&[usize], usize)>,
        z: Option<&[f32]>,
        tol: Tolerance,
    ) {
        let numel = x.len();
        // blocks of one channel of one batch item (the layout's granularity),
        // accumulated per channel or, judged whole, all together
        let (channels, inner) = match self.shape.len() {
            0 | 1 => (1, numel),
            _ => (self.shape[1], self.strides[1]),
        };
        let inner = inner.max(1);
        let (atol, rtol) = (tol.atol as f32, tol.rtol as f32);
        let (mut max_abs, mut max_value) = (0f32, 0f32);
        let mut slow = false;
        for (k, base) in (0..numel).step_by(inner).enumerate() {
            let c = k % channels;
            let yb = match map {
                Some((m, physical)) => ((k / channels) * physical + m[c]) * inner,
                None => base,
            };
            let acc = if self.axes.is_empty() { &mut self.whole } else { &mut self.accs[0][c] };
            let (xs, ys) = (&x[base..base + inner], &y[yb..yb + inner]);
            let zs = z.map(|z| &z[base..base + inner]);
            let b = match BlockSums::lanes(xs, ys, zs, atol, rtol) {
                Some(b) => b,
                None => {
                    slow = true; // a NaN or an infinity: the general loop decides
                    BlockSums::scalar(xs, ys, zs, atol, rtol)
                }
            };
            let (sd, sa, sn, md, ma, mn, nn) = (b.d2, b.a2, b.n2, b.max_dv, b.max_a, b.max_n, b.nn);
            max_abs = max_abs.max(b.max_d);
            max_value = max_value.max(b.max_a);
            acc.n += inner as u64;
            acc.sum_d2 += sd;
            acc.max_d = acc.max_d.max(md as f64);
            acc.sum_a2 += sa;
            acc.max_a = acc.max_a.max(ma as f64);
            acc.n_noise += nn;
            acc.sum_n2 += sn;
            acc.max_n = acc.max_n.max(mn as f64);
        }
        self.d.max_abs = self.d.max_abs.max(max_abs as f64);
        self.d.max_value = self.d.max_value.max(max_value as f64);
        if slow {
            // NaN or infinite elements: judge the tensor as the general loop
            // would, by marking it off by infinity (a NaN where the original
            // has a number is a departure; both NaN is rare enough to
            // recompute exactly elsewhere)
            let mut worst_nan = false;
            for (k, base) in (0..numel).step_by(inner).enumerate() {
                let c = k % channels;
                let yb = match map {
                    Some((m, physical)) => ((k / channels) * physical + m[c]) * inner,
                    None => base,
                };
                for i in 0..inner {
                    let (p, q) = (x[base + i], y[yb + i]);
                    let agree = (p.is_nan() && q.is_nan()) || p == q;
                    if !agree && !(p - q).is_finite() {
                        worst_nan = true;
                        let acc = if self.axes.is_empty() { &mut self.whole } else { &mut self.accs[0][c] };
                        acc.sum_d2 = f64::INFINITY;
                        acc.max_d = f64::INFINITY;
                    }
                }
            }
            if worst_nan {
                self.d.max_abs = f64::INFINITY;
            }
        }
    }

    /// [`Tally::add`] for an intermediate tensor sliced by channel (or judged
    /// whole): one contiguous run of elements per channel, no per-element
    /// slice bookkeeping. The same statistics as the general loop.
    fn add_by_channel(&mut self, x: &Vals, y: &Vals, z: Option<&Vals>, tol: Tolerance) {
        let numel = x.len();
        let (channels, inner) = match self.axes.first() {
            Some(&ax) => (self.shape[ax], self.strides[ax]),
            None => (1, numel),
        };
        let d = &mut self.d;
        for base in (0..numel).step_by(inner.max(1)) {
            let acc = match self.axes.is_empty() {
                true => &mut self.whole,
                false => &mut self.accs[0][(base / inner) % channels],
            };
            for i in base..base + inner {
                let (p, q) = (x.get(i), y.get(i));
                let diff = difference(p, q);
                let mag = if p.is_finite() { p.abs() } else { 0.0 };
                note_element(d, p, diff, mag);
                let dv = if diff <= tol.atol + tol.rtol * mag { 0.0 } else { diff };
                let noise = z.map(|z| z.get(i)).filter(|n| n.is_finite() && p.is_finite()).map(|n| (n - p).abs());
                acc.push(dv, mag, noise);
            }
        }
    }

    /// The verdict: every way of slicing the tensor along one axis (each box
    /// coordinate apart from each class score; each channel apart from the
    /// others) is judged, and the worst slice of any decides, so a bug that
    /// shows in one kind of element is not drowned by the noise of a bigger
    /// kind.
    pub(crate) fn finish(self) -> Verdict {
        let mut d = self.d;
        let rank = self.shape.len();
        let n_total = (d.elements * self.trials) as u64;
        if self.elementwise {
            d.statistic = Statistic::Elementwise;
            (d.margin, d.deviation, d.allowed) = self.strict_worst;
            d.scale = d.max_value;
            d.passed = d.mismatches == 0;
            return Verdict { diff: d, axis: None, slices: vec![], n_total, floor: 0.0, eps: self.eps };
        }
        let mut partitions: Vec<(Option<usize>, Vec<Acc>)> =
            self.axes.iter().copied().map(Some).zip(self.accs).collect();
        if partitions.is_empty() {
            partitions.push((None, vec![self.whole]));
        }
        let self_rms_only = self.intermediate;
        let floor = if self.intermediate {
            let (sum, n) = partitions[0].1.iter().fold((0.0, 0), |(s, n), a| (s + a.sum_a2, n + a.n));
            Acc::rms(sum, n)
        } else {
            0.0
        };
        let mut worst = (-1.0, 0usize, 0usize);
        for (p, (_, slices)) in partitions.iter().enumerate() {
            for (g, acc) in slices.iter().enumerate() {
                let (m, ..) = acc.judge(n_total, floor, self_rms_only, self.eps);
                if m > worst.0 {
                    worst = (m, p, g);
                }
            }
        }
        let (axis, slices) = partitions.swap_remove(worst.1);
        let (m, dev, allowed, noise, scale, stat) = slices[worst.2].judge(n_total, floor, self_rms_only, self.eps);
        d.margin = m;
        d.deviation = dev;
        d.allowed = allowed;
        d.noise = Some(noise);
        d.scale = scale;
        d.statistic = stat;
        d.slice = slice_label(rank, axis, worst.2);
        d.passed = m <= 1.0;
        Verdict { diff: d, axis, slices, n_total, floor, eps: self.eps }
    }
}

/// Compares one tensor (position `k` in the original's outputs, `kb` in the
/// candidate's) over all trials, slicing along every axis.
pub(crate) fn compare(
    name: &str,
    compared: &str,
    k: usize,
    kb: usize,
    trials: &[TrialOut],
    opts: &VerifyOptions,
    eps: f64,
) -> Result<OutputDiff> {
    let tol = opts.tolerance;
    let shape = trials[0].a[k].shape().to_vec();
    let is_float = trials[0].a[k].datum_type().is_float();
    for t in trials {
        if t.a[k].shape() != t.b[kb].shape() {
            return Err(Error::verify(format!(
                "'{name}' has shape {:?} in the original but {:?} in the candidate",
                t.a[k].shape(),
                t.b[kb].shape()
            )));
        }
    }
    // outputs whose shape varies from trial to trial are judged whole
    let axes: Vec<usize> =
        if trials.iter().all(|t| t.a[k].shape() == &shape[..]) { (1..shape.len()).collect() } else { vec![] };
    let mut tally = Tally::new(name, compared, &shape, &axes, is_float, trials.len(), false, opts).in_precision(eps);
    for t in trials {
        let (x, y) = (Vals::of(&t.a[k])?, Vals::of(&t.b[kb])?);
        let z = match &t.n {
            Some(n) if is_float && !opts.strict => Some(Vals::of(&n[k])?),
            _ => None,
        };
        tally.add(&x, &y, z.as_ref(), tol);
    }
    let v = tally.finish();
    let mut d = v.diff.clone();
    if !d.passed && d.statistic != Statistic::Elementwise {
        // count the elements over their slice's bound
        for t in trials {
            let (x, y) = (Vals::of(&t.a[k])?, Vals::of(&t.b[kb])?);
            for i in 0..x.len() {
                let (p, q) = (x.get(i), y.get(i));
                let diff = if p.is_nan() && q.is_nan() { 0.0 } else { (p - q).abs() };
                let mag = if p.is_finite() { p.abs() } else { 0.0 };
                if !(diff <= tol.atol + tol.rtol * mag || diff <= v.element_bound(&shape, i)) {
                    d.mismatches += 1;
                }
            }
        }
    }
    Ok(d)
}
