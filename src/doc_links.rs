//! The documentation's relative links resolve: every file a link names exists, and every
//! `#anchor` into a Markdown page names one of its headings.
//!
//! A unit test of the library, not a test binary of its own: it reads the pages from the
//! source tree, so it costs no Redis and no new link step.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The front page stays a front page: the rest belongs under `docs/`.
const README_MAX_LINES: usize = 250;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every page of docs/ and the Python client's README.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![
        root.join("README.md"),
        root.join("clients/python/README.md"),
    ];
    for client in ["go", "typescript"] {
        let readme = root.join("clients").join(client).join("README.md");
        if readme.exists() {
            pages.push(readme);
        }
    }
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ can be listed");
    for entry in docs {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a page outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// `line` with its inline code spans emptied, so `[x](y)` inside backticks is no link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join("``")
}

/// The targets of a page's inline links and images: what follows each `](` up to `)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// GitHub's anchors for a page's headings: lowercased, punctuation dropped, spaces as
/// hyphens, a repeated heading numbered `-1`, `-2`, ...
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose_lines(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    seen
}

/// Every broken link of `page`, as `page: target (why)`.
fn broken_links(page: &Path) -> Vec<String> {
    let text = read(page);
    let dir = page.parent().expect("a page has a directory");
    let mut broken = Vec::new();
    for target in link_targets(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if file.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(file)
        };
        let why = if !linked.exists() {
            Some("no such file")
        } else if let Some(anchor) =
            anchor.filter(|_| linked.extension().is_some_and(|e| e == "md"))
        {
            (!anchors(&read(&linked)).contains(anchor)).then_some("no such heading")
        } else {
            None
        };
        if let Some(why) = why {
            broken.push(format!("{}: {target} ({why})", page.display()));
        }
    }
    broken
}

#[test]
fn every_relative_link_of_the_docs_resolves() {
    let pages = pages();
    assert!(pages.len() > 10, "the pages were found: {pages:?}");
    let broken: Vec<String> = pages.iter().flat_map(|p| broken_links(p)).collect();
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn the_readme_is_a_front_page_and_the_index_lists_every_page() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}"
    );

    let index = link_targets(&read(&root().join("docs/README.md")));
    let lib = read(&root().join("src/lib.rs"));
    for page in pages() {
        let Some(name) = page.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if page.parent() != Some(root().join("docs").as_path()) || name == "README.md" {
            continue;
        }
        assert!(
            index.iter().any(|t| t == name),
            "docs/README.md does not list {name}"
        );
        // A page with Rust examples is compiled as doctests, like the README.
        if read(&page).contains("```rust") {
            let item = format!("include_str!(\"../docs/{name}\")");
            assert!(
                lib.contains(&item),
                "src/lib.rs has no doctest item for docs/{name}"
            );
        }
    }
}

#[test]
fn the_link_checker_finds_a_missing_file_and_a_missing_heading() {
    let text = "# A title\n## Sub `code` part\n[x](#a-title) [y](#sub-code-part) `[z](nope.md)`\n";
    assert_eq!(link_targets(text), ["#a-title", "#sub-code-part"]);
    let found = anchors(text);
    assert!(
        found.contains("a-title") && found.contains("sub-code-part"),
        "{found:?}"
    );

    let page = root().join("docs/README.md");
    let dir = std::env::temp_dir().join(format!("unstuck-doc-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let bad = dir.join("bad.md");
    let rel = page.display();
    std::fs::write(
        &bad,
        format!("# Bad\n[gone](gone.md) [here](#bad) [there]({rel}#nowhere)\n"),
    )
    .expect("a temporary page");
    let broken = broken_links(&bad);
    std::fs::remove_dir_all(&dir).expect("the temporary directory is removed");
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].ends_with("gone.md (no such file)"), "{broken:?}");
    assert!(
        broken[1].ends_with("#nowhere (no such heading)"),
        "{broken:?}"
    );
}
