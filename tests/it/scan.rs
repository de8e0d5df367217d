//! `rolewatch scan`: formats, compression, directories, damaged input, exit codes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::{assert_exit, fixture, fixture_lines, rolewatch, stderr, stdout};

/// The synthetic records the documented pattern matches (lines 1 to 4 of the fixture).
fn expected_matches() -> Vec<String> {
    fixture_lines("cloudtrail/astronomer-synthetic.jsonl")[..4].to_vec()
}

/// Every record of the sample, in order.
fn sample_lines() -> Vec<String> {
    fixture_lines("sample-events.jsonl")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// `{"Records":[…]}` holding `records` as they are, the way CloudTrail delivers them.
fn records_document(records: &[String]) -> String {
    format!("{{\"Records\":[{}]}}", records.join(","))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create the parent folders");
    }
    fs::write(path, bytes).expect("write the file");
    path.to_path_buf()
}

fn scan(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["scan".as_ref()];
    all.extend_from_slice(args);
    rolewatch(all)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The summary is the last line of stderr.
fn summary(output: &std::process::Output) -> String {
    stderr(output)
        .lines()
        .last()
        .expect("a summary line on stderr")
        .to_owned()
}

#[test]
fn sample_events_with_the_documented_pattern() {
    let output = scan(&[fixture("sample-events.jsonl").as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), expected_matches());
    let summary = summary(&output);
    assert!(
        summary.starts_with("rolewatch: scanned 1 files, 22 records, 4 matches, 0 malformed,"),
        "{summary}"
    );
    assert!(
        summary.contains("MB/s") || summary.contains(" s"),
        "{summary}"
    );
}

#[test]
fn stderr_is_only_the_summary_when_it_is_not_a_terminal() {
    let output = scan(&[fixture("sample-events.jsonl").as_os_str()]);
    assert_exit(&output, 0);
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        !err.contains('\r') && !err.contains('\u{1b}'),
        "no progress output: {err:?}"
    );
}

#[test]
fn a_given_pattern_replaces_the_documented_one() {
    let sample = fixture("sample-events.jsonl");
    let output = scan(&[
        "--filter-pattern".as_ref(),
        "{ $.eventName = SetDefaultPolicyVersion }".as_ref(),
        sample.as_os_str(),
    ]);
    assert_exit(&output, 0);
    let synthetic = fixture_lines("cloudtrail/astronomer-synthetic.jsonl");
    assert_eq!(lines(&stdout(&output)), [synthetic[4].as_str()]);

    let output = scan(&[
        "--filter-pattern".as_ref(),
        "StopLogging".as_ref(),
        sample.as_os_str(),
    ]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 3);
}

#[test]
fn invalid_pattern_exits_2_before_scanning() {
    let output = scan(&[
        "--filter-pattern".as_ref(),
        "{ $.a = ) }".as_ref(),
        fixture("sample-events.jsonl").as_os_str(),
    ]);
    assert_exit(&output, 2);
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    assert!(err.contains("  { $.a = ) }\n"), "{err}");
    assert!(err.contains('^'), "{err}");
    assert!(!err.contains("scanned"), "no summary: {err}");
}

#[test]
fn a_path_is_required() {
    assert_exit(&rolewatch(["scan"]), 2);
}

#[test]
fn records_file_plain_and_gzip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let document = records_document(&sample_lines());
    let plain = write(
        &dir.path()
            .join("111122223333_CloudTrail_us-east-1_20250301T1205Z_a.json"),
        &document,
    );
    let gz = write(
        &dir.path()
            .join("111122223333_CloudTrail_us-east-1_20250301T1210Z_b.json.gz"),
        gzip(document.as_bytes()),
    );
    for path in [&plain, &gz] {
        let output = scan(&[path.as_os_str()]);
        assert_exit(&output, 0);
        assert_eq!(
            lines(&stdout(&output)),
            expected_matches(),
            "{}",
            path.display()
        );
        assert!(
            summary(&output).contains("22 records, 4 matches, 0 malformed"),
            "{}",
            summary(&output)
        );
    }
}

