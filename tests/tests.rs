//! align's integration tests: one test binary (tract is linked once, not
//! once per file), one module per concern.
//!
//! Where a new test goes: the `align` binary's behaviour on the fixtures
//! (commands, flags, output files) in `cli`; malformed or hostile input
//! (one-line errors, exit 2, nothing written) in `bad_input`; element types
//! and fp16 / bf16 in `dtypes`; fuzz reproducers in `fuzz_regressions`;
//! planted bugs that verification must reject in `mutation`; exports of the
//! real packages (`fixtures/packages/`) in `packages`; If / Loop / Scan
//! bodies in `subgraphs`; `align verify` in `verify`. Helpers shared by all
//! of them are in `util/`. The peak-memory test is a binary of its own
//! (`memory.rs` says why). A test of one op family or pass belongs beside
//! its code in `src/` (`#[cfg(test)]`).

mod util;

mod bad_input;
mod cli;
mod dtypes;
mod fuzz_regressions;
mod mutation;
mod packages;
mod subgraphs;
mod verify;
