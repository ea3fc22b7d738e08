//! Probes compared while the three runs of a trial are under way.
//!
//! A probe tensor that were a graph output would stay alive until its run
//! ends, so comparing every kept tensor would hold them all at once. Instead
//! each probe gets a [`Tap`]: a tract op that reads the tensor and outputs a
//! scalar (the tap's scalar is the graph output, so tract keeps the tap and
//! never fuses the probe away). The original, the candidate and the
//! perturbed original run at the same time on their own threads, each
//! through `run_plan_with_eval`; when a run reaches a tap it hands a copy of
//! the tensor to the [`Exchange`], except the run that completes the set of
//! three: it compares its own tensor in place with the two copies
//! ([`super::probe::Tracked::add`]) and drops them. The three plans visit the network in about the same order, so few probes are
//! in flight; a run that gets more than [`IN_FLIGHT`] bytes ahead waits (for
//! a bounded time, so nothing can deadlock) for the others to catch up.

use super::probe::Tracked;
use super::*;
use std::sync::Condvar;
use std::time::Duration;
use tract_onnx::tract_core;
use tract_onnx::tract_core::internal::{EvalContext, EvalOp, Op, OpState, StaticName, TypedOp};

/// Bytes of probe copies the three runs may hold before a run that is ahead
/// waits for the others.
pub const IN_FLIGHT: usize = 8 << 20;

/// How long a run that is ahead waits at most, per probe, before going on.
const PATIENCE: Duration = Duration::from_millis(500);

/// Reads probe `0` and outputs a scalar; evaluated by the runner's hook.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct Tap(pub usize);

impl Op for Tap {
    fn name(&self) -> StaticName {
        "AlignTap".into()
    }
    tract_core::op_as_typed_op!();
}

impl EvalOp for Tap {
    tract_core::not_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, _inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(tensor0(0f32).into_tvalue()))
    }
}

impl TypedOp for Tap {
    tract_core::as_op!();

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::scalar_fact()))
    }
}

/// Wires a tap on each outlet of `probes` (positions in `m`'s outputs) and
/// makes the outputs the taps' scalars followed by `keep`. Taps come first
/// so that tract's plan, which orders the network from its outputs, runs
/// each tap as soon as its tensor exists: the copy is handed over then, and
/// the tensor is not kept alive until the end of the run.
pub(crate) fn wire(m: &mut TypedModel, keep: &[usize], probes: &[usize]) -> TractResult<()> {
    let outlets = m.output_outlets()?.to_vec();
    let mut outs: Vec<OutletId> = vec![];
    for (j, &i) in probes.iter().enumerate() {
        outs.push(m.wire_node(format!("align.tap.{j}"), Tap(j), &[outlets[i]])?[0]);
    }
    outs.extend(keep.iter().map(|&i| outlets[i]));
    m.select_output_outlets(&outs)
}

/// Which of the three runs of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    Original = 0,
    Candidate = 1,
    Perturbed = 2,
}

#[derive(Default)]
struct Slots {
    held: Vec<[Option<Tensor>; 3]>,
    /// Bytes held, in all and per run (copies waiting for the other runs).
    bytes: usize,
    by_run: [usize; 3],
}

impl Slots {
    /// Run `r` is ahead: it holds more unmatched copies than some other run
    /// and no fewer than any. Only a run that is ahead waits, so the runs
    /// behind always go on and nothing waits on a run that waits.
    fn ahead(&self, r: usize) -> bool {
        let mine = self.by_run[r];
        mine > 0 && self.by_run.iter().all(|&o| o <= mine) && self.by_run.iter().any(|&o| o < mine)
    }
}

/// Units of a verification done, reported to its [`Progress`] observer.
pub(crate) struct Count<'p> {
    done: std::sync::atomic::AtomicUsize,
    total: usize,
    progress: Progress<'p>,
}

