//! Steps of pipelines: what a step returns, the context it runs in, and its settings.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::error::HandlerError;
use crate::executor::{Executor, ExecutorConfig, ThreadPool};
use crate::retry::RetryPolicy;
use crate::source::SourceLocation;

use super::datum::{Datum, Input};
use super::slot::{Filled, Slot, Vacant};

/// The error a step raised: volnux's exception. Any `std::error::Error` converts, so `?`
/// works in `process`; [`RetryPolicy::retry_on`] looks at its type.
pub type StepError = HandlerError;

/// How a step ended, short of an error: volnux's `(True, result)` / `(False, message)`.
#[derive(Debug)]
pub enum Done<T> {
    /// Succeeded with a value, passed to the next step.
    Success(T),
    /// Failed with a message (not an exception: not retried).
    Failure(String),
    /// Left by [`ExecutionContext::goto`].
    Goto,
}

/// What `process` returns: `Outcome::success(v)`, `Outcome::failure("why")`, or `Err(e)`
/// (an exception). `Outcome::success` and `Outcome::failure` come from [`OutcomeExt`].
pub type Outcome<T> = Result<Done<T>, StepError>;

/// `Outcome::success(..)` and `Outcome::failure(..)`.
pub trait OutcomeExt<T> {
    /// A success carrying `value`.
    fn success(value: T) -> Self;
    /// A failure with a message.
    fn failure(message: impl std::fmt::Display) -> Self;
}

impl<T> OutcomeExt<T> for Outcome<T> {
    fn success(value: T) -> Self {
        Ok(Done::Success(value))
    }
    fn failure(message: impl std::fmt::Display) -> Self {
        Ok(Done::Failure(message.to_string()))
    }
}

/// Whether to skip a step ([`Process::can_bypass`]): volnux's `can_bypass_current_event`.
pub enum Bypass {
    /// Run the step.
    No,
    /// Skip it; `data` goes to the next step as this step's output, `reason` to the trace.
    Skip {
        /// The step's output in its place (its output type).
        data: Box<dyn Any + Send + Sync>,
        /// Why.
        reason: String,
    },
}

impl Bypass {
    /// Skips the step, passing `data` on.
    pub fn skip<T: Any + Send + Sync>(data: T, reason: impl Into<String>) -> Self {
        Bypass::Skip {
            data: Box::new(data),
            reason: reason.into(),
        }
    }
}

/// A class-based pipeline event: `#[derive(Event)]` with `#[event(...)]` and this trait.
///
/// ```
/// use eventflow_runtime::pipeline::{ExecutionContext, Outcome, OutcomeExt, Process};
/// #[derive(Default)]
/// struct Double;
/// impl Process for Double {
///     type Input = u32;
///     type Output = u32;
///     async fn process(&self, _ctx: &mut ExecutionContext, n: u32) -> Outcome<u32> {
///         Outcome::success(n * 2)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a pipeline event but does not implement `Process`",
    label = "needs `impl Process for {Self}`",
    note = "write `impl Process for {Self} {{ type Input = ..; type Output = ..; async fn process(&self, ctx: &mut ExecutionContext, input: Self::Input) -> Outcome<Self::Output> {{ .. }} }}`"
)]
pub trait Process: Send + Sync + 'static {
    /// What the step takes.
    type Input: Clone + Send + Sync + 'static;
    /// What it passes on.
    type Output: Send + Sync + 'static;
    /// Runs the step.
    fn process(
        &self,
        ctx: &mut ExecutionContext,
        input: Self::Input,
    ) -> impl Future<Output = Outcome<Self::Output>> + Send;
    /// Consulted before the step runs.
    fn can_bypass(&self, _ctx: &ExecutionContext) -> Bypass {
        Bypass::No
    }
}

