//! `rolewatch validate-config`: pure, exit 0 with the effective configuration, or exit 78 with
//! every problem naming its key and file.

use crate::{assert_exit, rolewatch, stderr, stdout};

#[test]
fn the_documented_example_and_the_defaults_are_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rolewatch.toml");
    for args in [
        vec!["validate-config"],
        vec!["validate-config", "--config", example],
    ] {
        let out = rolewatch(&args);
        assert_exit(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("is valid"), "{text}");
        assert!(text.contains("cloudtrail:us-east-1"), "{text}");
        assert!(text.contains("AstronomerCrossAccountRole"), "{text}");
    }
}

#[test]
fn every_problem_is_listed_with_key_and_file_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[source]]\ntype = \"cloudtrails\"\n[[rule]]\nname = \"r\"\npattern = \"{ $.a = \"\nseverity = \"loud\"\n",
    )
    .unwrap();
    let out = rolewatch(["validate-config", "--config", path.to_str().unwrap()]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for key in ["source[0].type", "rule[0].pattern", "rule[0].severity"] {
        assert!(
            err.contains(&format!("bad.toml: {key}: ")),
            "{key} missing:\n{err}"
        );
    }
    assert!(
        err.contains('^'),
        "the pattern error keeps its caret:\n{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_password_never_appears_only_the_variable_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smtp.toml");
    std::fs::write(
        &path,
        "[[channel]]\ntype = \"smtp\"\nhost = \"smtp.example.com\"\nusername = \"u\"\npassword_env = \"ROLEWATCH_TEST_SMTP_PASSWORD\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(["validate-config", "--config", path.to_str().unwrap()])
        .env("ROLEWATCH_TEST_SMTP_PASSWORD", "hunter2-s3cret")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("ROLEWATCH_TEST_SMTP_PASSWORD"), "{text}");
    assert!(!text.contains("hunter2-s3cret"), "{text}");
}
