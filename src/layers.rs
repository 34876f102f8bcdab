//! The crate's layers, bottom up, and the test that holds every import to them: a module may
//! import modules of its own layer or below, never one above, so no two top-level modules
//! import each other. docs/architecture.md explains the order.

/// Top-level modules by layer, lowest first. `testing` is test support and may be imported
/// from anywhere.
const LAYERS: &[&[&str]] = &[
    &[
        "clock", "identity", "protocol", "format", "template", "dirs", "notices", "sha256",
        "testing",
    ],
    &["config"],
    &["audit", "embed"],
    &["events"],
    &["catalog"],
    &["service"],
    &["watch"],
    &["ingest"],
    &["queue"],
    &["server"],
    &["daemon"],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::path::{Path, PathBuf};

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The top-level modules a file's non-test code names as `crate::<module>`.
    fn imports(text: &str) -> Vec<String> {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        let mut found = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        // `use crate::{a::X, b}`: every path in the braces.
        for (at, _) in code.match_indices("use crate::{") {
            let rest = &code[at + "use crate::{".len()..];
            let inside = &rest[..rest.find("};").unwrap_or(0)];
            for part in inside.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
        found
    }

    #[test]
    fn no_module_imports_a_layer_above_its_own() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let top = relative.components().next().unwrap().as_os_str();
            let top = top.to_str().unwrap().trim_end_matches(".rs");
            if matches!(top, "lib" | "main" | "bin" | "layers") {
                continue;
            }
            let own = layer(top).unwrap_or_else(|| {
                panic!("src/{top} is in no layer: put it in LAYERS (src/layers.rs)")
            });
            let text = std::fs::read_to_string(file).unwrap();
            for module in imports(&text) {
                if module == top {
                    continue;
                }
                let Some(theirs) = layer(&module) else {
                    continue;
                };
                if theirs > own {
                    wrong.push(format!(
                        "{} imports {module} (layer {theirs}) from layer {own}",
                        relative.display()
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layers:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_check_sees_an_import_from_above() {
        let text = "use crate::catalog::Catalog;\nuse crate::{server::Shared, clock};\n";
        assert_eq!(imports(text), ["catalog", "server", "clock"]);
        assert!(layer("server") > layer("catalog"));
    }
}
