//! File tools confined to the workspace: `read_file`, `write_file`, `edit_file`,
//! `list_files`. Paths are resolved lexically inside the workspace. This is a guard
//! against model mistakes, not a security boundary: `bash` can reach the same files,
//! and the container is the boundary.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("path `{0}` is outside the workspace")]
    Outside(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
}

/// Resolves `path` (relative to the workspace, or absolute under it).
pub fn resolve(workspace: &Path, path: &str) -> Result<PathBuf, FsError> {
    let p = Path::new(path);
    let relative = if p.is_absolute() {
        p.strip_prefix(workspace)
            .map_err(|_| FsError::Outside(path.to_owned()))?
            .to_path_buf()
    } else {
        p.to_path_buf()
    };
    let mut out = workspace.to_path_buf();
    let mut depth = 0usize;
    for c in relative.components() {
        match c {
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(FsError::Outside(path.to_owned()));
                }
                out.pop();
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(FsError::Outside(path.to_owned()))
            }
        }
    }
    Ok(out)
}

fn io(path: &str, e: std::io::Error) -> FsError {
    FsError::Io(format!("{path}: {e}"))
}

#[derive(Deserialize)]
pub struct ReadArgs {
    pub path: String,
    /// First line to return, 1-based.
    pub offset: Option<usize>,
    /// Number of lines to return.
    pub limit: Option<usize>,
}

pub async fn read_file(ws: &Path, a: ReadArgs, cap: usize) -> Result<String, FsError> {
    let full = resolve(ws, &a.path)?;
    let bytes = tokio::fs::read(&full).await.map_err(|e| io(&a.path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let selected: String = if a.offset.is_some() || a.limit.is_some() {
        let start = a.offset.unwrap_or(1).max(1) - 1;
        let lines = text.lines().skip(start);
        let lines: Vec<&str> = match a.limit {
            Some(n) => lines.take(n).collect(),
            None => lines.collect(),
        };
        lines.join("\n")
    } else {
        text.into_owned()
    };
    Ok(cap_text(selected, cap))
}

fn cap_text(mut s: String, cap: usize) -> String {
    if s.len() <= cap {
        return s;
    }
    let mut cut = cap;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = s.len() - cut;
    s.truncate(cut);
    s.push_str(&format!(
        "\n[… {dropped} more bytes truncated; use offset/limit]"
    ));
    s
}

#[derive(Deserialize)]
pub struct WriteArgs {
    pub path: String,
    pub content: String,
}

pub async fn write_file(ws: &Path, a: WriteArgs) -> Result<String, FsError> {
    let full = resolve(ws, &a.path)?;
    if let Some(parent) = full.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io(&a.path, e))?;
    }
    tokio::fs::write(&full, a.content.as_bytes())
        .await
        .map_err(|e| io(&a.path, e))?;
    Ok(format!("wrote {} bytes to {}", a.content.len(), a.path))
}

#[derive(Deserialize)]
pub struct EditArgs {
    pub path: String,
    pub old_string: String,
    pub new_string: String,
    #[serde(default)]
    pub replace_all: bool,
}

pub async fn edit_file(ws: &Path, a: EditArgs) -> Result<String, FsError> {
    if a.old_string.is_empty() {
        return Err(FsError::Invalid("old_string must not be empty".into()));
    }
    let full = resolve(ws, &a.path)?;
    let text = tokio::fs::read_to_string(&full)
        .await
        .map_err(|e| io(&a.path, e))?;
    let count = text.matches(&a.old_string).count();
    let updated = match count {
        0 => {
            return Err(FsError::Invalid(format!(
                "old_string not found in {}",
                a.path
            )))
        }
        1 => text.replacen(&a.old_string, &a.new_string, 1),
        _ if a.replace_all => text.replace(&a.old_string, &a.new_string),
        n => {
            return Err(FsError::Invalid(format!(
                "old_string appears {n} times in {}; include more context or set replace_all",
                a.path
            )))
        }
    };
    tokio::fs::write(&full, updated)
        .await
        .map_err(|e| io(&a.path, e))?;
    Ok(format!("replaced {count} occurrence(s) in {}", a.path))
}

