//! Compile-pass and compile-fail cases of the macros, with `.stderr` snapshots.
//! Refresh snapshots after a deliberate change with `TRYBUILD=overwrite cargo test -p eventflow-ui-tests`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
