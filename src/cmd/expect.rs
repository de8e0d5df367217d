//! `rolewatch expect`: record a change the vendor announced as an `[[expect]]` entry, hash
//! the announced policy document, list the entries.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use crate::cli::{ExpectAddArgs, ExpectCommand};
use crate::config::expect::{validate, RawExpect, ACTOR_CLASSES, DAY_MS};
use crate::config::{ConfigError, Expectation};
use crate::exit::UsageError;
use crate::intel::baseline::decode_document;
use crate::intel::expect::document_sha256;
use crate::time::{format_rfc3339_ms, parse_rfc3339_ms, Clock, SystemClock};

/// The command.
///
/// # Errors
///
/// As each subcommand says: usage errors (exit 2), an invalid entry or configuration (78),
/// files that cannot be read or written.
pub fn main(command: &ExpectCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    let mut out = std::io::stdout().lock();
    match command {
        ExpectCommand::Add(args) => add(args, now, &mut out, &mut std::io::stderr().lock()),
        ExpectCommand::Hash { file } => {
            let doc = read_document(file)?;
            writeln!(out, "{}", document_sha256(&doc))?;
            Ok(ExitCode::SUCCESS)
        }
        ExpectCommand::List { config } => {
            let cfg = crate::config::load(config.as_deref())?;
            list(&cfg.expect, now, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A policy document from `path` (`-`: stdin): JSON, percent-encoded JSON, or the output of
/// `aws iam get-policy-version`.
///
/// # Errors
///
/// The file cannot be read, or holds no policy document.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let doc = decode_document(text.trim())
        .with_context(|| format!("{} is not a JSON policy document", path.display()))?;
    let doc = match doc.pointer("/PolicyVersion/Document") {
        // `aws iam get-policy-version`: the document, as an object or encoded.
        Some(Value::String(s)) => decode_document(s).with_context(|| {
            format!("{}: PolicyVersion.Document is not a policy", path.display())
        })?,
        Some(d) => d.clone(),
        None => doc,
    };
    if doc.get("Statement").is_none() {
        anyhow::bail!(
            "{} is not a policy document (no \"Statement\")",
            path.display()
        );
    }
    Ok(doc)
}

fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// The entry the arguments describe, checked.
fn entry(args: &ExpectAddArgs, now_ms: i64) -> anyhow::Result<RawExpect> {
    let from = match &args.from {
        Some(f) => f.clone(),
        None => format_rfc3339_ms(now_ms),
    };
    let until = match (&args.until, args.days) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => {
            let start = parse_rfc3339_ms(&from)
                .ok_or_else(|| usage(format!("--from `{from}` is not an RFC 3339 time")))?;
            format_rfc3339_ms(start.saturating_add(i64::from(d).saturating_mul(DAY_MS)))
        }
        (None, None) => return Err(usage("give --until or --days".to_owned())),
    };
    let actor_class = match args.actor_class.as_str() {
        "any" => None,
        c if ACTOR_CLASSES.contains(&c) => Some(c.to_owned()),
        c => {
            return Err(usage(format!(
                "--actor-class `{c}` is not one of {}, any",
                ACTOR_CLASSES.join(", ")
            )))
        }
    };
    let document_sha256 = match &args.document {
        Some(f) => Some(document_sha256(&read_document(f)?)),
        None => None,
    };
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(RawExpect {
        description: Some(args.description.clone()),
        from: Some(from),
        until: Some(until),
        event_names: non_empty(&args.events),
        policy: args.policy.clone(),
        default_version: args.default_version.clone(),
        document_sha256,
        actor_class,
        principals: non_empty(&args.principals),
    })
}

/// The entry as TOML (`[[expect]]` and its keys, in the order of the documentation).
fn to_toml(e: &RawExpect) -> anyhow::Result<String> {
    let mut t = toml::Table::new();
    let mut put = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(k.to_owned(), v);
        }
    };
    let s = |v: &Option<String>| v.clone().map(toml::Value::String);
    let list = |v: &Option<Vec<String>>| {
        v.clone()
            .map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect()))
    };
    put("description", s(&e.description));
    put("from", s(&e.from));
    put("until", s(&e.until));
    put("event_names", list(&e.event_names));
    put("policy", s(&e.policy));
    put("default_version", s(&e.default_version));
    put("document_sha256", s(&e.document_sha256));
    put("actor_class", s(&e.actor_class));
    put("principals", list(&e.principals));
    let mut root = toml::Table::new();
    root.insert(
        "expect".to_owned(),
        toml::Value::Array(vec![toml::Value::Table(t)]),
    );
    Ok(toml::to_string(&root)?)
}

