//! What both fuzz targets do with a model's bytes.

use align::ir::Model;
use align::passes::{self, Options, Pass};
use prost::Message;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The folder external data is resolved against: `$TMPDIR/align-fuzz-sandbox`,
/// shared by every fuzz process (fork mode starts many), holding only the
/// synthetic 4 KiB file `w.bin` written here. A fuzzed model can never make
/// align read a real file through it.
pub fn sandbox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("align-fuzz-sandbox");
        std::fs::create_dir_all(&dir).expect("create sandbox dir");
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        for e in std::fs::read_dir(&dir).expect("read sandbox dir").flatten() {
            if e.file_name() != "w.bin" {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let file = dir.join("w.bin");
        if std::fs::read(&file).ok().as_deref() != Some(data.as_slice()) {
            // write + rename, so a concurrent process never sees half a file
            let tmp = dir.join(format!(".w.bin.{}", std::process::id()));
            std::fs::write(&tmp, &data).expect("write sandbox data");
            std::fs::rename(&tmp, &file).expect("rename sandbox data");
        }
        dir
    })
}

/// bytes → decode → import → report → passes → export → encode → decode →
/// import → report → export. Errors are fine; panics are bugs.
pub fn run(data: &[u8]) {
    let dir = sandbox();
    let Ok((proto, _external)) = align::onnx::decode(data, dir) else {
        return;
    };
    let Ok(mut m) = Model::import(proto) else {
        return;
    };
    let opts = Options::default(); // multiple 8

    // `align report` / `align check` on the model as given.
    if let Ok(r) = align::report::build(&m, &opts) {
        let _ = r.text();
        let _ = align::report::check(&r, true).text();
    }

    // `align MODEL`: the passes, then export.
    if passes::run(&mut m, &Pass::all(), &opts).is_err() {
        return;
    }
    let out = m.export();

    // Round trip through protobuf bytes: must never panic.
    let bytes = out.encode_to_vec();
    let _ = align::onnx::ModelProto::decode(bytes.as_slice());
    let Ok((back, _)) = align::onnx::decode(&bytes, dir) else {
        return;
    };
    let Ok(m2) = Model::import(back) else {
        return;
    };
    if let Ok(r) = align::report::build(&m2, &opts) {
        let _ = r.text();
    }
    let _ = m2.export().encode_to_vec();
}

/// `ALIGN_FUZZ_IGNORE=src/analysis.rs:673,src/passes/fold_bn.rs:105`: panics
/// at these known locations are caught and treated like an `Err`, so a long
/// campaign is not stopped (or flooded) by bugs already reported. Any other
/// panic still aborts as usual. Unset: every panic aborts.
fn ignore_list() -> &'static [String] {
    static L: OnceLock<Vec<String>> = OnceLock::new();
    L.get_or_init(|| {
        std::env::var("ALIGN_FUZZ_IGNORE")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    })
}

thread_local! {
    static IGNORED: Cell<bool> = const { Cell::new(false) };
}

/// [`run`], with the known panics of `ALIGN_FUZZ_IGNORE` caught.
pub fn run_guarded(data: &[u8]) {
    if ignore_list().is_empty() {
        return run(data);
    }
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let fuzzer_hook = std::panic::take_hook(); // libfuzzer-sys: print + abort
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            if ignore_list().iter().any(|k| at.ends_with(k.as_str())) {
                IGNORED.with(|c| c.set(true));
            } else {
                fuzzer_hook(info);
            }
        }));
    });
    IGNORED.with(|c| c.set(false));
    if std::panic::catch_unwind(|| run(data)).is_err() && !IGNORED.with(|c| c.get()) {
        std::process::abort();
    }
}
