//! Packages over HTTP: create, publish, import, download, resolution, yanking,
//! integrity, hostile archives, isolation, system packages, bundles.

use std::io::Write;

use corral_testkit::{both, Backend, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn agent_manifest(scope: &str, name: &str, version: &str) -> Value {
    json!({
        "name": format!("@{scope}/{name}"), "version": version, "type": "agent", "schema_version": "2.0",
        "display_name": "Test agent", "author": "tests",
        "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
    })
}

async fn slug(s: &Session) -> String {
    s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn raw(
    app: &TestApp,
    s: &Session,
    method: Method,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("cookie", s.client.header_value("cookie").unwrap())
        .header("x-org-id", &s.org_id)
        .header("x-app-id", &s.app_id)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.bytes().await.unwrap().to_vec(), headers)
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

async fn create_publish_download_round_trip(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let c = &alice.client;

    let created = c
        .post(
            "/api/packages/agents",
            json!({"manifest": agent_manifest(&scope, "greeter", "1.0.0"), "content": "Say hi."}),
            201,
        )
        .await;
    assert_eq!(created["prompt"], "Say hi.");
    assert!(
        created["version"].is_null(),
        "a created package is a draft until published"
    );
    let base = format!("/api/packages/agents/@{scope}/greeter");
    let v1 = c.post(&format!("{base}/versions"), json!({}), 201).await;
    assert_eq!(v1["version"], "1.0.0");
    assert_eq!(v1["dist_tags"], json!(["latest"]));
    let integrity = v1["integrity"].as_str().unwrap().to_owned();
    assert!(integrity.starts_with("sha256-"));
    assert_eq!(
        c.get(&base, 200).await["has_unarchived_changes"],
        false,
        "the draft is the published version"
    );
    // Editing only the prompt (not the manifest) is an unpublished change.
    let detail = c.get(&base, 200).await;
    let edited = c
        .put(&base, json!({"manifest": detail["manifest"], "content": "Say hi warmly.", "lock_version": detail["lock_version"]}), 200)
        .await;
    assert_eq!(edited["has_unarchived_changes"], true);
    let r = c
        .send(Method::PUT, &base, Some(json!({"manifest": detail["manifest"], "content": "stale", "lock_version": detail["lock_version"]})), &[])
        .await;
    assert_eq!(r.status, 409, "a stale lock_version is refused");
    c.post(&format!("{base}/versions/1.0.0/restore"), json!({}), 200)
        .await;
    assert_eq!(
        c.get(&base, 200).await["has_unarchived_changes"],
        false,
        "restored to the published bytes"
    );

    // Forward only: equal and lower versions are 409.
    for v in ["1.0.0", "0.9.0"] {
        let r = c
            .send(
                Method::POST,
                &format!("{base}/versions"),
                Some(json!({"version": v})),
                &[],
            )
            .await;
        assert_eq!(r.status, 409, "{v}: {}", r.text);
    }

    // Download: the exact bytes, matching the integrity; re-import of other bytes refused.
    let (status, bytes, headers) = raw(
        &app,
        &alice,
        Method::GET,
        &format!("/api/packages/@{scope}/greeter/1.0.0/download"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("x-integrity").unwrap().to_str().unwrap(),
        integrity
    );
    assert_eq!(corral_afps::integrity(&bytes), integrity);
    let pkg = corral_afps::Package::from_archive(&bytes, &corral_afps::Limits::default()).unwrap();
    assert_eq!(pkg.prompt(), Some("Say hi."));

    // Import a new version as an archive, then download it back byte for byte.
    let mut next = pkg.manifest.clone();
    next["version"] = json!("1.1.0");
    let mut files = pkg.files.clone();
    files.remove("manifest.json");
    files.insert("prompt.md".into(), b"Say hello.".to_vec());
    let archive = corral_afps::Package::from_parts(next, files)
        .unwrap()
        .to_archive();
    let (status, body, _) = raw(
        &app,
        &alice,
        Method::POST,
        "/api/packages/import",
        "application/zip",
        archive.clone(),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let imported: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(imported["version"], "1.1.0");
    assert_eq!(imported["integrity"], corral_afps::integrity(&archive));
    let (_, back, _) = raw(
        &app,
        &alice,
        Method::GET,
        &format!("/api/packages/@{scope}/greeter/1.1.0/download"),
        "",
        vec![],
    )
    .await;
    assert_eq!(
        back, archive,
        "download returns the imported bytes unchanged"
    );

    // Files and file content of the latest version.
    let files = c
        .get(&format!("/api/packages/@{scope}/greeter/files"), 200)
        .await;
    let paths: Vec<&str> = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"prompt.md") && paths.contains(&"manifest.json"),
        "{paths:?}"
    );
    let r = c
        .send(
            Method::GET,
            &format!("/api/packages/@{scope}/greeter/files/content?path=prompt.md"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.text, "Say hello.");

    // Versions, newest first; restore copies a version into the draft.
    let versions = c.get(&format!("{base}/versions"), 200).await;
    let list: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(list, vec!["1.1.0", "1.0.0"]);
    let restored = c
        .post(&format!("{base}/versions/1.0.0/restore"), json!({}), 200)
        .await;
    assert_eq!(restored["prompt"], "Say hi.");
}

async fn resolution_yanking_and_tags(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let c = &alice.client;
    c.post(
        "/api/packages/agents",
        json!({"manifest": agent_manifest(&scope, "r", "1.0.0"), "content": "x"}),
        201,
    )
    .await;
    let base = format!("/api/packages/agents/@{scope}/r");
    for v in ["1.0.0", "1.2.0", "2.0.0-beta.1"] {
        c.post(&format!("{base}/versions"), json!({"version": v}), 201)
            .await;
    }
    let dl = |spec: &str| format!("/api/packages/@{scope}/r/{spec}/download");
    let version_of = |bytes: &[u8]| {
        corral_afps::Package::from_archive(bytes, &corral_afps::Limits::default())
            .unwrap()
            .version
            .to_string()
    };
    let (_, b1, _) = raw(&app, &alice, Method::GET, &dl("^1"), "", vec![]).await;
    assert_eq!(version_of(&b1), "1.2.0", "highest satisfying the range");
    let (_, b2, _) = raw(&app, &alice, Method::GET, &dl("latest"), "", vec![]).await;
    assert_eq!(version_of(&b2), "1.2.0", "prereleases do not move latest");
    // Yank 1.2.0: ranges and latest skip it, the exact version stays downloadable.
    c.delete(&format!("{base}/versions/1.2.0"), 204).await;
    let (_, b3, _) = raw(&app, &alice, Method::GET, &dl("^1"), "", vec![]).await;
    assert_eq!(version_of(&b3), "1.0.0");
    let (_, b4, _) = raw(&app, &alice, Method::GET, &dl("latest"), "", vec![]).await;
    assert_eq!(
        version_of(&b4),
        "1.0.0",
        "latest moved off the yanked version"
    );
    let (s5, _, _) = raw(&app, &alice, Method::GET, &dl("1.2.0"), "", vec![]).await;
    assert_eq!(s5, 200);
    let (s6, _, _) = raw(&app, &alice, Method::GET, &dl("^3"), "", vec![]).await;
    assert_eq!(s6, 404);
    let versions = c.get(&format!("{base}/versions"), 200).await;
    let yanked: Vec<bool> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["yanked"].as_bool().unwrap())
        .collect();
    assert_eq!(yanked, vec![false, true, false]);
}

async fn integrity_mismatch_is_detected(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let c = &alice.client;
    c.post(
        "/api/packages/agents",
        json!({"manifest": agent_manifest(&scope, "i", "1.0.0"), "content": "x"}),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/agents/@{scope}/i/versions"),
        json!({}),
        201,
    )
    .await;
    let mut conn = app.state.db.conn().await.unwrap();
    let v = corral_store::packages::version(&mut conn, &format!("@{scope}/i"), "1.0.0")
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    app.state
        .blobs
        .put_raw(&v.storage_key, b"tampered".to_vec())
        .await
        .unwrap();
    for path in [
        format!("/api/packages/@{scope}/i/1.0.0/download"),
        format!("/api/packages/@{scope}/i/files/content?path=prompt.md"),
        format!("/api/packages/agents/@{scope}/i/versions/1.0.0"),
    ] {
        let r = c.send(Method::GET, &path, None, &[]).await;
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(r.code(), "bundle_integrity_mismatch", "{path}");
        assert!(!r.text.contains("tampered"));
    }
}

async fn hostile_archives_are_refused_and_leave_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let manifest = serde_json::to_vec(&agent_manifest(&scope, "evil", "1.0.0")).unwrap();
    let bomb = vec![0u8; 30 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("not a zip", b"this is not a zip archive".to_vec(), 400),
        (
            "dot-dot",
            zip_of(&[
                ("manifest.json", &manifest),
                ("prompt.md", b"x"),
                ("../escape.txt", b"x"),
            ]),
            400,
        ),
        (
            "absolute",
            zip_of(&[
                ("manifest.json", &manifest),
                ("prompt.md", b"x"),
                ("/etc/passwd", b"x"),
            ]),
            400,
        ),
        (
            "manifest not json",
            zip_of(&[("manifest.json", b"{not json"), ("prompt.md", b"x")]),
            400,
        ),
        ("no manifest", zip_of(&[("prompt.md", b"x")]), 400),
        (
            "bomb",
            zip_of(&[
                ("manifest.json", &manifest),
                ("prompt.md", b"x"),
                ("zeros.bin", &bomb),
            ]),
            413,
        ),
        (
            "empty prompt",
            zip_of(&[("manifest.json", &manifest), ("prompt.md", b"")]),
            400,
        ),
    ];
    for (what, bytes, _) in &cases {
        let (status, body, _) = raw(
            &app,
            &alice,
            Method::POST,
            "/api/packages/import",
            "application/zip",
            bytes.clone(),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(status == 400 || status == 413, "{what}: {status} {body}");
        assert!(body["code"].is_string(), "{what}: problem body {body}");
    }
    // A name in another org's scope.
    let other = serde_json::to_vec(&agent_manifest("someone-else", "x", "1.0.0")).unwrap();
    let (status, _, _) = raw(
        &app,
        &alice,
        Method::POST,
        "/api/packages/import",
        "application/zip",
        zip_of(&[("manifest.json", &other), ("prompt.md", b"x")]),
    )
    .await;
    assert_eq!(status, 403);
    // Multipart without a file part; a wrong media type.
    let (status, _, _) = raw(
        &app,
        &alice,
        Method::POST,
        "/api/packages/import",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 415);
    // Nothing was left behind.
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM packages WHERE org_id = '{}'",
            alice.org_id
        ))
        .await,
        0
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM package_versions v JOIN packages p ON p.id = v.package_id WHERE p.org_id IS NOT NULL").await, 0);

    // Every manifest problem is reported at once.
    let bad = json!({"name": "Bad Name", "version": "one", "type": "agent", "schema_version": "2.0", "timeout": "soon"});
    let r = alice
        .client
        .send(
            Method::POST,
            "/api/packages/agents",
            Some(json!({"manifest": bad, "content": "x"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["errors"].as_array().unwrap().len() >= 3,
        "{}",
        r.text
    );
}

async fn isolation_and_system_packages(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let bob = app.user_with_org("Bob").await;
    let scope = slug(&alice).await;
    alice
        .client
        .post("/api/packages/skills", json!({"manifest": {"name": format!("@{scope}/secret"), "version": "1.0.0", "type": "skill", "schema_version": "2.0", "display_name": "Secret", "description": "x"}, "content": "---\nname: secret\ndescription: x\n---\nbody"}), 201)
        .await;
    alice
        .client
        .post(
            &format!("/api/packages/skills/@{scope}/secret/versions"),
            json!({}),
            201,
        )
        .await;
    let bc = &bob.client;
    for (m, path) in [
        (Method::GET, format!("/api/packages/skills/@{scope}/secret")),
        (
            Method::GET,
            format!("/api/packages/skills/@{scope}/secret/versions"),
        ),
        (
            Method::GET,
            format!("/api/packages/@{scope}/secret/1.0.0/download"),
        ),
        (Method::GET, format!("/api/packages/@{scope}/secret/files")),
        (
            Method::DELETE,
            format!("/api/packages/skills/@{scope}/secret"),
        ),
        (
            Method::POST,
            format!("/api/packages/skills/@{scope}/secret/versions"),
        ),
    ] {
        let r = bc
            .send(
                m.clone(),
                &path,
                if m == Method::POST {
                    Some(json!({}))
                } else {
                    None
                },
                &[],
            )
            .await;
        assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
    }
    let lib = bc.get("/api/library", 200).await;
    assert!(!lib.to_string().contains("secret"));
    // System packages: in every library, read-only.
    for s in [&alice, &bob] {
        let lib = s.client.get("/api/library", 200).await;
        // Grouped by type, every group present; the default application first.
        assert_eq!(lib["applications"][0]["isDefault"], true);
        let ids: Vec<&str> = ["agent", "skill", "mcp-server", "integration"]
            .iter()
            .flat_map(|t| lib["packages"][t].as_array().unwrap())
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        let hw = lib["packages"]["agent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "@corral/hello-world")
            .expect("hello-world in the agent group");
        assert_eq!(hw["type"], "agent");
        assert!(hw["installed_in"].is_array());
        for id in [
            "@corral/hello-world",
            "@corral/http-fetcher",
            "@corral/http-api",
            "@corral/github",
            "@corral/basic-auth-api",
            "@corral/summarize",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
    }
    let r = bc
        .send(
            Method::DELETE,
            "/api/packages/agents/@corral/hello-world",
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = bc
        .send(
            Method::POST,
            "/api/packages/agents/@corral/hello-world/versions",
            Some(json!({"version": "9.0.0"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    let detail = bc
        .get("/api/packages/agents/@corral/hello-world", 200)
        .await;
    assert_eq!(detail["source"], "system");
    assert_eq!(detail["effective_timeout_seconds"], 120);
    // Loading again (a restart) changes nothing.
    let report = corral_engine::packages::system::load(&app.state)
        .await
        .unwrap();
    assert_eq!(report.unchanged.len(), 6, "{report:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM package_versions v JOIN packages p ON p.id = v.package_id WHERE p.org_id IS NULL").await, 6);
    // A changed file becomes a new version on the next load (the next patch, since
    // the manifest still declares 1.0.0), and loading the same files again is a no-op.
    let mut changed = corral_engine::packages::system::embedded();
    let hw = changed
        .iter_mut()
        .find(|(d, _)| d == "hello-world")
        .unwrap();
    hw.1.insert("prompt.md".into(), b"Greet warmly.".to_vec());
    let report = corral_engine::packages::system::load_from(&app.state, changed.clone())
        .await
        .unwrap();
    assert_eq!(
        report.new_versions,
        vec!["@corral/hello-world".to_owned()],
        "{report:?}"
    );
    let versions = bc
        .get("/api/packages/agents/@corral/hello-world/versions", 200)
        .await;
    assert_eq!(versions["versions"][0]["version"], "1.0.1");
    let report = corral_engine::packages::system::load_from(&app.state, changed)
        .await
        .unwrap();
    assert_eq!(report.unchanged.len(), 6, "{report:?}");
    assert_eq!(
        bc.get("/api/packages/agents/@corral/hello-world", 200)
            .await["version"],
        "1.0.1"
    );
    // No org may take the system scope.
    let r = bc
        .send(
            Method::POST,
            "/api/orgs",
            Some(json!({"name": "x", "slug": "corral"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
}

async fn bundle_import(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let skill = corral_afps::Package::from_parts(
        json!({"name": format!("@{scope}/tone"), "version": "1.0.0", "type": "skill", "schema_version": "2.0", "display_name": "Tone", "description": "x"}),
        [("SKILL.md".to_owned(), b"---\nname: tone\ndescription: x\n---\nBe kind.".to_vec())].into(),
    )
    .unwrap();
    let mut m = agent_manifest(&scope, "kind", "1.0.0");
    m["dependencies"] = json!({"skills": {format!("@{scope}/tone"): "^1.0.0"}});
    let agent = corral_afps::Package::from_parts(
        m,
        [("prompt.md".to_owned(), b"Be kind.".to_vec())].into(),
    )
    .unwrap();
    let bundle = corral_afps::Bundle::write(&[
        (
            skill.name.clone(),
            skill.version.clone(),
            skill.to_archive(),
        ),
        (
            agent.name.clone(),
            agent.version.clone(),
            agent.to_archive(),
        ),
    ]);
    assert_eq!(
        bundle,
        corral_afps::Bundle::write(&[
            (
                agent.name.clone(),
                agent.version.clone(),
                agent.to_archive()
            ),
            (
                skill.name.clone(),
                skill.version.clone(),
                skill.to_archive()
            ),
        ]),
        "bundles are deterministic"
    );
    let (status, body, _) = raw(
        &app,
        &alice,
        Method::POST,
        "/api/packages/import-bundle",
        "application/zip",
        bundle.clone(),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["imported"].as_array().unwrap().len(), 2);
    assert_eq!(r["root_package_id"], format!("@{scope}/kind"));
    // Importing the same bundle again is harmless.
    let (status, body, _) = raw(
        &app,
        &alice,
        Method::POST,
        "/api/packages/import-bundle",
        "application/zip",
        bundle,
    )
    .await;
    assert_eq!(status, 201);
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert!(r["imported"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "existing"));
    // The skill now reports the agent that uses it, and cannot be deleted.
    let skill_detail = alice
        .client
        .get(&format!("/api/packages/skills/@{scope}/tone"), 200)
        .await;
    assert_eq!(skill_detail["agents"][0]["id"], format!("@{scope}/kind"));
    assert!(skill_detail["agents"][0]["display_name"].is_string());
    let r = alice
        .client
        .send(
            Method::DELETE,
            &format!("/api/packages/skills/@{scope}/tone"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
}

async fn installs_input_settings_agents_and_bundle_export(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let bob = app.user_with_org("Bob").await;
    let c = &alice.client;
    let base = format!("/api/applications/{}/packages", alice.app_id);

    // Install a system agent in the application; a second install is a conflict.
    let inst = c
        .post(&base, json!({"packageId": "@corral/hello-world"}), 201)
        .await;
    assert_eq!(inst["package_source"], "system");
    assert_eq!(inst["enabled"], true);
    let r = c
        .send(
            Method::POST,
            &base,
            Some(json!({"packageId": "@corral/hello-world"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c
        .send(
            Method::POST,
            &base,
            Some(json!({"packageId": "@nobody/nothing"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let listed = c.get(&format!("{base}?type=agent"), 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get(&format!("{base}?type=skill"), 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Pin a version by id, disable, then unpin.
    let versions = c
        .get("/api/packages/agents/@corral/hello-world/versions", 200)
        .await;
    let vid = versions["versions"][0]["id"].as_i64().unwrap();
    let one = format!("{base}/@corral/hello-world");
    let u = c
        .put(&one, json!({"version_id": vid, "enabled": false}), 200)
        .await;
    assert_eq!(u["version_id"], vid);
    assert_eq!(u["enabled"], false);
    let r = c
        .send(Method::PUT, &one, Some(json!({"version_id": 999_999})), &[])
        .await;
    assert_eq!(r.status, 400);
    let u = c.put(&one, json!({"version_id": null}), 200).await;
    assert!(u["version_id"].is_null());
    assert_eq!(u["enabled"], false, "fields not given keep their value");

    // Another org cannot touch this application's installs.
    for (m, path) in [
        (Method::GET, base.clone()),
        (Method::GET, one.clone()),
        (Method::DELETE, one.clone()),
    ] {
        let r = bob.client.send(m.clone(), &path, None, &[]).await;
        assert_eq!(r.status, 404, "{m} {path}");
    }

    // Input settings are checked against the agent's input schema, then shown in the
    // agent's detail for this application only.
    let settings = "/api/agents/@corral/hello-world/input-settings";
    let r = c
        .send(
            Method::PUT,
            settings,
            Some(json!({"values": {"language": "de", "nope": 1}, "locked_fields": ["nope"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 3, "{}", r.text);
    c.put(
        settings,
        json!({"values": {"language": "fr"}, "locked_fields": ["language"]}),
        200,
    )
    .await;
    let d = c.get("/api/packages/agents/@corral/hello-world", 200).await;
    assert_eq!(d["input"]["values"], json!({"language": "fr"}));
    assert_eq!(d["input"]["locked_fields"], json!(["language"]));
    let other_app = c
        .post("/api/applications", json!({"name": "Other"}), 201)
        .await;
    let d2 = c
        .app(other_app["id"].as_str().unwrap())
        .get("/api/packages/agents/@corral/hello-world", 200)
        .await;
    assert_eq!(
        d2["input"]["values"],
        json!({}),
        "settings are per application"
    );

    // The agents list.
    let agents = c.get("/api/agents", 200).await;
    let ids: Vec<&str> = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"@corral/hello-world") && ids.contains(&"@corral/http-fetcher"));
    let hw = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "@corral/hello-world")
        .unwrap();
    // The list maps each dependency to its version range (the reference's shape).
    assert!(hw["dependencies"]["skills"]["@corral/summarize"].is_string());
    assert!(hw["dependencies"]["integrations"].is_object());

    // Bundle export: the agent and its resolved dependencies, deterministic.
    let (status, bytes, _) = raw(
        &app,
        &alice,
        Method::GET,
        "/api/agents/@corral/hello-world/bundle",
        "",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let bundle =
        corral_afps::Bundle::from_archive(&bytes, &corral_afps::Limits::default()).unwrap();
    let mut names: Vec<String> = bundle.packages.iter().map(|(p, _)| p.name.id()).collect();
    names.sort();
    assert_eq!(names, vec!["@corral/hello-world", "@corral/summarize"]);
    let (_, again, _) = raw(
        &app,
        &alice,
        Method::GET,
        "/api/agents/@corral/hello-world/bundle",
        "",
        vec![],
    )
    .await;
    assert_eq!(bytes, again);
    // An agent whose dependency has no matching version: 422.
    let scope = slug(&alice).await;
    let mut m = agent_manifest(&scope, "needy", "1.0.0");
    m["dependencies"] = json!({"skills": {"@corral/summarize": "^9.0.0"}});
    c.post(
        "/api/packages/agents",
        json!({"manifest": m, "content": "x"}),
        201,
    )
    .await;
    let r = c
        .send(
            Method::GET,
            &format!("/api/agents/@{scope}/needy/bundle?source=draft"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "dependency_unresolved");

    c.delete(&one, 204).await;
    c.get(&one, 404).await;
}

async fn custom_tags_skills_and_model(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let scope = slug(&alice).await;
    let c = &alice.client;
    c.post(
        "/api/packages/agents",
        json!({"manifest": agent_manifest(&scope, "t", "1.0.0"), "content": "x"}),
        201,
    )
    .await;
    let base = format!("/api/packages/agents/@{scope}/t");
    let v = c
        .post(&format!("{base}/versions"), json!({"tag": "stable"}), 201)
        .await;
    assert_eq!(v["dist_tags"], json!(["latest", "stable"]));
    c.post(
        &format!("{base}/versions"),
        json!({"version": "2.0.0-rc.1", "tag": "next"}),
        201,
    )
    .await;
    let r = c
        .send(
            Method::POST,
            &format!("{base}/versions"),
            Some(json!({"version": "3.0.0", "tag": "^1"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "a range is not a tag name");
    let (_, bytes, _) = raw(
        &app,
        &alice,
        Method::GET,
        &format!("/api/packages/@{scope}/t/next/download"),
        "",
        vec![],
    )
    .await;
    let pkg = corral_afps::Package::from_archive(&bytes, &corral_afps::Limits::default()).unwrap();
    assert_eq!(
        pkg.version.to_string(),
        "2.0.0-rc.1",
        "a custom tag resolves to its version"
    );
    let (_, bytes, _) = raw(
        &app,
        &alice,
        Method::GET,
        &format!("/api/packages/@{scope}/t/stable/download"),
        "",
        vec![],
    )
    .await;
    assert_eq!(
        corral_afps::Package::from_archive(&bytes, &corral_afps::Limits::default())
            .unwrap()
            .version
            .to_string(),
        "1.0.0"
    );

    // Skills of an agent.
    let d = c
        .put(
            &format!("/api/agents/@{scope}/t/skills"),
            json!({"skillIds": ["@corral/summarize"]}),
            200,
        )
        .await;
    assert_eq!(d["dependencies"]["skills"][0]["id"], "@corral/summarize");
    assert_eq!(d["dependencies"]["skills"][0]["version"], "^1.0.0");
    let r = c
        .send(
            Method::PUT,
            &format!("/api/agents/@{scope}/t/skills"),
            Some(json!({"skillIds": ["@corral/nope"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .send(
            Method::PUT,
            "/api/agents/@corral/hello-world/skills",
            Some(json!({"skillIds": []})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);

    // The model an application runs an agent with (tests/it/models.rs has the rest):
    // a model that is not the organization's is refused.
    let m = c.get("/api/agents/@corral/hello-world/model", 200).await;
    assert!(m["modelId"].is_null());
    let r = c
        .send(
            Method::PUT,
            "/api/agents/@corral/hello-world/model",
            Some(json!({"modelId": "gpt-5-mini", "generation": {"temperature": 0.2}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    c.put(
        "/api/agents/@corral/hello-world/model",
        json!({"modelId": null, "generation": {"temperature": 0.2}}),
        200,
    )
    .await;
    let m = c.get("/api/agents/@corral/hello-world/model", 200).await;
    assert!(m["modelId"].is_null());
    assert_eq!(m["generation"]["temperature"], 0.2);
    let r = c
        .send(
            Method::PUT,
            "/api/agents/@corral/hello-world/model",
            Some(json!({"modelId": "x", "generation": {"temperature": 3}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
}

both!(
    custom_tags_skills_and_model,
    installs_input_settings_agents_and_bundle_export,
    create_publish_download_round_trip,
    resolution_yanking_and_tags,
    integrity_mismatch_is_detected,
    hostile_archives_are_refused_and_leave_nothing,
    isolation_and_system_packages,
    bundle_import,
);
