//! Command-line interface: argument definitions (clap) and the three
//! commands. Part of the library so that the Python wheel's `align` command
//! runs the same code ([`main_from`]); `main.rs` only calls it.
//!
//! Exit codes: 0 success; 1 `check` found unaligned dims or verification
//! failed; 2 usage or input error (one line on stderr naming the file, and
//! the node where there is one).

use crate::ir::Model;
use crate::passes::{Options, Pass};
use crate::pipeline::{self, Config};
use crate::report;
use crate::verify::{Tolerance, VerifyOptions};
use crate::{Error, ErrorKind};
use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// align: pad the channels of pruned ONNX CNNs to hardware-friendly
/// multiples, proven output-equivalent.
#[derive(Parser, Debug)]
#[command(name = "align", version, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    align: AlignArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Per-layer channels, params and MACs; what is pinned and why.
    Report {
        #[command(flatten)]
        common: CommonArgs,
        /// Also draw the channel widths before and after alignment as an SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// CI gate: exit 1 when a free channel dim is not a multiple.
    Check {
        #[command(flatten)]
        common: CommonArgs,
        /// Fail on pinned unaligned dims too.
        #[arg(long)]
        strict: bool,
    },
    /// Check that CANDIDATE computes what ORIGINAL computes (exit 0 equivalent, 1 not).
    Verify {
        /// The reference model.
        original: PathBuf,
        /// The rewrite to check (align's, another tool's, a hand edit).
        candidate: PathBuf,
        /// Shape of a graph input with symbolic dims, e.g. images=1x3x640x640 (repeatable).
        #[arg(long = "input-shape", value_name = "NAME=DIMS")]
        input_shape: Vec<String>,
        #[command(flatten)]
        verify: VerifyArgs,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// How the equivalence check runs (`align MODEL` and `align verify`).
#[derive(Args, Debug, Clone)]
struct VerifyArgs {
    /// Hold every output element to |a−b| ≤ atol + rtol·|a| instead of the fp32-noise bound.
    #[arg(long)]
    strict: bool,
    /// Absolute tolerance: with --strict the test (default 1e-4); otherwise differences within atol + rtol·|a| count as none (default 0).
    #[arg(long)]
    atol: Option<f64>,
    /// Relative tolerance (of the original's value); see --atol.
    #[arg(long)]
    rtol: Option<f64>,
    /// Random input trials (default: automatic, 1 for a 640x640 image up to 8 for small inputs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    trials: Option<u32>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Range of the random float inputs, LO,HI (default: 0,1 for ultralytics exports, else -1,1).
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true)]
    input_range: Option<String>,
    /// Real inputs instead of random ones: .npy (one input) or .npz (arrays named by input); a leading extra axis holds several sets.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
}

impl VerifyArgs {
    fn options(&self) -> Result<VerifyOptions, Error> {
        let d = if self.strict { Tolerance::STRICT_DEFAULT } else { Tolerance::default() };
        let input_range = match &self.input_range {
            None => None,
            Some(s) => {
                let bad = || Error::model(format!("--input-range '{s}' is not LO,HI with LO < HI (e.g. 0,1)"));
                let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
                let (lo, hi) =
                    (lo.trim().parse::<f64>().map_err(|_| bad())?, hi.trim().parse::<f64>().map_err(|_| bad())?);
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(bad());
                }
                Some((lo, hi))
            }
        };
        Ok(VerifyOptions {
            tolerance: Tolerance { atol: self.atol.unwrap_or(d.atol), rtol: self.rtol.unwrap_or(d.rtol) },
            strict: self.strict,
            trials: self.trials.unwrap_or(0) as usize,
            seed: self.seed,
            input_range,
            inputs: self.inputs.clone(),
        })
    }
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
struct Shared {
    /// Channel multiple to align to.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    multiple: u32,
    /// Shape of a graph input with symbolic dims, e.g. images=1x3x640x640 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shape: Vec<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Also pad convs pinned by a graph output or Reshape, with a Slice in front of that reader (adds ops).
    #[arg(long)]
    slice_pinned: bool,
    /// The most padding may widen a channel dim, as a factor (3 → 8 channels is 2.67; inf: no limit); a dim over it keeps its width, pinned for cost.
    #[arg(long, value_name = "FACTOR", default_value_t = Options::DEFAULT_MAX_GROWTH)]
    max_growth: f64,
}

