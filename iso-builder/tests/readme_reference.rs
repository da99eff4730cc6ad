//! The README's recipe reference is the one derived from the code.

#[test]
fn readme_carries_the_current_recipe_reference() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let reference = iso_builder::recipe::reference_markdown();
    assert!(
        readme.contains(&reference),
        "README.md's recipe reference is out of date: run `cargo xtask docs`"
    );
}

#[test]
fn the_shipped_recipe_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../iso.toml");
    let text = std::fs::read_to_string(path).unwrap();
    iso_builder::recipe::Recipe::parse(&text, "iso.toml").unwrap();
}

#[test]
fn the_shipped_lock_belongs_to_the_shipped_recipe() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/iso.toml")).unwrap();
    let recipe = iso_builder::recipe::Recipe::parse(&text, "iso.toml").unwrap();
    let lock_path = std::path::PathBuf::from(format!("{root}/inputs.lock"));
    let lock = iso_builder::lock::Lock::read(&lock_path).unwrap();
    lock.check(&recipe, &lock_path).unwrap();
}
