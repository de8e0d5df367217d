//! Finding, opening and recognising the files `rolewatch scan` reads.
//!
//! Compression and format are decided by content, never by name: trail files get renamed,
//! re-compressed and concatenated, and a wrong guess from an extension would silently skip
//! records.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::MultiGzDecoder;
use walkdir::WalkDir;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Name endings a file needs to be picked up while walking a directory (each may also be
/// followed by `.gz`). Files named on the command line are read whatever their name.
const EXTENSIONS: [&str; 4] = [".json", ".jsonl", ".ndjson", ".log"];

/// CloudTrail's digest files (and folders) carry this in their name; they hold hashes of the
/// log files, not events.
const DIGEST_MARKER: &str = "CloudTrail-Digest";

/// One file to scan, found from the paths on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size on disk in bytes, for the progress bar.
    pub size: u64,
}

/// Expands the command-line paths into files, in order: a file stands for itself; a directory
/// for the files under it (recursively, sorted by file name) whose name ends in one of
/// [`EXTENSIONS`] (optionally plus `.gz`), without CloudTrail-Digest files.
///
/// Paths that cannot be read are handed to `on_error` with the reason, and the walk goes on.
pub fn collect_files(paths: &[PathBuf], mut on_error: impl FnMut(&Path, &str)) -> Vec<InputFile> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) => {
                on_error(path, &err.to_string());
                continue;
            }
        };
        if !metadata.is_dir() {
            files.push(InputFile {
                path: path.clone(),
                size: metadata.len(),
            });
            continue;
        }
        let walk = WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0 || !entry.file_name().to_string_lossy().contains(DIGEST_MARKER)
            });
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let at = err.path().unwrap_or(path).to_path_buf();
                    let reason = err
                        .io_error()
                        .map_or_else(|| err.to_string(), ToString::to_string);
                    on_error(&at, &reason);
                    continue;
                }
            };
            if !entry.file_type().is_file() || !has_scannable_name(entry.file_name()) {
                continue;
            }
            match entry.metadata() {
                Ok(metadata) => files.push(InputFile {
                    path: entry.into_path(),
                    size: metadata.len(),
                }),
                Err(err) => on_error(entry.path(), &err.to_string()),
            }
        }
    }
    files
}

/// Whether a file found in a directory is one `scan` reads.
fn has_scannable_name(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    EXTENSIONS.iter().any(|extension| name.ends_with(extension))
}

/// A reader that counts the bytes it hands out, so the progress bar can follow the compressed
/// input while the scanner reads the decompressed stream.
pub struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An open input: the decompressed byte stream and how much of the file it has consumed.
pub struct Opened {
    /// The content (decompressed when the file is gzip).
    pub reader: Box<dyn Read>,
    /// Bytes read from the file itself so far.
    pub disk_bytes: Rc<Cell<u64>>,
    /// Whether the file is gzip-compressed.
    pub gzip: bool,
}

/// Opens a file, recognising gzip by its magic bytes.
///
/// # Errors
///
/// Any I/O error opening or reading the first bytes of the file.
pub fn open(path: &Path) -> io::Result<Opened> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let gzip = got == magic.len() && magic == GZIP_MAGIC;
    let disk_bytes = Rc::new(Cell::new(0));
    // The magic bytes were consumed; chain them back in front of the rest of the file rather
    // than seeking, so that pipes and other unseekable files work too.
    let file = CountingReader {
        inner: io::Cursor::new(magic[..got].to_vec()).chain(file),
        count: Rc::clone(&disk_bytes),
    };
    let reader: Box<dyn Read> = if gzip {
        // MultiGzDecoder: concatenated gzip members are one stream, as `zcat` reads them.
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)))
    } else {
        Box::new(file)
    };
    Ok(Opened {
        reader,
        disk_bytes,
        gzip,
    })
}

/// What a file holds, decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A trail log file as delivered to S3: `{"Records":[…]}`.
    Records,
    /// A JSON array of records.
    Array,
    /// One record per line.
    JsonLines,
}

/// Recognises the format from the start of the (decompressed) content: the first non-blank
/// byte `{` followed by the key `"Records"` is a Records document, `[` an array, anything else
/// JSON lines.
pub fn detect_format(start: &[u8]) -> Format {
    let rest = start.trim_ascii_start();
    match rest.first() {
        Some(b'[') => Format::Array,
        Some(b'{') if rest[1..].trim_ascii_start().starts_with(b"\"Records\"") => Format::Records,
        _ => Format::JsonLines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_content() {
        assert_eq!(detect_format(b"{\"Records\":[]}"), Format::Records);
        assert_eq!(detect_format(b"\n  {\n  \"Records\" : ["), Format::Records);
        assert_eq!(detect_format(b" [ {} ]"), Format::Array);
        assert_eq!(detect_format(b"{\"eventName\":\"X\"}\n"), Format::JsonLines);
        assert_eq!(detect_format(b""), Format::JsonLines);
        assert_eq!(detect_format(b"{"), Format::JsonLines);
    }

    #[test]
    fn picks_trail_names_in_directories() {
        for name in ["a.json", "a.json.gz", "b.jsonl", "c.ndjson.gz", "d.log"] {
            assert!(has_scannable_name(name.as_ref()), "{name}");
        }
        for name in ["a.txt", "a.gz", "json", "a.json.bz2"] {
            assert!(!has_scannable_name(name.as_ref()), "{name}");
        }
    }
}
