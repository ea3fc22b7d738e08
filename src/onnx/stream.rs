//! Encoding a message straight into a file.
//!
//! prost encodes into any [`BufMut`]. [`FileBuf`] is one over a writer: the
//! protobuf framing collects in a small buffer that is flushed when full, and
//! a large field (a weight's `raw_data`) is written to the file directly from
//! wherever it lives, usually the input's memory map, whose pages are then
//! handed back ([`super::mapped::release`]). A model is thus encoded without
//! a buffer of its own size, and without keeping the input resident.

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};
use prost::Message;
use std::io::Write;

/// Framing buffer size; slices at least this long bypass it.
const CHUNK: usize = 256 * 1024;

/// A [`BufMut`] that writes to `w`. `BufMut` cannot fail, so the first write
/// error is kept and everything after it is dropped; [`FileBuf::finish`]
/// reports it.
struct FileBuf<W: Write> {
    w: W,
    buf: Vec<u8>,
    err: Option<std::io::Error>,
}

impl<W: Write> FileBuf<W> {
    fn new(w: W) -> FileBuf<W> {
        FileBuf { w, buf: Vec::with_capacity(CHUNK), err: None }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_all(bytes) {
                self.err = Some(e);
            }
        }
    }

    fn flush_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.flush_buf();
        match self.err {
            Some(e) => Err(e),
            None => self.w.flush(),
        }
    }
}

// SAFETY: `chunk_mut` hands out the buffer's spare capacity, never empty
// (it flushes first when full), and `advance_mut` only counts bytes the
// caller initialised in it, as the trait requires.
unsafe impl<W: Write> BufMut for FileBuf<W> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity(), "advance_mut past the chunk");
        // SAFETY: the caller initialised `cnt` bytes of the spare capacity.
        unsafe { self.buf.set_len(len) };
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= CHUNK {
            self.flush_buf();
            self.write(src);
            super::mapped::release(src);
            return;
        }
        if self.buf.len() + src.len() > self.buf.capacity() {
            self.flush_buf();
        }
        self.buf.extend_from_slice(src);
    }

    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        while src.has_remaining() {
            let n = src.chunk().len();
            self.put_slice(src.chunk());
            src.advance(n);
        }
    }
}

/// Encodes `msg` into `w`.
pub(super) fn encode(msg: &impl Message, w: impl Write) -> std::io::Result<()> {
    let mut buf = FileBuf::new(w);
    msg.encode(&mut buf).expect("FileBuf has room for any message");
    buf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{GraphProto, ModelProto, TensorProto};

    #[test]
    fn streamed_encoding_is_the_encoding() {
        let big = bytes::Bytes::from((0..CHUNK * 3 + 17).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let mut g = GraphProto { name: Some("g".into()), ..Default::default() };
        for i in 0..200 {
            let raw = if i % 50 == 0 { big.clone() } else { bytes::Bytes::from(vec![i as u8; 1000 + i]) };
            g.initializer.push(TensorProto { name: Some(format!("t{i}")), raw_data: Some(raw), ..Default::default() });
        }
        let m = ModelProto { ir_version: Some(8), graph: Some(g), ..Default::default() };
        let mut out = Vec::new();
        encode(&m, &mut out).unwrap();
        assert_eq!(out, m.encode_to_vec());
    }

    #[test]
    fn the_first_write_error_is_reported() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.0 < b.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let t = TensorProto { raw_data: Some(bytes::Bytes::from(vec![1; CHUNK * 2])), ..Default::default() };
        let m =
            ModelProto { graph: Some(GraphProto { initializer: vec![t], ..Default::default() }), ..Default::default() };
        assert_eq!(encode(&m, Full(1000)).unwrap_err().to_string(), "disk full");
        assert!(encode(&m, Full(CHUNK * 3)).is_ok());
    }
}