#[test]
fn gzip_is_recognised_by_content_not_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = fs::read(fixture("sample-events.jsonl")).expect("read the sample");
    let gz_named_json = write(&dir.path().join("events.jsonl"), gzip(&sample));
    let plain_named_gz = write(&dir.path().join("events.jsonl.gz"), &sample);
    for path in [&gz_named_json, &plain_named_gz] {
        let output = scan(&[path.as_os_str()]);
        assert_exit(&output, 0);
        assert_eq!(
            lines(&stdout(&output)),
            expected_matches(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn json_lines_gzip_including_concatenated_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = fs::read(fixture("sample-events.jsonl")).expect("read the sample");
    let mut two_members = gzip(&sample);
    two_members.extend(gzip(&sample));
    let path = write(&dir.path().join("twice.jsonl.gz"), two_members);
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    let mut expected = expected_matches();
    expected.extend(expected_matches());
    assert_eq!(lines(&stdout(&output)), expected);
    assert!(
        summary(&output).contains("44 records, 8 matches"),
        "{}",
        summary(&output)
    );
}

#[test]
fn json_array_of_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir.path().join("events.json"),
        format!("[\n{}\n]\n", sample_lines().join(",\n")),
    );
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), expected_matches());
}

#[test]
fn pretty_printed_record_is_printed_compacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = expected_matches()[0].clone();
    let pretty = record
        .replacen("{\"eventVersion\"", "{\n    \"eventVersion\" ", 1)
        .replacen(",\"eventTime\"", ",\n    \"eventTime\"", 1)
        .replacen(
            "\"requestParameters\":{",
            "\"requestParameters\": {\n      ",
            1,
        );
    assert_ne!(pretty, record);
    let path = write(
        &dir.path().join("pretty.json"),
        format!("{{\n  \"Records\": [\n    {pretty}\n  ]\n}}\n"),
    );
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), [record.as_str()]);
}

#[test]
fn directory_tree_in_a_stable_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("AWSLogs/111122223333");
    let synthetic = fixture_lines("cloudtrail/astronomer-synthetic.jsonl");
    let trail = root.join("CloudTrail/us-east-1/2025/03");
    // Created out of order on purpose: the scan must not depend on the directory's order.
    write(
        &trail.join("02/111122223333_CloudTrail_us-east-1_20250302T0000Z_b.json.gz"),
        gzip(records_document(&[synthetic[1].clone()]).as_bytes()),
    );
    write(
        &trail.join("01/111122223333_CloudTrail_us-east-1_20250301T1200Z_z.json"),
        records_document(&[synthetic[2].clone()]),
    );
    write(
        &trail.join("01/111122223333_CloudTrail_us-east-1_20250301T0000Z_a.json"),
        records_document(&[synthetic[0].clone()]),
    );
    write(
        &root.join("extra/more.ndjson"),
        format!("{}\n", synthetic[3]),
    );
    // Skipped: a digest folder and file, and names without a trail extension.
    write(
        &root.join("CloudTrail-Digest/us-east-1/d.json.gz"),
        gzip(records_document(&[synthetic[0].clone()]).as_bytes()),
    );
    write(
        &trail.join("01/111122223333_CloudTrail-Digest_us-east-1_x.json"),
        records_document(&[synthetic[0].clone()]),
    );
    write(&trail.join("01/notes.txt"), format!("{}\n", synthetic[0]));
    write(
        &trail.join("01/copy.json.bak"),
        format!("{}\n", synthetic[0]),
    );

    let expected = [&synthetic[0], &synthetic[2], &synthetic[1], &synthetic[3]];
    let first = scan(&[dir.path().as_os_str()]);
    assert_exit(&first, 0);
    assert_eq!(lines(&stdout(&first)), expected);
    assert!(
        summary(&first).contains("scanned 4 files, 4 records, 4 matches"),
        "{}",
        summary(&first)
    );
    let second = scan(&[dir.path().as_os_str()]);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn paths_are_scanned_in_the_order_given() {
    let synthetic = fixture("cloudtrail/astronomer-synthetic.jsonl");
    let sample = fixture("sample-events.jsonl");
    let output = scan(&[synthetic.as_os_str(), sample.as_os_str()]);
    assert_exit(&output, 0);
    let mut expected = expected_matches();
    expected.extend(expected_matches());
    assert_eq!(lines(&stdout(&output)), expected);
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_and_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let matches = expected_matches();
    let text = format!(
        "{}\r\n\nnot json at all\n{}\n{{\"eventName\":\"AttachRolePolicy\",\"requestParameters\":{{\"roleName\":\"astronomer-remote-management\"}}\n   \n{}",
        matches[0], matches[1], matches[2]
    );
    let path = write(&dir.path().join("mixed.jsonl"), text);
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), &matches[..3]);
    let err = stderr(&output);
    let shown = path.display().to_string();
    assert!(
        err.contains(&format!("{shown}:3: malformed record")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{shown}:5: malformed record")),
        "{err}"
    );
    assert!(
        !err.contains(&format!("{shown}:2:")),
        "a blank line is not malformed: {err}"
    );
    assert!(
        summary(&output).contains("5 records, 3 matches, 2 malformed"),
        "{}",
        summary(&output)
    );
}