#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// The ONNX models (one block of output per model).
    #[arg(required = true, num_args = 1..)]
    models: Vec<PathBuf>,
    #[command(flatten)]
    shared: Shared,
    /// Output format: text, github (GitHub Actions annotations) or json (as --json).
    #[arg(long, value_enum, conflicts_with = "json")]
    format: Option<Format>,
}

/// How `report` and `check` print their results.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Human-readable blocks.
    Text,
    /// GitHub Actions workflow commands (`::error file=…::…`).
    Github,
    /// JSON: one object (one line per model when several are given).
    Json,
}

impl CommonArgs {
    fn format(&self) -> Format {
        if self.shared.json {
            Format::Json
        } else {
            self.format.unwrap_or(Format::Text)
        }
    }
}

#[derive(Args, Debug)]
struct AlignArgs {
    /// The ONNX model to align.
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// Output path (default: <stem>.aligned.onnx beside the input).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Passes to run: a comma-separated subset of fold-bn,deconv,pad, or none.
    #[arg(long, default_value = "fold-bn,deconv,pad")]
    passes: String,
    /// Write without running the equivalence check.
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    verify: VerifyArgs,
    #[command(flatten)]
    shared: Shared,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// Writes to stdout; a closed pipe (`align report m.onnx | head`) is not an
/// error worth a message.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// A failure with the exit code it maps to.
pub struct Failure {
    /// 1 or 2.
    pub code: u8,
    /// One line.
    pub msg: String,
}

fn fail(file: &Path, e: Error) -> Failure {
    Failure { code: if e.kind == ErrorKind::Verify { 1 } else { 2 }, msg: format!("{}: {e}", file.display()) }
}

fn parse_shapes(v: &[String]) -> Result<HashMap<String, Vec<i64>>, Error> {
    let mut out = HashMap::new();
    for s in v {
        let (name, dims) = s
            .rsplit_once('=')
            .ok_or_else(|| Error::model(format!("--input-shape '{s}' is not NAME=DIMS (e.g. images=1x3x640x640)")))?;
        let dims: Vec<i64> = dims
            .split(['x', ','])
            .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d > 0))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::model(format!("--input-shape '{s}': dims must be positive integers like 1x3x640x640"))
            })?;
        out.insert(name.to_string(), dims);
    }
    Ok(out)
}

fn load(path: &Path) -> Result<Model, Failure> {
    let (proto, _) = crate::onnx::load(path).map_err(|e| fail(path, e))?;
    Model::import(proto).map_err(|e| fail(path, e))
}

/// The whole command line: parses `args` (the first is the program name),
/// runs the command, prints a failure as one line on stderr and returns the
/// exit code. The `align` binary and the Python wheel's `align` command are
/// both this function.
pub fn main_from<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 };
            }
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("align: {}", first.trim_start_matches("error: "));
            return 2;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("align: error: {}", f.msg);
            f.code
        }
    }
}

/// Runs the parsed command line; Ok(exit code).
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.cmd {
        Some(Cmd::Report { common: c, svg }) if c.models.len() == 1 => {
            let model = &c.models[0];
            let r = report_of(&c, model).inspect_err(|f| annotate_failure(&c, model, f))?;
            if let Some(path) = svg {
                let title = model.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
                crate::onnx::write_file_atomic(&path, crate::svg::render(&r, &title).as_bytes())
                    .map_err(|e| fail(model, e))?;
            }
            match c.format() {
                Format::Json => emit(&(serde_json::to_string_pretty(&r).expect("report serialises") + "\n")),
                Format::Text => emit(&r.text()),
                Format::Github => emit(&github_report(model, &r)),
            }
            Ok(0)
        }
        Some(Cmd::Check { common, strict }) if common.models.len() == 1 => {
            let model = &common.models[0];
            let r = report_of(&common, model).inspect_err(|f| annotate_failure(&common, model, f))?;
            let c = report::check(&r, strict);
            match common.format() {
                Format::Json => emit(&(serde_json::to_string_pretty(&c).expect("check serialises") + "\n")),
                Format::Text => emit(&c.text()),
                Format::Github => emit(&github_check(model, &c, strict)),
            }
            Ok(if c.ok { 0 } else { 1 })
        }
        Some(Cmd::Verify { original, candidate, input_shape, verify, json }) => {
            verify_cmd(&original, &candidate, &input_shape, &verify, json)
        }
        Some(Cmd::Report { common, svg }) => {
            if svg.is_some() {
                return Err(Failure { code: 2, msg: "--svg draws one model; give a single MODEL".into() });
            }
            gate(&common, None)
        }
        Some(Cmd::Check { common, strict }) => gate(&common, Some(strict)),
        None => align(cli.align),
    }
}

