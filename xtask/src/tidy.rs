//! Tidy checks: rules about the source tree that no compiler or linter enforces, run as ordinary
//! `#[test]`s so that a plain `cargo test` keeps them true (rust-analyzer's `xtask/src/tidy.rs`).
//!
//! Three rules: every `.rs` file opens with a `//!` paragraph; no debugging or placeholder
//! macros are left in the tree; and the crate layering holds (nameko-core at the bottom knows
//! nothing of AMQP or HTTP, extensions never depend on each other, and only the edge reads YAML
//! or command lines), as read from
//! `cargo metadata`. Each rule is a pure function over text or parsed metadata, tested on
//! synthetic input that breaks it, so a checker that silently stopped checking would fail too.
//! The forbidden macro names are spelled with `concat!` so this file does not trip its own rule.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

/// Macros that must not be left in the tree: debugging output and unfinished code.
const FORBIDDEN_MACROS: [&str; 3] = [
    concat!("dbg", "!("),
    concat!("todo", "!("),
    concat!("unimplemented", "!("),
];

/// The HTTP stack: only nameko-http (and the crates allowed to combine extensions) may use it.
const HTTP_STACK: &[&str] = &["hyper", "hyper-util", "http-body-util", "routefinder"];

/// The extension crates; depending on several of them is what only the top of the stack may do.
const EXTENSIONS: &[&str] = &["nameko-rpc", "nameko-events", "nameko-http", "nameko-timer"];

/// The crates at the top of the stack, allowed to depend on several extensions.
const MAY_COMBINE_EXTENSIONS: &[&str] = &["nameko-cli", "xtask", "nameko-tests", "nameko-bench"];

/// Crates for the process's edge (reading config files, parsing a command line): only the crates
/// without a rule (the CLI and the tooling) may use them, so a service that never reads a file
/// links no YAML parser.
const EDGE_ONLY: &[&str] = &["serde_yaml_ng", "clap"];

/// What one workspace crate may depend on.
struct Rule {
    krate: &'static str,
    /// The only workspace crates it may depend on.
    workspace_deps: &'static [&'static str],
    /// External crates it must never depend on.
    forbidden: &'static [&'static str],
    /// Why, for the failure message.
    reason: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        krate: "nameko-core",
        workspace_deps: &[],
        forbidden: &[
            "lapin",
            "hyper",
            "hyper-util",
            "http-body-util",
            "routefinder",
        ],
        reason: "nameko-core knows nothing of AMQP or HTTP and depends on no other workspace crate",
    },
    Rule {
        krate: "nameko-amqp",
        workspace_deps: &["nameko-core"],
        forbidden: HTTP_STACK,
        reason: "nameko-amqp is the AMQP transport over nameko-core and knows nothing of HTTP",
    },
    Rule {
        krate: "nameko-rpc",
        workspace_deps: &["nameko-core", "nameko-amqp"],
        forbidden: HTTP_STACK,
        reason: "AMQP extensions build on nameko-core and nameko-amqp only",
    },
    Rule {
        krate: "nameko-events",
        workspace_deps: &["nameko-core", "nameko-amqp"],
        forbidden: HTTP_STACK,
        reason: "AMQP extensions build on nameko-core and nameko-amqp only",
    },
    Rule {
        krate: "nameko-http",
        workspace_deps: &["nameko-core"],
        forbidden: &["lapin"],
        reason: "nameko-http builds on nameko-core only and knows nothing of AMQP",
    },
    Rule {
        krate: "nameko-timer",
        workspace_deps: &["nameko-core"],
        forbidden: &["lapin"],
        reason: "nameko-timer builds on nameko-core only and knows nothing of AMQP",
    },
];

/// A workspace member and every dependency it declares.
#[derive(Debug)]
struct Member {
    name: String,
    deps: Vec<Dependency>,
}

