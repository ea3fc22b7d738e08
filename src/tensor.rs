//! Reading and writing the numbers inside ONNX `TensorProto`s.
//!
//! Weights arrive in every storage ONNX allows (typed repeated fields or
//! little-endian `raw_data`) and in several float types. Small tensors (shape
//! vectors, BatchNorm parameters) are read as `f64`. Weights never are: the
//! rewrites that touch them ([`scatter_axis`], [`scale_blocks`]) work on the
//! tensor's own bytes, element by element in its own type (a product is
//! formed in `f64` per element and rounded once), and write each new tensor
//! once. An fp16 model stays fp16 and padding with zeros is exact in every type.

use crate::onnx::TensorProto;
use crate::Error;
use bytes::Bytes;
use std::borrow::Cow;

pub use crate::onnx::dtype::{dtype_name, elem, numel, Elem};

/// One element type's little-endian encoding, for the typed loops below
/// (monomorphised, so the f32 loops compile to plain f32 code).
trait Codec: Copy {
    const SIZE: usize;
    fn get(b: &[u8]) -> f64;
    fn put(v: f64, out: &mut [u8]);
}

macro_rules! codec {
    ($t:ty, $n:expr, |$b:ident| $get:expr, |$v:ident| $put:expr) => {
        impl Codec for $t {
            const SIZE: usize = $n;
            #[inline(always)]
            fn get($b: &[u8]) -> f64 {
                $get
            }
            #[inline(always)]
            fn put($v: f64, out: &mut [u8]) {
                out.copy_from_slice(&$put);
            }
        }
    };
}

codec!(f32, 4, |b| f32::from_le_bytes(b.try_into().unwrap()) as f64, |v| (v as f32).to_le_bytes());
codec!(f64, 8, |b| f64::from_le_bytes(b.try_into().unwrap()), |v| v.to_le_bytes());
codec!(half::f16, 2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f64(), |v| half::f16::from_f64(v).to_le_bytes());
codec!(half::bf16, 2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64(), |v| half::bf16::from_f64(v).to_le_bytes());
codec!(i32, 4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f64, |v| (v as i32).to_le_bytes());
codec!(i64, 8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f64, |v| (v as i64).to_le_bytes());

/// Calls the generic function `$f::<T>(args)` with `T` the codec of `$e`.
macro_rules! by_elem {
    ($e:expr, $f:ident($($arg:expr),*)) => {
        match $e {
            Elem::F32 => $f::<f32>($($arg),*),
            Elem::F64 => $f::<f64>($($arg),*),
            Elem::F16 => $f::<half::f16>($($arg),*),
            Elem::BF16 => $f::<half::bf16>($($arg),*),
            Elem::I32 => $f::<i32>($($arg),*),
            Elem::I64 => $f::<i64>($($arg),*),
        }
    };
}

fn decode<T: Codec>(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(T::SIZE).map(T::get).collect()
}

fn encode<T: Codec>(values: &[f64]) -> Vec<u8> {
    let mut raw = vec![0; values.len() * T::SIZE];
    for (c, &v) in raw.chunks_exact_mut(T::SIZE).zip(values) {
        T::put(v, c);
    }
    raw
}

/// `src` (elements `first..` of a tensor) into `dst`, element `i` times
/// `factors[i / block]`.
fn scale_into<T: Codec>(src: &[u8], dst: &mut [u8], first: usize, block: usize, factors: &[f64]) {
    // segment by segment of one block, so the inner loop has one factor
    let (mut at, n) = (0, src.len() / T::SIZE);
    while at < n {
        let i = first + at;
        let seg = (block - i % block).min(n - at);
        let f = factors[i / block];
        let (s, d) = (&src[at * T::SIZE..(at + seg) * T::SIZE], &mut dst[at * T::SIZE..(at + seg) * T::SIZE]);
        for (x, y) in s.chunks_exact(T::SIZE).zip(d.chunks_exact_mut(T::SIZE)) {
            T::put(T::get(x) * f, y);
        }
        at += seg;
    }
}

/// Dims of a tensor as `usize` (validated by [`numel`]).
pub fn dims(t: &TensorProto) -> Vec<usize> {
    t.dims.iter().map(|&d| d.max(0) as usize).collect()
}