/// `align verify ORIGINAL CANDIDATE`.
fn verify_cmd(
    original: &Path,
    candidate: &Path,
    shapes: &[String],
    va: &VerifyArgs,
    json: bool,
) -> Result<u8, Failure> {
    let both = |e: Error| Failure {
        code: if e.kind == ErrorKind::Verify { 1 } else { 2 },
        msg: format!("{} vs {}: {e}", original.display(), candidate.display()),
    };
    let shapes = parse_shapes(shapes).map_err(both)?;
    let opts = va.options().map_err(both)?;
    let (a, _) = crate::onnx::load(original).map_err(|e| fail(original, e))?;
    let (b, _) = crate::onnx::load(candidate).map_err(|e| fail(candidate, e))?;
    let v = crate::verify::verify(&a, &b, &shapes, &opts).map_err(both)?;
    if json {
        let j = serde_json::json!({
            "original": original.display().to_string(),
            "candidate": candidate.display().to_string(),
            "equivalent": v.passed,
            "verification": v,
        });
        emit(&(serde_json::to_string_pretty(&j).expect("verification serialises") + "\n"));
    } else {
        emit(&v.text());
    }
    if v.passed {
        Ok(0)
    } else {
        Err(Failure {
            code: 1,
            msg: format!("{}: not equivalent to {}: {}", candidate.display(), original.display(), v.failure_line()),
        })
    }
}

/// The failing tensor in one line.
fn report_of(c: &CommonArgs, model: &Path) -> Result<report::Report, Failure> {
    let shapes = parse_shapes(&c.shared.input_shape).map_err(|e| fail(model, e))?;
    let m = load(model)?;
    let opts = Options {
        multiple: c.shared.multiple as usize,
        input_shapes: shapes,
        deconv: true,
        slice_pinned: c.shared.slice_pinned,
        max_growth: c.shared.max_growth,
    };
    report::build(&m, &opts).map_err(|e| fail(model, e))
}

/// `report` / `check` over several models: one block (or JSON line) per
/// model, every model checked even when an earlier one fails. A model that
/// cannot be read fails in its own block; exit 1 when any model failed or
/// could not be read, 2 only for usage errors. `strict` is `Some` for check.
fn gate(c: &CommonArgs, strict: Option<bool>) -> Result<u8, Failure> {
    // a bad --input-shape is a usage error, before any model is read
    parse_shapes(&c.shared.input_shape).map_err(|e| Failure { code: 2, msg: e.to_string() })?;
    let fmt = c.format();
    let mut failed = 0;
    for (i, model) in c.models.iter().enumerate() {
        let mut out = String::new();
        if fmt == Format::Text {
            out += &format!("{}== {}\n", if i > 0 { "\n" } else { "" }, model.display());
        }
        let (ok, block) = match (report_of(c, model), strict) {
            (Err(f), _) => {
                let msg = f.msg.strip_prefix(&format!("{}: ", model.display())).unwrap_or(&f.msg).to_string();
                let block = match fmt {
                    Format::Text => format!("error: {msg}\n"),
                    Format::Github => github_line("error", model, "align: cannot check the model", &msg),
                    Format::Json => json_line(model, serde_json::json!({"ok": false, "error": msg})),
                };
                (false, block)
            }
            (Ok(r), None) => {
                let block = match fmt {
                    Format::Text => r.text(),
                    Format::Github => github_report(model, &r),
                    Format::Json => json_line(model, serde_json::to_value(&r).expect("report serialises")),
                };
                (true, block)
            }
            (Ok(r), Some(strict)) => {
                let k = report::check(&r, strict);
                let block = match fmt {
                    Format::Text => k.text(),
                    Format::Github => github_check(model, &k, strict),
                    Format::Json => json_line(model, serde_json::to_value(&k).expect("check serialises")),
                };
                (k.ok, block)
            }
        };
        out += &block;
        emit(&out);
        failed += usize::from(!ok);
    }
    if fmt != Format::Json {
        let n = c.models.len();
        let what = if strict.is_some() { "failed the check" } else { "could not be read" };
        emit(&if failed == 0 {
            format!("{}all {n} models ok\n", if fmt == Format::Text { "\n" } else { "" })
        } else {
            format!("{}{failed} of {n} models {what}\n", if fmt == Format::Text { "\n" } else { "" })
        });
    }
    Ok(u8::from(failed > 0))
}

