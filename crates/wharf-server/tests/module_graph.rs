//! The server crate's module graph: which top-level module (`api`, `console`,
//! `ops`, `engine`, `state`, ...) uses which, read from the `crate::` paths of
//! `src/**/*.rs`. It must have no cycle, and the layers must hold: the API and the
//! console are adapters over `ops` and never use each other; `ops` never uses
//! the HTTP layer or the engine; the engine never uses the HTTP layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs`, the root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// The code of a line without its `//` comment (a `//` inside a string, such as
/// a URL, ends the line early: that can only hide a path, never invent one).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// The top-level modules a piece of source names through `crate::`, including
/// grouped imports (`use crate::{a, b::c}`).
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().map(code).collect::<Vec<_>>().join("\n");
    let mut names = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `wharf_crate::` or `$crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut first_of_item = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && c == ',' {
                    first_of_item = true;
                    item.clear();
                    continue;
                }
                if first_of_item {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        names.insert(std::mem::take(&mut item));
                        first_of_item = false;
                    }
                }
            }
            if first_of_item && !item.is_empty() {
                names.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The server crate's graph of top-level modules.
fn server_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        let uses = graph.entry(from.clone()).or_default();
        for to in named_modules(&text) {
            if to != from && modules.contains(&to) {
                uses.insert(to);
            }
        }
    }
    graph
}

/// A cycle of the graph, as the modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph
            .entry((*from).to_owned())
            .or_default()
            .insert((*to).to_owned());
    }
    graph
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let layered = graph_of(&[("api", "ops"), ("console", "ops"), ("ops", "state")]);
    assert_eq!(find_cycle(&layered), None);
    let cyclic = graph_of(&[("api", "ops"), ("ops", "engine"), ("engine", "api")]);
    let cycle = find_cycle(&cyclic).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}

#[test]
fn crate_paths_are_read_from_code_and_grouped_imports() {
    let text = "use crate::ops::{self, Caller};\n\
                use crate::{state::AppState, views};\n\
                // crate::console in a comment does not count\n\
                let x = crate::engine::driver::run;\n\
                use wharf_crate::api;";
    let names: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(names, ["engine", "ops", "state", "views"]);
}

#[test]
fn the_server_module_graph_has_no_cycle() {
    let graph = server_graph();
    assert!(
        graph.contains_key("ops") && graph.contains_key("api"),
        "the graph was not read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the server's modules use each other in a cycle: {}\nthe graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_layers_hold() {
    let graph = server_graph();
    let forbidden: &[(&str, &[&str])] = &[
        ("api", &["console", "engine"]),
        ("console", &["api", "engine", "extract"]),
        (
            "ops",
            &["api", "console", "engine", "auth", "extract", "error"],
        ),
        ("engine", &["api", "console", "auth", "extract", "error"]),
        (
            "release_views",
            &["api", "console", "engine", "ops", "error"],
        ),
    ];
    for (module, never) in forbidden {
        let uses = graph.get(*module).cloned().unwrap_or_default();
        for other in *never {
            assert!(
                !uses.contains(*other),
                "{module} uses {other}; the layers are api/console -> ops -> engine-free lower modules (see ARCHITECTURE.md)"
            );
        }
    }
}
