//! The README's settings reference is generated, never hand-kept.

#[test]
fn readme_settings_reference_is_current() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("<!-- settings-reference:begin -->\n")
        .nth(1)
        .and_then(|s| s.split("<!-- settings-reference:end -->").next())
        .expect("README.md has the settings-reference markers");
    assert_eq!(
        section,
        firstboot::settings::reference_markdown(),
        "README.md's settings reference is stale: regenerate it with `firstboot settings`"
    );
}
