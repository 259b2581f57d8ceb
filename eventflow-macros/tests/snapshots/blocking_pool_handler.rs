fn write_report(event: &Envelope) {}
#[doc(hidden)]
#[allow(non_snake_case)]
const _: () = {
    fn __eventflow_invoke_write_report(
        __ctx: ::eventflow::__private::HandlerContext,
    ) -> ::eventflow::__private::Result<(), ::eventflow::__private::HandlerError> {
        ::eventflow::__private::IntoHandlerResult::into_handler_result(
            write_report(__ctx.envelope()),
        )
    }
    ::eventflow::__private::inventory::submit! {
        ::eventflow::__private::HandlerRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(write_report)),
        pattern : "order.*", event_type : "Envelope", options :
        ::eventflow::__private::HandlerOptions { retry :
        ::eventflow::__private::RetryPolicy::NEVER, timeout :
        ::core::option::Option::None, executor :
        ::eventflow::__private::Executor::ThreadPool, executor_config :
        ::eventflow::__private::ExecutorConfig { max_workers :
        ::core::option::Option::Some(4usize), max_tasks_per_child :
        ::core::option::Option::None, thread_name_prefix :
        ::core::option::Option::Some(::eventflow::__private::Cow::Borrowed("report-")),
        }, priority : 0i32, concurrency : ::core::option::Option::None, filter :
        ::core::option::Option::None, batch : ::core::option::Option::None, }, invoke :
        ::eventflow::__private::Invoke::Blocking(__eventflow_invoke_write_report),
        location : ::eventflow::__private::SourceLocation { module :
        ::core::module_path!(), file : ::core::file!(), line : ::core::line!(), }, }
    }
};
