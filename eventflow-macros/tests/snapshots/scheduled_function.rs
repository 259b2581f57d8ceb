async fn sweep(ctx: &ScheduleContext) -> Result<(), HandlerError> {
    Ok(())
}
#[doc(hidden)]
#[allow(non_snake_case)]
const _: () = {
    fn __eventflow_scheduled_sweep(
        __ctx: ::eventflow::__private::ScheduleContext,
    ) -> ::eventflow::__private::BoxFuture<
        'static,
        ::eventflow::__private::Result<(), ::eventflow::__private::HandlerError>,
    > {
        ::eventflow::__private::Box::pin(async move {
            ::eventflow::__private::IntoHandlerResult::into_handler_result(
                sweep(&__ctx).await,
            )
        })
    }
    ::eventflow::__private::inventory::submit! {
        ::eventflow::__private::ScheduledRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(sweep)),
        schedule :
        ::eventflow::__private::ScheduleSpec::Every(::eventflow::__private::Duration::from_nanos(30000000000u64)),
        missed : ::eventflow::__private::MissedTicks::CatchUp, timeout :
        ::core::option::Option::None, invoke :
        ::eventflow::__private::ScheduledInvoke::Async(__eventflow_scheduled_sweep),
        location : ::eventflow::__private::SourceLocation { module :
        ::core::module_path!(), file : ::core::file!(), line : ::core::line!(), }, }
    }
};
