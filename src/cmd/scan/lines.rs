//! The JSON-lines loop: large reads into one reusable buffer, lines split with `memchr`, the
//! partial last line carried over to the next chunk, nothing allocated per line.

use std::io::{self, Read};
use std::path::Path;

use filter_pattern::Prefilter;

use super::{fill, is_json_text, Fill, Interrupt, Scanner, Verdict};

/// The size of the blocks of lines the prefilter looks at first (see `scan_chunk`).
const BLOCK_BYTES: usize = 64 << 10;

/// What the prefilter says about the lines of one block.
#[derive(Clone, Copy)]
enum Filter<'a> {
    /// No pattern literal occurs in the block: none of its lines can match.
    Reject,
    /// Some line may match: ask the prefilter line by line.
    Check(&'a Prefilter),
    /// The pattern has no prefilter: every line is evaluated.
    Pass,
}

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
    ///
    /// The prefilter first looks at blocks of about [`BLOCK_BYTES`] of whole lines: when a
    /// block cannot match, none of its lines can, and they only get the shape check. One
    /// search over a block is much cheaper than one per line (a CloudTrail record is about
    /// 1 KB, and a search has a fixed cost per call). This relies on the prefilter being a
    /// literal search (`Prefilter::literals`: each clause needs one literal to occur), so that
    /// a text containing a line passes whenever the line does.
    fn scan_chunk(
        &mut self,
        path: &Path,
        chunk: &[u8],
        line_number: &mut u64,
        prefilter: Option<&Prefilter>,
    ) -> io::Result<()> {
        let mut start = 0;
        while start < chunk.len() {
            let end = match chunk.get(start + BLOCK_BYTES..) {
                Some(rest) => memchr::memchr(b'\n', rest)
                    .map_or(chunk.len(), |newline| start + BLOCK_BYTES + newline + 1),
                None => chunk.len(),
            };
            let block = &chunk[start..end];
            let filter = match prefilter {
                None => Filter::Pass,
                Some(prefilter) if prefilter.may_match(block) => Filter::Check(prefilter),
                Some(_) => Filter::Reject,
            };
            let mut line_start = 0;
            for newline in memchr::memchr_iter(b'\n', block) {
                *line_number += 1;
                self.scan_line(path, &block[line_start..newline], *line_number, filter)?;
                line_start = newline + 1;
            }
            if line_start < block.len() {
                *line_number += 1;
                self.scan_line(path, &block[line_start..], *line_number, filter)?;
            }
            start = end;
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
        filter: Filter<'_>,
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
        match filter {
            Filter::Reject => return Ok(()),
            Filter::Check(prefilter) if !prefilter.may_match(line) => return Ok(()),
            Filter::Check(_) | Filter::Pass => {}
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.malformed(path, line_number, format_args!("not valid UTF-8"));
            return Ok(());
        };
        if let Some(escape) = super::lone_surrogate(text) {
            self.malformed(
                path,
                line_number,
                format_args!("not valid Unicode: {escape}"),
            );
            return Ok(());
        }
        if self.evaluate(text, self.validate)? == Verdict::Malformed {
            self.malformed(path, line_number, format_args!("not valid JSON"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// `scan_chunk` rejects whole blocks of lines with one prefilter call; that is sound only
    /// while a text passes the prefilter whenever one of its lines does.
    #[test]
    fn prefilter_passes_a_block_when_it_passes_one_of_its_lines() {
        let sample = include_str!("../../../tests/fixtures/sample-events.jsonl");
        let pattern = filter_pattern::FilterPattern::new(crate::rules::DOCUMENTED_PATTERN)
            .expect("the documented pattern compiles");
        let prefilter = pattern
            .prefilter()
            .expect("the documented pattern has a prefilter");
        let lines: Vec<&str> = sample.lines().collect();
        let passing: Vec<usize> = (0..lines.len())
            .filter(|&i| prefilter.may_match(lines[i].as_bytes()))
            .collect();
        assert!(passing.len() >= 4, "the matching records pass");
        for &i in &passing {
            for (from, to) in [
                (0, lines.len()),
                (i.saturating_sub(1), i + 1),
                (i, (i + 2).min(lines.len())),
            ] {
                let block = lines[from..to].join("\n");
                assert!(prefilter.may_match(block.as_bytes()), "lines {from}..{to}");
            }
        }
    }
}
