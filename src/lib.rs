//! align: zero-pad the channel widths of pruned ONNX CNNs to multiples of 8
//! (or 16, 32) without changing any output, proven with tract.
//!
//! Data flows `onnx::load` → [`ir::Model::import`] → [`analysis`] →
//! [`passes`] → [`verify`] → `onnx::save`. See `docs/architecture.md`.
#![warn(missing_docs)]

pub mod analysis;
pub mod certify;
pub mod cli;
pub mod error;
pub mod ir;
pub mod layout;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod pipeline;
#[cfg(feature = "python")]
pub mod python;
pub mod report;
pub mod svg;
pub mod tensor;
#[cfg(test)]
pub(crate) mod testutil;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
