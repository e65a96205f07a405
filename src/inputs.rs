//! Expanding command-line PATH arguments (files, folders, globs) into image files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// File extensions treated as images when a folder is listed.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn list_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                list_dir(&p, true, out)?;
            }
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Expands PATH arguments: a file is taken as given (whatever its extension: a non-image is
/// reported when decoded), a folder contributes its image files (sorted; subfolders with
/// `recursive`), a pattern with `*`, `?` or `[` is a glob. Errors on paths that match nothing.
pub fn expand(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let s = p.to_string_lossy();
        if p.is_dir() {
            let before = out.len();
            list_dir(p, recursive, &mut out)?;
            if out.len() == before {
                let hint = if recursive { "" } else { " (use -r for subfolders)" };
                bail!("{}: no images ({}) in this folder{hint}", p.display(), IMAGE_EXTENSIONS.join(", "));
            }
        } else if p.exists() {
            out.push(p.clone());
        } else if s.contains(['*', '?', '[']) {
            let matches: Vec<PathBuf> = glob::glob(&s)
                .with_context(|| format!("{s}: bad glob pattern"))?
                .filter_map(|m| m.ok())
                .filter(|m| m.is_file() && is_image(m))
                .collect();
            if matches.is_empty() {
                bail!("{s}: no image matches this pattern");
            }
            out.extend(matches);
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// Reads a manifest: one path per line, in order; blank lines and lines starting with `#` are
/// skipped, surrounding spaces trimmed. Paths are taken as written (relative ones from the
/// working directory); a missing file is reported when it is read, like any unreadable image.
pub fn read_manifest(path: &Path) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the manifest", path.display()))?;
    let list: Vec<PathBuf> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(PathBuf::from).collect();
    if list.is_empty() {
        bail!("{}: the manifest lists no paths", path.display());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_globs_and_errors() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub)?;
        for f in ["b.jpg", "a.PNG", "notes.txt"] {
            std::fs::write(dir.path().join(f), b"x")?;
        }
        std::fs::write(sub.join("c.webp"), b"x")?;
        let flat = expand(&[dir.path().to_path_buf()], false)?;
        let names: Vec<_> = flat.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().to_string())).collect();
        assert_eq!(names, vec![Some("a.PNG".into()), Some("b.jpg".into())]);
        assert_eq!(expand(&[dir.path().to_path_buf()], true)?.len(), 3);
        let pattern = dir.path().join("*.jpg");
        assert_eq!(expand(&[pattern], false)?.len(), 1);
        assert!(expand(&[dir.path().join("missing.jpg")], false).is_err());
        assert!(expand(&[sub.join("*.png")], false).is_err());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty)?;
        let err = expand(&[empty], false).expect_err("empty folder");
        assert!(err.to_string().contains("no images"), "{err}");
        Ok(())
    }
}