/// How a step with several tasks (a parallel group, or `for_each`) decides its success:
/// volnux's `EventExecutionEvaluationState`.
///
/// | state | succeeds when | with zero tasks | on the first failed task |
/// | --- | --- | --- | --- |
/// | `SuccessOnAllEventsSuccess` (default) | every task succeeded | success | the others run on |
/// | `FailureForPartialError` | no task failed | success | fails at once; the others are cancelled |
/// | `SuccessForPartialSuccess` | at least one task succeeded | failure | the others run on |
/// | `FailureForAllEventsFailure` | not every task failed | success | the others run on |
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum EvaluationState {
    /// Success only if all tasks succeed.
    #[default]
    SuccessOnAllEventsSuccess,
    /// Failure as soon as any task fails.
    FailureForPartialError,
    /// Success if at least one task succeeds.
    SuccessForPartialSuccess,
    /// Failure only if all tasks fail.
    FailureForAllEventsFailure,
}

impl EvaluationState {
    /// The verdict on `ok` successes out of `total` tasks.
    pub fn decide(self, ok: usize, total: usize) -> bool {
        let failed = total - ok.min(total);
        match self {
            EvaluationState::SuccessOnAllEventsSuccess
            | EvaluationState::FailureForPartialError => failed == 0,
            EvaluationState::SuccessForPartialSuccess => ok > 0,
            EvaluationState::FailureForAllEventsFailure => total == 0 || failed < total,
        }
    }
}

/// A step's settings: `#[event(...)]`, or set per pipeline step.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// Where the step runs.
    pub executor: Executor,
    /// Its pool's settings.
    pub executor_config: ExecutorConfig,
    /// Retries of exceptions.
    pub retry: RetryPolicy,
    /// How a step of several tasks decides.
    pub evaluation: EvaluationState,
    /// Stop the pipeline after this step if it raised.
    pub stop_on_exception: bool,
    /// Stop the pipeline after this step if it succeeded.
    pub stop_on_success: bool,
    /// Stop the pipeline after this step if it failed.
    pub stop_on_error: bool,
    /// Bound on one attempt.
    pub timeout: Option<Duration>,
    /// The descriptors the step may `goto` (`#[event(goto = [3, 5])]`). When given, a
    /// pipeline must have a branch for each, and may have no other goto branch on the step:
    /// both are build errors. Empty: not checked.
    pub gotos: std::borrow::Cow<'static, [u32]>,
}

impl StepOptions {
    /// The defaults: `Inline`, no retry, all-success, no stop condition.
    pub const DEFAULT: StepOptions = StepOptions {
        executor: Executor::Inline,
        executor_config: ExecutorConfig::new(),
        retry: RetryPolicy::NEVER,
        evaluation: EvaluationState::SuccessOnAllEventsSuccess,
        stop_on_exception: false,
        stop_on_success: false,
        stop_on_error: false,
        timeout: None,
        gotos: std::borrow::Cow::Borrowed(&[]),
    };
}

impl Default for StepOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The values the steps of one run share.
pub(crate) type SharedMap = Arc<RwLock<HashMap<String, Arc<dyn Any + Send + Sync>>>>;

/// A pending `goto`.
pub(crate) struct GotoRequest {
    pub(crate) descriptor: u32,
    pub(crate) success: bool,
    pub(crate) result: Datum,
    pub(crate) reason: String,
}

/// What steps share during one run, and what one step asks of the run.
///
/// One pointer wide: it is handed to each step and back, so it is cheap to move.
pub struct ExecutionContext {
    state: Box<State>,
}

struct State {
    /// Made on the first `set` of the run (so that a run whose steps share nothing pays
    /// nothing for it), then handed from step to step.
    shared: OnceLock<SharedMap>,
    goto: Option<Box<GotoRequest>>,
    step: StepRef,
    attempt: u32,
}

/// Which step a context is for.
enum StepRef {
    /// A step of a pipeline run: one context goes from step to step, so the name is looked
    /// up when asked for rather than copied in at each step.
    InRun {
        names: Arc<super::Inner>,
        node: u32,
        member: u32,
    },
    /// A step run on its own (in a Process executor's child).
    Alone(Arc<str>),
    /// Kept for the next run ([`ExecutionContext::recycle`]).
    Idle,
}

std::thread_local! {
    /// A context's state from a run that ended on this thread, for the next run to reuse:
    /// one allocation fewer per run.
    static SPARE: std::cell::Cell<Option<Box<State>>> = const { std::cell::Cell::new(None) };
}

