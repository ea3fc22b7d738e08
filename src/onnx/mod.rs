//! The ONNX schema as prost types, and reading / writing model files.
//!
//! Types are generated at build time from `proto/onnx.proto` (see `build.rs`),
//! with `TensorProto.raw_data` as [`bytes::Bytes`].
//!
//! [`load`] memory-maps the file and decodes it without copying weights: every
//! `raw_data` is a slice of the map (external data too, a slice of that file's
//! map, refusing locations outside the model's folder), so loading costs the
//! protobuf framing, not the weights. [`stage`] encodes straight into a
//! temporary file beside the output, unchanged tensors written from the map,
//! with no whole-model buffer, and flushes it; [`Staged::commit`] renames it
//! into place ([`save`] does both). Inline below 2 GiB, with an external data
//! file above.

#[allow(missing_docs, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
pub use generated::*;

pub mod dtype;

pub mod mapped;
mod stream;

use crate::error::{Error, Result};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// protobuf's hard limit for one message.
pub const PROTOBUF_LIMIT: usize = 2 * 1024 * 1024 * 1024 - 1;

/// Reads and decodes a model, resolving external data into `raw_data`.
///
/// Returns the model and whether any tensor was stored externally.
pub fn load(path: &Path) -> Result<(ModelProto, bool)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::model(format!("cannot read: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(Error::model("is a directory, not an ONNX model file"));
    }
    if meta.len() == 0 {
        return Err(Error::model("empty file, not an ONNX model"));
    }
    let dir =
        path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }).unwrap_or(Path::new("."));
    decode_with(map_file(path).map_err(|e| Error::model(format!("cannot {e}")))?, Some(dir))
}

/// Maps a file read-only as [`Bytes`] (see [`mapped`]).
fn map_file(path: &Path) -> std::result::Result<Bytes, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open: {}", io_reason(&e)))?;
    mapped::map(&file).map_err(|e| format!("map: {e}"))
}

/// Decodes a model from bytes, resolving external data relative to `dir`.
/// Returns the model and whether any tensor was stored externally. The bytes
/// are copied once; [`load`] decodes a file without copying.
pub fn decode(bytes: &[u8], dir: &Path) -> Result<(ModelProto, bool)> {
    decode_with(Bytes::copy_from_slice(bytes), Some(dir))
}

/// Decodes a model held in memory with no folder beside it (the Python API's
/// bytes and `onnx.ModelProto` inputs): a tensor stored as external data is an
/// error naming the tensor, since there is nowhere to resolve it from.
pub fn decode_in_memory(bytes: Bytes) -> Result<ModelProto> {
    decode_with(bytes, None).map(|(m, _)| m)
}

/// Decodes `bytes`; the weights become slices of it, not copies.
fn decode_with(bytes: Bytes, dir: Option<&Path>) -> Result<(ModelProto, bool)> {
    let mut model = ModelProto::decode(bytes)
        .map_err(|e| Error::model(format!("not an ONNX model (protobuf decoding failed: {e})")))?;
    validate_header(&model)?;
    let mut files = HashMap::new();
    let mut external = false;
    if let Some(g) = model.graph.as_mut() {
        for_each_tensor(g, &mut |t| {
            if t.data_location == Some(tensor_proto::DataLocation::External as i32) {
                external = true;
                match dir {
                    Some(dir) => resolve_external(t, dir, &mut files),
                    None => Err(Error::model(format!(
                        "tensor '{}' is stored as external data, which a model given in memory cannot resolve; \
                         pass the model's path instead",
                        t.name()
                    ))),
                }
            } else {
                Ok(())
            }
        })?;
    }
    Ok((model, external))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn validate_header(m: &ModelProto) -> Result<()> {
    let Some(g) = &m.graph else {
        return Err(Error::model("not an ONNX model: it has no graph"));
    };
    if m.ir_version.unwrap_or(0) <= 0 {
        return Err(Error::model("not an ONNX model: ir_version is missing"));
    }
    if m.opset_import.is_empty() {
        return Err(Error::model("not an ONNX model: no opset_import"));
    }
    if g.node.is_empty() {
        return Err(Error::model("the graph has no nodes"));
    }
    Ok(())
}

/// Calls `f` on every tensor of the graph: initializers, and tensors in node
/// attributes (Constant values), recursing into subgraphs.
pub fn for_each_tensor(g: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto) -> Result<()>) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                f(t)?;
            }
            for t in &mut a.tensors {
                f(t)?;
            }
            if let Some(sg) = a.g.as_mut() {
                for_each_tensor(sg, f)?;
            }
            for sg in &mut a.graphs {
                for_each_tensor(sg, f)?;
            }
        }
    }
    Ok(())
}

