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

/// Every file of `tests/fixtures/invalid-config/` has one mistake: exit 78 and exactly one
/// problem, naming the file and the key, saying what is wrong. No file left untested.
#[test]
fn each_invalid_config_of_the_corpus_gives_one_clear_message() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/invalid-config"
    ));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus is there: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let header = |tag: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(tag))
                .unwrap_or_else(|| panic!("{}: no `{tag}` line", path.display()))
                .trim()
                .to_owned()
        };
        let (key, says) = (header("# key:"), header("# says:"));
        let out = rolewatch(["validate-config", "--config", path.to_str().unwrap()]);
        let err = stderr(&out);
        let file = path.display().to_string();
        let problems: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with(&format!("  {file}: ")))
            .collect();
        let ok = out.status.code() == Some(78)
            && stdout(&out).is_empty()
            && err.contains(&format!("invalid configuration in {file} (1 problem)"))
            && problems.len() == 1
            && problems[0].starts_with(&format!("  {file}: {key}: "))
            && err.contains(&says)
            && !err.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: expected `{key}: …{says}…`, got {:?}:\n{err}",
                path.file_name().unwrap().to_string_lossy(),
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `ROLEWATCH__SECTION__KEY` overrides a key of the file; a bad one names the variable.
#[test]
fn environment_overrides_show_in_the_effective_config_and_bad_ones_name_the_variable() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rolewatch.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(["validate-config"])
        .env("ROLEWATCH_CONFIG", example)
        .env("ROLEWATCH__VENDOR__ROLE_NAME", "acme-remote-admin")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("acme-remote-admin"), "{text}");
    assert!(text.contains("config/rolewatch.toml"), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(["validate-config"])
        .env("ROLEWATCH__DAEMON__LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("daemon.log_format: `yaml` is not one of auto, json, text (set by the environment variable ROLEWATCH__DAEMON__LOG_FORMAT)"),
        "{err}"
    );
}

/// `accounts = [...]` on a rule or a channel must name `[[account]]`s (the accounts are
/// static without `[organization]`); with `[organization]` any account id is accepted.
#[test]
fn accounts_of_a_rule_or_channel_must_be_configured_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routing.toml");
    let body = "[[account]]\nid = \"111122223333\"\n\
        [[account]]\nid = \"444455556666\"\nrole_arn = \"arn:aws:iam::444455556666:role/rw\"\n\
        [[channel]]\ntype = \"stdout\"\naccounts = [\"444455556666\", \"999999999999\"]\n\
        [[rule]]\nname = \"r\"\npattern = \"{ $.eventName = PutRolePolicy }\"\naccounts = [\"123\", \"111122223333\", \"111122223333\"]\n";
    std::fs::write(&path, body).unwrap();
    let out = rolewatch(["validate-config", "--config", path.to_str().unwrap()]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for (key, what) in [
        (
            "channel[0].accounts[1]",
            "`999999999999` is not one of the [[account]] ids: 111122223333, 444455556666",
        ),
        ("rule[0].accounts[0]", "`123` is not an account id"),
        ("rule[0].accounts[2]", "`111122223333` is listed twice"),
    ] {
        assert!(
            err.contains(&format!("routing.toml: {key}: {what}")),
            "{key} missing:\n{err}"
        );
    }
    // Discovered accounts are known only at run time: any account id is accepted.
    std::fs::write(
        &path,
        "[organization]\n[[channel]]\ntype = \"stdout\"\naccounts = [\"999999999999\"]\n",
    )
    .unwrap();
    let out = rolewatch(["validate-config", "--config", path.to_str().unwrap()]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("accounts = [\"999999999999\"]"), "{text}");
    assert!(text.contains("[organization]"), "{text}");
}
