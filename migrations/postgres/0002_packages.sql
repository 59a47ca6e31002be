-- AFPS packages: one row per package (its editable draft inline), immutable
-- versions whose archive bytes live in object storage, dist-tags, recorded
-- dependencies, and per-application installs. org_id NULL = system package.

CREATE TABLE packages (
    id                TEXT PRIMARY KEY,            -- "@scope/name"
    org_id            TEXT REFERENCES organizations(id) ON DELETE CASCADE,
    type              TEXT NOT NULL CHECK (type IN ('agent', 'skill', 'mcp-server', 'integration')),
    scope             TEXT NOT NULL,
    name              TEXT NOT NULL,
    display_name      TEXT,
    description       TEXT,
    draft_manifest    TEXT NOT NULL,
    draft_files       TEXT NOT NULL,               -- JSON {path: base64}
    draft_integrity   TEXT NOT NULL,
    lock_version      BIGINT NOT NULL DEFAULT 1,
    forked_from       TEXT,
    created_by        TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX packages_org ON packages(org_id, type);

CREATE TABLE package_versions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    package_id    TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    version       TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    integrity     TEXT NOT NULL,
    record        TEXT NOT NULL,
    artifact_size BIGINT NOT NULL,
    storage_key   TEXT NOT NULL,
    yanked        BIGINT NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    yanked_reason TEXT,
    created_by    TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (package_id, version)
);

CREATE TABLE package_dist_tags (
    package_id TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    version    TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (package_id, tag)
);

CREATE TABLE package_dependencies (
    package_id TEXT NOT NULL,
    version    TEXT NOT NULL,
    dep_type   TEXT NOT NULL,
    dep_id     TEXT NOT NULL,
    dep_range  TEXT NOT NULL,
    PRIMARY KEY (package_id, version, dep_id),
    FOREIGN KEY (package_id, version) REFERENCES package_versions(package_id, version) ON DELETE CASCADE
);

CREATE TABLE application_packages (
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    org_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    package_id     TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    version_spec   TEXT,
    input_settings TEXT NOT NULL DEFAULT '{}',
    enabled        BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    installed_at   BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (application_id, package_id)
);
