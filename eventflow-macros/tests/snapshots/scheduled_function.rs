async fn sweep(ctx: &ScheduleContext) -> Result<(), HandlerError> {
    Ok(())
}
#[doc(hidden)]
#[allow(non_snake_case)]
const _: () = {
    fn __eventflow_scheduled_sweep(
        __ctx: ::eventflow::__private_0_1_0::ScheduleContext,
    ) -> ::eventflow::__private_0_1_0::BoxFuture<
        'static,
        ::eventflow::__private_0_1_0::Result<
            (),
            ::eventflow::__private_0_1_0::HandlerError,
        >,
    > {
        ::eventflow::__private_0_1_0::Box::pin(async move {
            ::eventflow::__private_0_1_0::IntoResult::<
                ::eventflow::__private_0_1_0::HandlerError,
            >::into_result(sweep(&__ctx).await)
        })
    }
    ::eventflow::__private_0_1_0::inventory::submit! {
        ::eventflow::__private_0_1_0::ScheduledJobRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(sweep)),
        schedule :
        ::eventflow::__private_0_1_0::DeclaredSchedule::Every(::eventflow::__private_0_1_0::Duration::from_nanos(30000000000u64)),
        missed : ::eventflow::__private_0_1_0::MissedTicks::CatchUp, timeout :
        ::core::option::Option::None, invoke :
        ::eventflow::__private_0_1_0::ScheduledJobInvoke::Async(__eventflow_scheduled_sweep),
        location :
        ::eventflow::__private_0_1_0::SourceLocation::new(::core::module_path!(),
        ::core::file!(), ::core::line!()), }
    }
};
