//! Tests that cannot run here say why and pass, never silently.

use std::fmt::Display;

use crate::{have, is_root};

/// Prints `SKIPPED {test}: {reason}` on stderr. The caller then returns.
pub fn skip(test: &str, reason: impl Display) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// The name of the running test: the test harness names each test's thread after it.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned()
}

/// Skips the running test: prints `SKIPPED {test}: {reason}` (the reason formatted as by
/// `format!`) and returns from the calling function, which must return `()`.
///
/// # Examples
/// ```
/// fn needs_a_tool() {
///     if !xvs_testkit::have("no-such-tool-here") {
///         xvs_testkit::skip!("no-such-tool-here is not installed");
///     }
///     unreachable!();
/// }
/// needs_a_tool();
/// ```
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::skip(&$crate::test_name(), ::std::format_args!($($reason)+));
        return;
    }};
}

/// Whether `test` can build a lab here: root, and every one of `tools` on the PATH. Prints
/// the first reason it cannot (see [`skip()`]).
pub fn can_run(test: &str, tools: &[&str]) -> bool {
    if !is_root() {
        skip(test, "needs root (network namespaces, veths, XDP)");
        return false;
    }
    if let Some(tool) = tools.iter().find(|t| !have(t)) {
        skip(test, format_args!("{tool} is not installed"));
        return false;
    }
    true
}
