//! docs/architecture.md: the crate's top-level modules form no import cycle. Read from the
//! `crate::` paths in src/ (unit tests may reach anywhere and are left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a file of src/ belongs to (`src/run/step.rs` → `run`).
fn top_module(relative: &Path) -> String {
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The names of `crate::<name>` references in `text`, comments and unit tests removed.
fn references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap()
        .lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let module = top_module(path.strip_prefix(&src).unwrap());
            if module == "main" || module == "lib" {
                continue;
            }
            let refs = references(&std::fs::read_to_string(&path).unwrap());
            let targets = edges.entry(module.clone()).or_default();
            targets.extend(refs.into_iter().filter(|r| *r != module));
        }
    }
    edges
}

/// Whether `to` is reachable from `from`.
fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(edges.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let edges = graph();
    assert!(edges.contains_key("run") && edges.contains_key("http"));
    let mut cycles = BTreeSet::new();
    for (module, targets) in &edges {
        for target in targets {
            if reaches(&edges, target, module) {
                let (a, b) = if module < target {
                    (module, target)
                } else {
                    (target, module)
                };
                cycles.insert(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:?}");
}

#[test]
fn the_reader_of_crate_paths_sees_grouped_and_plain_imports() {
    let refs =
        references("use crate::{run::x, http};\nlet a = crate::auth::f(); // crate::observe\n");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["auth", "http", "run"]
    );
}
