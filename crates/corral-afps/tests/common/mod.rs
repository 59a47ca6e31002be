//! Helpers shared by the integration tests: building archives, hostile or not.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

pub fn agent_manifest(name: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name, "version": version, "type": "agent", "schema_version": "2.0",
        "display_name": "Test Agent", "author": "Tests", "timeout": 60
    })
}

pub fn agent_files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (
            "prompt.md".to_string(),
            b"You are a helpful agent.\n".to_vec(),
        ),
        ("assets/data.txt".to_string(), b"some data".to_vec()),
    ])
}

/// A ZIP with the given entries in the given order, deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, CompressionMethod::Deflated)
}

pub fn zip_with(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        zip.start_file(*name, options).expect("start");
        zip.write_all(data).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

pub fn manifest_bytes(name: &str, version: &str) -> Vec<u8> {
    serde_json::to_vec(&agent_manifest(name, version)).expect("json")
}

/// Replaces every occurrence of `from` with `to` (same length) in raw ZIP bytes:
/// names appear in both the local and the central headers.
pub fn patch_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

/// Overwrites the declared uncompressed size of every entry, in the local headers
/// (offset 22) and the central directory (offset 24).
pub fn lie_about_sizes(bytes: &mut [u8], size: u32) -> usize {
    let mut n = 0;
    for i in 0..bytes.len().saturating_sub(30) {
        let sig = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let at = match sig {
            0x0403_4b50 => i + 22,
            0x0201_4b50 => i + 24,
            _ => continue,
        };
        bytes[at..at + 4].copy_from_slice(&size.to_le_bytes());
        n += 1;
    }
    n
}
