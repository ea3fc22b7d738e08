//! ONNX element types: what align can do arithmetic on, their sizes and
//! names, and the element count a tensor declares. Lives with the schema so
//! that loading (external data lengths) does not depend on `tensor`.

use super::tensor_proto::DataType;
use super::TensorProto;
use crate::Error;

/// Element type of a tensor, as far as align does arithmetic on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer (shapes, axes, sizes).
    I64,
    /// 32-bit signed integer.
    I32,
}

impl Elem {
    /// The element type of an ONNX data type code, if align handles it.
    pub fn from_onnx(code: i32) -> Option<Elem> {
        match DataType::try_from(code).ok()? {
            DataType::Float => Some(Elem::F32),
            DataType::Double => Some(Elem::F64),
            DataType::Float16 => Some(Elem::F16),
            DataType::Bfloat16 => Some(Elem::BF16),
            DataType::Int64 => Some(Elem::I64),
            DataType::Int32 => Some(Elem::I32),
            _ => None,
        }
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::F64 | Elem::I64 => 8,
            Elem::F16 | Elem::BF16 => 2,
        }
    }

    /// True for the floating point types.
    pub fn is_float(self) -> bool {
        matches!(self, Elem::F32 | Elem::F64 | Elem::F16 | Elem::BF16)
    }
}

/// Human readable name of an ONNX data type code.
pub fn dtype_name(code: i32) -> String {
    DataType::try_from(code)
        .map(|d| d.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| format!("data type {code}"))
}

/// Number of elements a tensor declares, or an error when the product of its
/// dims is negative or overflows.
pub fn numel(t: &TensorProto) -> Result<usize, Error> {
    let mut n: usize = 1;
    for &d in &t.dims {
        let d =
            usize::try_from(d).map_err(|_| Error::model(format!("tensor '{}' has a negative dim {d}", t.name())))?;
        n = n.checked_mul(d).ok_or_else(|| {
            Error::model(format!("tensor '{}': element count of dims {:?} overflows", t.name(), t.dims))
        })?;
    }
    Ok(n)
}

/// The element type of a tensor, if align can do arithmetic on it.
pub fn elem(t: &TensorProto) -> Option<Elem> {
    Elem::from_onnx(t.data_type.unwrap_or(0))
}
