//! Evaluator throughput on 18,819 real CloudTrail records
//! (`../shared/fixtures/cloudtrail/bench/cloudtrail-real-full.jsonl.gz`).
//!
//! `cargo bench -p filter-pattern --bench evaluate`; figures go to the README.

use std::io::Read;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use filter_pattern::FilterPattern;

const DOCUMENTED: &str = r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#;

fn corpus() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/cloudtrail/bench/cloudtrail-real-full.jsonl.gz");
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("the benchmark corpus {} is missing: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("corpus is gzip'd UTF-8");
    text.lines().map(str::to_owned).collect()
}

fn bench(c: &mut Criterion) {
    let events = corpus();
    let bytes: usize = events.iter().map(String::len).sum();
    let cases = [
        // The vendor's pattern: the prefilter rejects almost every record.
        ("documented-prefilter-rejects", DOCUMENTED),
        // No literal is required: every record is parsed as JSON.
        (
            "json-parse-every-event",
            r#"{ $.sourceIPAddress != "10.*" }"#,
        ),
        (
            "json-parse-nested-and-or",
            r#"{ ($.userIdentity.type = "IAMUser" || $.userIdentity.type = "Root") && $.readOnly IS FALSE && $.errorCode NOT EXISTS }"#,
        ),
        (
            "json-wildcard-selector",
            r#"{ $.resources[*].type = "AWS::IAM::Role" || $.userIdentity.* = "Root" }"#,
        ),
        ("terms-substring", "AccessDenied"),
        // Numeric comparison on the members real records have (most records lack them).
        (
            "json-numeric-real-fields",
            r#"{ $.requestParameters.maxResults > 50 || $.requestParameters.durationSeconds >= 3600 }"#,
        ),
    ];
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    for (name, pattern) in cases {
        let p = FilterPattern::new(pattern).expect("benchmark patterns are valid");
        let matches = events.iter().filter(|e| p.is_match(e)).count();
        eprintln!(
            "{name}: {matches} of {} events match ({} bytes)",
            events.len(),
            bytes
        );
        group.bench_function(name, |b| {
            b.iter(|| events.iter().filter(|e| p.is_match(e)).count())
        });
    }

    // Exact decimal comparison on every event: each real record with a number `x` put in
    // front, in one of the spellings below (integers of any length, fractions, exponents,
    // underflow, overflow).
    const SPELLINGS: &[&str] = &[
        "1500",
        "-3",
        "1499.999",
        "1.5e3",
        "15E+2",
        "0.00015e7",
        "12345678901234567",
        "123456789012345678901234567890",
        "2e-400",
        "5e400",
        "-0.0",
        "87.25",
    ];
    let numeric: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let x = SPELLINGS[i % SPELLINGS.len()];
            match e.strip_prefix('{') {
                Some(rest) => format!("{{\"x\":{x},{rest}"),
                None => e.clone(),
            }
        })
        .collect();
    let p = FilterPattern::new("{ $.x > 1.5e3 }").expect("benchmark patterns are valid");
    let matches = numeric.iter().filter(|e| p.is_match(e)).count();
    eprintln!(
        "json-numeric-compare-every-event: {matches} of {} events match",
        numeric.len()
    );
    group.bench_function("json-numeric-compare-every-event", |b| {
        b.iter(|| numeric.iter().filter(|e| p.is_match(e)).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
