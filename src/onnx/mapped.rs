//! Model files mapped read-only, and handing back the pages of weights that
//! have been read.
//!
//! A loaded model's `raw_data` are slices of its file's map ([`map`]), so the
//! weights cost no memory of their own until they are touched. Once touched,
//! the pages count in the process's resident set for as long as the map
//! lives, even after a pass replaced the tensor with a padded copy. Whoever
//! has read a slice through for the last time (a pass that rewrote it, the
//! encoder that wrote it out) calls [`release`]: the kernel drops those pages
//! from the process and, should they be read again, faults them back in from
//! the page cache or the file, with the same contents. Peak memory is then
//! the rewritten tensors plus what is in flight, not the model twice.
//!
//! The map is never written through. align refuses to write over its own
//! input and replaces files by rename, which leaves the mapped inode intact;
//! another program truncating the file while align runs would fault the
//! process, the standard caveat of reading through a map.

use bytes::Bytes;
use memmap2::Mmap;
use std::sync::{Arc, Mutex, Weak};

/// The maps alive now; [`release`] acts only on slices inside one of them.
static LIVE: Mutex<Vec<Weak<Mmap>>> = Mutex::new(Vec::new());

/// Owner of a map inside [`Bytes`]: every slice shares it.
struct Shared(Arc<Mmap>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps `file` read-only; the map lives as long as the last slice of it.
pub fn map(file: &std::fs::File) -> std::io::Result<Bytes> {
    // SAFETY: a read-only map of a file align does not write (module docs).
    let map = Arc::new(unsafe { Mmap::map(file) }?);
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(&map));
    Ok(Bytes::from_owner(Shared(map)))
}

/// Drops the whole pages inside `data` from the resident set, if `data` lies
/// in a live map; anything else (heap memory) is left alone. The data stays
/// readable with the same contents.
pub fn release(data: &[u8]) {
    let (start, len) = (data.as_ptr() as usize, data.len());
    if len < 2 * page_size() {
        return; // no whole page worth a system call
    }
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    for m in live.iter().filter_map(Weak::upgrade) {
        let base = m.as_ptr() as usize;
        if start >= base && start + len <= base + m.len() {
            // whole pages only: the partial ones at either end may hold
            // framing or a neighbour that is still wanted
            let page = page_size();
            let first = (start - base).next_multiple_of(page);
            let end = (start - base + len) / page * page;
            if end > first {
                // SAFETY: MADV_DONTNEED on a shared read-only file map drops
                // pages that are re-read, unchanged, on the next access; no
                // reference sees different bytes (nothing writes the file).
                #[cfg(unix)]
                let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first) };
            }
            return;
        }
    }
}

/// The page size advice is rounded to. Where pages are larger the kernel
/// rounds the start down, so a neighbour's page may be dropped too: it is
/// read back unchanged, a cost in time only.
/// The page size advice is rounded to. Where pages are larger the kernel
/// rounds the start down, so a neighbour's page may be dropped too: it is
/// read back unchanged, a cost in time only.
/// [`release`]s every initializer of `m` (after a full read, such as
/// encoding the model for another runtime).
pub fn release_weights(m: &crate::onnx::ModelProto) {
    for t in m.graph.iter().flat_map(|g| &g.initializer) {
        if let Some(raw) = &t.raw_data {
            release(raw);
        }
    }
}

fn page_size() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn released_pages_read_back_the_same() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let b = map(&f).unwrap();
        let part = b.slice(100..50_000);
        assert_eq!(part[..], data[100..50_000]);
        release(&part);
        assert_eq!(part[..], data[100..50_000]);
        assert_eq!(b[..], data[..]);
        // heap memory is never advised
        let heap = data.clone();
        release(&heap);
        assert_eq!(heap, data);
    }
}
