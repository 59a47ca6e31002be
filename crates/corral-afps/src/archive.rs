//! ZIP handling: reading untrusted archives under hard limits, and writing
//! deterministic ones. Everything that touches ZIP bytes lives here.
//!
//! Reading never trusts what headers declare: entry names and counts come from our
//! own walk of the central directory (the `zip` crate silently keeps only the last of
//! duplicate names), and every entry is decompressed through a hard cap, so a lying
//! uncompressed size or a deflate bomb stops at the limit instead of filling memory.

use crate::AfpsError;
use std::collections::{BTreeMap, HashSet};
use std::io::{Cursor, Read, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

const MIB: u64 = 1024 * 1024;

/// Below this much output an entry is never called a bomb: tiny, highly repetitive
/// files (a JSON of spaces, an empty-ish template) legitimately exceed any ratio.
const RATIO_FLOOR: u64 = MIB;

/// Hard limits applied while reading an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Size of the archive itself.
    pub max_archive_bytes: u64,
    /// Entries in the central directory, directories included.
    pub max_entries: usize,
    /// Uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Uncompressed size of all entries together.
    pub max_total_bytes: u64,
    /// Uncompressed / compressed size of one entry (applied past 1 MiB of output).
    pub max_ratio: u64,
    /// Size of `manifest.json`.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 50 * MIB,
            max_entries: 1000,
            max_entry_bytes: 25 * MIB,
            max_total_bytes: 100 * MIB,
            max_ratio: 100,
            max_manifest_bytes: MIB,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;

/// Finds the central directory: (offset, size).
fn central_directory(bytes: &[u8]) -> Result<(usize, usize), AfpsError> {
    let not_zip = || AfpsError::NotZip("no end of central directory record".into());
    if bytes.len() < 22 {
        return Err(not_zip());
    }
    // The EOCD is 22 bytes plus a comment of at most 65535 bytes, at the very end.
    let lowest = bytes.len().saturating_sub(22 + 65535);
    let eocd = (lowest..=bytes.len() - 22)
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD_SIG))
        .ok_or_else(not_zip)?;
    let mut size = u64::from(u32_at(bytes, eocd + 12).ok_or_else(not_zip)?);
    let mut offset = u64::from(u32_at(bytes, eocd + 16).ok_or_else(not_zip)?);
    if offset == u64::from(u32::MAX) || size == u64::from(u32::MAX) {
        let bad = || AfpsError::NotZip("broken ZIP64 end of central directory".into());
        let locator = eocd.checked_sub(20).ok_or_else(bad)?;
        if u32_at(bytes, locator) != Some(ZIP64_LOCATOR_SIG) {
            return Err(bad());
        }
        let at = usize::try_from(u64_at(bytes, locator + 8).ok_or_else(bad)?).map_err(|_| bad())?;
        if u32_at(bytes, at) != Some(ZIP64_EOCD_SIG) {
            return Err(bad());
        }
        size = u64_at(bytes, at + 40).ok_or_else(bad)?;
        offset = u64_at(bytes, at + 48).ok_or_else(bad)?;
    }
    let offset = usize::try_from(offset).map_err(|_| not_zip())?;
    let size = usize::try_from(size).map_err(|_| not_zip())?;
    if offset.checked_add(size).is_none_or(|end| end > bytes.len()) {
        return Err(AfpsError::NotZip(
            "central directory lies outside the archive".into(),
        ));
    }
    Ok((offset, size))
}

