//! The memory backend and the memory store driver pass the conformance suites.

use eventflow_runtime::testing::{BackendFactory, StoreFactory};
use eventflow_runtime::{BoxFuture, EventBusBuilder, MemoryBackend, Store, StoreBuilder};

struct Memory;

impl BackendFactory for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn attach<'a>(
        &'a self,
        builder: EventBusBuilder,
        _ns: &'a str,
    ) -> BoxFuture<'a, Option<EventBusBuilder>> {
        Box::pin(async move { Some(builder.backend(MemoryBackend::new())) })
    }
}

impl StoreFactory for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open<'a>(&'a self, builder: StoreBuilder) -> BoxFuture<'a, Option<Store>> {
        Box::pin(async move { Some(builder.memory()) })
    }
}

mod backend {
    eventflow_runtime::backend_suite!(super::Memory);
}

mod store {
    eventflow_runtime::store_suite!(super::Memory);
}