#[derive(Debug)]
struct Dependency {
    /// The package name, even when the dependency is renamed in the manifest.
    name: String,
    /// `dependency`, `dev-dependency` or `build-dependency`, for the failure message.
    kind: &'static str,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, skipping build output (`target`) and hidden directories such as
/// `.git`, in a stable order so failures read the same every run.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if file_type.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The problem with a file's opening, if its first non-empty line is not a `//!` doc line.
fn check_module_doc(text: &str) -> Option<String> {
    match text.lines().find(|line| !line.trim().is_empty()) {
        None => Some("is empty; expected a `//!` paragraph saying what lives there".to_owned()),
        Some(line) if line.trim_start().starts_with("//!") => None,
        Some(line) => Some(format!(
            "expected the first non-empty line to start with `//!`, found `{}`",
            line.trim()
        )),
    }
}

/// Every `line: macro` where a forbidden macro is used.
fn check_forbidden_macros(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for needle in FORBIDDEN_MACROS {
            if line.contains(needle) {
                found.push(format!("line {}: `{needle}`", index + 1));
            }
        }
    }
    found
}

/// The workspace members and their declared dependencies from `cargo metadata --no-deps` output.
fn members_from_metadata(metadata: &Value) -> Vec<Member> {
    let packages = metadata["packages"]
        .as_array()
        .expect("cargo metadata has a `packages` array");
    packages
        .iter()
        .map(|package| Member {
            name: package["name"].as_str().expect("a package name").to_owned(),
            deps: package["dependencies"]
                .as_array()
                .expect("a package has a `dependencies` array")
                .iter()
                .map(|dep| Dependency {
                    name: dep["name"].as_str().expect("a dependency name").to_owned(),
                    kind: match dep["kind"].as_str() {
                        Some("dev") => "dev-dependency",
                        Some("build") => "build-dependency",
                        _ => "dependency",
                    },
                })
                .collect(),
        })
        .collect()
}

