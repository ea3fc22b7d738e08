//! The library's typed error. The binary maps [`ErrorKind`] to exit codes and
//! prefixes the file name; the message names the node where there is one.

use std::fmt;

/// What class of failure an [`Error`] is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input could not be read or is not a model align can handle (exit 2).
    Input,
    /// The rewritten model did not match the original (exit 1).
    Verify,
}

/// An error with the node it concerns, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Input problem or verification failure.
    pub kind: ErrorKind,
    /// The ONNX node (name, or first output name) the error is about.
    pub node: Option<String>,
    /// One-line description.
    pub msg: String,
}

impl Error {
    /// An input error not tied to a node.
    pub fn model(msg: impl Into<String>) -> Error {
        Error { kind: ErrorKind::Input, node: None, msg: msg.into() }
    }
    /// An input error about `node`.
    pub fn at(node: impl Into<String>, msg: impl Into<String>) -> Error {
        Error { kind: ErrorKind::Input, node: Some(node.into()), msg: msg.into() }
    }
    /// A verification failure.
    pub fn verify(msg: impl Into<String>) -> Error {
        Error { kind: ErrorKind::Verify, node: None, msg: msg.into() }
    }
    /// Attaches a node name unless one is already set.
    pub fn in_node(mut self, node: &str) -> Error {
        if self.node.is_none() {
            self.node = Some(node.to_string());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "node '{n}': {}", self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for Error {}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
