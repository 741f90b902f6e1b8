//! The module dependency direction, `util <- storage <- broker <- protocol
//! <- server <- bin`, checked on the sources: a lower layer never names a
//! higher one (so there is no import cycle), `storage` and `broker` never
//! touch sockets, and only `server` uses `mio`.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
}

fn check(layer: &str, forbidden: &[&str]) {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer),
        &mut files,
    );
    assert!(!files.is_empty(), "no sources under src/{layer}");
    let mut problems = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    problems.push(format!("{path}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "src/{layer} must not use {forbidden:?}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn lower_layers_never_name_higher_ones() {
    check(
        "util",
        &[
            "crate::storage",
            "crate::broker",
            "crate::protocol",
            "crate::server",
            "mio::",
        ],
    );
    check(
        "storage",
        &[
            "crate::broker",
            "crate::protocol",
            "crate::server",
            "mio::",
            "std::net",
        ],
    );
    check(
        "broker",
        &["crate::protocol", "crate::server", "mio::", "std::net"],
    );
    check("protocol", &["crate::server", "mio::"]);
}