#[derive(Deserialize)]
pub struct ListArgs {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
}

const MAX_ENTRIES: usize = 1000;

pub async fn list_files(ws: &Path, a: ListArgs) -> Result<String, FsError> {
    let shown = a.path.unwrap_or_else(|| ".".into());
    let root = resolve(ws, &shown)?;
    let mut entries = Vec::new();
    let mut pending = vec![root.clone()];
    let mut truncated = false;
    while let Some(dir) = pending.pop() {
        let mut rd = tokio::fs::read_dir(&dir).await.map_err(|e| io(&shown, e))?;
        while let Some(entry) = rd.next_entry().await.map_err(|e| io(&shown, e))? {
            if entries.len() >= MAX_ENTRIES {
                truncated = true;
                break;
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let is_dir = entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                entries.push(format!("{rel}/"));
                if a.recursive {
                    pending.push(path);
                }
            } else {
                entries.push(rel);
            }
        }
    }
    entries.sort();
    let mut out = entries.join("\n");
    if truncated {
        out.push_str(&format!("\n[… listing stopped at {MAX_ENTRIES} entries]"));
    }
    if out.is_empty() {
        out = "(empty)".into();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_inside() {
        let ws = Path::new("/workspace");
        assert_eq!(
            resolve(ws, "a/b.txt").unwrap(),
            Path::new("/workspace/a/b.txt")
        );
        assert_eq!(
            resolve(ws, "/workspace/x").unwrap(),
            Path::new("/workspace/x")
        );
        assert_eq!(resolve(ws, "a/../b").unwrap(), Path::new("/workspace/b"));
        assert!(resolve(ws, "../etc/passwd").is_err());
        assert!(resolve(ws, "a/../../x").is_err());
        assert!(resolve(ws, "/etc/passwd").is_err());
    }

    #[tokio::test]
    async fn write_edit_read_list() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        write_file(
            ws,
            WriteArgs {
                path: "d/f.txt".into(),
                content: "one two two\nline2\n".into(),
            },
        )
        .await
        .unwrap();
        let err = edit_file(
            ws,
            EditArgs {
                path: "d/f.txt".into(),
                old_string: "two".into(),
                new_string: "2".into(),
                replace_all: false,
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("appears 2 times"));
        edit_file(
            ws,
            EditArgs {
                path: "d/f.txt".into(),
                old_string: "one".into(),
                new_string: "1".into(),
                replace_all: false,
            },
        )
        .await
        .unwrap();
        edit_file(
            ws,
            EditArgs {
                path: "d/f.txt".into(),
                old_string: "two".into(),
                new_string: "2".into(),
                replace_all: true,
            },
        )
        .await
        .unwrap();
        let text = read_file(
            ws,
            ReadArgs {
                path: "d/f.txt".into(),
                offset: None,
                limit: None,
            },
            1000,
        )
        .await
        .unwrap();
        assert_eq!(text, "1 2 2\nline2\n");
        let line2 = read_file(
            ws,
            ReadArgs {
                path: "d/f.txt".into(),
                offset: Some(2),
                limit: Some(1),
            },
            1000,
        )
        .await
        .unwrap();
        assert_eq!(line2, "line2");
        let capped = read_file(
            ws,
            ReadArgs {
                path: "d/f.txt".into(),
                offset: None,
                limit: None,
            },
            3,
        )
        .await
        .unwrap();
        assert!(capped.starts_with("1 2\n[… 9 more bytes"), "{capped}");
        assert_eq!(
            list_files(
                ws,
                ListArgs {
                    path: None,
                    recursive: false
                }
            )
            .await
            .unwrap(),
            "d/"
        );
        assert_eq!(
            list_files(
                ws,
                ListArgs {
                    path: None,
                    recursive: true
                }
            )
            .await
            .unwrap(),
            "d/\nd/f.txt"
        );
    }
}
