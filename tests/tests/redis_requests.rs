//! Requests across processes on Redis: the answer comes back through the asker's reply
//! stream; a late answer is dropped and nothing is left behind.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventflow::testing::Recorder;
use eventflow::{EventBus, Handler, HandlerError, PublishOptions, ReplyError, RetryPolicy};
use eventflow_tests::{
    RedisTest, raw_envelope as raw, redis_or_skip, redis_publisher, start_redis_worker,
    wait_acknowledged, wait_until,
};

fn doubler(calls: Arc<AtomicU32>) -> Handler {
    Handler::replying("double", "calc.double", move |n: u64, _ctx| {
        let calls = calls.clone();
        async move {
            // The first attempt fails: the answer is the retry's.
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(HandlerError::msg("not yet"));
            }
            Ok::<_, HandlerError>(n * 2)
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(0.01, 0.01))
}

async fn reply_keys(t: &RedisTest) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{}:replies:*", t.queue))
        .query_async(&mut t.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_by_a_worker_of_another_process_after_its_retry() {
    let Some(t) = redis_or_skip("request_answered").await else {
        return;
    };
    let calls = Arc::new(AtomicU32::new(0));
    let worker = start_redis_worker(t.config(), &Recorder::new(), doubler(calls.clone())).await;
    let asker = redis_publisher(t.config()).await;
    let env = raw("calc.double", serde_json::json!(21));
    let v: u64 = asker
        .request_envelope(env, PublishOptions::new().timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "answered after the retry");
    // Many at once, each gets its own answer.
    let mut asks = Vec::new();
    for n in 0..50u64 {
        let asker = asker.clone();
        asks.push(tokio::spawn(async move {
            let env = raw("calc.double", serde_json::json!(n));
            let v: u64 = asker
                .request_envelope(env, PublishOptions::new().timeout(Duration::from_secs(10)))
                .await
                .unwrap();
            (n, v)
        }));
    }
    for a in asks {
        let (n, v) = a.await.unwrap();
        assert_eq!(v, n * 2);
    }
    wait_acknowledged(&worker, "every request acknowledged").await;
    // The answers were read off the stream; stopping the asker deletes it.
    asker.shutdown().await.unwrap();
    assert!(reply_keys(&t).await.is_empty(), "no reply stream left");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_times_out_and_its_late_answer_is_dropped_and_expires() {
    let Some(t) = redis_or_skip("request_late").await else {
        return;
    };
    let asker = redis_publisher(t.config()).await;
    // No worker yet: the request times out.
    let env = raw("calc.double", serde_json::json!(5));
    match asker
        .request_envelope::<u64>(
            env,
            PublishOptions::new().timeout(Duration::from_millis(300)),
        )
        .await
    {
        Err(ReplyError::TimedOut { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(300))
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The worker comes and answers; nobody waits for the answer any more.
    let calls = Arc::new(AtomicU32::new(1));
    let worker = start_redis_worker(t.config(), &Recorder::new(), doubler(calls.clone())).await;
    wait_until("the late request handled", || {
        calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    wait_acknowledged(&worker, "the late request acknowledged").await;
    let key = reply_keys(&t).await;
    assert_eq!(key.len(), 1, "the asker's reply stream");
    let mut c = t.conn().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "the reply stream expires on its own: {ttl}");
    // The asker's listener reads and drops the late answer.
    let start = std::time::Instant::now();
    loop {
        let len: u64 = redis::cmd("XLEN")
            .arg(&key[0])
            .query_async(&mut c)
            .await
            .unwrap();
        if len == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the late answer stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A request the asker can still wait for is answered as usual.
    let v: u64 = asker
        .request_envelope(
            raw("calc.double", serde_json::json!(8)),
            PublishOptions::new().timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(v, 16);
    worker.shutdown().await.unwrap();
    asker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_failures_and_never_writes_outside_its_queue() {
    let Some(t) = redis_or_skip("request_failure").await else {
        return;
    };
    let worker = start_redis_worker(
        t.config(),
        &Recorder::new(),
        Handler::replying("refuse", "calc.refuse", |_n: u64, _ctx| async move {
            Err::<u64, _>(HandlerError::permanent_msg("refused on purpose"))
        }),
    )
    .await;
    let asker = redis_publisher(t.config()).await;
    match asker
        .request_envelope::<u64>(
            raw("calc.refuse", serde_json::json!(1)),
            PublishOptions::new().timeout(Duration::from_secs(10)),
        )
        .await
    {
        Err(ReplyError::Failed { handler, error }) => {
            assert_eq!(handler, "refuse");
            assert!(error.contains("refused on purpose"), "{error}");
        }
        other => panic!("expected the handler's failure, got {other:?}"),
    }
    // An entry naming a key outside the queue's reply streams gets no answer there.
    let outside = format!("{}:elsewhere", t.queue);
    let mut env = raw("calc.refuse", serde_json::json!(1));
    env.reply_to = Some(outside.clone());
    asker.publish_envelope(env).await.unwrap();
    wait_acknowledged(&worker, "the entry acknowledged").await;
    let mut c = t.conn().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&outside)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0, "nothing written outside the queue");
    worker.shutdown().await.unwrap();
    asker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_with_no_answer_on_a_bus_that_has_no_handler_times_out_on_redis_too() {
    let Some(t) = redis_or_skip("request_unhandled").await else {
        return;
    };
    let asker: EventBus = redis_publisher(t.config()).await;
    let r = asker
        .request_envelope::<u64>(
            raw("calc.nobody", serde_json::json!(1)),
            PublishOptions::new().timeout(Duration::from_millis(200)),
        )
        .await;
    assert!(matches!(r, Err(ReplyError::TimedOut { .. })), "{r:?}");
    asker.shutdown().await.unwrap();
}