#[test]
fn validate_reports_malformed_lines_the_prefilter_skips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir.path().join("broken.jsonl"),
        "{\"ok\":1}\n{ not json }\n",
    );
    let quick = scan(&[path.as_os_str()]);
    assert_exit(&quick, 0);
    assert!(
        summary(&quick).contains("2 records, 0 matches, 0 malformed"),
        "{}",
        summary(&quick)
    );
    let validated = scan(&["--validate".as_ref(), path.as_os_str()]);
    assert_exit(&validated, 0);
    assert!(stderr(&validated).contains(&format!("{}:2: malformed record", path.display())));
    assert!(
        summary(&validated).contains("2 records, 0 matches, 1 malformed"),
        "{}",
        summary(&validated)
    );
}

#[test]
fn malformed_record_in_a_records_file_is_reported_by_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let matches = expected_matches();
    let document = format!(
        "{{\"Records\":[{},\"not an object\",{}]}}",
        matches[0], matches[1]
    );
    let path = write(&dir.path().join("trail.json"), document);
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), &matches[..2]);
    assert!(
        stderr(&output).contains(&format!("{}:2: malformed record", path.display())),
        "{}",
        stderr(&output)
    );
    assert!(
        summary(&output).contains("3 records, 2 matches, 1 malformed"),
        "{}",
        summary(&output)
    );
}

#[test]
fn records_file_that_does_not_parse_is_skipped_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = write(
        &dir.path().join("a-broken.json"),
        "{\"Records\":[{\"eventName\":\n",
    );
    let output = scan(&[
        broken.as_os_str(),
        fixture("sample-events.jsonl").as_os_str(),
    ]);
    assert_exit(&output, 0);
    assert_eq!(lines(&stdout(&output)), expected_matches());
    assert!(stderr(&output).contains(&format!("{}:", broken.display())));
    assert!(
        summary(&output).contains("scanned 2 files, 22 records, 4 matches, 1 malformed"),
        "{}",
        summary(&output)
    );
}

#[test]
fn truncated_gzip_is_a_malformed_file_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = fs::read(fixture("sample-events.jsonl")).expect("read the sample");
    let whole = gzip(&sample);
    let cut = write(&dir.path().join("cut.jsonl.gz"), &whole[..whole.len() / 2]);
    let output = scan(&[cut.as_os_str(), fixture("sample-events.jsonl").as_os_str()]);
    assert_exit(&output, 0);
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{}", cut.display())) && err.contains("malformed file"),
        "{err}"
    );
    assert!(
        summary(&output).contains("scanned 2 files,"),
        "{}",
        summary(&output)
    );
    assert!(
        summary(&output).contains(" 1 malformed"),
        "{}",
        summary(&output)
    );
    // Whatever the cut file yielded are whole matching records, and the second file is whole.
    let out = stdout(&output);
    let printed = lines(&out);
    assert!(printed.ends_with(
        &expected_matches()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    ));
    for line in printed {
        assert!(expected_matches().iter().any(|m| m == line), "{line}");
    }
}

#[test]
fn unreadable_path_is_reported_the_others_scanned_and_the_exit_is_1() {
    let output = scan(&[
        "/nonexistent/rolewatch/trail.json".as_ref(),
        fixture("sample-events.jsonl").as_os_str(),
    ]);
    assert_exit(&output, 1);
    assert_eq!(lines(&stdout(&output)), expected_matches());
    let err = stderr(&output);
    assert!(
        err.contains("cannot read /nonexistent/rolewatch/trail.json"),
        "{err}"
    );
    assert!(
        summary(&output).contains("1 paths could not be read"),
        "{}",
        summary(&output)
    );
}

