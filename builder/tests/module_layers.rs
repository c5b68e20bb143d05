//! The builder's top-level modules form layers: no module reaches, through
//! `crate::` paths, a module that reaches back to it. A cycle between
//! folders is how the engine came to import the command line's flag types
//! (issue 14): this test fails the moment one appears, naming it.
//!
//! It reads the sources rather than the compiler's view: every `crate::X`
//! in a file of `src/X/` or `src/X.rs` outside comments is an edge from that
//! file's module to `X`. `lib.rs` and `main.rs` (which wire modules
//! together) are left out. Clap stays in `cli/`: its derive macros are
//! refused anywhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source files of `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of `text` without `//` comments (line and doc comments; a
/// `//` inside a string literal cuts a line short, which only loses
/// edges from that line's tail, never invents one) and without the items
/// under `#[cfg(test)]`: a unit test may build its input with any layer
/// (a driver's test parses flags with the CLI), the layering is the
/// shipped code's.
fn code_of(text: &str) -> String {
    let code = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_test_items(&code)
}

/// `code` without each item that follows a `#[cfg(test)]`: up to the
/// `;` that ends it or the `}` that closes its first `{`.
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let end = match (item.find('{'), item.find(';')) {
            (Some(open), Some(semi)) if semi < open => semi + 1,
            (Some(open), _) => {
                let mut depth = 0usize;
                let mut close = item.len();
                for (i, c) in item[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                close = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                close
            }
            (None, Some(semi)) => semi + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Names `text` refers to as `crate::NAME`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `kiln_crate::x` or `$crate::x` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// The module graph: each top-level module, and the modules it reaches.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap();
        let module = Path::new(first.as_os_str())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let edges = graph.entry(module.clone()).or_default();
        for target in crate_references(&code) {
            if target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// Every cycle's modules, one strongly connected component of more than
/// one module each (Tarjan's algorithm, iterative).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let names: Vec<&String> = graph.keys().collect();
    let index_of: BTreeMap<&String, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            graph[*n]
                .iter()
                .filter_map(|t| index_of.get(t).copied())
                .collect()
        })
        .collect();
    let count = names.len();
    let mut index = vec![usize::MAX; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut components = Vec::new();
    for root in 0..count {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its edge list)
        let mut work = vec![(root, 0)];
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[node] == usize::MAX {
                index[node] = next;
                low[node] = next;
                next += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&target) = edges[node].get(*edge) {
                *edge += 1;
                if index[target] == usize::MAX {
                    work.push((target, 0));
                } else if on_stack[target] {
                    low[node] = low[node].min(index[target]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                loop {
                    let member = stack.pop().unwrap();
                    on_stack[member] = false;
                    component.push(names[member].clone());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    components.push(component);
                }
            }
        }
    }
    components
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_top_level_modules_have_no_cycle() {
    let graph = module_graph(&src());
    let found = cycles(&graph);
    let explained: Vec<String> = found
        .iter()
        .map(|members| {
            let edges: Vec<String> = members
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| members.contains(to))
                        .map(move |to| format!("{from} -> {to}"))
                })
                .collect();
            format!("{{{}}}: {}", members.join(", "), edges.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "modules that reach each other:\n{}",
        explained.join("\n")
    );
}

/// The files outside `cli/` (and `main.rs`) whose code mentions one of
/// `words`.
fn outside_cli_using(words: &[&str]) -> Vec<String> {
    let mut outside = Vec::new();
    for file in rust_files(&src()) {
        let relative = file.strip_prefix(src()).unwrap();
        if relative.starts_with("cli") || relative == Path::new("main.rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        if words.iter().any(|word| code.contains(word)) {
            outside.push(relative.display().to_string());
        }
    }
    outside
}

#[test]
fn clap_is_used_in_cli_only() {
    let outside = outside_cli_using(&["clap::", "#[value(", "#[arg("]);
    assert!(outside.is_empty(), "clap outside cli/: {outside:?}");
}

/// The library returns typed errors a caller can match on; only the
/// command line collects them into `anyhow` to print.
#[test]
fn anyhow_is_used_in_cli_only() {
    let outside = outside_cli_using(&["anyhow"]);
    assert!(outside.is_empty(), "anyhow outside cli/: {outside:?}");
}

#[test]
fn the_scanner_sees_cycles_and_skips_comments() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
        ("e", vec!["e"]),
    ]
    .into_iter()
    .map(|(name, to)| (name.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycles(&graph), [vec!["a", "b", "c"]]);
    let code = code_of(
        "use crate::build::X; // crate::cli::Y\n/// [`crate::run`]\nlet a = kiln_crate::x; $crate::y;\n\
         #[cfg(test)]\nmod tests { fn f() { crate::cli::Args::parse(); } }\n\
         #[cfg(test)]\nuse crate::drivers::X;\nuse crate::image::Y;",
    );
    assert_eq!(
        crate_references(&code),
        BTreeSet::from(["build".to_owned(), "image".to_owned()])
    );
}
