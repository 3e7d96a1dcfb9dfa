//! The workspace's binaries, found where cargo put them: beside the running test.

use std::path::PathBuf;

/// The path of workspace binary `name` in the target directory of the running executable:
/// `target/<profile>/<name>`, the parent of a test's `deps/`. Works for binaries of any
/// package of the workspace, which `cargo build --workspace --bins` builds there.
///
/// # Panics
/// If the binary is not there: "binary NAME not built: run `cargo build --workspace --bins`".
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let mut dir = exe
        .parent()
        .expect("the executable's directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "binary {name} not built: run `cargo build --workspace --bins` (looked for {})",
        path.display()
    );
    path
}
