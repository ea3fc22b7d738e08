//! Reading and writing the numbers inside ONNX `TensorProto`s.
//!
//! Weights arrive in every storage ONNX allows (typed repeated fields or
//! little-endian `raw_data`) and in several float types. The passes do their
//! arithmetic in `f64` and write results back in the tensor's *own* type, so an
//! fp16 model stays fp16 and padding with zeros is exact in every type.

use crate::onnx::TensorProto;
use crate::Error;

pub use crate::onnx::dtype::{dtype_name, elem, numel, Elem};

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

/// All elements as `f64` (floats and integers alike).
pub fn to_f64(t: &TensorProto) -> Result<Vec<f64>, Error> {
    let e = elem_of(t)?;
    check_len(t)?;
    if uses_raw(t) {
        let raw = t.raw_data.as_deref().unwrap_or(&[]);
        let out = match e {
            Elem::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Elem::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            Elem::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            Elem::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            Elem::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Elem::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        };
        return Ok(out);
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

/// A tensor named `name` of type `data_type` holding `values` (converted to
/// that type), stored as `raw_data`.
pub fn from_f64(name: &str, data_type: i32, dims: &[usize], values: &[f64]) -> Result<TensorProto, Error> {
    let e = Elem::from_onnx(data_type)
        .ok_or_else(|| Error::model(format!("cannot write tensor '{name}' of type {}", dtype_name(data_type))))?;
    let mut raw = Vec::with_capacity(values.len() * e.size());
    for &v in values {
        match e {
            Elem::F32 => raw.extend_from_slice(&(v as f32).to_le_bytes()),
            Elem::F64 => raw.extend_from_slice(&v.to_le_bytes()),
            Elem::F16 => raw.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            Elem::BF16 => raw.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            Elem::I32 => raw.extend_from_slice(&(v as i32).to_le_bytes()),
            Elem::I64 => raw.extend_from_slice(&(v as i64).to_le_bytes()),
        }
    }
    Ok(TensorProto {
        name: Some(name.to_string()),
        data_type: Some(data_type),
        dims: dims.iter().map(|&d| d as i64).collect(),
        raw_data: Some(raw),
        ..Default::default()
    })
}

/// Replaces the values of `t` (same type, new dims), keeping its name, doc
/// string and metadata.
pub fn rewrite(t: &TensorProto, dims: &[usize], values: &[f64]) -> Result<TensorProto, Error> {
    let fresh = from_f64(t.name(), t.data_type(), dims, values)?;
    // metadata only: the old data is not copied just to be dropped
    Ok(TensorProto {
        segment: t.segment,
        doc_string: t.doc_string.clone(),
        metadata_props: t.metadata_props.clone(),
        ..fresh
    })
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Scatters `values` (shape `dims`) into a new buffer where axis `axis` has
/// length `new_len` and old index `i` lands at `map[i]`; every other slot of
/// that axis is filled with `fill`.
pub fn scatter_axis(
    values: &[f64],
    dims: &[usize],
    axis: usize,
    map: &[usize],
    new_len: usize,
    fill: f64,
) -> (Vec<usize>, Vec<f64>) {
    assert_eq!(map.len(), dims[axis]);
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = vec![fill; outer * new_len * inner];
    for o in 0..outer {
        for (i, &m) in map.iter().enumerate() {
            let src = (o * dims[axis] + i) * inner;
            let dst = (o * new_len + m) * inner;
            out[dst..dst + inner].copy_from_slice(&values[src..src + inner]);
        }
    }
    let mut nd = dims.to_vec();
    nd[axis] = new_len;
    (nd, out)
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
            raw_data: Some(vec![0; 8]),
            ..Default::default()
        };
        assert!(check_len(&t).is_err());
        let t =
            TensorProto { data_type: Some(1), dims: vec![i64::MAX, 4], raw_data: Some(vec![]), ..Default::default() };
        assert!(numel(&t).is_err());
    }

    #[test]
    fn scatter_places_rows_and_fills() {
        let (d, v) = scatter_axis(&[1.0, 2.0, 3.0, 4.0], &[2, 2], 0, &[0, 2], 3, 9.0);
        assert_eq!(d, vec![3, 2]);
        assert_eq!(v, vec![1.0, 2.0, 9.0, 9.0, 3.0, 4.0]);
        let (d, v) = scatter_axis(&[1.0, 2.0, 3.0, 4.0], &[2, 2], 1, &[1, 2], 3, 0.0);
        assert_eq!(d, vec![2, 3]);
        assert_eq!(v, vec![0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    }
}
