//! Pointy text.

use super::*;

#[tokio::test]
async fn pointy_text_parses_validates_and_draws() {
    let steps = || {
        vec![
            step("a", |n: u32| Outcome::success(n + 1)),
            step("b", |n: u32| Outcome::success(n * 10)),
            step("c", |n: u32| Outcome::success(n + 100)),
            step("fails", |_n: u32| Outcome::<u32>::failure("no")),
        ]
    };
    let p = Pipeline::from_pointy_with(
        "# numbers\n@recursive-depth:10\na |-> b |-> c   # piped\n",
        steps(),
    )
    .unwrap();
    assert_eq!(p.run(1u32).await.output::<u32>(), Some(120));
    // `->` passes the step's input on, `|->` its output.
    let p = Pipeline::from_pointy_with("a -> b", steps()).unwrap();
    assert_eq!(p.run(1u32).await.output::<u32>(), Some(10));
    // `* 3` and branches by descriptor.
    let p = Pipeline::from_pointy_with("fails * 3 (0 -> a |-> b, 1 -> c)", steps()).unwrap();
    let run = p.run(1u32).await;
    assert_eq!(run.output::<u32>(), Some(20));
    let dot = p.to_dot();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(
        dot.contains("label=\"0 (failure)\"") && dot.contains("label=\"1 (success)\""),
        "{dot}"
    );

    let err = Pipeline::from_pointy_with("a |-> b\n  |-> nope", steps())
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "unknown step `nope` at line 2, column 7");
    let err = Pipeline::from_pointy_with("a |-> (b)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("line 1, column 7"), "{err}");
    let err = Pipeline::from_pointy_with("a (0 b)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("expected `->`"), "{err}");
    let err = Pipeline::from_pointy_with("a || b (1 -> c)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("parallel group"), "{err}");
}

/// Branches nested far past the limit (20 KB of `a (0 -> `) are refused with a position,
/// on a Tokio worker thread's small stack, instead of overflowing it; every Pointy error
/// says where it is, a type mismatch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_pointy_is_refused_with_a_position_not_a_stack_overflow() {
    let text = format!("{}a{}", "a (0 -> ".repeat(2500), ")".repeat(2500));
    let err = tokio::spawn(async move {
        let steps = vec![step("a", |n: u32| Outcome::success(n))];
        Pipeline::from_pointy_with(&text, steps)
            .err()
            .map(|e| e.to_string())
    })
    .await
    .expect("parsing ran on a worker thread without crashing");
    let err = err.expect("refused");
    assert!(
        err.contains("nest more than 64 levels") && err.contains("line 1, column 515"),
        "{err}"
    );
    // At the limit it still parses and runs.
    let ok = format!("{}a{}", "a (0 -> ".repeat(64), ")".repeat(64));
    let steps = vec![step("a", |n: u32| Outcome::success(n))];
    let p = Pipeline::from_pointy_with(&ok, steps).expect("64 levels parse");
    assert!(p.run(1u32).await.is_success());

    let steps = vec![
        step("a", |n: u32| Outcome::success(n)),
        step("named", |n: u32| Outcome::success(format!("{n}"))),
    ];
    let err = Pipeline::from_pointy_with("a\n  |-> named |-> a", steps)
        .err()
        .unwrap();
    assert!(matches!(err, PipelineError::TypeMismatch { .. }), "{err}");
    assert!(err.to_string().ends_with("at line 2, column 17"), "{err}");
}
