//! Every relative link in the repository's Markdown resolves: `[text](path)` and
//! `[text](path#anchor)` (and `[label]: path` definitions) in every tracked `*.md` point to an
//! existing file or directory, and an anchor into a Markdown file names one of its headings by
//! GitHub's slug. Links inside code (fenced blocks, backtick spans) are not links.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tracked Markdown files, relative to the root.
fn markdown_files() -> Vec<PathBuf> {
    let output = Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(root())
        .output()
        .expect("runs `git ls-files` (this test checks a git checkout of the repository)");
    assert!(
        output.status.success(),
        "`git ls-files` failed: run this test in a git checkout of the repository: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files: Vec<PathBuf> = output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .collect();
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "README.md is not tracked"
    );
    files
}

/// The lines of `text`, those of fenced code blocks (and their fences) made empty.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<String> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        let is_fence = marker.len() >= 3 && marker.chars().all(|c| marker.starts_with(c));
        match &fence {
            Some(open) => {
                if is_fence && marker.len() >= open.len() && marker.starts_with(&open[..1]) {
                    fence = None;
                }
                lines.push("");
            }
            None if is_fence => {
                fence = Some(marker);
                lines.push("");
            }
            None => lines.push(line),
        }
    }
    lines
}

/// The text outside fenced code blocks and backtick spans (each replaced by a blank, lines kept).
fn prose(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    for line in outside_fences(text) {
        kept.push_str(&without_code_spans(line));
        kept.push('\n');
    }
    kept
}

/// A line without its backtick spans: a run of n backticks opens a span that the next run of
/// exactly n closes; an unclosed run is literal.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(std::iter::repeat_n('`', n));
                i += n;
            }
        }
    }
    out
}

/// The targets of inline links (`](target)`, `](target "title")`) and of link definitions
/// (`[label]: target`).
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for (at, _) in prose.match_indices("](") {
        let rest = &prose[at + 2..];
        let rest = rest.strip_prefix('<').unwrap_or(rest);
        let end = rest
            .find(|c: char| c == ')' || c == '>' || c.is_whitespace())
            .unwrap_or(rest.len());
        targets.push(rest[..end].to_string());
    }
    for line in prose.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix('[') {
            if let Some((label, target)) = rest.split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    if let Some(target) = target.split_whitespace().next() {
                        targets.push(target.trim_matches(['<', '>']).to_string());
                    }
                }
            }
        }
    }
    targets
}

/// A heading's anchor as GitHub makes it: the text as rendered (code, emphasis and link markup
/// removed), lower-cased, every character but letters, digits, `-`, `_` and spaces dropped,
/// spaces made `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](url)` renders as text
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](").map(|m| open + m) {
            Some(mid) if rest[mid..].contains(')') => {
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..mid]);
                let close = mid + rest[mid..].find(')').unwrap_or(0);
                rest = &rest[close + 1..];
            }
            _ => {
                text.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| *c != '`' && *c != '*')
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's ATX headings, with GitHub's `-1`, `-2` … for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in outside_fences(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(heading);
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = match *count {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// `a/b/../c` → `a/c`; `None` when the path leaves the repository.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with each relative link of `file` (relative to the root), given its text.
fn broken_links(file: &Path, text: &str) -> Vec<String> {
    let root = root();
    let mut problems = Vec::new();
    for target in link_targets(&prose(text)) {
        if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            Some(file.to_path_buf())
        } else {
            normalise(&file.parent().unwrap_or(Path::new("")).join(path))
        };
        let Some(resolved) = resolved else {
            problems.push(format!(
                "{}: `{target}` leaves the repository",
                file.display()
            ));
            continue;
        };
        let on_disk = root.join(&resolved);
        if !on_disk.exists() {
            problems.push(format!(
                "{}: `{target}`: no file {}",
                file.display(),
                resolved.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if resolved.extension().is_some_and(|e| e == "md") {
            let heading_text = std::fs::read_to_string(&on_disk)
                .unwrap_or_else(|e| panic!("reads {}: {e}", on_disk.display()));
            let known = anchors(&heading_text);
            if !known.contains(anchor) {
                problems.push(format!(
                    "{}: `{target}`: {} has no heading `#{anchor}` (its anchors: {})",
                    file.display(),
                    resolved.display(),
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let files = markdown_files();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let path = root().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reads {}: {e}", path.display()));
        checked += link_targets(&prose(&text)).len();
        problems.extend(broken_links(file, &text));
    }
    assert!(checked > 20, "only {checked} links found in {files:?}");
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The slugs as GitHub makes them for headings of this repository.
#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("Running the tests"), "running-the-tests");
    assert_eq!(
        slug("`ecs` (default) — nested objects, ECS 8.11 field names"),
        "ecs-default--nested-objects-ecs-811-field-names"
    );
    assert_eq!(
        slug("Central files: `logcollect collect`"),
        "central-files-logcollect-collect"
    );
    assert_eq!(
        slug("Failover across a cluster's nodes"),
        "failover-across-a-clusters-nodes"
    );
    assert_eq!(slug("The [guide](x.md) here"), "the-guide-here");
    let repeated = anchors("# A\n## Guarantees\n```\n# not a heading\n```\n### Guarantees\n");
    let expected: BTreeSet<String> = ["a", "guarantees", "guarantees-1"].map(String::from).into();
    assert_eq!(repeated, expected);
}

/// A broken path, a missing anchor and a link out of the repository are each reported; links in
/// code are not links.
#[test]
fn broken_links_are_reported() {
    let text = "See [a](docs/nope.md), [b](README.md#no-such-heading), [c](../../x.md), \
                [d](README.md#install) and `[e](nope.md)`.\n```\n[f](nope.md)\n```\n";
    let problems = broken_links(Path::new("README.md"), text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("no file docs/nope.md"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("no heading `#no-such-heading`"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains("leaves the repository"),
        "{}",
        problems[2]
    );
}