impl<'p> Count<'p> {
    pub(crate) fn new(total: usize, progress: Progress<'p>) -> Count<'p> {
        progress(0, total);
        Count { done: 0.into(), total, progress }
    }

    /// One more unit done.
    pub(crate) fn tick(&self) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (self.progress)(done.min(self.total), self.total);
    }
}

/// Where the runs of one trial meet.
pub(crate) struct Exchange<'t> {
    slots: Mutex<Slots>,
    turn: Condvar,
    tracked: &'t [Mutex<Tracked>],
    tol: Tolerance,
    /// Which probes this trial compares (the others' taps only run).
    active: &'t [bool],
    /// The first comparison error.
    error: Mutex<Option<Error>>,
    count: &'t Count<'t>,
}

impl<'t> Exchange<'t> {
    pub(crate) fn new(
        tracked: &'t [Mutex<Tracked>],
        tol: Tolerance,
        active: &'t [bool],
        count: &'t Count<'t>,
    ) -> Exchange<'t> {
        let held = (0..tracked.len()).map(|_| [None, None, None]).collect();
        Exchange {
            slots: Mutex::new(Slots { held, ..Slots::default() }),
            turn: Condvar::new(),
            tracked,
            tol,
            active,
            error: Mutex::new(None),
            count,
        }
    }

    /// Run `run` reached probe `j` holding `t`. The run that completes the
    /// set compares its own tensor in place; the others leave a copy.
    fn deposit(&self, j: usize, run: Run, t: &Tensor) {
        let size = |t: &Tensor| t.len() * t.datum_type().size_of();
        let mut s = self.slots.lock().expect("not poisoned");
        let r = run as usize;
        if (0..3).all(|k| k == r || s.held[j][k].is_some()) {
            let mut set = std::mem::take(&mut s.held[j]);
            for (k, t) in set.iter().enumerate().filter(|(k, _)| *k != r) {
                let t = t.as_ref().expect("held");
                s.bytes -= size(t);
                s.by_run[k] -= size(t);
            }
            drop(s);
            self.turn.notify_all();
            let at = |k: usize| if k == r { t } else { set[k].as_ref().expect("held") };
            let result = self.tracked[j].lock().expect("not poisoned").add(at(0), at(1), Some(at(2)), self.tol);
            set.iter_mut().for_each(|t| drop(t.take()));
            self.count.tick();
            if let Err(e) = result {
                self.error.lock().expect("not poisoned").get_or_insert(e);
            }
            return;
        }
        s.bytes += size(t);
        s.by_run[r] += size(t);
        s.held[j][r] = Some(t.clone());
        // ahead of the others: give them time to catch up
        let mut waited = Duration::ZERO;
        while s.bytes > IN_FLIGHT && s.ahead(run as usize) && waited < PATIENCE {
            let t0 = std::time::Instant::now();
            s = self.turn.wait_timeout(s, PATIENCE - waited).expect("not poisoned").0;
            waited += t0.elapsed();
        }
    }

    /// Runs `plan` on `inputs` as run `run`, handing every tap's tensor over.
    pub(crate) fn run(&self, plan: &Runnable, inputs: TVec<TValue>, run: Run) -> TractResult<Vec<Tensor>> {
        let mut state = tract_core::internal::SimpleState::new(plan)?;
        let out = state.run_plan_with_eval(
            inputs,
            |ctx: &EvalContext, st: Option<&mut (dyn OpState + 'static)>, node: &TypedNode, inputs: TVec<TValue>| {
                if let Some(tap) = node.op_as::<Tap>() {
                    if self.active[tap.0] {
                        self.deposit(tap.0, run, &inputs[0]);
                    }
                    return Ok(tvec!(tensor0(0f32).into_tvalue()));
                }
                tract_core::plan::eval(ctx, st, node, inputs)
            },
        )?;
        Ok(out.into_iter().map(|x| x.into_tensor()).collect())
    }

    /// The first error a comparison met, if any.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error.lock().expect("not poisoned").take()
    }
}
