//! What ordinary code and tests name, reached through the prelude alone.
use eventflow::prelude::*;

#[allow(dead_code)]
struct Uses {
    id: EventId,
    status: Option<OutcomeStatus>,
    kind: HandlerErrorKind,
    publish: Option<PublishError>,
    redelivery: Option<Redelivery>,
    registry: &'static Registry,
    operation: Operation,
    health: Option<HealthChecker>,
    verdict: HealthStatus,
    recorder: Recorder,
    redis: RedisConfig,
    run_status: Option<RunStatus>,
    stop: Option<StopReason>,
    signal: Option<Signal>,
    step: Option<StepDef>,
    options: StepOptions,
    outputs: Option<TaskOutputs>,
    each: Option<ForEachInput>,
    run: Option<PipelineRun>,
}

fn main() {
    let uses = Uses {
        id: EventId::new_v4(),
        status: None,
        kind: HandlerErrorKind::Failed,
        publish: None,
        redelivery: None,
        registry: Registry::global(),
        operation: Operation::Create,
        health: None,
        verdict: HealthStatus::Healthy,
        recorder: Recorder::new(),
        redis: RedisConfig::new("redis://127.0.0.1:6379/0"),
        run_status: None,
        stop: None,
        signal: None,
        step: None,
        options: StepOptions::DEFAULT,
        outputs: None,
        each: None,
        run: None,
    };
    assert_eq!(uses.kind, HandlerErrorKind::Failed);
}
