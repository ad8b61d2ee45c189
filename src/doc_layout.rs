//! The maps of the code match the code: the crate docs' table names every module of
//! `lib.rs`, the watchdog's map every module of `watchdog/mod.rs`, and the layout of
//! docs/development.md every module of the crate.
//!
//! A unit test reading the source tree, like `doc_links`: no Redis, no new link step.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The modules a file declares (`mod x;` or `pub mod x;` at the start of a line), less
/// those that exist only for tests or doctests.
fn declared(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut test_only = false;
    for line in source.lines() {
        if line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(doctest)]") {
            test_only = true;
            continue;
        }
        let rest = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = rest.and_then(|r| r.strip_suffix(';'))
            && !test_only
        {
            found.insert(name.to_owned());
        }
        if !line.starts_with("#[") && !line.starts_with("///") {
            test_only = false;
        }
    }
    found
}

/// The modules a map names: the first cell of each row of the `//!` table, as `` `x` ``
/// or ``[`x`]``.
fn mapped(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|row| row.split(" |").next())
        .map(|cell| cell.trim_matches(|c| c == '[' || c == ']' || c == '`'))
        .filter(|name| !name.is_empty() && *name != "module" && !name.starts_with("---"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_crate_map_names_every_module_and_nothing_else() {
    let lib = read("src/lib.rs");
    let declared = declared(&lib);
    assert!(
        declared.contains("ledger") && declared.contains("server"),
        "{declared:?}"
    );
    assert_eq!(
        mapped(&lib),
        declared,
        "src/lib.rs: the # Layout table vs its mods"
    );
}

#[test]
fn the_watchdog_map_names_every_module_and_nothing_else() {
    let watchdog = read("src/watchdog/mod.rs");
    let declared = declared(&watchdog);
    assert!(declared.contains("round"), "{declared:?}");
    assert_eq!(
        mapped(&watchdog),
        declared,
        "src/watchdog/mod.rs: its map vs its mods"
    );
}

#[test]
fn the_development_page_lays_out_every_module() {
    let page = read("docs/development.md");
    let layout = page
        .split("## Layout")
        .nth(1)
        .expect("docs/development.md has a Layout section");
    for module in declared(&read("src/lib.rs")) {
        let file = format!("src/{module}.rs");
        let dir = format!("src/{module}/");
        assert!(
            layout.contains(&file) || layout.contains(&dir),
            "docs/development.md's layout does not name {file} or {dir}"
        );
    }
}

#[test]
fn the_readers_see_a_missing_module() {
    let source = "//! | [`a`] | one |\n//! | `b` | two |\nmod a;\npub mod b;\npub mod c;\n\
                  #[cfg(test)]\nmod only_tests;\n";
    let declared = declared(source);
    assert_eq!(
        declared.iter().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_ne!(mapped(source), declared);
}