/// `expect add`.
fn add(
    args: &ExpectAddArgs,
    now_ms: i64,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let raw = entry(args, now_ms)?;
    // The entry alone first, for messages that name its keys.
    let mut problems = Vec::new();
    let _ = validate(vec![raw.clone()], &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError {
            file: args.config.clone(),
            problems,
        }
        .into());
    }
    let snippet = to_toml(&raw)?;
    if args.print {
        write!(out, "{snippet}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.config else {
        return Err(usage(
            "give --config FILE (or ROLEWATCH_CONFIG) to add the entry to, or --print".to_owned(),
        ));
    };
    let old =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sep = if old.is_empty() || old.ends_with("\n\n") {
        ""
    } else if old.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    let new = format!("{old}{sep}{snippet}");
    // The whole file as it would be, checked before it replaces the old one.
    let tmp = sibling(path, ".rolewatch-expect.tmp");
    std::fs::write(&tmp, &new).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    if let Err(e) = crate::config::load(Some(&tmp)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ConfigError {
            file: Some(path.clone()),
            ..e
        }
        .into());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    write!(out, "{snippet}")?;
    writeln!(
        err,
        "rolewatch: added to {} (a running daemon reads it at its next start)",
        path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// `expect list`.
fn list(entries: &[Expectation], now_ms: i64, out: &mut dyn Write) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "no [[expect]] entries");
    }
    for (i, e) in entries.iter().enumerate() {
        let state = if now_ms < e.from_ms {
            "upcoming"
        } else if now_ms < e.until_ms {
            "active"
        } else {
            "past"
        };
        writeln!(
            out,
            "expect[{i}] {state:8} {}  {}",
            e.window(),
            e.description
        )?;
        let mut names = Vec::new();
        if !e.event_names.is_empty() {
            names.push(format!("events {}", e.event_names.join(", ")));
        }
        let optional = [
            ("policy", &e.policy),
            ("default version", &e.default_version),
            ("document sha256", &e.document_sha256),
            ("actor class", &e.actor_class),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                names.push(format!("{k} {v}"));
            }
        }
        if !e.principals.is_empty() {
            names.push(format!("principals {}", e.principals.join(", ")));
        }
        writeln!(out, "    names: {}", names.join("; "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ExpectAddArgs {
        ExpectAddArgs {
            config: None,
            print: true,
            description: "Astronomer notice \"v5\"\nline".into(),
            from: Some("2026-12-10T00:00:00Z".into()),
            until: None,
            days: Some(2),
            events: vec!["CreatePolicyVersion".into()],
            policy: Some("AstronomerCrossAccountRole".into()),
            default_version: Some("v5".into()),
            document: None,
            actor_class: "vendor".into(),
            principals: Vec::new(),
        }
    }

    #[test]
    fn the_entry_is_valid_toml_and_problems_name_keys() {
        let a = ExpectAddArgs {
            description: "Astronomer notice \"v5\" = ]] [[x".into(),
            ..args()
        };
        let text = to_toml(&entry(&a, 0).unwrap()).unwrap();
        assert!(text.starts_with("[[expect]]\n"), "{text}");
        // Read back with the configuration's own parser: the same entry.
        let raw: crate::config::raw::RawConfig = toml::from_str(&text).unwrap();
        let mut p = Vec::new();
        let e = validate(raw.expect, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(e[0].description, "Astronomer notice \"v5\" = ]] [[x");
        assert_eq!(e[0].window(), "2026-12-10T00:00:00Z – 2026-12-12T00:00:00Z");
        assert_eq!(e[0].actor_class.as_deref(), Some("vendor"));

        // A control character in the description: exit 78 naming the key.
        let err = add(&args(), 0, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        let ce = err.downcast_ref::<ConfigError>().expect("a ConfigError");
        assert_eq!(ce.problems[0].key, "expect[0].description");
        let bad_class = ExpectAddArgs {
            actor_class: "robot".into(),
            ..args()
        };
        assert!(entry(&bad_class, 0)
            .unwrap_err()
            .downcast_ref::<UsageError>()
            .is_some());
    }

    #[test]
    fn list_says_which_windows_are_open() {
        let mut p = Vec::new();
        let a = ExpectAddArgs {
            description: "notice".into(),
            ..args()
        };
        let e = validate(vec![entry(&a, 0).unwrap()], &mut p);
        let from = e[0].from_ms;
        for (now, want) in [
            (from - 1, "upcoming"),
            (from, "active"),
            (from + 2 * DAY_MS, "past"),
        ] {
            let mut out = Vec::new();
            list(&e, now, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(&format!("expect[0] {want:8} ")), "{text}");
            assert!(
                text.contains("names: events CreatePolicyVersion; policy AstronomerCrossAccountRole; default version v5; actor class vendor"),
                "{text}"
            );
        }
    }
}