/// Every breach of the layering rules, each naming the crate and the offending dependency.
fn check_layering(members: &[Member]) -> Vec<String> {
    let workspace: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut problems = Vec::new();

    // A renamed or removed crate would otherwise make its rule pass by checking nothing.
    for rule in RULES {
        if !workspace.contains(rule.krate) {
            problems.push(format!(
                "the layering rule for {} names no workspace member; update tidy.rs",
                rule.krate
            ));
        }
    }

    for member in members {
        let deps = member.deps.iter().filter(|dep| dep.name != member.name);
        if let Some(rule) = RULES.iter().find(|rule| rule.krate == member.name) {
            for dep in deps {
                let is_workspace = workspace.contains(dep.name.as_str());
                if is_workspace && !rule.workspace_deps.contains(&dep.name.as_str()) {
                    let allowed = match rule.workspace_deps {
                        [] => "no workspace crate".to_owned(),
                        allowed => allowed.join(", "),
                    };
                    problems.push(format!(
                        "{} has {} as a {}, but may depend on {allowed} ({})",
                        member.name, dep.name, dep.kind, rule.reason
                    ));
                }
                if rule.forbidden.contains(&dep.name.as_str()) {
                    problems.push(format!(
                        "{} has {} as a {}, which it must never use ({})",
                        member.name, dep.name, dep.kind, rule.reason
                    ));
                }
                if EDGE_ONLY.contains(&dep.name.as_str()) && dep.kind == "dependency" {
                    problems.push(format!(
                        "{} has {} as a dependency, which only the edge (nameko-cli, tooling) \
                         may use: config files and command lines are read there",
                        member.name, dep.name
                    ));
                }
            }
        } else if !MAY_COMBINE_EXTENSIONS.contains(&member.name.as_str()) {
            let extensions: BTreeSet<&str> = deps
                .map(|dep| dep.name.as_str())
                .filter(|name| EXTENSIONS.contains(name))
                .collect();
            if extensions.len() > 1 {
                problems.push(format!(
                    "{} depends on several extension crates ({}); only {} may",
                    member.name,
                    extensions.into_iter().collect::<Vec<_>>().join(", "),
                    MAY_COMBINE_EXTENSIONS.join(", ")
                ));
            }
        }
    }
    problems
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = repo_root();
    let problems: Vec<String> = rust_files(&root)
        .into_iter()
        .filter_map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            check_module_doc(&text).map(|problem| {
                format!("{}: {problem}", path.strip_prefix(&root).unwrap().display())
            })
        })
        .collect();
    assert!(
        problems.is_empty(),
        "every .rs file must open with a `//!` paragraph saying what lives there and why:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_debugging_or_placeholder_macros() {
    let root = repo_root();
    let problems: Vec<String> = rust_files(&root)
        .into_iter()
        .flat_map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let shown = path.strip_prefix(&root).unwrap().display().to_string();
            check_forbidden_macros(&text)
                .into_iter()
                .map(move |problem| format!("{shown}: {problem}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "debugging output and unfinished code must not be left in the tree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn crate_layering_holds() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = check_layering(&members_from_metadata(&metadata));
    assert!(
        problems.is_empty(),
        "the crate layering is broken:\n{}",
        problems.join("\n")
    );
}

mod checkers {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_file_without_a_module_doc_fails() {
        assert_eq!(check_module_doc("\n\n//! Names.\nfn f() {}\n"), None);
        assert_eq!(check_module_doc("  //! Indented still counts.\n"), None);
        assert!(
            check_module_doc("#![allow(missing_docs)]\n//! Too late.\n")
                .unwrap()
                .contains("found `#![allow(missing_docs)]`")
        );
        assert!(
            check_module_doc("/// An item doc.\nfn f() {}\n")
                .unwrap()
                .contains("found `/// An item doc.`")
        );
        assert!(check_module_doc("// A plain comment.\n").is_some());
        assert!(check_module_doc("\n  \n").unwrap().contains("is empty"));
    }

    #[test]
    fn forbidden_macros_are_found_with_their_line() {
        let text = format!(
            "//! Doc.\nfn f() {{\n    {}x);\n}}\nfn g() {{ {}) }}\nfn h() {{ {}) }}\n",
            FORBIDDEN_MACROS[0], FORBIDDEN_MACROS[1], FORBIDDEN_MACROS[2]
        );
        assert_eq!(
            check_forbidden_macros(&text),
            [
                format!("line 3: `{}`", FORBIDDEN_MACROS[0]),
                format!("line 5: `{}`", FORBIDDEN_MACROS[1]),
                format!("line 6: `{}`", FORBIDDEN_MACROS[2]),
            ]
        );
        assert!(check_forbidden_macros("//! Doc.\nfn dbg() {}\n").is_empty());
    }

    /// A synthetic crate: its name and its dependencies with their metadata `kind`.
    type Crate = (
        &'static str,
        &'static [(&'static str, Option<&'static str>)],
    );

    /// `cargo metadata` output for a workspace of the given crates and their dependencies.
    fn metadata(crates: &[Crate]) -> Value {
        let packages: Vec<Value> = crates
            .iter()
            .map(|(name, deps)| {
                let deps: Vec<Value> = deps
                    .iter()
                    .map(|(dep, kind)| json!({ "name": dep, "kind": kind, "rename": null }))
                    .collect();
                json!({ "name": name, "dependencies": deps })
            })
            .collect();
        json!({ "packages": packages })
    }

    /// The real layering, which passes, plus `extra` crates and dependencies.
    fn layered_with(extra: &[Crate]) -> Vec<String> {
        let mut crates: Vec<Crate> = vec![
            (
                "nameko-core",
                &[("serde", None), ("tokio", Some("dev"))] as &[_],
            ),
            ("nameko-amqp", &[("nameko-core", None), ("lapin", None)]),
            (
                "nameko-rpc",
                &[("nameko-core", None), ("nameko-amqp", Some("dev"))],
            ),
            ("nameko-events", &[("nameko-amqp", None)]),
            (
                "nameko-http",
                &[
                    ("nameko-core", None),
                    ("hyper", None),
                    ("routefinder", None),
                ],
            ),
            ("nameko-timer", &[("nameko-core", None)]),
            (
                "nameko-cli",
                &[
                    ("nameko-rpc", None),
                    ("nameko-http", None),
                    ("nameko-timer", None),
                ],
            ),
            (
                "nameko-tests",
                &[("nameko-rpc", Some("dev")), ("nameko-events", Some("dev"))],
            ),
            ("xtask", &[("anyhow", None)]),
        ];
        for (name, deps) in extra {
            match crates.iter_mut().find(|(existing, _)| existing == name) {
                Some(existing) => existing.1 = deps,
                None => crates.push((name, deps)),
            }
        }
        check_layering(&members_from_metadata(&metadata(&crates)))
    }

    #[test]
    fn a_library_crate_reading_yaml_fails() {
        let problems = layered_with(&[(
            "nameko-core",
            &[("serde", None), ("serde_yaml_ng", None)] as &[_],
        )]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("nameko-core has serde_yaml_ng"),
            "{problems:?}"
        );
        let cli = layered_with(&[("nameko-cli", &[("serde_yaml_ng", None)] as &[_])]);
        assert_eq!(cli, Vec::<String>::new());
    }

    #[test]
    fn the_intended_layering_passes() {
        assert_eq!(layered_with(&[]), Vec::<String>::new());
    }

    #[test]
    fn core_depending_on_a_workspace_crate_or_transport_fails() {
        let problems = layered_with(&[(
            "nameko-core",
            &[
                ("nameko-amqp", Some("dev")),
                ("lapin", None),
                ("hyper-util", Some("build")),
            ],
        )]);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with(
            "nameko-core has nameko-amqp as a dev-dependency, but may depend on no workspace crate"
        ));
        assert!(
            problems[1]
                .starts_with("nameko-core has lapin as a dependency, which it must never use")
        );
        assert!(problems[2].starts_with("nameko-core has hyper-util as a build-dependency"));
    }

    #[test]
    fn amqp_depending_on_an_extension_or_hyper_fails() {
        let problems = layered_with(&[(
            "nameko-amqp",
            &[
                ("nameko-core", None),
                ("nameko-rpc", Some("dev")),
                ("hyper", None),
            ],
        )]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("nameko-amqp has nameko-rpc as a dev-dependency"));
        assert!(problems[1].contains("nameko-amqp has hyper as a dependency"));
    }

    #[test]
    fn an_amqp_extension_depending_on_another_extension_fails() {
        let problems = layered_with(&[
            ("nameko-rpc", &[("nameko-events", Some("dev"))]),
            (
                "nameko-events",
                &[("nameko-amqp", None), ("http-body-util", None)],
            ),
        ]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("nameko-rpc has nameko-events as a dev-dependency"));
        assert!(problems[1].contains("nameko-events has http-body-util as a dependency"));
    }

    #[test]
    fn http_or_timer_touching_amqp_fails() {
        let problems = layered_with(&[
            (
                "nameko-http",
                &[("nameko-core", None), ("nameko-amqp", None)],
            ),
            ("nameko-timer", &[("lapin", Some("dev"))]),
        ]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with(
            "nameko-http has nameko-amqp as a dependency, but may depend on nameko-core"
        ));
        assert!(problems[1].starts_with("nameko-timer has lapin as a dev-dependency"));
    }

    #[test]
    fn only_the_top_crates_may_combine_extensions() {
        let problems = layered_with(&[
            (
                "nameko-examples",
                &[("nameko-rpc", None), ("nameko-timer", Some("dev"))],
            ),
            ("nameko-single", &[("nameko-rpc", None)]),
        ]);
        assert_eq!(
            problems,
            [
                "nameko-examples depends on several extension crates (nameko-rpc, nameko-timer); \
              only nameko-cli, xtask, nameko-tests, nameko-bench may"
            ]
        );
    }

    #[test]
    fn a_rule_for_a_missing_crate_fails() {
        let crates: &[Crate] = &[("nameko-core", &[])];
        let problems = check_layering(&members_from_metadata(&metadata(crates)));
        assert!(
            problems.contains(
                &"the layering rule for nameko-timer names no workspace member; update tidy.rs"
                    .to_owned()
            ),
            "{problems:#?}"
        );
    }
}
