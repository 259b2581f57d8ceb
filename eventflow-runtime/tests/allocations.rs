//! Heap allocations per `dispatch` of a small typed event to one Inline handler, counted
//! by a counting global allocator (this test binary's own), with the bus's defaults
//! (metrics and tracing on, nothing installed to receive them).
//!
//! The handler's own boxed future is one; the event's shared payload is the other. The
//! count is exact (allocations are counted, not timed), so a change that adds one to the
//! hot path fails here. The size of the future `dispatch` returns is held here too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use eventflow_runtime::{Event, EventBus, Handler, HandlerError};
use serde::{Deserialize, Serialize};

/// Counts the allocations a thread makes while its `COUNTING` is set (the runtime is
/// single-threaded, so that thread makes every allocation of a dispatch; other tests'
/// threads are not counted).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn counting() -> bool {
    // A `const` thread local without a destructor: reading it allocates nothing.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so the
// contract of `GlobalAlloc` holds exactly as it does for `System`; the counter is a
// relaxed atomic and the flag a `const` thread local with no destructor, neither of which
// allocates or re-enters the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
}

impl Event for Ping {
    const NAME: &'static str = "alloc.ping";
}

/// The most allocations one dispatch may make.
const MAX_PER_DISPATCH: u64 = 2;

/// A single-threaded runtime and a bus on it whose one handler, `count`, adds each
/// ping's `n` to `hits`.
fn bus_counting(hits: std::sync::Arc<AtomicU64>) -> (tokio::runtime::Runtime, EventBus) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bus = rt
        .block_on(
            EventBus::builder()
                .without_registry()
                .handler(Handler::typed(
                    "count",
                    "alloc.ping",
                    move |p: Ping, _ctx| {
                        hits.fetch_add(p.n, Ordering::Relaxed);
                        async { Ok::<(), HandlerError>(()) }
                    },
                ))
                .build(),
        )
        .expect("bus");
    (rt, bus)
}

#[test]
fn dispatch_to_one_handler_allocates_at_most_twice() {
    let hits = std::sync::Arc::new(AtomicU64::new(0));
    let (rt, bus) = bus_counting(hits.clone());
    const ROUNDS: u64 = 1_000;
    let per_dispatch = rt.block_on(async {
        // Warm up: first-sight registrations (metric handles, routing cache, thread locals).
        for n in 0..100 {
            bus.dispatch(Ping { n }).await.expect("dispatch");
        }
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.set(true);
        for _ in 0..ROUNDS {
            let report = bus.dispatch(Ping { n: 1 }).await.expect("dispatch");
            assert!(report.is_success());
        }
        COUNTING.set(false);
        ALLOCATIONS.load(Ordering::Relaxed) as f64 / ROUNDS as f64
    });
    assert_eq!(hits.load(Ordering::Relaxed), 4_950 + ROUNDS);
    println!("ALLOCATIONS per dispatch: {per_dispatch:.3}");
    assert!(
        per_dispatch <= MAX_PER_DISPATCH as f64,
        "{per_dispatch:.2} allocations per dispatch, more than {MAX_PER_DISPATCH}"
    );
}

/// The most bytes the future `dispatch` returns may take: every move of it (into the
/// caller's future, into a task) copies this much.
const MAX_DISPATCH_FUTURE: usize = 1_280;

#[test]
fn the_dispatch_future_stays_small() {
    let (rt, bus) = bus_counting(std::sync::Arc::new(AtomicU64::new(0)));
    let dispatch = bus.dispatch(Ping { n: 1 });
    let size = std::mem::size_of_val(&dispatch);
    println!("DISPATCH FUTURE: {size} bytes");
    assert!(
        size <= MAX_DISPATCH_FUTURE,
        "the dispatch future is {size} bytes, more than {MAX_DISPATCH_FUTURE}"
    );
    let report = rt.block_on(dispatch).expect("dispatch");
    assert!(report.is_success());
}
