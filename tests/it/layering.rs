//! The doctrine is the import graph: data flows source → engine → state → analysis →
//! notifiers, leaves at the bottom, commands at the top. This test reads `src/` and fails on
//! any `crate::` reference (a `use` or a path in code; comments and `#[cfg(test)]` modules do
//! not count) from a top-level module to one at its own rank or above, and on any cycle.
//!
//! To add a module, give it a rank in [`LAYERS`]; to add an arrow, make sure it points down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, bottom first. A module may name only modules of a lower rank.
const LAYERS: &[&[&str]] = &[
    // Leaves: no crate imports but each other's lower ranks.
    &["time", "exit", "cli"],
    &["event", "output", "aws"],
    // What rolewatch knows of itself (health, failure episodes, metrics): pure, below every
    // stage that reports into it.
    &["telemetry"],
    // The rule model, packs and lint (pure).
    &["rules"],
    // Configuration, validated into Rules.
    &["config"],
    // The stages, in the direction data flows.
    &["source"],
    &["engine"],
    &["state"],
    &["intel"],
    &["notify"],
    // Who shows it.
    &["admin"],
    // Builds the pipeline and runs the stages as sibling tasks.
    &["runtime"],
    // One module per subcommand.
    &["cmd"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments, string literals and `#[cfg(test)]` items (a test may
/// build its fixtures from any module).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            // A character literal holding a quote: `'"'` or `'\"'`.
            '\'' if chars.peek() == Some(&'"') || chars.peek() == Some(&'\\') => {
                out.push(c);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                out.push('\'');
            }
            // A raw string: `r"…"`, `r#"…"#` (it may hold quotes).
            'r' if matches!(chars.peek(), Some('"' | '#')) && !out.ends_with(is_ident_char) => {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.next() != Some('"') {
                    // `r#ident` (a raw identifier), not a string.
                    out.push('r');
                    continue;
                }
                let mut run: Option<usize> = None;
                for c in chars.by_ref() {
                    run = match (c, run) {
                        ('"', _) => Some(0),
                        ('#', Some(n)) => Some(n + 1),
                        _ => None,
                    };
                    if run == Some(hashes) {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    strip_cfg_test(&out)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Drops each item that follows `#[cfg(test)]`, up to its matching closing brace (or `;`).
fn strip_cfg_test(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every top-level module a piece of code names through `crate::`: `crate::a::…`,
/// `crate::{a, b::c}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `$crate::` or an identifier ending in `crate`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

/// `module -> {(imported module, file)}` over `src/`, top-level modules only.
fn import_graph() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for path in files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" || rel.ends_with("/tests.rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        let entry = graph.entry(top.clone()).or_default();
        for m in named_modules(&code) {
            if m != top {
                entry.insert((m, rel.clone()));
            }
        }
    }
    graph
}

#[test]
fn every_top_level_module_has_a_rank() {
    let src = src_dir();
    let mut unranked = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if module != "lib" && module != "main" && rank(module).is_none() {
            unranked.push(module.to_owned());
        }
    }
    assert!(
        unranked.is_empty(),
        "give these modules a rank in LAYERS: {unranked:?}"
    );
}

#[test]
fn no_module_imports_against_the_layering() {
    let graph = import_graph();
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        let Some(from) = rank(module) else { continue };
        for (target, file) in imports {
            match rank(target) {
                Some(to) if to < from => {}
                Some(_) => wrong.push(format!("src/{file}: `{module}` names `crate::{target}`")),
                // Not a module: an item of lib.rs such as `crate::run`.
                None => wrong.push(format!(
                    "src/{file}: `{module}` names `crate::{target}` (only modules may be named)"
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering (source → engine → state → intel → notify; see LAYERS):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_layering_test_sees_an_import() {
    // The reader itself: a violation in a `use` group, a path in code, a comment that must not
    // count and a test module that must not count.
    let code = code_only(
        "use crate::{time::Clock, engine::Engine};\n\
         // crate::notify in a comment\n\
         fn f() { crate::state::open(); let s = \"crate::admin\"; }\n\
         #[cfg(test)]\nmod tests { use crate::cmd::x; fn g() { {} } }\n\
         fn h() { crate::source::x(); }\n\
         fn q() { let a = '\"'; let b = r#\"one \" quote\"#; crate::config::x(); }",
    );
    let names = named_modules(&code);
    let expected: BTreeSet<String> = ["time", "engine", "state", "source", "config"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn the_filter_pattern_crate_knows_no_tokio_and_no_aws() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/filter-pattern/Cargo.toml"),
    )
    .unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or("");
    for forbidden in ["tokio", "aws", "rolewatch"] {
        assert!(
            !deps.contains(forbidden),
            "crates/filter-pattern depends on {forbidden}: {deps}"
        );
    }
}

#[test]
fn no_library_code_ends_the_process() {
    // Commands return an exit status; only `main` turns it into the process's end.
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| !p.ends_with("main.rs"))
        .filter(|p| code_only(&std::fs::read_to_string(p).unwrap()).contains("process::exit"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "process::exit in {offenders:?}");
}

/// The pipeline knows the state only as the `state::Backend` trait the store hands out: no
/// module outside `src/state/` (commands aside: `doctor` inspects the SQLite file itself)
/// names the SQLite type `State`, so a second backend needs no change of the stages.
#[test]
fn only_the_state_module_names_the_sqlite_state() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut offenders = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(src_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("state/") || rel.starts_with("cmd/") {
            continue;
        }
        if rel.ends_with("tests.rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        let whole = |text: &str, at: usize, len: usize| {
            !text[at + len..].chars().next().is_some_and(is_ident_char)
        };
        // `crate::state::State` (or `state::State` after a `use crate;`), and `State` in a
        // `use crate::state::{…}` group.
        let by_path = code
            .match_indices("state::State")
            .any(|(at, m)| whole(&code, at, m.len()));
        let in_group = code.match_indices("crate::state::{").any(|(at, m)| {
            let group = &code[at + m.len()..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group.split(',').any(|item| item.trim() == "State")
        });
        let names_state = by_path || in_group;
        if names_state {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "these modules name state::State instead of the Backend trait: {offenders:?}"
    );
}