/// Walks the central directory, enforcing the entry count and refusing duplicate
/// names, before the `zip` crate gets to collapse them.
fn scan_names(bytes: &[u8], limits: &Limits) -> Result<usize, AfpsError> {
    let (offset, size) = central_directory(bytes)?;
    let end = offset + size;
    let truncated = || AfpsError::NotZip("truncated central directory".into());
    let mut seen = HashSet::new();
    let mut at = offset;
    while at < end {
        if u32_at(bytes, at) != Some(CENTRAL_SIG) {
            return Err(AfpsError::NotZip("bad central directory header".into()));
        }
        let name_len = usize::from(u16_at(bytes, at + 28).ok_or_else(truncated)?);
        let extra_len = usize::from(u16_at(bytes, at + 30).ok_or_else(truncated)?);
        let comment_len = usize::from(u16_at(bytes, at + 32).ok_or_else(truncated)?);
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(truncated)?;
        if seen.len() == limits.max_entries {
            return Err(AfpsError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        if !seen.insert(name) {
            return Err(AfpsError::DuplicateEntry(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(seen.len())
}

/// Refuses a path that could escape or confuse an extraction directory.
pub(crate) fn check_path(path: &str) -> Result<(), AfpsError> {
    let unsafe_path = || Err(AfpsError::UnsafePath(path.to_string()));
    let bytes = path.as_bytes();
    if path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(char::is_control)
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
    {
        return unsafe_path();
    }
    // Empty, "." and ".." components are all refused: "a//b" or "./a" would alias
    // another entry once normalised.
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return unsafe_path();
    }
    Ok(())
}

/// Reads every file of an untrusted archive under `limits`. `budget` is the
/// uncompressed bytes still allowed, shared across nested archives of a bundle.
/// Directory entries are checked and skipped.
pub(crate) fn read_zip(
    bytes: &[u8],
    limits: &Limits,
    budget: &mut u64,
) -> Result<BTreeMap<String, Vec<u8>>, AfpsError> {
    if bytes.len() as u64 > limits.max_archive_bytes {
        return Err(AfpsError::TooLarge {
            what: "archive".into(),
            limit: limits.max_archive_bytes,
        });
    }
    let count = scan_names(bytes, limits)?;
    let mut zip =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| AfpsError::NotZip(e.to_string()))?;
    if zip.len() != count {
        // Names that differ as bytes but decode to the same string.
        return Err(AfpsError::DuplicateEntry(
            "(names that decode alike)".into(),
        ));
    }
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| AfpsError::NotZip(e.to_string()))?;
        let name = entry.name().to_string();
        if entry.name_raw().contains(&0) {
            return Err(AfpsError::UnsafePath(name));
        }
        if entry.is_symlink() {
            return Err(AfpsError::Symlink(name));
        }
        if entry.is_dir() {
            check_path(name.trim_end_matches('/'))?;
            continue;
        }
        check_path(&name)?;
        // The compressed size bounds what is read from the archive, which is itself
        // bounded, so it is safe to use for the ratio; the uncompressed size is not
        // looked at.
        let ratio_cap = entry
            .compressed_size()
            .max(1)
            .saturating_mul(limits.max_ratio)
            .max(RATIO_FLOOR);
        let cap = ratio_cap.min(limits.max_entry_bytes).min(*budget);
        let mut data = Vec::new();
        (&mut entry)
            .take(cap.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| AfpsError::NotZip(format!("{name}: {e}")))?;
        let got = data.len() as u64;
        if got > cap {
            return Err(if got > ratio_cap {
                AfpsError::CompressionRatio {
                    entry: name,
                    limit: limits.max_ratio,
                }
            } else if got > limits.max_entry_bytes {
                AfpsError::TooLarge {
                    what: format!("entry {name:?}"),
                    limit: limits.max_entry_bytes,
                }
            } else {
                AfpsError::TooLarge {
                    what: "total uncompressed size".into(),
                    limit: limits.max_total_bytes,
                }
            });
        }
        *budget -= got;
        files.insert(name, data);
    }
    Ok(files)
}

/// Writes a deterministic ZIP: entries in the map's (sorted) order, a fixed
/// timestamp (1980-01-01 00:00), fixed permissions, no extra fields.
pub(crate) fn write_zip(files: &BTreeMap<String, Vec<u8>>, method: CompressionMethod) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (path, data) in files {
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .large_file(data.len() as u64 >= u64::from(u32::MAX));
        // Writing into memory fails only on programming errors (duplicate names are
        // impossible in a map), so a panic here is a bug, not bad input.
        zip.start_file(path.as_str(), options)
            .expect("start ZIP entry in memory");
        zip.write_all(data).expect("write ZIP entry in memory");
    }
    zip.finish().expect("finish ZIP in memory").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        for ok in [
            "manifest.json",
            "scripts/run.sh",
            "a/b/c.txt",
            ".hidden",
            "a..b",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "C:x",
            "c:/x",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
            "a\nb",
        ] {
            assert!(
                matches!(check_path(bad), Err(AfpsError::UnsafePath(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn write_then_read() {
        let mut files = BTreeMap::new();
        files.insert("b/x.txt".to_string(), b"hello".to_vec());
        files.insert("a.txt".to_string(), vec![0u8; 5000]);
        let bytes = write_zip(&files, CompressionMethod::Deflated);
        assert_eq!(bytes, write_zip(&files, CompressionMethod::Deflated));
        let mut budget = u64::MAX;
        assert_eq!(
            read_zip(&bytes, &Limits::default(), &mut budget).expect("read"),
            files
        );
        assert_eq!(budget, u64::MAX - 5005);
    }

    #[test]
    fn not_zip() {
        let mut budget = u64::MAX;
        for body in [&b""[..], b"hello world", &[0u8; 100]] {
            let err = read_zip(body, &Limits::default(), &mut budget).expect_err("not a zip");
            assert_eq!(err.code(), "archive_invalid");
        }
    }
}