/// Checks an external-data location: relative, no `..`, inside `dir` after
/// resolving links. This is a security boundary: a model must not make align
/// read files outside its own folder.
pub fn resolve_location(dir: &Path, location: &str) -> Result<PathBuf> {
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || location.starts_with('/') || location.starts_with('\\') {
        return Err(Error::model(format!(
            "external data location '{location}' is not a relative path inside the model's folder"
        )));
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) || location.contains('\\') {
        return Err(Error::model(format!("external data location '{location}' escapes the model's folder")));
    }
    let base = dir.canonicalize().map_err(|e| Error::model(format!("cannot resolve the model's folder: {e}")))?;
    let full = base.join(rel);
    let real =
        full.canonicalize().map_err(|e| Error::model(format!("external data file '{location}': {}", io_reason(&e))))?;
    if !real.starts_with(&base) {
        return Err(Error::model(format!("external data location '{location}' escapes the model's folder")));
    }
    if !real.is_file() {
        return Err(Error::model(format!("external data location '{location}' is not a file")));
    }
    Ok(real)
}

fn resolve_external(t: &mut TensorProto, dir: &Path, files: &mut HashMap<PathBuf, Bytes>) -> Result<()> {
    let name = t.name().to_string();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        let v = kv.value();
        let num = || {
            v.parse::<u64>().map_err(|_| Error::model(format!("tensor '{name}': bad external data {} '{v}'", kv.key())))
        };
        match kv.key() {
            "location" => location = Some(v.to_string()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| Error::model(format!("tensor '{name}' is external but has no location")))?;
    let path = resolve_location(dir, &location)?;
    if !files.contains_key(&path) {
        let m = map_file(&path).map_err(|e| Error::model(format!("external data file '{location}': cannot {e}")))?;
        files.insert(path.clone(), m);
    }
    let data = &files[&path];
    let elem = dtype::elem(t).map(|e| e.size()).unwrap_or(1) as u64;
    let want = dtype::numel(t)? as u64;
    let len = length.unwrap_or_else(|| want.saturating_mul(elem));
    let end = offset.checked_add(len).filter(|&e| e <= data.len() as u64).ok_or_else(|| {
        Error::model(format!(
            "tensor '{name}': external data [{offset}, +{len}) is beyond the end of '{location}' ({} bytes)",
            data.len()
        ))
    })?;
    t.raw_data = Some(data.slice(offset as usize..end as usize));
    t.data_location = None;
    t.external_data.clear();
    Ok(())
}

/// Writes `model` to `path` atomically: [`stage`], then [`Staged::commit`].
pub fn save(model: &ModelProto, path: &Path, inline_limit: usize) -> Result<()> {
    stage(model, path, inline_limit)?.commit()
}

/// A model written and flushed to temporary files beside its destination,
/// not yet in place: [`Staged::commit`] renames them, dropping it removes
/// them. Lets the written bytes be verified before they land.
pub struct Staged {
    /// `(temporary file, destination)`, the external data file first.
    files: Vec<(tempfile::NamedTempFile, PathBuf)>,
}

impl Staged {
    /// The temporary model file, loadable as the model when [`Staged::is_inline`].
    pub fn temp_path(&self) -> &Path {
        self.files.last().expect("a staged model has its file").0.path()
    }

    /// The model needs no external data file (which would be found by its
    /// final name, so a staged model with one can only be loaded once committed).
    pub fn is_inline(&self) -> bool {
        self.files.len() == 1
    }

    /// Moves the files into place: the external data first, then the model;
    /// if the model cannot be moved, the data file is removed again.
    pub fn commit(self) -> Result<()> {
        let mut placed: Vec<PathBuf> = Vec::new();
        for (tmp, path) in self.files {
            if let Err(e) = tmp.persist(&path) {
                for p in &placed {
                    let _ = std::fs::remove_file(p);
                }
                return Err(Error::model(format!("cannot write '{}': renaming: {}", path.display(), e.error)));
            }
            placed.push(path);
        }
        Ok(())
    }
}

/// Writes `model` for `path` into temporary files in the target folder,
/// encoded straight into them (no whole-model buffer) and flushed. Models
/// whose encoding would exceed `inline_limit` bytes (normally
/// [`PROTOBUF_LIMIT`]) keep initializers of 1 KiB or more in
/// `<file name>.data` beside it.
pub fn stage(model: &ModelProto, path: &Path, inline_limit: usize) -> Result<Staged> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::model(format!("output folder '{}' does not exist", dir.display())));
    }
    if model.encoded_len() <= inline_limit {
        let tmp = write_temp(dir, path, |f| stream::encode(model, f))?;
        return Ok(Staged { files: vec![(tmp, path.to_path_buf())] });
    }
    let file_name =
        path.file_name().ok_or_else(|| Error::model("output path has no file name"))?.to_string_lossy().to_string();
    let data_name = format!("{file_name}.data");
    // the clone shares every tensor's bytes; the data file is written from them
    let mut m = model.clone();
    let g = m.graph.as_mut().expect("validated model has a graph");
    let mut blobs = Vec::new();
    let mut end = 0usize;
    for t in &mut g.initializer {
        let Some(raw) = t.raw_data.take_if(|r| r.len() >= 1024) else {
            continue;
        };
        let offset = end.next_multiple_of(4096);
        let kv = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
        t.external_data = vec![
            kv("location", data_name.clone()),
            kv("offset", offset.to_string()),
            kv("length", raw.len().to_string()),
        ];
        t.data_location = Some(tensor_proto::DataLocation::External as i32);
        end = offset + raw.len();
        blobs.push((offset, raw));
    }
    let data_path = dir.join(&data_name);
    let data = write_temp(dir, &data_path, |f| {
        let mut at = 0;
        for (offset, raw) in &blobs {
            f.write_all(&vec![0; offset - at])?;
            f.write_all(raw)?;
            mapped::release(raw);
            at = offset + raw.len();
        }
        Ok(())
    })?;
    drop(blobs);
    let main = write_temp(dir, path, |f| stream::encode(&m, f))?;
    Ok(Staged { files: vec![(data, data_path), (main, path.to_path_buf())] })
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder,
/// flushed, renamed); on failure nothing is left behind.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::model(format!("output folder '{}' does not exist", dir.display())));
    }
    write_atomic(dir, path, |f| f.write_all(bytes))
}

