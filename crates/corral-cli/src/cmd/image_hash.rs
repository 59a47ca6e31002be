//! Whether a sandbox image is current: `scripts/build-images.sh` labels each image
//! with `corral.image.hash`, a hash of (recipe version, base image id, Dockerfile,
//! binary). Recomputing it from a source checkout and the runtime binary next to this
//! executable tells whether the script would rebuild the image.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The script's `hash`: `{ echo "recipe R"; echo "base B"; sha256sum <Dockerfile;
/// sha256sum <binary; } | sha256sum | cut -c1-16`.
pub fn content_hash(recipe: &str, base_id: &str, dockerfile: &[u8], binary: &[u8]) -> String {
    let sum_line = |b: &[u8]| format!("{}  -\n", hex::encode(Sha256::digest(b)));
    let text = format!(
        "recipe {recipe}\nbase {base_id}\n{}{}",
        sum_line(dockerfile),
        sum_line(binary)
    );
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_owned()
}

/// `RECIPE_VERSION=<n>` of the script.
pub fn recipe_version(script: &str) -> Option<String> {
    script.lines().find_map(|l| {
        let v = l.trim().strip_prefix("RECIPE_VERSION=")?;
        let v: String = v.chars().take_while(char::is_ascii_digit).collect();
        (!v.is_empty()).then_some(v)
    })
}

/// The verdict on one image's currency.
pub enum Currency {
    Current,
    /// Built from other inputs than these (the binary it was compared with).
    Stale(PathBuf),
    /// Cannot tell, and why.
    Unknown(String),
}

/// Compares the image (`docker image inspect` JSON) of `component` (`agent` or
/// `sidecar`) with what the checkout at `source` and the binary in `bin_dir` give.
pub fn currency(image: &Value, component: &str, source: Option<&Path>, bin_dir: &Path) -> Currency {
    let labels = &image["Config"]["Labels"];
    let (Some(hash), Some(base)) = (
        labels["corral.image.hash"].as_str(),
        labels["corral.image.base"].as_str(),
    ) else {
        return Currency::Unknown("not built by scripts/build-images.sh".into());
    };
    let Some(source) = source else {
        return Currency::Unknown("run doctor inside a source checkout to compare".into());
    };
    let script =
        std::fs::read_to_string(source.join("scripts/build-images.sh")).unwrap_or_default();
    let Some(recipe) = recipe_version(&script) else {
        return Currency::Unknown("no RECIPE_VERSION in scripts/build-images.sh".into());
    };
    let Ok(dockerfile) =
        std::fs::read(source.join(format!("runtime/images/{component}.Dockerfile")))
    else {
        return Currency::Unknown(format!("no runtime/images/{component}.Dockerfile"));
    };
    let binary = bin_dir.join(format!("corral-{component}"));
    let Ok(bytes) = std::fs::read(&binary) else {
        return Currency::Unknown(format!("no {} to compare with", binary.display()));
    };
    if content_hash(&recipe, base, &dockerfile, &bytes) == hash {
        Currency::Current
    } else {
        Currency::Stale(binary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same inputs through the script's own pipeline (coreutils) give the same hash.
    #[test]
    fn the_hash_matches_the_build_script() {
        let dir = tempfile::tempdir().unwrap();
        let (df, bin) = (dir.path().join("Dockerfile"), dir.path().join("bin"));
        std::fs::write(&df, "FROM scratch\n").unwrap();
        std::fs::write(&bin, [0u8, 1, 2, 255]).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{{ echo \"recipe 1\"; echo \"base sha256:abc\"; sha256sum <{}; sha256sum <{}; }} | sha256sum | cut -c1-16",
                df.display(),
                bin.display()
            ))
            .output()
            .unwrap();
        let expected = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            content_hash("1", "sha256:abc", b"FROM scratch\n", &[0, 1, 2, 255]),
            expected.trim()
        );
        assert_eq!(
            recipe_version("X=1\nRECIPE_VERSION=3 # bump\n").as_deref(),
            Some("3")
        );
    }

    #[test]
    fn currency_compares_labels_with_the_checkout() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("scripts")).unwrap();
        std::fs::create_dir_all(src.path().join("runtime/images")).unwrap();
        std::fs::write(
            src.path().join("scripts/build-images.sh"),
            "RECIPE_VERSION=1\n",
        )
        .unwrap();
        std::fs::write(
            src.path().join("runtime/images/agent.Dockerfile"),
            "FROM x\n",
        )
        .unwrap();
        let bins = tempfile::tempdir().unwrap();
        std::fs::write(bins.path().join("corral-agent"), b"agent v1").unwrap();
        let hash = content_hash("1", "sha256:b", b"FROM x\n", b"agent v1");
        let image = serde_json::json!({"Config": {"Labels": {"corral.image.hash": hash, "corral.image.base": "sha256:b"}}});
        assert!(matches!(
            currency(&image, "agent", Some(src.path()), bins.path()),
            Currency::Current
        ));
        std::fs::write(bins.path().join("corral-agent"), b"agent v2").unwrap();
        assert!(matches!(
            currency(&image, "agent", Some(src.path()), bins.path()),
            Currency::Stale(_)
        ));
        assert!(matches!(
            currency(&image, "agent", None, bins.path()),
            Currency::Unknown(_)
        ));
        let unlabelled = serde_json::json!({"Config": {"Labels": null}});
        assert!(matches!(
            currency(&unlabelled, "agent", Some(src.path()), bins.path()),
            Currency::Unknown(_)
        ));
    }
}