fn elem_of(t: &TensorProto) -> Result<Elem, Error> {
    Elem::from_onnx(t.data_type.unwrap_or(0)).ok_or_else(|| {
        Error::model(format!(
            "tensor '{}' has type {}, which align cannot do arithmetic on",
            t.name(),
            dtype_name(t.data_type.unwrap_or(0))
        ))
    })
}

/// Checks that the data behind a tensor matches its declared dims, without
/// allocating anything proportional to the declared size.
pub fn check_len(t: &TensorProto) -> Result<(), Error> {
    let n = numel(t)?;
    let Some(e) = elem(t) else { return Ok(()) };
    let have = stored_len(t, e);
    if have != n {
        return Err(Error::model(format!(
            "tensor '{}' declares {} elements (dims {:?}) but holds {}",
            t.name(),
            n,
            t.dims,
            have
        )));
    }
    Ok(())
}

fn stored_len(t: &TensorProto, e: Elem) -> usize {
    if let Some(raw) = &t.raw_data {
        if !raw.is_empty()
            || (t.float_data.is_empty()
                && t.int32_data.is_empty()
                && t.int64_data.is_empty()
                && t.double_data.is_empty())
        {
            return raw.len() / e.size();
        }
    }
    match e {
        Elem::F32 => t.float_data.len(),
        Elem::F64 => t.double_data.len(),
        Elem::F16 | Elem::BF16 | Elem::I32 => t.int32_data.len(),
        Elem::I64 => t.int64_data.len(),
    }
}

fn uses_raw(t: &TensorProto) -> bool {
    t.raw_data.as_ref().is_some_and(|r| !r.is_empty())
        || (t.float_data.is_empty() && t.int32_data.is_empty() && t.int64_data.is_empty() && t.double_data.is_empty())
}

/// All elements as `f64` (floats and integers alike). For small tensors:
/// weights are rewritten through [`scatter_axis`] and [`scale_blocks`].
pub fn to_f64(t: &TensorProto) -> Result<Vec<f64>, Error> {
    let e = elem_of(t)?;
    check_len(t)?;
    if uses_raw(t) {
        return Ok(by_elem!(e, decode(t.raw_data.as_deref().unwrap_or(&[]))));
    }
    Ok(match e {
        Elem::F32 => t.float_data.iter().map(|&v| v as f64).collect(),
        Elem::F64 => t.double_data.clone(),
        Elem::F16 => t.int32_data.iter().map(|&v| half::f16::from_bits(v as u16).to_f64()).collect(),
        Elem::BF16 => t.int32_data.iter().map(|&v| half::bf16::from_bits(v as u16).to_f64()).collect(),
        Elem::I32 => t.int32_data.iter().map(|&v| v as f64).collect(),
        Elem::I64 => t.int64_data.iter().map(|&v| v as f64).collect(),
    })
}

/// A tensor's elements read one at a time as `f64`: straight from the
/// stored bytes (no copy of a weight) when the tensor is stored raw.
pub enum Values<'a> {
    /// Raw little-endian bytes of the element type.
    Raw(&'a [u8], Elem),
    /// Typed fields, converted.
    Owned(Vec<f64>),
}

