const _: () = {
    impl ::eventflow::__private::Event for UserCreated {
        const NAME: &'static str = "user.created";
    }
    ::eventflow::__private::inventory::submit! {
        ::eventflow::__private::EventRecord { name : "user.created", type_name :
        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(UserCreated)),
        location : ::eventflow::__private::SourceLocation { module :
        ::core::module_path!(), file : ::core::file!(), line : ::core::line!(), }, }
    }
};
