//! ARCHITECTURE.md's layers, held: for the server, the SDK and the engine,
//! every top-level module sits in exactly one layer of the list written
//! there (the ```` ```layers ```` blocks, read by this test, so the document
//! and the check cannot drift), and a module may use only modules of lower
//! layers — so there are no cycles either. References are the
//! `crate::<module>` paths of the sources outside tests and comments.
//!
//! Before this test the server had one strongly connected component of 12
//! of its 27 modules; see ARCHITECTURE.md for the edges that closed it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rampart_tests::workspace;

/// Top-level module → the modules it references → the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The crates whose structure ARCHITECTURE.md lays out.
const CRATES: [&str; 3] = ["server/src", "sdk-rust/src", "sdk-rust/engine/src"];

/// The layers of `dir`, bottom first, from ARCHITECTURE.md.
fn layers(document: &str, dir: &str) -> Vec<(String, Vec<String>)> {
    let opening = format!("```layers {dir}\n");
    let start = document.find(&opening).unwrap_or_else(|| panic!("ARCHITECTURE.md has no ```layers {dir} block"));
    let body = &document[start + opening.len()..];
    let body = &body[..body.find("```").expect("the layers block ends")];
    body.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, modules) = line.split_once(':').unwrap_or_else(|| panic!("a layer is `name: a, b`: {line}"));
            (
                name.trim().to_owned(),
                modules.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
            )
        })
        .collect()
}

fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .expect("a source folder")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let module = path.is_dir() || (path.extension()? == "rs" && name != "lib" && name != "main");
            module.then_some(name)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a folder").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

/// The code of a file that ships: without its unit tests and comments.
fn shipped_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Identifiers after `prefix`, including `prefix{a, b::c}` groups.
fn referenced(code: &str, prefix: &str) -> Vec<String> {
    let ident =
        |text: &str| -> String { text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut out = Vec::new();
    for (index, _) in code.match_indices(prefix) {
        let preceded = code[..index]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$');
        if preceded {
            continue;
        }
        let rest = &code[index + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|part| ident(part.trim())).filter(|name| !name.is_empty()));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let modules = modules(src);
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).expect("inside").to_path_buf();
        let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
        let owner = first.trim_end_matches(".rs").to_owned();
        if !modules.contains(&owner) {
            continue; // lib.rs and main.rs: the composition root
        }
        let code = shipped_code(&std::fs::read_to_string(&file).expect("readable"));
        let mut targets = referenced(&code, "crate::");
        if relative.components().count() == 1 {
            // In a top-level file, `super::` is the crate root.
            targets.extend(referenced(&code, "super::"));
        }
        for target in targets {
            if target != owner && modules.contains(&target) {
                let files = graph.get_mut(&owner).expect("owner").entry(target).or_default();
                files.insert(relative.display().to_string());
            }
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, node: &'g str) {
            let order = self.index.len();
            self.index.insert(node, order);
            self.low.insert(node, order);
            self.stack.push(node);
            for next in self.graph[node].keys() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search =
        Search { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.found
}

/// What is wrong with `graph` against `layers`, one line each.
fn violations(dir: &str, graph: &Graph, layers: &[(String, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, (name, modules)) in layers.iter().enumerate() {
        for module in modules {
            if layer_of.insert(module, index).is_some() {
                problems.push(format!("{dir}: `{module}` is in more than one layer"));
            }
            if !graph.contains_key(module) {
                problems.push(format!("{dir}: layer `{name}` names `{module}`, which is not a module"));
            }
        }
    }
    for (module, targets) in graph {
        let Some(&from) = layer_of.get(module.as_str()) else {
            problems.push(format!("{dir}: `{module}` is in no layer of ARCHITECTURE.md: place it"));
            continue;
        };
        for (target, files) in targets {
            let Some(&to) = layer_of.get(target.as_str()) else { continue };
            if to >= from {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                problems.push(format!(
                    "{dir}: {module} ({}) -> {target} ({}) points {} ({})",
                    layers[from].0,
                    layers[to].0,
                    if to == from { "within its layer" } else { "up" },
                    files.join(", ")
                ));
            }
        }
    }
    for component in cycles(graph) {
        let edges: Vec<String> = component
            .iter()
            .flat_map(|a| graph[a].keys().filter(|b| component.contains(b)).map(move |b| format!("{a}->{b}")))
            .collect();
        problems.push(format!("{dir}: cycle of {} modules: {}", component.len(), edges.join(" ")));
    }
    problems
}

#[test]
fn every_module_sits_in_its_layer_and_uses_only_lower_ones() {
    let document = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut problems = Vec::new();
    for dir in CRATES {
        let graph = graph(&workspace().join(dir));
        assert!(graph.len() >= 5, "{dir}: modules found: {:?}", graph.keys());
        problems.extend(violations(dir, &graph, &layers(&document, dir)));
    }
    assert!(problems.is_empty(), "the module structure drifted from ARCHITECTURE.md:\n{}", problems.join("\n"));
}

/// The check itself: a cycle and an upward edge are reported with their files.
#[test]
fn an_upward_edge_and_a_cycle_are_reported() {
    let graph: Graph = [
        ("store", vec![("config", "store/redis.rs")]),
        ("config", vec![("relay", "config/mod.rs")]),
        ("relay", vec![("config", "relay/mod.rs")]),
    ]
    .into_iter()
    .map(|(module, targets)| {
        let targets =
            targets.into_iter().map(|(target, file)| (target.to_owned(), BTreeSet::from([file.to_owned()]))).collect();
        (module.to_owned(), targets)
    })
    .collect();
    let layers = layers("```layers x\nbottom: config\nmiddle: store\ntop: relay\n```\n", "x");
    let problems = violations("x", &graph, &layers);
    assert_eq!(
        problems,
        [
            "x: config (bottom) -> relay (top) points up (config/mod.rs)",
            "x: cycle of 2 modules: config->relay relay->config",
        ],
        "store -> config points down and passes"
    );
    assert_eq!(referenced("use crate::{a, b::c};\nx::crate::no; crate::d::e", "crate::"), ["a", "b", "d"]);
}
