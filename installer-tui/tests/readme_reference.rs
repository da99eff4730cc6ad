//! The root README carries the current answer-file reference.

#[test]
fn readme_carries_the_current_answers_reference() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    assert!(
        readme.contains(&installer_tui::answers::reference_markdown()),
        "README.md's answer-file reference is out of date: run `cargo xtask docs`"
    );
}