impl ExecutionContext {
    /// A context for a step run on its own.
    #[cfg_attr(not(unix), allow(dead_code))] // only a Process executor's child runs one
    pub(crate) fn new(shared: Option<SharedMap>, step: Arc<str>, attempt: u32) -> Self {
        ExecutionContext {
            state: Box::new(State {
                shared: shared.map_or_else(OnceLock::new, OnceLock::from),
                goto: None,
                step: StepRef::Alone(step),
                attempt,
            }),
        }
    }

    /// A context for the steps of a run, placed on each with [`place`](Self::place).
    pub(super) fn in_run(names: Arc<super::Inner>) -> Self {
        let step = StepRef::InRun {
            names,
            node: 0,
            member: 0,
        };
        // (`try_with`: a run may end while the thread's locals are being torn down.)
        let state = match SPARE.try_with(std::cell::Cell::take).ok().flatten() {
            // The rest was emptied by `recycle`.
            Some(mut spare) => {
                spare.step = step;
                spare
            }
            None => Box::new(State {
                shared: OnceLock::new(),
                goto: None,
                step,
                attempt: 0,
            }),
        };
        ExecutionContext { state }
    }

    /// Ends the context's run: what it holds is dropped now, and its allocation is kept
    /// for the next run on this thread. The pipeline it referred to is handed back.
    pub(super) fn recycle(self) -> Option<Arc<super::Inner>> {
        let mut state = self.state;
        let step = std::mem::replace(&mut state.step, StepRef::Idle);
        state.shared = OnceLock::new();
        state.goto = None;
        state.attempt = 0;
        let _ = SPARE.try_with(|spare| spare.set(Some(state)));
        match step {
            StepRef::InRun { names, .. } => Some(names),
            _ => None,
        }
    }

    /// Points the context at a step and attempt of its run, with the run's shared values.
    #[inline]
    pub(crate) fn place(&mut self, at: (u32, u32), attempt: u32, shared: Option<&SharedMap>) {
        let state = &mut *self.state;
        if let StepRef::InRun { node, member, .. } = &mut state.step {
            (*node, *member) = at;
        }
        state.attempt = attempt;
        state.goto = None;
        if let Some(s) = shared
            && state.shared.get().is_none()
        {
            let _ = state.shared.set(s.clone());
        }
    }

    /// The `goto` the step asked for, if it did.
    pub(crate) fn take_goto(&mut self) -> Option<Box<GotoRequest>> {
        self.state.goto.take()
    }

    /// The values steps stored, if any did.
    #[inline]
    pub(crate) fn shared_map(&self) -> Option<&SharedMap> {
        self.state.shared.get()
    }

    /// Stores a value for later steps (and their `can_bypass`). Values stay with the run
    /// whatever the step then returns; the one exception is an attempt that panics or
    /// times out before the run's first value was stored, whose values are lost with it.
    pub fn set<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        self.state
            .shared
            .get_or_init(SharedMap::default)
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.into(), Arc::new(value));
    }

    /// A value an earlier step stored, if it is a `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self, key: &str) -> Option<T> {
        self.state
            .shared
            .get()?
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(|v| v.downcast_ref::<T>().cloned())
    }

    /// The step being run.
    pub fn step(&self) -> &str {
        match &self.state.step {
            StepRef::InRun {
                names,
                node,
                member,
            } => names.member_name(*node, *member),
            StepRef::Alone(name) => name,
            StepRef::Idle => "",
        }
    }

    /// The attempt, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.state.attempt
    }

    /// Ends the step and moves execution to its branch `descriptor` (0 is the failure
    /// branch, 1 the success branch, other numbers are goto targets), passing `result`
    /// on. Return what it returns: `return ctx.goto(3, true, order, "premium customer");`.
    /// The reason defaults to `manual` when empty.
    pub fn goto<T, O>(
        &mut self,
        descriptor: u32,
        success: bool,
        result: T,
        reason: impl Into<String>,
    ) -> Outcome<O>
    where
        T: Any + Send + Sync,
    {
        let reason = reason.into();
        self.state.goto = Some(Box::new(GotoRequest {
            descriptor,
            success,
            result: Datum::new(result),
            reason: if reason.is_empty() {
                "manual".into()
            } else {
                reason
            },
        }));
        Ok(Done::Goto)
    }
}

