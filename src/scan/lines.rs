//! The JSON-lines loop: large reads into one reusable buffer, lines split with `memchr`, the
//! partial last line carried over to the next chunk, nothing allocated per line.

use std::io::{self, Read};
use std::path::Path;

use filter_pattern::Prefilter;

use super::{fill, is_json_text, Fill, Interrupt, Scanner, Verdict};

impl Scanner<'_> {
    /// Scans a JSON-lines stream whose first chunk is already in `buf[..first.filled]`.
    pub(super) fn scan_lines(
        &mut self,
        path: &Path,
        reader: &mut dyn Read,
        buf: &mut Vec<u8>,
        first: Fill,
        update_progress: &dyn Fn(),
    ) -> Result<(), Interrupt> {
        let prefilter = self.pattern.prefilter();
        let mut state = first;
        // Lines finished so far, so that the next one is `line_number + 1`.
        let mut line_number = 0;
        loop {
            let Fill { filled, eof, error } = state;
            // A clean end of stream ends the last line too; otherwise only complete lines are
            // scanned now (after a failed read the tail is a cut-off line).
            let end = if eof && error.is_none() {
                filled
            } else {
                memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |newline| newline + 1)
            };
            if !eof && end == 0 {
                // One line fills the whole buffer: make room for the rest of it.
                let len = buf.len();
                buf.resize(len * 2, 0);
                state = fill(reader, buf, filled);
                continue;
            }
            self.stats.bytes += end as u64;
            self.scan_chunk(path, &buf[..end], &mut line_number, prefilter)
                .map_err(Interrupt::Output)?;
            update_progress();
            if let Some(err) = error {
                self.stats.bytes += (filled - end) as u64;
                return Err(Interrupt::Input(err, Some(line_number + 1)));
            }
            if eof {
                return Ok(());
            }
            buf.copy_within(end..filled, 0);
            state = fill(reader, buf, filled - end);
        }
    }

    /// Scans the lines of `chunk`; its last line may lack the newline.
    fn scan_chunk(
        &mut self,
        path: &Path,
        chunk: &[u8],
        line_number: &mut u64,
        prefilter: Option<&Prefilter>,
    ) -> io::Result<()> {
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            *line_number += 1;
            self.scan_line(path, &chunk[start..newline], *line_number, prefilter)?;
            start = newline + 1;
        }
        if start < chunk.len() {
            *line_number += 1;
            self.scan_line(path, &chunk[start..], *line_number, prefilter)?;
        }
        Ok(())
    }

    /// Scans one line: blank lines are skipped; every other line gets the shape check, and
    /// only the prefilter's candidates are decoded and evaluated.
    #[inline]
    fn scan_line(
        &mut self,
        path: &Path,
        line: &[u8],
        line_number: u64,
        prefilter: Option<&Prefilter>,
    ) -> io::Result<()> {
        let line = line.trim_ascii();
        let (Some(&first), Some(&last)) = (line.first(), line.last()) else {
            return Ok(());
        };
        self.stats.records += 1;
        if first != b'{' || last != b'}' {
            self.malformed(
                path,
                line_number,
                format_args!("expected a JSON object on one line"),
            );
            return Ok(());
        }
        if self.validate && !std::str::from_utf8(line).is_ok_and(is_json_text) {
            self.malformed(path, line_number, format_args!("not valid JSON"));
            return Ok(());
        }
        if prefilter.is_some_and(|prefilter| !prefilter.may_match(line)) {
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.malformed(path, line_number, format_args!("not valid UTF-8"));
            return Ok(());
        };
        if self.evaluate(text, self.validate)? == Verdict::Malformed {
            self.malformed(path, line_number, format_args!("not valid JSON"));
        }
        Ok(())
    }
}