/// One JSON line: `value` (an object) with the model's path as `"file"`.
fn json_line(model: &Path, mut value: serde_json::Value) -> String {
    value["file"] = serde_json::Value::String(model.display().to_string());
    serde_json::to_string(&value).expect("JSON serialises") + "\n"
}

/// A GitHub Actions workflow command (`::error file=F,title=T::message`),
/// with the escaping GitHub's runner expects.
fn github_line(level: &str, model: &Path, title: &str, msg: &str) -> String {
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    format!("::{level} file={},title={}::{}\n", prop(&model.display().to_string()), prop(title), data(msg))
}

/// An input error of a single-model `report`/`check --format github` as an
/// annotation too (the one line on stderr and exit 2 stay).
fn annotate_failure(c: &CommonArgs, model: &Path, f: &Failure) {
    if c.format() == Format::Github {
        let msg = f.msg.strip_prefix(&format!("{}: ", model.display())).unwrap_or(&f.msg);
        emit(&github_line("error", model, "align: cannot check the model", msg));
    }
}

/// `check --format github`: an error annotation per failing dim, a notice
/// per pinned unaligned dim (an error with --strict), then the verdict line.
fn github_check(model: &Path, k: &report::Check, strict: bool) -> String {
    let mut s = String::new();
    for o in &k.offenders {
        s += &github_line(
            "error",
            model,
            "align: unaligned channels",
            &format!("{}, not a multiple of {}: align pads it to {}", o.what(), k.multiple, o.padded_to),
        );
    }
    for o in &k.unanalysed {
        s += &github_line(
            "error",
            model,
            "align: unanalysed channels",
            &format!(
                "{}, not a multiple of {}, and align cannot follow it: {}",
                o.what(),
                k.multiple,
                o.unanalysed.join("; ")
            ),
        );
    }
    for o in &k.pinned {
        s += &github_line(
            if strict { "error" } else { "notice" },
            model,
            "align: pinned channels",
            &format!("{}, not a multiple of {}, pinned: {}", o.what(), k.multiple, o.pinned.join("; ")),
        );
    }
    let verdict = k.text();
    s += &format!("{}: {}", model.display(), verdict.lines().last().map(|l| format!("{l}\n")).unwrap_or_default());
    s
}

/// `report --format github`: the text report in a collapsible log group.
fn github_report(model: &Path, r: &report::Report) -> String {
    format!("::group::align report {}\n{}::endgroup::\n", model.display(), r.text())
}