/// One attempt's result, type-erased.
pub(crate) enum Attempt {
    Success(Datum),
    Failure(String),
    Exception(StepError),
    Goto(Box<GotoRequest>),
}

/// Takes the step's input out of the datum (a clone, or the value itself when given) and
/// makes the step's future in the slot it is given; the future gives the context back, with
/// what the step stored in it.
type RunFn =
    dyn for<'a, 'b> Fn(Input<'b>, ExecutionContext, Vacant<'a>) -> Filled<'a> + Send + Sync;

/// A [`RunFn`] from a closure (which gets its signature from the bound).
fn run_fn<F>(f: F) -> Arc<RunFn>
where
    F: for<'a, 'b> Fn(Input<'b>, ExecutionContext, Vacant<'a>) -> Filled<'a>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// Bytes a step's future may take and still be held by the run itself rather than on the
/// heap (larger ones are boxed).
const STEP_FUTURE_INLINE: usize = 256;

/// A step's future, held in the run's own state when it fits (no allocation per step).
pub(crate) type StepFuture =
    stackfuture::StackFuture<'static, (Attempt, ExecutionContext), STEP_FUTURE_INLINE>;

/// A step that is over before it began (its input was not what it takes).
fn ready(attempt: Attempt, ctx: ExecutionContext) -> StepFuture {
    StepFuture::from(std::future::ready((attempt, ctx)))
}
type BypassFn = dyn Fn(&ExecutionContext) -> Bypass + Send + Sync;

/// How a step's input and output cross processes (the Process executor).
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) encode_input: EncodeFn,
    pub(crate) decode_input: DecodeFn,
    pub(crate) encode_output: EncodeFn,
    pub(crate) decode_output: DecodeFn,
}

type EncodeFn = fn(&Datum) -> Result<Vec<u8>, String>;

fn encode<T: serde::Serialize + 'static>(d: &Datum) -> Result<Vec<u8>, String> {
    let v = d
        .downcast_ref::<T>()
        .ok_or_else(|| format!("not a `{}`", std::any::type_name::<T>()))?;
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

fn decode<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    b: &[u8],
) -> Result<Datum, String> {
    serde_json::from_slice::<T>(b)
        .map(Datum::new)
        .map_err(|e| format!("not a `{}`: {e}", std::any::type_name::<T>()))
}
type DecodeFn = fn(&[u8]) -> Result<Datum, String>;

/// A step as a pipeline runs it: built from a [`Process`] type or a function.
#[derive(Clone)]
pub struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) input: (TypeId, &'static str),
    pub(crate) output: (TypeId, &'static str),
    pub(crate) run: Arc<RunFn>,
    pub(crate) bypass: Option<Arc<BypassFn>>,
    pub(crate) options: StepOptions,
    pub(crate) pool: Option<ThreadPool>,
    pub(crate) codec: Option<Codec>,
    pub(crate) processes: Option<Arc<super::process::ProcessPool>>,
}

#[inline]
fn erase<O: Send + Sync + 'static>(
    outcome: Outcome<O>,
    mut ctx: ExecutionContext,
) -> (Attempt, ExecutionContext) {
    let attempt = match outcome {
        Ok(Done::Success(v)) => Attempt::Success(Datum::new(v)),
        Ok(Done::Failure(m)) => Attempt::Failure(m),
        Ok(Done::Goto) => match ctx.take_goto() {
            Some(g) => Attempt::Goto(g),
            None => Attempt::Exception(HandlerError::msg(
                "the step returned Done::Goto without calling ctx.goto",
            )),
        },
        Err(e) => Attempt::Exception(e),
    };
    (attempt, ctx)
}

#[inline]
fn input_of<I: Clone + 'static>(data: Input<'_>, step: &str) -> Result<I, Attempt> {
    data.get::<I>().ok_or_else(|| {
        Attempt::Exception(HandlerError::permanent_msg(format!(
            "step `{step}` expects a `{}`",
            std::any::type_name::<I>()
        )))
    })
}

