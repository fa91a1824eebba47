//! The compile errors a user sees when a macro is misused are part of the product: each case in
//! `ui/` must fail to compile with the message in its `.stderr` file, pointing at the offending
//! code. Refresh the expectations with `TRYBUILD=overwrite cargo test -p net --test ui` and
//! review the diff.

#[test]
fn macro_misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui-pass/*.rs");
}
