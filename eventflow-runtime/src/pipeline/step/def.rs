//! A step as a pipeline runs it ([`StepDef`]), and the steps registered by the macros.

use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;

use crate::error::HandlerError;
use crate::executor::{Executor, WorkPool};
use crate::source::SourceLocation;

use super::*;
use crate::pipeline::datum::{Datum, Input};

/// A step as a pipeline runs it: built from a [`Process`] type or a function.
#[derive(Clone)]
pub struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) input: (TypeId, &'static str),
    pub(crate) output: (TypeId, &'static str),
    pub(crate) run: Arc<RunFn>,
    pub(crate) bypass: Option<Arc<BypassFn>>,
    pub(crate) options: StepOptions,
    pub(crate) pool: Option<WorkPool>,
    pub(crate) codec: Option<Codec>,
    pub(crate) processes: Option<Arc<crate::pipeline::process::ProcessPool>>,
}

#[inline]
pub(crate) fn erase<O: Send + Sync + 'static>(
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
pub(crate) fn input_of<I: Clone + 'static>(data: Input<'_>, step: &str) -> Result<I, Attempt> {
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
        StepDef::new::<P::Input, P::Output>(name, run, options).with_bypass(Arc::new(
            move |ctx, data| {
                // An input of another type fails the step when it runs, saying so.
                let input = data.downcast_ref::<P::Input>()?;
                match p2.can_bypass(ctx, input) {
                    Bypass::No => None,
                    Bypass::Skip { data, reason } => Some((Datum::new(data), reason)),
                }
            },
        ))
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
    /// program runs in a process group of its own: the step's `timeout` kills the group,
    /// the program's own children included. At most
    /// [`DEFAULT_MAX_OUTPUT_BYTES`](crate::pipeline::DEFAULT_MAX_OUTPUT_BYTES) of output
    /// are read ([`command_limited`](Self::command_limited) sets another bound); past it
    /// the program is stopped and the attempt fails saying so.
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
        Self::command_limited::<I, O>(
            name,
            program,
            args,
            options,
            crate::pipeline::DEFAULT_MAX_OUTPUT_BYTES,
        )
    }

    /// [`command`](Self::command), reading at most `max_output_bytes` of the program's
    /// standard output.
    pub fn command_limited<I, O>(
        name: impl Into<Arc<str>>,
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
        options: StepOptions,
        max_output_bytes: usize,
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
                let attempt = crate::pipeline::command::run_command::<I, O>(
                    &step,
                    &program,
                    &args,
                    &input,
                    max_output_bytes,
                )
                .await;
                (attempt, ctx)
            }))
        });
        StepDef::new::<I, O>(name, run, options)
    }

    pub(crate) fn new<I: 'static, O: 'static>(
        name: Arc<str>,
        run: Arc<RunFn>,
        options: StepOptions,
    ) -> Self {
        StepDef {
            pool: WorkPool::for_executor(options.executor, &options.executor_config),
            processes: (options.executor == Executor::Process).then(|| {
                Arc::new(crate::pipeline::process::ProcessPool::new(
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
        let mut slot = Box::pin(StepSlot::new());
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

    pub(crate) fn with_bypass(mut self, f: Arc<BypassFn>) -> Self {
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
        self.pool = WorkPool::for_executor(options.executor, &options.executor_config);
        self.processes = (options.executor == Executor::Process).then(|| {
            Arc::new(crate::pipeline::process::ProcessPool::new(
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

impl std::fmt::Debug for StepDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepDef").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StepRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRecord").finish_non_exhaustive()
    }
}
