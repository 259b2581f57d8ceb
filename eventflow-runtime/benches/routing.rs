//! (b) Pattern lookup with 10, 100 and 1,000 registered patterns. Target: the lookup with
//! 1,000 patterns costs at most 2x the lookup with 10.

mod support;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_runtime::{Pattern, Router};

/// A mix of exact names, `*` and `**` patterns over `n / 4` services.
fn router(n: usize) -> Router {
    let mut r = Router::new();
    for i in 0..n {
        let svc = i / 4;
        let text = match i % 4 {
            0 => format!("svc{svc}.order.created"),
            1 => format!("svc{svc}.*.created"),
            2 => format!("svc{svc}.order.**"),
            _ => format!("svc{svc}.payment.*.completed"),
        };
        r.insert(&Pattern::parse(&text).expect("pattern"), i);
    }
    r
}

fn bench(c: &mut Criterion) {
    let names = [
        "svc1.order.created",
        "svc1.payment.card.completed",
        "svc2.user.deleted",
        "other.thing",
    ];
    let mut g = c.benchmark_group("pattern_lookup");
    for n in [10usize, 100, 1000] {
        let r = router(n);
        assert!(!r.lookup_uncached("svc1.order.created").is_empty());
        let key = format!("trie_{n}");
        g.bench_function(format!("uncached/{n}_patterns"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let name = names[(i % 4) as usize];
                    std::hint::black_box(r.lookup_uncached(std::hint::black_box(name)));
                }
                support::record(&key, iters, start.elapsed())
            })
        });
        let key = format!("cached_{n}");
        g.bench_function(format!("cached/{n}_patterns"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let name = names[(i % 4) as usize];
                    std::hint::black_box(r.lookup(std::hint::black_box(name)));
                }
                support::record(&key, iters, start.elapsed())
            })
        });
    }
    g.finish();
    support::report_ratio(
        "uncached lookup, 1000 vs 10 patterns (target <= 2x)",
        "trie_1000",
        "trie_10",
    );
    support::report_ratio("uncached lookup, 100 vs 10 patterns", "trie_100", "trie_10");
    support::report_ratio(
        "cached lookup, 1000 vs 10 patterns",
        "cached_1000",
        "cached_10",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
