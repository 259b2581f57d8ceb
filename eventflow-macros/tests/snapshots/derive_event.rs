const _: () = {
    impl ::eventflow::__private_0_1_0::Event for UserCreated {
        const NAME: &'static str = "user.created";
    }
    ::eventflow::__private_0_1_0::inventory::submit! {
        ::eventflow::__private_0_1_0::EventRecord { name : "user.created", type_name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(UserCreated)),
        location :
        ::eventflow::__private_0_1_0::SourceLocation::new(::core::module_path!(),
        ::core::file!(), ::core::line!()), }
    }
};