impl StepDef {
    /// A step from a [`Process`] value.
    pub fn from_process<P: Process>(
        name: impl Into<Arc<str>>,
        process: P,
        options: StepOptions,
    ) -> Self {
        let name: Arc<str> = name.into();
        let process = Arc::new(process);
        let p2 = process.clone();
        let step = name.clone();
        let run = run_fn(
            move |data, mut ctx, slot| match input_of::<P::Input>(data, &step) {
                Ok(input) => {
                    let process = process.clone();
                    slot.fill(StepFuture::from_or_box(async move {
                        let outcome = process.process(&mut ctx, input).await;
                        erase(outcome, ctx)
                    }))
                }
                Err(a) => slot.fill(ready(a, ctx)),
            },
        );
        StepDef::new::<P::Input, P::Output>(name, run, options)
            .with_bypass(Arc::new(move |ctx| p2.can_bypass(ctx)))
    }

    /// A step from an async function of the input (and the context).
    pub fn from_fn<I, O, F, Fut>(name: impl Into<Arc<str>>, options: StepOptions, f: F) -> Self
    where
        I: Clone + Send + Sync + 'static,
        O: Send + Sync + 'static,
        F: Fn(ExecutionContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (ExecutionContext, Outcome<O>)> + Send + 'static,
    {
        let name: Arc<str> = name.into();
        let step = name.clone();
        // The input is taken and the function called here. The future is wrapped by `map`
        // rather than an `async` block, which would hold it twice over.
        let run = run_fn(move |data, ctx, slot| match input_of::<I>(data, &step) {
            Ok(input) => {
                let fut = f(ctx, input);
                slot.fill(StepFuture::from_or_box(futures::FutureExt::map(
                    fut,
                    |(ctx, outcome)| erase(outcome, ctx),
                )))
            }
            Err(a) => slot.fill(ready(a, ctx)),
        });
        StepDef::new::<I, O>(name, run, options)
    }

    /// A step that runs an external program (basefunctions' CMD mode): the input goes to
    /// its standard input as JSON, and its standard output is read back as the JSON of the
    /// output. A non-zero exit is a failure carrying the program's standard error; a
    /// program that cannot start, or whose output is not an `O`, is an exception. The
    /// step's `timeout` kills the program.
    ///
    /// ```
    /// use eventflow_runtime::pipeline::{StepDef, StepOptions};
    /// let upper = StepDef::command::<String, String>(
    ///     "upper",
    ///     "python3",
    ///     ["-c", "import json,sys; print(json.dumps(json.load(sys.stdin).upper()))"],
    ///     StepOptions::DEFAULT,
    /// );
    /// assert_eq!(upper.name(), "upper");
    /// ```
    pub fn command<I, O>(
        name: impl Into<Arc<str>>,
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
        options: StepOptions,
    ) -> Self
    where
        I: serde::Serialize + Clone + Send + Sync + 'static,
        O: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let name: Arc<str> = name.into();
        let program: Arc<str> = program.into().into();
        let args: Arc<[String]> = args.into_iter().map(Into::into).collect();
        let step = name.clone();
        let run = run_fn(move |data, ctx, slot| {
            let input = match input_of::<I>(data, &step) {
                Ok(i) => i,
                Err(a) => return slot.fill(ready(a, ctx)),
            };
            let (program, args, step) = (program.clone(), args.clone(), step.clone());
            slot.fill(StepFuture::from_or_box(async move {
                let attempt = run_command::<I, O>(&step, &program, &args, &input).await;
                (attempt, ctx)
            }))
        });
        StepDef::new::<I, O>(name, run, options)
    }

    fn new<I: 'static, O: 'static>(name: Arc<str>, run: Arc<RunFn>, options: StepOptions) -> Self {
        StepDef {
            pool: (options.executor == Executor::ThreadPool)
                .then(|| ThreadPool::new(options.executor_config.clone())),
            processes: (options.executor == Executor::Process).then(|| {
                Arc::new(super::process::ProcessPool::new(
                    options.executor_config.clone(),
                ))
            }),
            codec: None,
            name,
            input: (TypeId::of::<I>(), std::any::type_name::<I>()),
            output: (TypeId::of::<O>(), std::any::type_name::<O>()),
            run,
            bypass: None,
            options,
        }
    }