/// The default output path: `<stem>.aligned.onnx` beside the input.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    input.with_file_name(format!("{stem}.aligned.onnx"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let parent = p.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// A spinner on stderr naming the running stage and its elapsed time, and a
/// bar of the comparisons done while verification runs; shown only when
/// stderr is a terminal (indicatif hides itself otherwise) and neither
/// `--quiet` nor `--json` is given.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(enabled: bool) -> Progress {
        use std::io::IsTerminal;
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(Self::spinner());
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress(Some(pb))
    }
    fn stage(&self, msg: &str) {
        if let Some(pb) = &self.0 {
            if pb.length().is_some() {
                pb.set_style(Self::spinner());
                pb.unset_length();
            }
            pb.set_message(msg.to_string());
        }
    }
    fn spinner() -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template")
    }
    /// `done` of `total` comparisons: the spinner becomes a bar.
    fn count(&self, done: usize, total: usize) {
        if let Some(pb) = &self.0 {
            if pb.length() != Some(total as u64) {
                let bar = "{spinner} {msg} [{bar:30}] {pos}/{len} comparisons ({elapsed}, ~{eta} left)";
                pb.set_style(
                    indicatif::ProgressStyle::with_template(bar).expect("valid template").progress_chars("=> "),
                );
                pb.set_length(total as u64);
            }
            pb.set_position(done as u64);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

fn align(a: AlignArgs) -> Result<u8, Failure> {
    let input = a.model.clone().expect("clap requires MODEL");
    let bad = |e: Error| fail(&input, e);
    let shapes = parse_shapes(&a.shared.input_shape).map_err(bad)?;
    let pass_list = Pass::parse_list(&a.passes).map_err(bad)?;
    let output = a.output.clone().unwrap_or_else(|| default_output(&input));
    if same_file(&input, &output) {
        return Err(bad(Error::model(format!(
            "output '{}' is the input file; align never overwrites its input",
            output.display()
        ))));
    }
    let out_dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !out_dir.is_dir() {
        return Err(bad(Error::model(format!("output folder '{}' does not exist", out_dir.display()))));
    }
    if output.is_dir() {
        return Err(bad(Error::model(format!("output '{}' is a directory", output.display()))));
    }
    let progress = Progress::new(!a.quiet && !a.shared.json);
    progress.stage(&format!("loading {}", input.display()));
    let t = Instant::now();
    let (proto, _) = crate::onnx::load(&input).map_err(bad)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let cfg = Config {
        options: Options {
            multiple: a.shared.multiple as usize,
            input_shapes: shapes,
            deconv: true,
            slice_pinned: a.shared.slice_pinned,
            max_growth: a.shared.max_growth,
        },
        passes: pass_list,
        verify: if a.no_verify { None } else { Some(a.verify.options().map_err(bad)?) },
    };
    let stage = |msg: &str| progress.stage(msg);
    let (original, mut out) = pipeline::rewrite(proto, &cfg, &stage).map_err(bad)?;
    out.summary.millis.insert("load", load_ms);
    out.summary.input = Some(input.display().to_string());
    // Written to a temporary file beside the output first; verification
    // reads that file back, so what is checked is the bytes that land, and
    // the rewritten weights need not stay in memory next to tract's models.
    progress.stage(&format!("writing {}", output.display()));
    let t = Instant::now();
    let staged = crate::onnx::stage(&out.model, &output, crate::onnx::PROTOBUF_LIMIT).map_err(bad)?;
    out.summary.millis.insert("save", t.elapsed().as_secs_f64() * 1e3);
    if let Some(original) = original {
        let candidate = if staged.is_inline() {
            drop(std::mem::take(&mut out.model));
            crate::onnx::load(staged.temp_path()).map_err(bad)?.0
        } else {
            std::mem::take(&mut out.model) // external data is found by its final name: verify in memory
        };
        let count = |done: usize, total: usize| progress.count(done, total);
        pipeline::verify_into(&mut out.summary, &original, &candidate, &out.layout, &cfg, &stage, &count)
            .map_err(bad)?;
    }
    let failure = out.failure();
    let passed = failure.is_none();
    if passed {
        staged.commit().map_err(bad)?;
        out.summary.output = Some(output.display().to_string());
    } else {
        drop(staged); // removes the temporary files
    }
    drop(progress);
    let summary = out.summary;
    if a.shared.json {
        emit(&(serde_json::to_string_pretty(&summary).expect("summary serialises") + "\n"));
    } else if !a.quiet {
        eprint!("{}", pipeline::summary_text(&summary));
    }
    if let Some(why) = failure {
        return Err(Failure {
            code: 1,
            msg: format!("{}: verification failed: {why}; nothing was written", input.display()),
        });
    }
    Ok(0)
}
