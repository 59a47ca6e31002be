//! Reference examples validate, embedded schemas match the reference, and archives
//! and bundles round-trip deterministically.

mod common;

use common::*;
use corral_afps::{integrity, record, validate, AfpsError, Bundle, Limits, Package, PackageType};
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/reference/afps"
);

#[test]
fn embedded_schemas_equal_the_reference() {
    for t in PackageType::ALL {
        let path = format!("{REFERENCE}/schemas/{}.schema.json", t.as_str());
        let reference = std::fs::read_to_string(&path).expect("reference schema");
        assert_eq!(
            corral_afps::schema(t),
            reference,
            "{path} drifted from the embedded copy"
        );
    }
}

fn content_for(t: PackageType) -> BTreeMap<String, Vec<u8>> {
    match t {
        PackageType::Agent => BTreeMap::from([("prompt.md".to_string(), b"Be useful.".to_vec())]),
        PackageType::Skill => BTreeMap::from([(
            "SKILL.md".to_string(),
            b"---\nname: rewrite-tone\ndescription: Rewrites text in another tone.\n---\n# Rewrite\n".to_vec(),
        )]),
        _ => BTreeMap::new(),
    }
}

#[test]
fn every_reference_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(format!("{REFERENCE}/examples")).expect("examples dir") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".manifest.json") {
            continue;
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("example is JSON");
        let t = PackageType::parse(manifest["type"].as_str().expect("type")).expect("known type");
        let (ptype, name, version) = validate(&manifest, &content_for(t))
            .unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()));
        assert_eq!(ptype, t);
        assert_eq!(name.id(), manifest["name"]);
        assert_eq!(version.to_string(), manifest["version"]);
        // And the same with the renumbered schema_version.
        let mut renumbered = manifest.clone();
        renumbered["schema_version"] = "0.1".into();
        assert!(
            validate(&renumbered, &content_for(t)).is_ok(),
            "{} with 0.1",
            path.display()
        );
        // Each example also survives an archive round trip.
        let p = Package::from_parts(manifest, content_for(t)).expect("from_parts");
        assert_eq!(
            Package::from_archive(&p.to_archive(), &Limits::default()).expect("read back"),
            p
        );
        seen += 1;
    }
    assert_eq!(seen, 8, "all reference examples were checked");
}

#[test]
fn archive_round_trip_is_exact_and_deterministic() {
    let p =
        Package::from_parts(agent_manifest("@acme/agent", "1.2.3"), agent_files()).expect("valid");
    assert_eq!(p.ptype, PackageType::Agent);
    assert_eq!(p.prompt(), Some("You are a helpful agent.\n"));
    assert!(p.files.contains_key("manifest.json"));
    let bytes = p.to_archive();
    assert_eq!(bytes, p.to_archive(), "byte-identical across calls");
    let back = Package::from_archive(&bytes, &Limits::default()).expect("read back");
    assert_eq!(back, p);
    assert_eq!(back.to_archive(), bytes, "re-archiving is stable");

    // Insertion order does not matter.
    let mut reversed = BTreeMap::new();
    for (k, v) in agent_files().into_iter().rev() {
        reversed.insert(k, v);
    }
    let q = Package::from_parts(agent_manifest("@acme/agent", "1.2.3"), reversed).expect("valid");
    assert_eq!(q.to_archive(), bytes);

    // An archive written in another order by another tool normalises to the same bytes.
    let files = &p.files;
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .rev()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let foreign = zip_of(&entries);
    assert_ne!(foreign, bytes);
    let r = Package::from_archive(&foreign, &Limits::default()).expect("foreign");
    assert_eq!(r.to_archive(), bytes);
}

#[test]
fn archive_has_record_and_fixed_metadata() {
    let p =
        Package::from_parts(agent_manifest("@acme/agent", "1.0.0"), agent_files()).expect("valid");
    let bytes = p.to_archive();
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).expect("zip");
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"RECORD".to_string()));
    let mut text = String::new();
    zip.by_name("RECORD")
        .expect("RECORD")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, record(&p.files));
    assert_eq!(text.lines().count(), p.files.len());
    for i in 0..zip.len() {
        let f = zip.by_index(i).expect("entry");
        let t = f.last_modified().expect("time");
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour(), t.minute()),
            (1980, 1, 1, 0, 0)
        );
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o644));
        assert_eq!(f.compression(), zip::CompressionMethod::Deflated);
    }
}

