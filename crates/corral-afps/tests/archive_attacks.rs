//! Hostile archives are refused with the right error, before any content is trusted.

mod common;

use common::*;
use corral_afps::{AfpsError, Limits, Package};
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

const NAME: &str = "@acme/agent";

fn read(bytes: &[u8]) -> Result<Package, AfpsError> {
    Package::from_archive(bytes, &Limits::default())
}

fn with_manifest(extra: (&str, &[u8])) -> Vec<u8> {
    let manifest = manifest_bytes(NAME, "1.0.0");
    zip_of(&[("manifest.json", &manifest), ("prompt.md", b"hi"), extra])
}

#[test]
fn a_well_formed_archive_is_accepted() {
    let p = read(&with_manifest(("notes/a.txt", b"x"))).expect("valid");
    assert_eq!(p.name.id(), NAME);
    assert_eq!(p.prompt(), Some("hi"));
}

#[test]
fn traversal_absolute_and_backslash_paths() {
    for evil in [
        "../evil.txt",
        "a/../../evil.txt",
        "/etc/passwd",
        "a\\..\\evil.txt",
        "C:/evil.txt",
        "a/./b",
    ] {
        let err = read(&with_manifest((evil, b"x"))).expect_err(evil);
        assert!(
            matches!(&err, AfpsError::UnsafePath(p) if p == evil),
            "{evil}: {err:?}"
        );
        assert_eq!(err.code(), "unsafe_path");
    }
}

#[test]
fn nul_in_name_is_unsafe() {
    // The writer refuses no names, but patch one in to be sure of the raw bytes.
    let mut bytes = with_manifest(("evilXname.txt", b"x"));
    assert_eq!(patch_all(&mut bytes, b"evilXname", b"evil\0name"), 2);
    let err = read(&bytes).expect_err("nul");
    assert!(matches!(err, AfpsError::UnsafePath(_)), "{err:?}");
}

#[test]
fn symlink_entry() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    zip.start_file("manifest.json", options).expect("start");
    zip.write_all(&manifest_bytes(NAME, "1.0.0"))
        .expect("write");
    zip.start_file("prompt.md", options).expect("start");
    zip.write_all(b"hi").expect("write");
    zip.add_symlink("link", "/etc/passwd", options)
        .expect("symlink");
    let bytes = zip.finish().expect("finish").into_inner();
    let err = read(&bytes).expect_err("symlink");
    assert!(
        matches!(&err, AfpsError::Symlink(p) if p == "link"),
        "{err:?}"
    );
}

#[test]
fn duplicate_names() {
    let manifest = manifest_bytes(NAME, "1.0.0");
    // The writer refuses duplicates, so write two names and make them equal.
    let mut bytes = zip_of(&[
        ("manifest.json", &manifest),
        ("prompt.md", b"hi"),
        ("dupA.txt", b"1"),
        ("dupB.txt", b"2"),
    ]);
    assert_eq!(patch_all(&mut bytes, b"dupB.txt", b"dupA.txt"), 2);
    let err = read(&bytes).expect_err("duplicate");
    assert!(
        matches!(&err, AfpsError::DuplicateEntry(p) if p == "dupA.txt"),
        "{err:?}"
    );
    assert_eq!(err.code(), "duplicate_entry");
}

#[test]
fn deflate_bomb_hits_the_ratio_limit() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let bytes = with_manifest(("bomb.bin", &zeros));
    assert!(
        bytes.len() < 100 * 1024,
        "really compressed: {}",
        bytes.len()
    );
    let err = read(&bytes).expect_err("bomb");
    assert!(
        matches!(&err, AfpsError::CompressionRatio { entry, limit: 100 } if entry == "bomb.bin"),
        "{err:?}"
    );
    assert_eq!(err.code(), "decompression_bomb");
}

#[test]
fn declared_sizes_are_not_trusted() {
    // 3 MiB of data whose headers claim 10 bytes: the hard cap on reading stops it.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let manifest = manifest_bytes(NAME, "1.0.0");
    let mut bytes = zip_of(&[
        ("manifest.json", &manifest),
        ("prompt.md", b"hi"),
        ("liar.bin", &data),
    ]);
    assert_eq!(lie_about_sizes(&mut bytes, 10), 6);
    let limits = Limits {
        max_entry_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let err = Package::from_archive(&bytes, &limits).expect_err("liar");
    assert!(
        matches!(&err, AfpsError::TooLarge { what, .. } if what.contains("liar.bin")),
        "{err:?}"
    );

    // And a lying bomb is still a bomb.
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let mut bytes = zip_of(&[
        ("manifest.json", &manifest),
        ("prompt.md", b"hi"),
        ("liar.bin", &zeros),
    ]);
    lie_about_sizes(&mut bytes, 10);
    let err = read(&bytes).expect_err("lying bomb");
    assert!(matches!(err, AfpsError::CompressionRatio { .. }), "{err:?}");
}

#[test]
fn too_many_entries() {
    let manifest = manifest_bytes(NAME, "1.0.0");
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("manifest.json", &manifest), ("prompt.md", b"hi")];
    entries.extend(names.iter().map(|n| (n.as_str(), &b"x"[..])));
    let bytes = zip_of(&entries);
    let limits = Limits {
        max_entries: 6,
        ..Limits::default()
    };
    let err = Package::from_archive(&bytes, &limits).expect_err("too many");
    assert!(
        matches!(err, AfpsError::TooManyEntries { limit: 6 }),
        "{err:?}"
    );
    assert_eq!(err.code(), "archive_too_large");
    let limits = Limits {
        max_entries: 7,
        ..Limits::default()
    };
    assert!(Package::from_archive(&bytes, &limits).is_ok());
}

