//! The README's settings reference is generated, never hand-kept.

#[test]
fn readme_settings_reference_is_current() {
    let readme = include_str!("../README.md");
    let section = confdoc::between(readme, "settings-reference")
        .expect("README.md has the settings-reference markers");
    assert_eq!(
        section,
        firstboot::settings::reference_markdown(),
        "README.md's settings reference is stale: regenerate it with `cargo xtask docs`"
    );
}