#[test]
fn from_parts_refuses_unsafe_paths_and_invalid_manifests() {
    let mut files = agent_files();
    files.insert("../x".to_string(), b"x".to_vec());
    assert!(matches!(
        Package::from_parts(agent_manifest("@acme/agent", "1.0.0"), files),
        Err(AfpsError::UnsafePath(_))
    ));
    let err =
        Package::from_parts(agent_manifest("nope", "1.0.0"), BTreeMap::new()).expect_err("invalid");
    assert_eq!(err.code(), "manifest_invalid");
    assert_eq!(err.field_errors().len(), 2, "{err:?}"); // name + prompt.md
}

fn three_packages() -> Vec<Package> {
    vec![
        Package::from_parts(agent_manifest("@acme/b", "2.0.0"), agent_files()).expect("b"),
        Package::from_parts(agent_manifest("@acme/a", "1.0.0"), agent_files()).expect("a1"),
        Package::from_parts(agent_manifest("@acme/a", "1.1.0"), agent_files()).expect("a2"),
    ]
}

#[test]
fn bundle_round_trip() {
    let packages = three_packages();
    let inputs: Vec<_> = packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.to_archive()))
        .collect();
    let bytes = Bundle::write(&inputs);
    assert_eq!(bytes, Bundle::write(&inputs));
    let mut reversed = inputs.clone();
    reversed.reverse();
    assert_eq!(
        Bundle::write(&reversed),
        bytes,
        "independent of input order"
    );

    let bundle = Bundle::from_archive(&bytes, &Limits::default()).expect("bundle");
    let got: Vec<String> = bundle
        .packages
        .iter()
        .map(|(p, _)| format!("{}@{}", p.name, p.version))
        .collect();
    assert_eq!(got, ["@acme/a@1.0.0", "@acme/a@1.1.0", "@acme/b@2.0.0"]);
    for (p, archive) in &bundle.packages {
        let original = packages
            .iter()
            .find(|q| q.name == p.name && q.version == p.version)
            .expect("listed");
        assert_eq!(p, original);
        assert_eq!(archive, &original.to_archive());
    }

    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).expect("zip");
    let mut index = String::new();
    zip.by_name("bundle.json")
        .expect("index")
        .read_to_string(&mut index)
        .expect("read");
    let index: serde_json::Value = serde_json::from_str(&index).expect("json");
    assert_eq!(index["bundle_version"], "1");
    assert_eq!(index["packages"][0]["integrity"], integrity(&inputs[1].2));
}

#[test]
fn altered_inner_archive_fails_integrity() {
    let packages = three_packages();
    let inputs: Vec<_> = packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.to_archive()))
        .collect();
    let bytes = Bundle::write(&inputs);

    // Rebuild the bundle with the same bundle.json but one inner archive swapped for
    // another valid archive.
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).expect("zip");
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let name = f.name().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read");
        if name == "packages/acme/b/2.0.0.afps" {
            let mut files = agent_files();
            files.insert(
                "prompt.md".to_string(),
                b"Something else entirely.".to_vec(),
            );
            data = Package::from_parts(agent_manifest("@acme/b", "2.0.0"), files)
                .expect("b'")
                .to_archive();
        }
        out.start_file(name, options).expect("start");
        out.write_all(&data).expect("write");
    }
    let tampered = out.finish().expect("finish").into_inner();
    let err = Bundle::from_archive(&tampered, &Limits::default()).expect_err("tampered");
    assert!(matches!(err, AfpsError::Integrity { .. }), "{err:?}");
    assert_eq!(err.code(), "bundle_integrity_mismatch");
}

#[test]
fn bundle_without_index() {
    let bytes = zip_of(&[("packages/x.afps", b"x")]);
    assert!(matches!(
        Bundle::from_archive(&bytes, &Limits::default()),
        Err(AfpsError::ManifestMissing)
    ));
}
