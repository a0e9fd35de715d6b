//! `printf` in `sgr stencil` against Go's `fmt.Sprintf`: a generated corpus
//! of format × value cases (verbs × flags × widths × precisions over ints,
//! floats, strings, booleans, nil, lists and maps, plus Go's error forms and
//! `%[n]` indexes), rendered by sgr and by the Go reference program, which
//! must agree byte for byte. The corpus is built deterministically: the
//! same cases on every run.

use std::fmt::Write as _;
use std::process::Command;

use sgr_test_support::{Service, service};

use crate::common::{Repo, TestResult};

/// The data values (the Go reference sees them through the JSON context, so
/// every number is a float64, as in sgr).
const VALUES: &str = r#"{
  "p": {
    "zero": 0, "one": 1, "minus_one": -1, "half": 0.5, "two_and_half": 2.5,
    "pi": 3.14159, "minus_pi": -3.14159, "million": 1000000, "plain": 123456,
    "seven_digits": 1234567, "huge": 1e21, "small": 0.00001, "tiny": 1e-7,
    "tenth": 0.1, "max": 1.7976931348623157e308, "denormal": 5e-324,
    "min_normal": 2.2250738585072014e-308, "hundred": 100, "fraction": 0.000123456,
    "long": 123456789.987654321, "minus_milli": -0.001, "googol": 1e100,
    "eighth": 0.125, "three_eighths": 0.375, "near_ten": 9.995, "near_one": 1.005,
    "empty": "", "hi": "hi", "accent": "héllo", "unicode": "café ☕",
    "dquote": "a\"b", "squote": "it's", "tab": "tab\there", "newline": "one\ntwo",
    "backtick": "back`tick", "control": "\u0001ctl\u007f", "nbsp": "\u00a0nbsp",
    "zero_width": "\u200bzw", "bom": "\ufeffbom", "emoji": "😀 grin",
    "soft_hyphen": "\u00adshy", "html": "<a&b>", "backslash": "a\\b",
    "private": "\ue000", "yes": true, "no": false, "null": null,
    "empty_list": [], "mixed": [1, "a", null, true, 2.5],
    "nested_list": [[1, 2], {"k": "v"}, []],
    "empty_map": {}, "map": {"b": 2, "a": "x", "c": null, "d": [1, "y"]},
    "words": ["alpha", "beta"]
  }
}"#;

/// Template operands: data values and literals (`7` is an int, `3.14` a float64).
const OPERANDS: &[&str] = &[
    ".p.zero",
    ".p.one",
    ".p.minus_one",
    ".p.half",
    ".p.two_and_half",
    ".p.pi",
    ".p.minus_pi",
    ".p.million",
    ".p.plain",
    ".p.seven_digits",
    ".p.huge",
    ".p.small",
    ".p.tiny",
    ".p.tenth",
    ".p.max",
    ".p.denormal",
    ".p.min_normal",
    ".p.hundred",
    ".p.fraction",
    ".p.long",
    ".p.minus_milli",
    ".p.googol",
    ".p.eighth",
    ".p.three_eighths",
    ".p.near_ten",
    ".p.near_one",
    ".p.empty",
    ".p.hi",
    ".p.accent",
    ".p.unicode",
    ".p.dquote",
    ".p.squote",
    ".p.tab",
    ".p.newline",
    ".p.backtick",
    ".p.control",
    ".p.nbsp",
    ".p.zero_width",
    ".p.bom",
    ".p.emoji",
    ".p.soft_hyphen",
    ".p.html",
    ".p.backslash",
    ".p.private",
    ".p.yes",
    ".p.no",
    ".p.null",
    ".p.missing",
    "nil",
    ".p.empty_list",
    ".p.mixed",
    ".p.nested_list",
    ".p.empty_map",
    ".p.map",
    ".p.words",
    "0",
    "7",
    "-7",
    "42",
    "255",
    "-255",
    "65",
    "0x263a",
    "0x10FFFF",
    "0xD800",
    "1114112",
    "1000000",
    "9223372036854775807",
    "-9223372036854775807",
    "3.14",
    "-2.5",
    "1e3",
    "0.0",
    "-0.0",
    "1.5e-10",
    "'x'",
    "'é'",
    "true",
    "false",
    r#""lit""#,
    r#""""#,
];

const VERBS: &[char] = &[
    'v', 's', 'd', 'b', 'o', 'O', 'x', 'X', 'c', 'q', 'U', 'e', 'E', 'f', 'F', 'g', 'G', 't', 'T',
    'z', 'p',
];

const FLAGS: &[&str] = &[
    "", "+", "-", "#", "0", " ", "+0", "-0", "# ", "#0", "+#", "- ", "0+ ",
];

const SIZES: &[&str] = &["", "5", ".2", "8.3", ".0", "12", "1", ".10", "06.1"];

/// Operands that print addresses under `%p` in Go (lists and maps).
fn prints_an_address(operand: &str) -> bool {
    ["list", "mixed", "map", "words"]
        .iter()
        .any(|kind| operand.contains(kind))
}

