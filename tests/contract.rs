//! The contract and its citations stay in step.
//!
//! The contract is `src/contract.md`, published as `hindsight::contract`:
//! numbered rules, one list item (`N. ...` at the start of a line) each.
//! Docs, comments, tests and the conformance kit cite them by number: "rule
//! 7", "rules 2, 7 and 14", "rules 1-12", "§§ 2-3", or a kit case or test
//! named `rule_07_...`. These tests read every source and document of the
//! repository and fail if a citation names a rule the contract does not
//! have, if a file cites rules without saying they are the contract's, or
//! if anything still points at a rules file users cannot read.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// What is scanned, relative to the package root. Paths that are absent
/// (the packaged crate has no `loom-tests/` or `benches/`) are skipped.
const SCANNED: &[&str] = &[
    "src",
    "tests",
    "examples",
    "loom-tests",
    "benches",
    "ci",
    "README.md",
    "DESIGN.md",
    "PERF.md",
];

/// File types that hold docs or comments.
const EXTENSIONS: &[&str] = &["rs", "md", "sh", "py", "toml"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The rules the contract defines, in the order it defines them.
fn defined_rules(contract: &str) -> Vec<u32> {
    contract
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.split_once(". ")?;
            let ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
            (ok && !rest.is_empty()).then(|| number.parse().unwrap())
        })
        .collect()
}

/// A rule number cited in a file, with the line it is on.
#[derive(Debug, PartialEq, Eq)]
struct Citation {
    line: usize,
    rule: u32,
    /// In the name of a test or kit case (`rule_07_...`), not in words.
    in_name: bool,
}

/// Every rule number `text` cites. A citation may wrap across lines of a
/// comment ("rule\n/// 10"), so comment markers at the start of a line are
/// read as white space.
fn cited_rules(text: &str) -> Vec<Citation> {
    // The text as one line of words, each character with its line number.
    let mut chars: Vec<(char, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let body = line.trim_start();
        let body = body.trim_start_matches(['/', '!', '#', '*']);
        chars.extend(body.chars().map(|c| (c, index + 1)));
        chars.push((' ', index + 1));
    }
    let text: Vec<char> = chars.iter().map(|&(c, _)| c).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let before_ok = i == 0 || !(text[i - 1].is_alphanumeric() || text[i - 1] == '_');
        let keyword = if before_ok {
            keyword_at(&text, i)
        } else {
            None
        };
        let Some((after, case_name)) = keyword else {
            i += 1;
            continue;
        };
        let line = chars[i].1;
        if case_name {
            // `rule_07_...`: the digits up to the next underscore.
            let (number, end) = number_at(&text, after);
            if let Some(rule) = number {
                found.push(Citation {
                    line,
                    rule,
                    in_name: true,
                });
            }
            i = end.max(i + 1);
            continue;
        }
        // "rule 7", "rules 2, 7 and 14", "rules 1-12, 14 and 25", "§§ 6-7".
        let mut j = skip_spaces(&text, after);
        let mut any = false;
        while let (Some(first), end) = number_at(&text, j) {
            any = true;
            j = end;
            let mut last = first;
            if j < text.len() && (text[j] == '-' || text[j] == '–') {
                if let (Some(to), end) = number_at(&text, j + 1) {
                    last = to;
                    j = end;
                }
            }
            found.extend((first..=last.max(first)).map(|rule| Citation {
                line,
                rule,
                in_name: false,
            }));
            // A list goes on after ", ", " and " or ", and ".
            let mut k = j;
            let comma = k < text.len() && text[k] == ',';
            if comma {
                k += 1;
            }
            k = skip_spaces(&text, k);
            let and = text[k..].starts_with(&['a', 'n', 'd', ' ']);
            if and {
                k = skip_spaces(&text, k + 4);
            }
            if !(comma || and) || number_at(&text, k).0.is_none() {
                break;
            }
            j = k;
        }
        i = if any { j } else { i + 1 };
    }
    found
}

/// If a citation keyword starts at `i`: where its numbers start, and
/// whether it is a case name (`rule_07`) rather than words (`rule 7`).
fn keyword_at(text: &[char], i: usize) -> Option<(usize, bool)> {
    let rest = &text[i..];
    let lower =
        |n: usize| -> String { rest.iter().take(n).flat_map(|c| c.to_lowercase()).collect() };
    if rest.starts_with(&['§', '§']) {
        return Some((i + 2, false));
    }
    if rest.starts_with(&['§']) {
        return Some((i + 1, false));
    }
    if lower(6) == "rules " {
        return Some((i + 6, false));
    }
    if lower(5) == "rule " {
        return Some((i + 5, false));
    }
    if lower(5) == "rule_" {
        return Some((i + 5, true));
    }
    None
}

fn skip_spaces(text: &[char], mut i: usize) -> usize {
    while i < text.len() && text[i] == ' ' {
        i += 1;
    }
    i
}

/// The decimal number at `i`, if one starts there and is not part of a
/// longer word or a decimal fraction, and where it ends.
fn number_at(text: &[char], i: usize) -> (Option<u32>, usize) {
    let mut end = i;
    while end < text.len() && text[end].is_ascii_digit() {
        end += 1;
    }
    if end == i {
        return (None, i);
    }
    let fraction = end + 1 < text.len() && text[end] == '.' && text[end + 1].is_ascii_digit();
    let word = end < text.len() && text[end].is_alphabetic();
    if fraction || word {
        return (None, i);
    }
    let digits: String = text[i..end].iter().collect();
    (digits.parse().ok(), end)
}

