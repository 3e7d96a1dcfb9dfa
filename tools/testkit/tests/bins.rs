//! Workspace binaries are looked for beside the test, and a missing one says how to build it.

#[test]
#[should_panic(
    expected = "binary xvs-no-such-binary not built: run `cargo build --workspace --bins`"
)]
fn a_missing_binary_says_how_to_build_it() {
    xvs_testkit::bin_path("xvs-no-such-binary");
}

#[test]
fn the_directory_is_the_profiles_not_deps() {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    // Whichever binary of the workspace is there; this test binary's own directory is deps/.
    let any = std::fs::read_dir(profile_dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().is_file() && !e.file_name().to_string_lossy().contains('.'));
    if let Some(entry) = any {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(xvs_testkit::bin_path(&name), profile_dir.join(&name));
    }
}
