//! The README and docs/ say what is so: the commands table of
//! docs/commands.md names the commands the helper has, the README's test
//! list names every test module, every relative link of a page leads to a
//! file, and to a heading, that exists, and so does every file of the
//! repository a page names. (tests/nix/docs.nix checks the
//! reference pages of the host options and the container file.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{HELPER, REPO};

/// The text of a file of the repository.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The file names in a directory of the repository, sorted.
fn file_names(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(REPO).join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The README and the pages of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![Path::new(REPO).join("README.md")];
    for name in file_names("docs") {
        if name.ends_with(".md") {
            pages.push(Path::new(REPO).join("docs").join(name));
        }
    }
    pages
}

/// The section of a Markdown page under `## <title>`, up to the next one.
fn section<'a>(page: &'a str, title: &str) -> &'a str {
    let start = format!("\n## {title}\n");
    let after = page.split(&start).nth(1).unwrap_or_else(|| panic!("no section {title}"));
    after.split("\n## ").next().unwrap()
}

/// The commands the manual's synopsis names.
fn commands_of_the_synopsis() -> Vec<String> {
    let help = Command::new(HELPER).arg("help").output().unwrap();
    assert!(help.status.success(), "{}", String::from_utf8_lossy(&help.stderr));
    let manual = String::from_utf8(help.stdout).unwrap();
    let synopsis = manual.split("\nSYNOPSIS\n").nth(1).unwrap().split("\n\n").next().unwrap();
    synopsis
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nixcloud-container "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_commands_table_names_the_commands_the_helper_has() {
    let page = read(&Path::new(REPO).join("docs/commands.md"));
    let table = page
        .split("\n| command | what it does |\n")
        .nth(1)
        .expect("docs/commands.md has the commands table")
        .split("\n\n")
        .next()
        .unwrap();
    let mut in_table: Vec<String> = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split(" | ").next().unwrap();
        for (index, quoted) in first_cell.split('`').enumerate() {
            if index % 2 == 1 {
                in_table.push(quoted.split_whitespace().next().unwrap().to_string());
            }
        }
    }
    let mut defined = commands_of_the_synopsis();
    in_table.sort();
    defined.sort();
    assert_eq!(in_table, defined, "docs/commands.md's table and the command line differ");
}

/// What the README's test list must name: every module of the integration
/// tests, every suite file tests/nix/run evaluates, and tests/package-source.
fn test_modules() -> Vec<String> {
    let mut modules: Vec<String> = file_names("rust-helper/tests/integration")
        .into_iter()
        .filter(|name| name.ends_with(".rs") && name != "main.rs" && name != "common.rs")
        .collect();
    let nix_run = read(&Path::new(REPO).join("tests/nix/run"));
    for word in nix_run.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if let Some(file) = word.strip_prefix("./tests/nix/") {
            if file.ends_with(".nix") && file != "harness.nix" {
                modules.push(format!("tests/nix/{file}"));
            }
        }
    }
    modules.push("tests/package-source".to_string());
    modules.sort();
    modules.dedup();
    modules
}

#[test]
fn the_readme_names_every_test_module() {
    let readme = read(&Path::new(REPO).join("README.md"));
    let tests = section(&readme, "Tests and benchmarks");
    let unnamed: Vec<String> = test_modules()
        .into_iter()
        .filter(|module| !tests.contains(&format!("`{module}`")))
        .collect();
    assert!(unnamed.is_empty(), "the README's tests do not name {unnamed:?}");
    // And names none that is gone: every `<name>.rs` it names is a module.
    let modules = file_names("rust-helper/tests/integration");
    let gone: Vec<&str> = tests
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.ends_with(".rs") && !quoted.contains('/'))
        .filter(|quoted| !modules.iter().any(|module| module == quoted))
        .collect();
    assert!(gone.is_empty(), "the README's tests name modules that do not exist: {gone:?}");
}

/// A page's text without its code: fenced blocks and code spans, where
/// `](` is no link.
fn prose(page: &str) -> String {
    let mut text = String::new();
    let mut fenced = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            text.extend(line.split('`').step_by(2));
            text.push('\n');
        }
    }
    text
}

/// The targets of a page's inline links, `[text](target)`.
fn link_targets(page: &str) -> Vec<String> {
    prose(page)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(str::to_string)
        .collect()
}

/// The anchors of a page's headings, as GitHub makes them: lower case,
/// without punctuation, spaces as dashes, a repeated one numbered.
fn anchors(page: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !fenced) else { continue };
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut repeat = 0;
        while anchors.contains(&anchor) {
            repeat += 1;
            anchor = format!("{slug}-{repeat}");
        }
        anchors.insert(anchor);
    }
    anchors
}

#[test]
fn every_relative_link_leads_to_what_it_names() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file =
                if path.is_empty() { page.clone() } else { page.parent().unwrap().join(path) };
            let name = page.strip_prefix(REPO).unwrap_or(&page).display().to_string();
            if !file.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if !anchor.is_empty() && !anchors(&read(&file)).contains(anchor) {
                broken.push(format!("{name}: {target} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The code spans of a page that name a file of the repository: a path
/// below one of its directories, or one of its top files. Build output
/// (rust-helper/target) and patterns (`<name>`, `*`) name none.
fn named_files(page: &str) -> Vec<String> {
    const DIRECTORIES: [&str; 8] =
        ["rust-helper/", "lib/", "modules/", "tests/", "scripts/", "bench/", "examples/", "docs/"];
    const FILES: [&str; 4] = ["package.nix", "package-source.nix", "flake.nix", "default.nix"];
    page.split('`')
        .skip(1)
        .step_by(2)
        .map(|quoted| quoted.split(':').next().unwrap())
        .filter(|path| DIRECTORIES.iter().any(|dir| path.starts_with(dir)) || FILES.contains(path))
        .filter(|path| !path.starts_with("rust-helper/target"))
        .filter(|path| !path.contains(|c: char| c.is_whitespace() || "<>*{}".contains(c)))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_file_a_page_names_exists() {
    let mut missing = Vec::new();
    for page in pages() {
        for path in named_files(&read(&page)) {
            if !Path::new(REPO).join(&path).exists() {
                let name = page.strip_prefix(REPO).unwrap_or(&page).display().to_string();
                missing.push(format!("{name}: {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "pages name files that do not exist:\n{}", missing.join("\n"));
}