impl<'a> Values<'a> {
    /// The elements of `t` (validated against its dims).
    pub fn of(t: &'a TensorProto) -> Result<Values<'a>, Error> {
        let e = elem_of(t)?;
        check_len(t)?;
        if uses_raw(t) {
            return Ok(Values::Raw(t.raw_data.as_deref().unwrap_or(&[]), e));
        }
        to_f64(t).map(Values::Owned)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Values::Raw(b, e) => b.len() / e.size(),
            Values::Owned(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`.
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        fn at<T: Codec>(b: &[u8], i: usize) -> f64 {
            T::get(&b[i * T::SIZE..(i + 1) * T::SIZE])
        }
        match self {
            Values::Raw(b, e) => by_elem!(*e, at(b, i)),
            Values::Owned(v) => v[i],
        }
    }
}

/// All elements of an integer tensor as `i64`.
pub fn to_i64(t: &TensorProto) -> Result<Vec<i64>, Error> {
    let e = elem_of(t)?;
    check_len(t)?;
    if e == Elem::I64 && !uses_raw(t) {
        return Ok(t.int64_data.clone());
    }
    if e == Elem::I64 {
        let raw = t.raw_data.as_deref().unwrap_or(&[]);
        return Ok(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect());
    }
    Ok(to_f64(t)?.into_iter().map(|v| v as i64).collect())
}

/// The elements as little-endian bytes of the tensor's own type: `raw_data`
/// itself when the tensor uses it (no copy), else the typed field encoded.
pub fn raw(t: &TensorProto) -> Result<Cow<'_, [u8]>, Error> {
    let e = elem_of(t)?;
    check_len(t)?;
    if uses_raw(t) {
        return Ok(Cow::Borrowed(t.raw_data.as_deref().unwrap_or(&[])));
    }
    Ok(Cow::Owned(by_elem!(e, encode(&to_f64(t)?))))
}

/// A tensor named `name` of type `data_type` holding `values` (converted to
/// that type), stored as `raw_data`.
pub fn from_f64(name: &str, data_type: i32, dims: &[usize], values: &[f64]) -> Result<TensorProto, Error> {
    let e = Elem::from_onnx(data_type)
        .ok_or_else(|| Error::model(format!("cannot write tensor '{name}' of type {}", dtype_name(data_type))))?;
    Ok(TensorProto {
        name: Some(name.to_string()),
        data_type: Some(data_type),
        dims: dims.iter().map(|&d| d as i64).collect(),
        raw_data: Some(Bytes::from(by_elem!(e, encode(values)))),
        ..Default::default()
    })
}

/// Replaces the values of `t` (same type, new dims), keeping its name, doc
/// string and metadata.
pub fn rewrite(t: &TensorProto, dims: &[usize], values: &[f64]) -> Result<TensorProto, Error> {
    let e = elem_of(t)?;
    Ok(with_raw(t, dims, by_elem!(e, encode(values))))
}

/// `t` with new dims and new little-endian data of its own type, keeping its
/// name, type, doc string and metadata (the old data is not copied).
fn with_raw(t: &TensorProto, dims: &[usize], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: t.name.clone(),
        data_type: t.data_type,
        dims: dims.iter().map(|&d| d as i64).collect(),
        raw_data: Some(Bytes::from(raw)),
        segment: t.segment,
        doc_string: t.doc_string.clone(),
        metadata_props: t.metadata_props.clone(),
        ..Default::default()
    }
}

/// `t` with every element of block `b` (consecutive runs of `block`
/// elements) multiplied by `factors[b]`, in the tensor's own type: each
/// product is formed in `f64` and rounded once. The same loop as a scale
/// applied inside [`scatter_axes`].
pub fn scale_blocks(t: &TensorProto, block: usize, factors: &[f64]) -> Result<TensorProto, Error> {
    scatter_axes(t, &[], 0.0, Some((block, factors)))
}

/// `t` with axis `axis` grown to `new_len`: old index `i` lands at `map[i]`
/// and every other slot holds `fill` (in the tensor's type).
pub fn scatter_axis(
    t: &TensorProto,
    axis: usize,
    map: &[usize],
    new_len: usize,
    fill: f64,
) -> Result<TensorProto, Error> {
    scatter_axes(t, &[(axis, map, new_len)], fill, None)
}

/// `t` with several axes grown at once, each `(axis, map, new_len)` as in
/// [`scatter_axis`]: one pass and one new tensor however many axes change.
/// Whole runs of bytes are moved (an axis mapped contiguously moves as one
/// block), so no element is converted; with `scale` (`(block, factors)`,
/// source element `i` times `factors[i / block]`, as [`scale_blocks`]) each
/// element is scaled on its way, so a folded and padded weight is written
/// once.
pub fn scatter_axes(
    t: &TensorProto,
    axes: &[(usize, &[usize], usize)],
    fill: f64,
    scale: Option<(usize, &[f64])>,
) -> Result<TensorProto, Error> {
    let e = elem_of(t)?;
    let d = dims(t);
    let mut maps: Vec<Option<&[usize]>> = vec![None; d.len()];
    let mut nd = d.clone();
    for &(axis, map, len) in axes {
        assert_eq!(map.len(), d[axis], "map of axis {axis}");
        maps[axis] = Some(map);
        nd[axis] = len;
    }
    let raw = raw(t)?;
    let fill = by_elem!(e, encode(&[fill]));
    let total = nd.iter().product::<usize>() * e.size();
    if d.contains(&0) {
        // nothing to move (a huge dim beside a 0 would make the walk below
        // count to it: a fuzzed [1e18, 3, 1, 0] weight never ended)
        let out = if fill.iter().all(|&b| b == 0) { vec![0; total] } else { fill.repeat(total / fill.len()) };
        return Ok(with_raw(t, &nd, out));
    }
    let mut out = if fill.iter().all(|&b| b == 0) { vec![0; total] } else { fill.repeat(total / fill.len()) };
    // the last changed axis k splits the tensor: below it, blocks of
    // `inner` bytes move whole; along it, runs of consecutive targets merge
    let Some(k) = maps.iter().rposition(Option::is_some) else {
        match scale {
            None => out.copy_from_slice(&raw),
            Some((block, factors)) => by_elem!(e, scale_into(&raw, &mut out, 0, block, factors)),
        }
        crate::onnx::mapped::release(&raw);
        return Ok(with_raw(t, &nd, out));
    };
    let inner = d[k + 1..].iter().product::<usize>() * e.size();
    let map_k = maps[k].unwrap();
    let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (from, to, len) in indices of axis k
    for (i, &m) in map_k.iter().enumerate() {
        match runs.last_mut() {
            Some((from, to, len)) if *from + *len == i && *to + *len == m => *len += 1,
            _ => runs.push((i, m, 1)),
        }
    }
    let (src_stride, dst_stride) = (strides(&d), strides(&nd));
    let outer = &d[..k];
    let mut idx = vec![0usize; k];
    for _ in 0..outer.iter().product::<usize>() {
        let (mut src, mut dst) = (0, 0);
        for (a, &i) in idx.iter().enumerate() {
            src += i * src_stride[a];
            dst += maps[a].map_or(i, |m| m[i]) * dst_stride[a];
        }
        let (src, dst) = (src * e.size(), dst * e.size());
        for &(from, to, len) in &runs {
            let (s0, d0) = (src + from * inner, dst + to * inner);
            let (from, to) = (&raw[s0..s0 + len * inner], &mut out[d0..d0 + len * inner]);
            match scale {
                None => to.copy_from_slice(from),
                Some((block, factors)) => by_elem!(e, scale_into(from, to, s0 / e.size(), block, factors)),
            }
        }
        // next multi-index of the outer axes, last fastest
        for a in (0..k).rev() {
            idx[a] += 1;
            if idx[a] < outer[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    crate::onnx::mapped::release(&raw);
    Ok(with_raw(t, &nd, out))
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::tensor_proto::DataType;

    #[test]
    fn f16_round_trips_in_its_own_type() {
        let t = from_f64("w", DataType::Float16 as i32, &[3], &[1.5, -2.0, 0.0999755859375]).unwrap();
        assert_eq!(t.raw_data.as_ref().unwrap().len(), 6);
        assert_eq!(to_f64(&t).unwrap(), vec![1.5, -2.0, 0.0999755859375]);
    }

    #[test]
    fn typed_fields_are_read() {
        let t = TensorProto { data_type: Some(1), dims: vec![2], float_data: vec![1.0, 2.0], ..Default::default() };
        assert_eq!(to_f64(&t).unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn declared_size_must_match_data() {
        let t = TensorProto {
            data_type: Some(1),
            dims: vec![1 << 40, 1 << 40],
            raw_data: Some(vec![0; 8].into()),
            ..Default::default()
        };
        assert!(check_len(&t).is_err());
        let t = TensorProto {
            data_type: Some(1),
            dims: vec![i64::MAX, 4],
            raw_data: Some(Bytes::new()),
            ..Default::default()
        };
        assert!(numel(&t).is_err());
    }

    #[test]
    fn scatter_places_rows_and_fills() {
        for dt in [DataType::Float, DataType::Float16, DataType::Double, DataType::Int64] {
            let t = from_f64("w", dt as i32, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
            let p = scatter_axis(&t, 0, &[0, 2], 3, 9.0).unwrap();
            assert_eq!(p.dims, vec![3, 2]);
            assert_eq!(to_f64(&p).unwrap(), vec![1.0, 2.0, 9.0, 9.0, 3.0, 4.0]);
            let p = scatter_axis(&t, 1, &[1, 2], 3, 0.0).unwrap();
            assert_eq!(p.dims, vec![2, 3]);
            assert_eq!(to_f64(&p).unwrap(), vec![0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
            // both axes at once is one axis after the other
            let both = scatter_axes(&t, &[(0, &[0, 2], 3), (1, &[1, 2], 3)], 9.0, None).unwrap();
            // a scale applied on the way is the scale applied first
            for block in [1, 2, 4] {
                let f: Vec<f64> = (0..4 / block).map(|b| 1.5 - b as f64).collect();
                let fused = scatter_axes(&t, &[(0, &[0, 2], 3), (1, &[1, 2], 3)], 0.0, Some((block, &f))).unwrap();
                let first = scale_blocks(&t, block, &f).unwrap();
                let apart = scatter_axes(&first, &[(0, &[0, 2], 3), (1, &[1, 2], 3)], 0.0, None).unwrap();
                assert_eq!(fused, apart, "{dt:?} block {block}");
                let want: Vec<f64> = to_f64(&t).unwrap().iter().enumerate().map(|(i, v)| v * f[i / block]).collect();
                let want = to_f64(&from_f64("w", dt as i32, &[4], &want).unwrap()).unwrap();
                assert_eq!(to_f64(&first).unwrap(), want, "{dt:?} block {block}");
            }
            let seq = scatter_axis(&scatter_axis(&t, 0, &[0, 2], 3, 9.0).unwrap(), 1, &[1, 2], 3, 9.0).unwrap();
            assert_eq!(both, seq);
        }
        // typed storage comes out as raw_data of the same type
        let t = TensorProto { data_type: Some(1), dims: vec![2], float_data: vec![1.0, 2.0], ..Default::default() };
        let p = scatter_axis(&t, 0, &[0, 1], 3, 1.0).unwrap();
        assert!(p.float_data.is_empty());
        assert_eq!(to_f64(&p).unwrap(), vec![1.0, 2.0, 1.0]);
    }

    proptest::proptest! {
        /// scatter_axes agrees with moving element by element.
        #[test]
        fn scatter_axes_moves_every_element(
            dims in proptest::collection::vec(1usize..5, 1..5),
            pick in proptest::collection::vec((proptest::bool::ANY, 0usize..3, proptest::bool::ANY), 4),
        ) {
            let n: usize = dims.iter().product();
            let vals: Vec<f64> = (0..n).map(|i| i as f64 + 1.0).collect();
            let t = from_f64("t", DataType::Float as i32, &dims, &vals).unwrap();
            // per picked axis: `extra` slots, spread (every other) or at the end
            let maps: Vec<(usize, Vec<usize>, usize)> = dims.iter().enumerate().filter(|(a, _)| pick[*a].0)
                .map(|(a, &len)| {
                    let (extra, spread) = (pick[a].1, pick[a].2);
                    let map: Vec<usize> = (0..len).map(|i| if spread { i * (1 + extra.min(1)) } else { i }).collect();
                    (a, map.clone(), map.last().unwrap() + 1 + extra)
                }).collect();
            let axes: Vec<(usize, &[usize], usize)> = maps.iter().map(|(a, m, l)| (*a, &m[..], *l)).collect();
            let got = scatter_axes(&t, &axes, -1.0, None).unwrap();
            let mut nd = dims.clone();
            for (a, _, l) in &maps { nd[*a] = *l; }
            let mut want = vec![-1.0; nd.iter().product()];
            let (ss, ds) = (strides(&dims), strides(&nd));
            for (i, &v) in vals.iter().enumerate() {
                let mut dst = 0;
                for a in 0..dims.len() {
                    let k = i / ss[a] % dims[a];
                    dst += maps.iter().find(|m| m.0 == a).map_or(k, |m| m.1[k]) * ds[a];
                }
                want[dst] = v;
            }
            proptest::prop_assert_eq!(super::dims(&got), nd);
            proptest::prop_assert_eq!(to_f64(&got).unwrap(), want);
        }
    }

    #[test]
    fn scaling_rounds_each_product_once_in_the_own_type() {
        let vals = [0.1, -0.7, 3.3, 1e-3, 2.5, -8.0];
        for dt in [DataType::Float, DataType::Float16, DataType::Bfloat16, DataType::Double] {
            let t = from_f64("w", dt as i32, &[3, 2], &vals).unwrap();
            let s = [1.7, -0.3, 0.9];
            let got = to_f64(&scale_blocks(&t, 2, &s).unwrap()).unwrap();
            let orig = to_f64(&t).unwrap();
            let want: Vec<f64> = orig.iter().enumerate().map(|(i, v)| v * s[i / 2]).collect();
            let want = to_f64(&from_f64("w", dt as i32, &[6], &want).unwrap()).unwrap();
            assert_eq!(got, want, "{dt:?}");
        }
    }
}