/// One `{{ printf }}` call per line, numbered.
fn corpus() -> Vec<String> {
    let mut cases = Vec::new();
    // Every verb with every operand, no flags.
    for verb in VERBS {
        for operand in OPERANDS {
            if *verb == 'p' && prints_an_address(operand) {
                continue;
            }
            cases.push(format!("`%{verb}` {operand}"));
        }
    }
    // Verbs × flags × sizes, each with three operands chosen by a fixed stride.
    let mut rotation = 0;
    for verb in VERBS.iter().filter(|verb| **verb != 'p') {
        for flags in FLAGS {
            for size in SIZES {
                for offset in 0..3 {
                    let operand = OPERANDS[(rotation * 7 + offset * 29) % OPERANDS.len()];
                    cases.push(format!("`%{flags}{size}{verb}` {operand}"));
                }
                rotation += 1;
            }
        }
    }
    // Stars, indexes and Go's error forms.
    for special in [
        "`%.2f|%03d|%5d` 3.14159 7 7",
        "`%*d|%-*d|%.*f` 4 1 4 1 2 3.14159",
        "`%*d` 1.5 7",
        "`%*d` -6 7",
        "`%.*d` -1 7",
        "`%*d` 10000000 7",
        "`%[2]d %[1]d` 1 2",
        "`%[1]d %[1]x %d` 10 11",
        "`%[2]*[1]d` 12 5",
        "`%[3]*.[2]*[1]f` 12.0 2 6",
        "`%[1]d %d` 1",
        "`%[0]d|%[x]d|%[1d` 1",
        "`%[5]d` 1 2",
        "`%[1]2d` 1",
        "`%[1].2f` 1.0",
        "`%d %d` 1",
        "`%d` 1 2 \"x\" nil .p.map",
        "`%s` .p.hi 1.5 .p.words",
        "`%`",
        "`%!`",
        "`%-`",
        "`%5.`",
        "`%.`",
        "`abc`",
        "`%%|%5%|%d%%` 3",
        "`%é` 1",
        "`%☺d` 1",
        "`%v %v` .p.null .p.missing",
        "`%99999999d` 1",
        "`%.99999999d` 1",
        "`%[1]*d` 3",
        "`%[2]*d` 3 4",
        "`%#v %+v %v` .p.map .p.map .p.map",
        "`%#v` .p.nested_list",
        "`%x %X % x %#x` .p.unicode .p.unicode .p.unicode .p.unicode",
        "`%08.3f|%-8.3f|%+08d|% 08d` -3.14159 3.14159 7 7",
        "`%6.2v|%.3v|%10.4v` 3.14159 .p.long .p.hi",
        "`%.40f` 0.1",
        "`%.30e` .p.denormal",
        "`%.20g` .p.tenth",
        "`%#.20x` 1.0",
        "`%.300f` .p.denormal",
    ] {
        cases.push(special.to_owned());
    }
    // Rounding: every precision 0..=17 of a few values that tie or nearly tie.
    for value in [
        "0.5",
        "1.5",
        "2.5",
        "0.125",
        "0.375",
        "9.995",
        "1.005",
        "2.675",
        "1e23",
        "5e-324",
        ".p.long",
        ".p.near_ten",
    ] {
        for precision in 0..=17 {
            cases.push(format!(
                "`%.{precision}f|%.{precision}e|%.{precision}g` {value} {value} {value}"
            ));
        }
    }
    cases
}

#[test]
fn printf_matches_go_over_a_generated_corpus() -> TestResult {
    let Some(reference) = service(Service::StencilReference) else {
        return Ok(());
    };
    let repo = Repo::new("main")?;
    repo.write("values.json", VALUES)?;
    let cases = corpus();
    assert!(cases.len() >= 3000, "the corpus shrank: {}", cases.len());
    let mut template = String::new();
    for (number, case) in cases.iter().enumerate() {
        writeln!(template, "{number}:{{{{ printf {case} }}}}")?;
    }
    repo.write("printf.tmpl", &template)?;
    let stencil = || {
        let mut command = repo.sgr();
        command.args([
            "stencil",
            "--suppress-warnings",
            "--values-file",
            "values.json",
        ]);
        command
    };
    let context = stencil()
        .args(["--print-context", "printf.tmpl"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    repo.write("context.json", context)?;
    let ours = stencil().arg("printf.tmpl").output()?;
    let theirs = Command::new(&reference)
        .arg(repo.file("printf.tmpl"))
        .arg(repo.file("context.json"))
        .current_dir(repo.path())
        .output()?;
    assert!(
        theirs.status.success(),
        "Go: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert!(
        ours.status.success(),
        "sgr: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let ours_text = String::from_utf8_lossy(&ours.stdout);
    let theirs_text = String::from_utf8_lossy(&theirs.stdout);
    let differing: Vec<String> = ours_text
        .split('\n')
        .zip(theirs_text.split('\n'))
        .filter(|(ours, theirs)| ours != theirs)
        .take(20)
        .map(|(ours, theirs)| format!("  sgr: {ours}\n  Go:  {theirs}"))
        .collect();
    assert!(
        differing.is_empty() && ours.stdout == theirs.stdout,
        "{} cases; sgr and Go differ (first differing lines):\n{}",
        cases.len(),
        differing.join("\n")
    );
    Ok(())
}