/// Creates a temporary file in `dir`, lets `fill` write it, flushes it to
/// disk and renames it to `path`; on failure nothing is left behind.
fn write_atomic(dir: &Path, path: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    Staged { files: vec![(write_temp(dir, path, fill)?, path.to_path_buf())] }.commit()
}

/// A temporary file in `dir` (for `path`, named in errors) that `fill`
/// wrote, flushed to disk; removed again if anything fails or it is dropped.
fn write_temp(
    dir: &Path,
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<tempfile::NamedTempFile> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| Error::model(format!("cannot write '{}': {what}: {e}", path.display()));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".align-").suffix(".tmp");
    // a model is not a secret: rw-r--r-- (less the umask), like any new file
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| fail("creating a temporary file", &e))?;
    fill(tmp.as_file_mut()).map_err(|e| fail("writing", &e))?;
    tmp.as_file().sync_all().map_err(|e| fail("flushing", &e))?;
    Ok(tmp)
}

/// Reads the attribute `name` of a node.
pub fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

/// Integer attribute, or `default`.
pub fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

/// Float attribute, or `default`.
pub fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

/// Integer-list attribute (empty when absent).
pub fn attr_ints(n: &NodeProto, name: &str) -> Vec<i64> {
    attr(n, name).map(|a| a.ints.clone()).unwrap_or_default()
}

/// String attribute.
pub fn attr_s<'a>(n: &'a NodeProto, name: &str) -> Option<&'a [u8]> {
    attr(n, name).and_then(|a| a.s.as_deref())
}

/// Sets (or adds) an integer attribute.
pub fn set_attr_i(n: &mut NodeProto, name: &str, v: i64) {
    if let Some(a) = n.attribute.iter_mut().find(|a| a.name() == name) {
        a.i = Some(v);
    } else {
        n.attribute.push(AttributeProto {
            name: Some(name.into()),
            i: Some(v),
            r#type: Some(attribute_proto::AttributeType::Int as i32),
            ..Default::default()
        });
    }
}

/// Sets an existing integer-list attribute.
pub fn set_attr_ints(n: &mut NodeProto, name: &str, v: Vec<i64>) {
    if let Some(a) = n.attribute.iter_mut().find(|a| a.name() == name) {
        a.ints = v;
    }
}

/// The default-domain opset a model imports.
pub fn opset(m: &ModelProto) -> i64 {
    m.opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .and_then(|o| o.version)
        .unwrap_or(1)
}

/// A tensor value info of element type `elem` and `dims` (`None`: a
/// symbolic dim, named `s`).
pub fn tensor_info(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |d: &Option<i64>| Dimension {
        value: Some(match d {
            Some(v) => Value::DimValue(*v),
            None => Value::DimParam("s".into()),
        }),
        denotation: None,
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim: dims.iter().map(dim).collect() }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}
