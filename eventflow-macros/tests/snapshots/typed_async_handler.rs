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
        __ctx: ::eventflow::__private_0_1_0::HandlerContext,
    ) -> ::eventflow::__private_0_1_0::BoxFuture<
        'static,
        ::eventflow::__private_0_1_0::HandlerResult,
    > {
        ::eventflow::__private_0_1_0::Box::pin(async move {
            let __event = ::eventflow::__private_0_1_0::decode_event::<
                UserCreated,
            >(&__ctx)?;
            ::eventflow::__private_0_1_0::IntoReply::into_reply(
                send_welcome(
                        ::eventflow::__private_0_1_0::Cow::into_owned(__event),
                        &__ctx,
                    )
                    .await,
            )
        })
    }
    fn __eventflow_retry_on(__err: &::eventflow::__private_0_1_0::HandlerError) -> bool {
        false || __err.is::<std::io::Error>()
    }
    ::eventflow::__private_0_1_0::inventory::submit! {
        ::eventflow::__private_0_1_0::HandlerRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(send_welcome)),
        pattern : "user.created", event_type : ::core::stringify!(UserCreated), options :
        ::eventflow::__private_0_1_0::handler_options(::core::option::Option::Some(::eventflow::__private_0_1_0::retry_policy(3u32,
        0.1f64, 60f64, ::core::option::Option::None, false,
        ::core::option::Option::Some(__eventflow_retry_on as fn (&
        ::eventflow::__private_0_1_0::HandlerError) -> bool))),
        ::core::option::Option::None,
        ::core::option::Option::Some(::eventflow::__private_0_1_0::Duration::from_nanos(5000000000u64)),
        ::eventflow::__private_0_1_0::Executor::Inline,
        ::eventflow::__private_0_1_0::executor_config(::core::option::Option::None,
        ::core::option::Option::None, ::core::option::Option::None,
        ::core::option::Option::None, ::core::option::Option::None),
        ::core::option::Option::None, 0i32, ::core::option::Option::None,
        ::core::option::Option::None, ::core::option::Option::None,), invoke :
        ::eventflow::__private_0_1_0::Invoke::Async(__eventflow_invoke_send_welcome),
        location :
        ::eventflow::__private_0_1_0::SourceLocation::new(::core::module_path!(),
        ::core::file!(), ::core::line!()), }
    }
};
