async fn send_welcome(
    event: UserCreated,
    ctx: &HandlerContext,
) -> Result<(), HandlerError> {
    Ok(())
}
#[doc(hidden)]
#[allow(non_snake_case)]
const _: () = {
    fn __eventflow_invoke_send_welcome(
        __ctx: ::eventflow::__private::HandlerContext,
    ) -> ::eventflow::__private::BoxFuture<
        'static,
        ::eventflow::__private::Result<(), ::eventflow::__private::HandlerError>,
    > {
        ::eventflow::__private::Box::pin(async move {
            let __event = ::eventflow::__private::decode_event::<UserCreated>(&__ctx)?;
            ::eventflow::__private::IntoHandlerResult::into_handler_result(
                send_welcome(::eventflow::__private::Cow::into_owned(__event), &__ctx)
                    .await,
            )
        })
    }
    fn __eventflow_retry_on(__err: &::eventflow::__private::HandlerError) -> bool {
        false || __err.is::<std::io::Error>()
    }
    ::eventflow::__private::inventory::submit! {
        ::eventflow::__private::HandlerRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(send_welcome)),
        pattern : "user.created", event_type : ::core::stringify!(UserCreated), options :
        ::eventflow::__private::HandlerOptions { retry :
        ::eventflow::__private::RetryPolicy { max_attempts : 3u32, backoff_factor :
        0.1f64, max_backoff : 60f64, jitter : false, retry_on :
        ::core::option::Option::Some(__eventflow_retry_on as fn (&
        ::eventflow::__private::HandlerError) -> bool), }, timeout :
        ::core::option::Option::Some(::eventflow::__private::Duration::from_nanos(5000000000u64)),
        executor : ::eventflow::__private::Executor::Inline, executor_config :
        ::eventflow::__private::ExecutorConfig { max_workers :
        ::core::option::Option::None, max_tasks_per_child : ::core::option::Option::None,
        thread_name_prefix : ::core::option::Option::None, }, priority : 0i32,
        concurrency : ::core::option::Option::None, filter :
        ::core::option::Option::None, batch : ::core::option::Option::None, }, invoke :
        ::eventflow::__private::Invoke::Async(__eventflow_invoke_send_welcome), location
        : ::eventflow::__private::SourceLocation { module : ::core::module_path!(), file
        : ::core::file!(), line : ::core::line!(), }, }
    }
};
