//! Whole documents: trail files as delivered to S3 (`{"Records":[…]}`) and JSON arrays of
//! records. Each record is borrowed as a `&RawValue`, so its text is evaluated and printed
//! exactly as it is in the file.

use std::io;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Format, Scanner};

/// A CloudTrail log file; keys other than `Records` (there are none today) are ignored.
#[derive(Deserialize)]
struct RecordsDocument<'a> {
    #[serde(borrow, rename = "Records")]
    records: Vec<&'a RawValue>,
}

impl Scanner<'_> {
    /// Scans a whole document held in `bytes`. A document that does not parse is one malformed
    /// file, reported with the line of the error; a record that is not an object is reported
    /// with its 1-based position in the list.
    pub(super) fn scan_document(
        &mut self,
        path: &Path,
        format: Format,
        bytes: &[u8],
    ) -> io::Result<()> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let line = 1 + memchr::memchr_iter(b'\n', &bytes[..err.valid_up_to()]).count();
                self.malformed_file(path, line, format_args!("not valid UTF-8"));
                return Ok(());
            }
        };
        let parsed = match format {
            Format::Records => {
                serde_json::from_str::<RecordsDocument<'_>>(text).map(|document| document.records)
            }
            Format::Array | Format::JsonLines => serde_json::from_str::<Vec<&RawValue>>(text),
        };
        let records = match parsed {
            Ok(records) => records,
            Err(err) => {
                self.malformed_file(path, err.line(), format_args!("{err}"));
                return Ok(());
            }
        };
        let prefilter = self.pattern.prefilter();
        for (index, record) in records.iter().enumerate() {
            let number = index as u64 + 1;
            self.stats.records += 1;
            let text = record.get();
            if !text.starts_with('{') {
                self.malformed(
                    path,
                    number,
                    format_args!("record {number} of the list is not a JSON object"),
                );
                continue;
            }
            if prefilter.is_some_and(|prefilter| !prefilter.may_match(text.as_bytes())) {
                continue;
            }
            if let Some(escape) = super::lone_surrogate(text) {
                self.malformed(
                    path,
                    number,
                    format_args!("record {number} of the list is not valid Unicode: {escape}"),
                );
                continue;
            }
            self.evaluate(text, true)?;
        }
        Ok(())
    }
}