#[test]
fn total_uncompressed_size() {
    let big = vec![b'a'; 600];
    let manifest = manifest_bytes(NAME, "1.0.0");
    let bytes = zip_of(&[
        ("manifest.json", &manifest),
        ("prompt.md", b"hi"),
        ("a.txt", &big),
        ("b.txt", &big),
    ]);
    let limits = Limits {
        max_total_bytes: 1000 + manifest.len() as u64,
        ..Limits::default()
    };
    let err = Package::from_archive(&bytes, &limits).expect_err("total");
    assert!(
        matches!(&err, AfpsError::TooLarge { what, limit } if what.contains("total") && *limit == limits.max_total_bytes),
        "{err:?}"
    );
}

#[test]
fn archive_itself_too_large() {
    let bytes = with_manifest(("a.txt", b"x"));
    let limits = Limits {
        max_archive_bytes: bytes.len() as u64 - 1,
        ..Limits::default()
    };
    let err = Package::from_archive(&bytes, &limits).expect_err("too large");
    assert!(
        matches!(&err, AfpsError::TooLarge { what, .. } if what == "archive"),
        "{err:?}"
    );
}

#[test]
fn not_a_zip() {
    for body in [
        &b""[..],
        b"PK\x03\x04 but then nothing",
        b"{\"name\": \"@a/b\"}",
        &[0xffu8; 4096][..],
    ] {
        let err = read(body).expect_err("not zip");
        assert!(matches!(err, AfpsError::NotZip(_)), "{err:?}");
        assert_eq!(err.code(), "archive_invalid");
    }
    // A ZIP cut short loses its central directory.
    let bytes = with_manifest(("a.txt", b"x"));
    assert!(matches!(
        read(&bytes[..bytes.len() / 2]),
        Err(AfpsError::NotZip(_))
    ));
}

#[test]
fn manifest_not_json() {
    let bytes = zip_of(&[("manifest.json", b"{ not json"), ("prompt.md", b"hi")]);
    let err = read(&bytes).expect_err("not json");
    assert!(matches!(err, AfpsError::ManifestNotJson(_)), "{err:?}");
    assert_eq!(err.code(), "manifest_invalid");
}

#[test]
fn manifest_over_the_size_limit() {
    let mut m = agent_manifest(NAME, "1.0.0");
    m["description"] = serde_json::Value::String("x".repeat(2000));
    let manifest = serde_json::to_vec(&m).expect("json");
    let bytes = zip_of(&[("manifest.json", &manifest), ("prompt.md", b"hi")]);
    assert!(read(&bytes).is_ok());
    let limits = Limits {
        max_manifest_bytes: 1000,
        ..Limits::default()
    };
    let err = Package::from_archive(&bytes, &limits).expect_err("big manifest");
    assert!(
        matches!(&err, AfpsError::TooLarge { what, limit: 1000 } if what == "manifest.json"),
        "{err:?}"
    );
}

#[test]
fn manifest_only_in_a_subdirectory() {
    let manifest = manifest_bytes(NAME, "1.0.0");
    let bytes = zip_of(&[("pkg/manifest.json", &manifest), ("pkg/prompt.md", b"hi")]);
    let err = read(&bytes).expect_err("not at root");
    assert!(matches!(err, AfpsError::ManifestMissing), "{err:?}");
    assert_eq!(err.code(), "manifest_missing");
}

#[test]
fn invalid_manifest_in_archive_reports_fields() {
    let bytes = zip_of(&[(
        "manifest.json",
        br#"{"name":"bad","version":"x","type":"agent"}"#,
    )]);
    let err = read(&bytes).expect_err("invalid");
    let fields: Vec<&str> = err
        .field_errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    for f in [
        "name",
        "version",
        "display_name",
        "schema_version",
        "files.prompt.md",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    // `author` is optional, as in the reference API (not the AFPS schema).
    assert!(!fields.contains(&"author"), "{fields:?}");
}

#[test]
fn tampered_record_is_refused() {
    let p = Package::from_parts(agent_manifest(NAME, "1.0.0"), agent_files()).expect("valid");
    let mut bytes = p.to_archive();
    // Same length, different content: the RECORD no longer matches prompt.md.
    assert_eq!(
        patch_all(&mut bytes, b"assets/data.txt", b"assets/dat4.txt"),
        2
    );
    let err = read(&bytes).expect_err("tampered");
    assert_eq!(err.code(), "manifest_invalid");
    assert_eq!(err.field_errors()[0].field, "files.RECORD", "{err:?}");
    assert_eq!(err.field_errors()[0].code, "record_mismatch");
}
