fn write_report(event: &Envelope) {}
#[doc(hidden)]
#[allow(non_snake_case)]
const _: () = {
    fn __eventflow_invoke_write_report(
        __ctx: ::eventflow::__private_0_1_0::HandlerContext,
    ) -> ::eventflow::__private_0_1_0::HandlerResult {
        ::eventflow::__private_0_1_0::IntoReply::into_reply(
            write_report(__ctx.envelope()),
        )
    }
    ::eventflow::__private_0_1_0::inventory::submit! {
        ::eventflow::__private_0_1_0::HandlerRecord { name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(write_report)),
        pattern : "order.*", event_type : "Envelope", options :
        ::eventflow::__private_0_1_0::handler_options(::core::option::Option::None,
        ::core::option::Option::None, ::core::option::Option::None,
        ::eventflow::__private_0_1_0::Executor::ThreadPool,
        ::eventflow::__private_0_1_0::executor_config(::core::option::Option::Some(4usize),
        ::core::option::Option::None, ::core::option::Option::Some("report-"),
        ::core::option::Option::None, ::core::option::Option::None),
        ::core::option::Option::None, 0i32, ::core::option::Option::None,
        ::core::option::Option::None, ::core::option::Option::None,), invoke :
        ::eventflow::__private_0_1_0::Invoke::Blocking(__eventflow_invoke_write_report),
        location :
        ::eventflow::__private_0_1_0::SourceLocation::new(::core::module_path!(),
        ::core::file!(), ::core::line!()), }
    }
};