/// Every file under the scanned paths, sorted.
fn scanned_files() -> Vec<PathBuf> {
    fn walk(path: &Path, files: &mut Vec<PathBuf>) {
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "target" || name.starts_with('.') {
                return;
            }
            let mut entries: Vec<_> = fs::read_dir(path)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, files);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            files.push(path.to_owned());
        }
    }
    let mut files = Vec::new();
    for path in SCANNED {
        walk(&root().join(path), &mut files);
    }
    files
}

/// What is wrong with the citations in `text` (the file `name`), given the
/// rules the contract defines.
fn problems(name: &str, text: &str, defined: &BTreeSet<u32>) -> Vec<String> {
    let mut problems = Vec::new();
    let citations = cited_rules(text);
    for citation in &citations {
        if !defined.contains(&citation.rule) {
            problems.push(format!(
                "{name}:{}: cites rule {}, which the contract (src/contract.md) does not have",
                citation.line, citation.rule
            ));
        }
    }
    // A file that cites rules in words says, at least once, whose they are.
    let in_words = citations.iter().any(|citation| !citation.in_name);
    if in_words && !text.to_lowercase().contains("contract") {
        problems.push(format!(
            "{name}: cites rules but never says they are the contract's \
             (name `hindsight::contract` or \"the contract\")"
        ));
    }
    // The rules are the crate's; the project's working notes are not
    // published, so nothing may send a reader there.
    let unpublished = concat!("SEMANTICS", ".md");
    for (index, line) in text.lines().enumerate() {
        if line.contains(unpublished) {
            problems.push(format!(
                "{name}:{}: points at {unpublished}, which users cannot read; cite the contract",
                index + 1
            ));
        }
    }
    problems
}

fn contract() -> String {
    fs::read_to_string(root().join("src/contract.md")).expect("src/contract.md")
}

#[test]
fn the_contract_numbers_its_rules_from_1_without_gaps() {
    let rules = defined_rules(&contract());
    let expected: Vec<u32> = (1..=rules.len() as u32).collect();
    assert_eq!(rules, expected, "rules in src/contract.md out of order");
    assert!(rules.len() >= 31, "rules were removed: {rules:?}");
}

#[test]
fn every_cited_rule_is_in_the_contract() {
    let defined: BTreeSet<u32> = defined_rules(&contract()).into_iter().collect();
    let files = scanned_files();
    assert!(files.len() > 20, "the scan found only {files:?}");
    let mut all = Vec::new();
    let mut cited = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        cited += cited_rules(&text).len();
        all.extend(problems(&name, &text, &defined));
    }
    assert!(all.is_empty(), "\n{}\n", all.join("\n"));
    assert!(
        cited > 100,
        "only {cited} citations found: is the scan broken?"
    );
}

#[test]
fn the_kits_cases_cite_rules_of_the_contract() {
    let defined: BTreeSet<u32> = defined_rules(&contract()).into_iter().collect();
    for case in hindsight::testkit::CASES {
        for rule in case.rules {
            assert!(
                defined.contains(&u32::from(*rule)),
                "{case:?} checks a rule the contract does not have"
            );
        }
    }
}

#[test]
fn citations_are_read_in_every_form() {
    let rules = |text: &str| -> Vec<u32> { cited_rules(text).iter().map(|c| c.rule).collect() };
    assert_eq!(rules("all or nothing (rule 7)."), [7]);
    assert_eq!(rules("Rules 2, 7 and 14: positions"), [2, 7, 14]);
    assert_eq!(rules("rules 1-3, 14 and 25"), [1, 2, 3, 14, 25]);
    assert_eq!(rules("see §§ 2-3, 6-7, 12"), [2, 3, 6, 7, 12]);
    assert_eq!(rules("/// the first expectation kept: rule\n/// 10)"), [10]);
    assert_eq!(rules("fn rule_13_any_writers() {}"), [13]);
    assert_eq!(rules("rule 23's wait"), [23]);
    assert_eq!(
        rules("rule 13 100 writers, rules 2 and 3 events"),
        [13, 2, 3]
    );
    assert!(rules("macro_rules! x; rules out; the C11 fence rules; 4 rules").is_empty());
    assert_eq!(
        cited_rules("one\ntwo (contract rule 5)"),
        [Citation {
            line: 2,
            rule: 5,
            in_name: false
        }]
    );
}

#[test]
fn a_citation_of_a_missing_rule_fails() {
    let defined: BTreeSet<u32> = defined_rules(&contract()).into_iter().collect();
    let missing = defined.last().unwrap() + 1;
    let text = format!("The contract promises this (rule {missing}).");
    let found = problems("example.md", &text, &defined);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(&format!("cites rule {missing}")),
        "{found:?}"
    );

    let whose = "Positions are dense (rule 2).";
    assert_eq!(problems("example.md", whose, &defined).len(), 1);
    let named = "fn rule_02_positions_are_dense() {}";
    assert!(problems("example.rs", named, &defined).is_empty());
}
