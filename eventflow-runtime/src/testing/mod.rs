//! Testing helpers: a [`Recorder`] that captures what a bus publishes and how each
//! handler's delivery ended, and the conformance suites that backends
//! ([`backend_suite!`](crate::backend_suite)) and store drivers
//! ([`store_suite!`](crate::store_suite)) run to prove themselves.

pub mod backend_suite;
pub mod store_suite;

pub use crate::bus::{RecordedOutcome, Recorder};
pub use backend_suite::BackendFactory;
pub use store_suite::StoreFactory;

/// Runs the backend conformance suite: one `#[tokio::test]` per check of
/// [`testing::backend_suite`](crate::testing::backend_suite), against the backend that
/// `$factory` (a [`BackendFactory`]) attaches. Invoke it once in a test file.
#[macro_export]
macro_rules! backend_suite {
    ($factory:expr) => {
        $crate::__suite_tests!(backend_suite, $factory;
            published_once_handled_once,
            retries_with_backoff,
            delayed_events_are_not_early,
            dead_letters_are_listed_retried_and_removed,
            an_invalid_entry_is_dead_lettered_and_the_worker_goes_on,
            an_attempt_count_at_its_maximum_neither_overflows_nor_sticks,
            shutdown_leaves_unfinished_work_for_another_worker,
            health_reports_reachable,
        );
    };
}

/// Runs the store conformance suite: one `#[tokio::test]` per check of
/// [`testing::store_suite`](crate::testing::store_suite), against the stores that
/// `$factory` (a [`StoreFactory`]) opens. Invoke it once in a test file.
#[macro_export]
macro_rules! store_suite {
    ($factory:expr) => {
        $crate::__suite_tests!(store_suite, $factory;
            writes_round_trip,
            a_transaction_rolls_back_every_write,
            a_veto_writes_and_publishes_nothing,
            model_events_follow_the_commit_in_order,
            a_model_event_nobody_handles_does_not_block_the_others,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    ($suite:ident, $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::testing::$suite::$test(&$factory).await
            }
        )+
    };
}