#[test]
fn lines_across_read_chunks_and_longer_than_a_chunk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let filler = fs::read_to_string(fixture("cloudtrail/third-party.jsonl")).expect("read");
    let matches = expected_matches();
    let mut text = String::new();
    // About 3 MB of ordinary lines, so that lines straddle the (1 MiB) read chunks …
    let copies = 3_000_000 / filler.len() + 1;
    for _ in 0..copies {
        text.push_str(&filler);
        text.push_str(&matches[0]);
        text.push('\n');
    }
    // … and one record longer than a chunk.
    let long = matches[1].replacen(
        "\"sourceIPAddress\"",
        &format!(
            "\"padding\":\"{}\",\"sourceIPAddress\"",
            "x".repeat(3 << 20)
        ),
        1,
    );
    text.push_str(&long);
    text.push('\n');
    let path = write(&dir.path().join("big.jsonl"), &text);
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    let printed = lines(&out);
    assert_eq!(printed.len(), copies + 1);
    assert!(printed[..copies].iter().all(|line| *line == matches[0]));
    assert_eq!(printed[copies], long);
    let records = copies * (filler.lines().count() + 1) + 1;
    assert!(
        summary(&output).contains(&format!(
            "{records} records, {} matches, 0 malformed",
            copies + 1
        )),
        "{}",
        summary(&output)
    );
}

#[test]
fn records_file_larger_than_a_read_chunk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = sample_lines();
    let mut records = Vec::new();
    while records.iter().map(String::len).sum::<usize>() < 3 << 20 {
        records.extend(sample.iter().cloned());
    }
    let copies = records.len() / sample.len();
    let path = write(
        &dir.path().join("big.json.gz"),
        gzip(records_document(&records).as_bytes()),
    );
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 4 * copies);
    assert!(
        summary(&output).contains(&format!(
            "{} records, {} matches, 0 malformed",
            records.len(),
            4 * copies
        )),
        "{}",
        summary(&output)
    );
}

#[test]
fn reports_per_file_are_capped_but_every_malformed_line_is_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(&dir.path().join("junk.jsonl"), "junk\n".repeat(25));
    let output = scan(&[path.as_os_str()]);
    assert_exit(&output, 0);
    let err = stderr(&output);
    assert_eq!(
        err.matches("malformed record, skipped").count(),
        10,
        "{err}"
    );
    assert!(
        err.contains("further malformed records in this file are counted"),
        "{err}"
    );
    assert!(
        summary(&output).contains("25 records, 0 matches, 25 malformed"),
        "{}",
        summary(&output)
    );
}

/// Regression (issue 11): only text that is really not valid Unicode is malformed. A record
/// with a valid U+FFFD (a user agent anyone can choose) is evaluated and printed; one with a
/// lone surrogate escape is reported with its line, in a JSON-lines file and in a trail file.
#[test]
fn a_valid_replacement_character_matches_and_a_lone_surrogate_is_malformed() {
    let synthetic = fixture_lines("cloudtrail/astronomer-synthetic.jsonl");
    let with_fffd = synthetic[0].replacen("\"userAgent\":\"", "\"userAgent\":\"\u{FFFD}", 1);
    let with_escape = synthetic[1].replacen("\"userAgent\":\"", "\"userAgent\":\"\\ufffd", 1);
    let with_surrogate = synthetic[2].replacen("\"userAgent\":\"", "\"userAgent\":\"\\udc80", 1);
    assert!(with_fffd != synthetic[0] && with_surrogate != synthetic[2]);
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        &dir.path().join("events.jsonl"),
        format!("{with_fffd}\n{with_escape}\n{with_surrogate}\n"),
    );
    let trail = write(
        &dir.path().join("trail.json"),
        records_document(&[with_fffd.clone(), with_escape.clone(), with_surrogate]),
    );
    let output = scan(&[jsonl.as_os_str(), trail.as_os_str()]);
    assert_exit(&output, 0);
    assert_eq!(
        lines(&stdout(&output)),
        [
            with_fffd.as_str(),
            with_escape.as_str(),
            with_fffd.as_str(),
            with_escape.as_str()
        ]
    );
    let err = stderr(&output);
    assert!(
        err.contains("events.jsonl:3: malformed record, skipped: not valid Unicode: a lone UTF-16 surrogate escape (\\udc80)"),
        "{err}"
    );
    assert!(
        err.contains(
            "trail.json:3: malformed record, skipped: record 3 of the list is not valid Unicode"
        ),
        "{err}"
    );
    assert!(
        summary(&output).contains(" 4 matches, 2 malformed,"),
        "{}",
        summary(&output)
    );
}