    /// Starts the step as a future of its own, on the heap (for the executors that need
    /// one): it ends with `None` only if polled after it ended. A panic while starting it
    /// is the caller's to catch.
    pub(crate) fn start(
        &self,
        data: Input<'_>,
        ctx: ExecutionContext,
    ) -> impl Future<Output = Option<(Attempt, ExecutionContext)>> + Send + 'static {
        let mut slot = Box::pin(Slot::new());
        slot.as_mut().fill_with(|v| (self.run)(data, ctx, v));
        std::future::poll_fn(move |cx| match slot.as_mut().poll(cx) {
            Some(p) => p.map(Some),
            None => std::task::Poll::Ready(None),
        })
    }

    /// Lets the step's input and output cross processes as JSON, which the Process
    /// executor needs (`#[event(executor = Process)]` calls it).
    pub fn with_serde<I, O>(mut self) -> Self
    where
        I: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        O: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.codec = Some(Codec {
            encode_input: encode::<I>,
            decode_input: decode::<I>,
            encode_output: encode::<O>,
            decode_output: decode::<O>,
        });
        self
    }

    /// Child processes this step started so far (Process executor).
    pub fn processes_started(&self) -> usize {
        self.processes.as_ref().map_or(0, |p| p.spawned())
    }

    fn with_bypass(mut self, f: Arc<BypassFn>) -> Self {
        self.bypass = Some(f);
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's settings.
    pub fn options(&self) -> &StepOptions {
        &self.options
    }

    /// Changes the step's settings (for this pipeline only).
    pub fn with_options(mut self, options: StepOptions) -> Self {
        self.pool = (options.executor == Executor::ThreadPool)
            .then(|| ThreadPool::new(options.executor_config.clone()));
        self.processes = (options.executor == Executor::Process).then(|| {
            Arc::new(super::process::ProcessPool::new(
                options.executor_config.clone(),
            ))
        });
        self.options = options;
        self
    }
}

/// A registered pipeline event, `#[derive(Event)]` with pipeline options or `#[event]` on
/// a function.
pub struct StepRecord {
    /// Its name, usable in pipelines and Pointy text.
    pub name: &'static str,
    /// The Rust type or function.
    pub type_name: &'static str,
    /// Builds the step.
    pub make: fn() -> StepDef,
    /// Where it was defined.
    pub location: SourceLocation,
}

inventory::collect!(StepRecord);

/// The registered step with this name.
pub fn registered(name: &str) -> Option<&'static StepRecord> {
    inventory::iter::<StepRecord>
        .into_iter()
        .find(|r| r.name == name)
}

/// A type that names a registered step: implemented by `#[derive(Event)]` with pipeline
/// options, so that `.step::<ProcessPayment>()` works.
pub trait PipelineEvent: Process + Default {
    /// The registered name.
    const STEP_NAME: &'static str;
    /// The step's settings from its attribute.
    fn options() -> StepOptions;
    /// The step.
    fn step() -> StepDef {
        StepDef::from_process(Self::STEP_NAME, Self::default(), Self::options())
    }
}

async fn run_command<I, O>(step: &str, program: &str, args: &[String], input: &I) -> Attempt
where
    I: serde::Serialize,
    O: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    use tokio::io::AsyncWriteExt;
    let json = match serde_json::to_vec(input) {
        Ok(j) => j,
        Err(e) => return Attempt::Exception(HandlerError::permanent(e)),
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Attempt::Exception(HandlerError::msg(format!(
                "step `{step}` cannot start `{program}`: {e}"
            )));
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits without reading its input is its own business.
        let _ = stdin.write_all(&json).await;
        drop(stdin);
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => {
            return Attempt::Exception(HandlerError::msg(format!(
                "step `{step}`: waiting for `{program}` failed: {e}"
            )));
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Attempt::Failure(format!("`{program}` exited with {}: {stderr}", out.status));
    }
    match serde_json::from_slice::<O>(&out.stdout) {
        Ok(v) => Attempt::Success(Datum::new(v)),
        Err(e) => Attempt::Exception(HandlerError::permanent_msg(format!(
            "step `{step}`: the output of `{program}` is not a `{}`: {e}",
            std::any::type_name::<O>()
        ))),
    }
}
