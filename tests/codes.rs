//! One list of error codes: `domain::Refusal`. The README documents every code in it and no
//! other; the pages' script switches on no other. (That every problem response the HTTP tests
//! see carries a code from the list is checked by `common::problem`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use countersign::domain::Refusal;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rows of the README's table of error codes: (code, status).
fn readme_codes() -> Vec<(String, u16)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Error codes")
        .nth(1)
        .expect("the README has a section \"Error codes\"");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.get(2)?.parse().ok()?;
            Some((code.to_string(), status))
        })
        .collect()
}

#[test]
fn the_readme_documents_every_code_and_no_other() {
    let documented = readme_codes();
    let listed: BTreeSet<(String, u16)> = Refusal::ALL
        .iter()
        .map(|r| (r.code().to_string(), r.status()))
        .collect();
    let documented_set: BTreeSet<(String, u16)> = documented.iter().cloned().collect();
    assert_eq!(
        documented.len(),
        documented_set.len(),
        "a code documented twice"
    );
    let missing: Vec<_> = listed.difference(&documented_set).collect();
    let unknown: Vec<_> = documented_set.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "not in the README's table (code, status): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "in the README but not a Refusal: {unknown:?}"
    );
}

#[test]
fn the_pages_script_switches_on_listed_codes_only() {
    let js = std::fs::read_to_string(root().join("static/app.js")).unwrap();
    // The switch on a problem's code, and every comparison with one.
    let switch = js
        .split("switch (err && err.code) {")
        .nth(1)
        .and_then(|rest| rest.split("default:").next())
        .expect("app.js explains problems by their code");
    let mut used = BTreeSet::new();
    for (text, pattern) in [
        (switch, "case \""),
        (js.as_str(), "code === \""),
        (js.as_str(), "code !== \""),
    ] {
        for piece in text.split(pattern).skip(1) {
            if let Some(code) = piece.split('"').next() {
                used.insert(code.to_string());
            }
        }
    }
    assert!(
        used.len() > 5,
        "found the codes app.js switches on: {used:?}"
    );
    for code in used {
        // `network` is the script's own: fetch failed, the server said nothing.
        assert!(
            code == "network" || Refusal::from_code(&code).is_some(),
            "static/app.js switches on {code:?}, which is not a Refusal"
        );
    }
}
