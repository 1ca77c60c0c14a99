//! The layering rules of the workspace, checked on the source itself:
//!
//! - the copy engine depends on no protocol crate and no async runtime
//!   (`oxcopy-copy`'s transitive dependencies in `Cargo.lock`);
//! - the node-link codec (`oxcopy-link`) depends on no other oxcopy crate
//!   and no async runtime;
//! - no production module of the iscsi, scsi, copy, storage, link,
//!   initiator or nvme crates imports a module that (transitively) imports it back.
//!
//! A module is a file under `src/` (`mod.rs`/`lib.rs` name their folder);
//! an import is a `crate::a::b` path or a `super::` path in code outside
//! `#[cfg(test)]` modules, comments and test-only files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Module name (`a::b`, `crate` for the root) → file, for one crate's `src`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            let last = parts.last().cloned().unwrap_or_default();
            let test_only = last == "tests"
                || last == "test"
                || last == "testing"
                || last == "test_support"
                || last.ends_with("_tests")
                || last.starts_with("tests_");
            if test_only {
                continue;
            }
            let name = if parts.is_empty() { "crate".to_string() } else { parts.join("::") };
            out.insert(name, path);
        }
    }
    out
}

/// The source without comments and `#[cfg(test)]` modules.
fn production_code(text: &str) -> String {
    let no_comments: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = String::new();
    let mut rest = no_comments.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // Only a test *module* is skipped; other cfg(test) items are kept.
        let head = after[12..].trim_start();
        let is_mod = head.starts_with("mod ") || head.starts_with("pub mod ") || head.starts_with("pub(crate) mod ");
        let Some(open) = after.find('{').filter(|_| is_mod) else {
            out.push_str(&after[..12]);
            rest = &after[12..];
            continue;
        };
        if after[..open].contains(';') {
            // `#[cfg(test)] mod x;` — a test file, already excluded.
            let semi = after.find(';').unwrap_or(after.len());
            rest = &after[(semi + 1).min(after.len())..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `word::word::...` paths starting at every occurrence of `prefix`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(prefix) {
        let start = from + i;
        from = start + prefix.len();
        let before_ok = code[..start].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !before_ok {
            continue;
        }
        let tail = &code[from..];
        let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        out.push(tail[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// Edges module → modules it imports, for one crate.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g: BTreeMap<String, BTreeSet<String>> = mods.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (m, path) in &mods {
        let code = production_code(&std::fs::read_to_string(path).expect("read module"));
        let mut targets: Vec<Vec<String>> =
            paths_after(&code, "crate::").into_iter().map(|p| p.into_iter().map(String::from).collect()).collect();
        // `super::x` from module `a::b::c` (file) names `a::b::x`.
        let own: Vec<String> = if m == "crate" { vec![] } else { m.split("::").map(String::from).collect() };
        let is_mod_rs = path.file_name().is_some_and(|f| f == "mod.rs" || f == "lib.rs");
        for p in paths_after(&code, "super::") {
            let mut base = own.clone();
            if !is_mod_rs {
                base.pop();
            }
            let mut parts: Vec<String> = p.into_iter().map(String::from).collect();
            while parts.first().is_some_and(|s| s == "super") {
                parts.remove(0);
                base.pop();
            }
            base.extend(parts);
            targets.push(base);
        }
        for t in targets {
            for k in (1..=t.len()).rev() {
                let cand = t[..k].join("::");
                let nested = cand.starts_with(&format!("{m}::")) || m.starts_with(&format!("{cand}::"));
                if mods.contains_key(&cand) && &cand != m && !nested {
                    g.get_mut(m).expect("module").insert(cand);
                    break;
                }
            }
        }
    }
    g
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in &s.g[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s =
        St { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_import_cycles_among_production_modules() {
    let mut found = Vec::new();
    // Folder names under `crates/` (the initiator is `oxcopy-initiator`).
    for krate in ["iscsi", "scsi", "copy", "storage", "link", "initiator", "nvme"] {
        let src = workspace().join("crates").join(krate).join("src");
        let g = edges(&src);
        assert!(g.len() > 1, "{krate}: no modules found under {}", src.display());
        for c in cycles(&g) {
            found.push(format!("crates/{krate}: a cycle among modules {}", c.join(", ")));
        }
    }
    assert!(found.is_empty(), "import cycles (layers must import only downwards):\n{}", found.join("\n"));
}

/// The checker itself finds a cycle it is shown (so the test above can fail).
#[test]
fn the_cycle_finder_finds_cycles() {
    let dir = std::env::temp_dir().join(format!("oxcopy-layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fam")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a; mod b; mod fam;").unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::b::X;\n#[cfg(test)]\nmod tests { use crate::fam::Y; }").unwrap();
    std::fs::write(dir.join("b.rs"), "// use crate::a::Z;\npub fn f() { crate::fam::leaf::g() }").unwrap();
    std::fs::write(dir.join("fam/mod.rs"), "mod leaf;").unwrap();
    std::fs::write(dir.join("fam/leaf.rs"), "use super::super::a::Q;").unwrap();
    let g = edges(&dir);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]), "test modules and comments are not imports");
    assert_eq!(g["fam::leaf"], BTreeSet::from(["a".to_string()]), "super:: paths resolve");
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string(), "fam::leaf".to_string()]]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The packages `root` reaches in `Cargo.lock`, itself included (as
/// `cargo tree -p root` would show).
fn reachable(root: &str) -> BTreeSet<String> {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).expect("Cargo.lock");
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pkg in lock.split("[[package]]").skip(1) {
        let name = pkg
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .map(|n| n.trim_end_matches('"').to_string())
            .expect("package name");
        let list = pkg
            .split("dependencies = [")
            .nth(1)
            .map(|d| {
                d.split(']')
                    .next()
                    .unwrap_or("")
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(|s| s.split(' ').next().unwrap_or(s).to_string())
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default();
        deps.entry(name).or_default().extend(list);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone()) {
            todo.extend(deps.get(&p).cloned().unwrap_or_default());
        }
    }
    seen
}

/// `oxcopy-copy` reaches no protocol crate and no async runtime, directly or
/// through its dependencies (as `cargo tree -p oxcopy-copy` would show).
#[test]
fn the_copy_engine_depends_on_no_protocol_and_no_runtime() {
    let seen = reachable("oxcopy-copy");
    assert!(seen.contains("oxcopy-storage") && seen.contains("hmac"), "the lock file was read: {seen:?}");
    for banned in ["oxcopy-scsi", "oxcopy-iscsi", "oxcopy-initiator", "tokio"] {
        assert!(!seen.contains(banned), "oxcopy-copy depends on {banned}");
    }
}

/// `oxcopy-link` (the node-link codec and handshake, no I/O) reaches no
/// other oxcopy crate and no async runtime.
#[test]
fn the_node_link_codec_depends_on_no_oxcopy_crate_and_no_runtime() {
    let seen = reachable("oxcopy-link");
    assert!(seen.contains("crc32c") && seen.contains("hmac"), "the lock file was read: {seen:?}");
    for p in &seen {
        assert!(p == "oxcopy-link" || !p.starts_with("oxcopy"), "oxcopy-link depends on {p}");
        assert!(p != "tokio" && !p.starts_with("tokio-"), "oxcopy-link depends on {p}");
    }
}

/// `oxcopy-nvme` (the NVMe/TCP core: transport, controller, NVM command
/// set over the engine) reaches no SCSI or iSCSI crate, no initiator and no
/// async runtime: NVMe is a front end beside SCSI, on the same engine.
#[test]
fn the_nvme_core_depends_on_the_engine_only() {
    let seen = reachable("oxcopy-nvme");
    assert!(seen.contains("oxcopy-copy") && seen.contains("oxcopy-storage"), "the lock file was read: {seen:?}");
    for banned in ["oxcopy-scsi", "oxcopy-iscsi", "oxcopy-initiator", "oxcopy-link", "tokio"] {
        assert!(!seen.contains(banned), "oxcopy-nvme depends on {banned}");
    }
}

/// The protocol and copy cores are tested on virtual clocks: no `sleep`
/// anywhere in their sources (unit tests included).
#[test]
fn no_sleep_in_the_cores() {
    let mut found = Vec::new();
    for krate in ["iscsi", "scsi", "copy", "link", "nvme"] {
        let src = workspace().join("crates").join(krate).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read");
                    for (i, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or("");
                        if code.contains("sleep(") || code.contains("sleep_until(") {
                            found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "sleeps in core crates:\n{}", found.join("\n"));
}
