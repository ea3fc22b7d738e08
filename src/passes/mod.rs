//! The rewrite passes, one file each, run in a fixed order:
//! `fold-bn` → `deconv` → `pad`. Each pass reports what it changed, and the
//! graph invariants ([`Model::check`]) are checked after every pass.

pub mod deconv;
pub mod fold_bn;
pub mod pad;
#[cfg(test)]
mod proptests;

use crate::error::{Error, Result};
use crate::ir::Model;
use crate::layout::Layout;

/// A pass by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pass {
    /// Fold BatchNormalization into the convs before it.
    FoldBn,
    /// Check ConvTranspose nodes and let `pad` align their two channel dims.
    Deconv,
    /// Zero-pad every free channel space to the multiple.
    Pad,
}

impl Pass {
    /// The pass's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Pass::FoldBn => "fold-bn",
            Pass::Deconv => "deconv",
            Pass::Pad => "pad",
        }
    }

    /// Parses `fold-bn,deconv,pad` or `none` (order is always the canonical one).
    pub fn parse_list(s: &str) -> Result<Vec<Pass>> {
        if s.trim() == "none" {
            return Ok(vec![]);
        }
        let mut v = vec![];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            v.push(match part {
                "fold-bn" => Pass::FoldBn,
                "deconv" => Pass::Deconv,
                "pad" => Pass::Pad,
                other => {
                    return Err(Error::model(format!("unknown pass '{other}' (passes: fold-bn, deconv, pad, or none)")))
                }
            });
        }
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// All passes in order.
    pub fn all() -> Vec<Pass> {
        vec![Pass::FoldBn, Pass::Deconv, Pass::Pad]
    }
}

pub use crate::analysis::Options;

/// What one pass did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PassReport {
    /// Pass name.
    pub pass: &'static str,
    /// How many rewrites it made (BNs folded, tensors padded…).
    pub changed: usize,
    /// One line per rewrite.
    pub notes: Vec<String>,
    /// Wall time in milliseconds.
    pub millis: f64,
}

/// Runs `passes` in order on `m`, checking the graph after each.
pub fn run(m: &mut Model, passes: &[Pass], opts: &Options) -> Result<Vec<PassReport>> {
    rewrite(m, passes, opts).map(|(r, _)| r)
}

/// [`run`], also returning the layout of the rewrite: where each tensor of
/// the original that survives sits in the rewritten model, for verification.
pub fn rewrite(m: &mut Model, passes: &[Pass], opts: &Options) -> Result<(Vec<PassReport>, Layout)> {
    let mut layout = None;
    let mut out = vec![];
    let mut opts = opts.clone();
    opts.deconv = passes.contains(&Pass::Deconv);
    for &p in passes {
        let t = std::time::Instant::now();
        let (changed, notes) = match p {
            Pass::FoldBn => fold_bn::run(m)?,
            Pass::Deconv => deconv::run(m, &opts)?,
            Pass::Pad => {
                let (n, notes, l) = pad::run_with_layout(m, &opts)?;
                layout = Some(l);
                (n, notes)
            }
        };
        m.cleanup();
        m.check().map_err(|e| Error { msg: format!("after pass {}: {}", p.name(), e.msg), ..e })?;
        out.push(PassReport { pass: p.name(), changed, notes, millis: t.elapsed().as_secs_f64() * 1e3 });
    }
    let layout = layout.unwrap_or_else(|| Layout {
        altered: m.altered.clone(),
        source: "align's own rewrite".into(),
        ..Layout::default()
    });
    Ok((out, layout))
}
