//! Flag files → a compiled flag set. The one loading path, used by the
//! server at start-up and on every reload, and by `rampart validate`, so the
//! two can never disagree about what is valid.

use std::path::{Path, PathBuf};

use rampart_engine::{FlagSet, LoadError, LoadErrors, Source};
use sha2::{Digest, Sha256};

/// One flag file's name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileText {
    pub name: String,
    pub text: String,
}

/// Flag files read from disk, not yet compiled.
#[derive(Debug)]
pub struct ReadFiles {
    pub files: Vec<FileText>,
    /// SHA-256 over file names and contents: equal digests mean nothing changed.
    pub digest: [u8; 32],
}

/// A loaded flag set and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub flags: FlagSet,
    pub files: Vec<PathBuf>,
}

/// Expands files and globs, reads every file, and compiles them as one flag
/// set. Any problem (a pattern matching nothing, an unreadable file, an
/// invalid flag) rejects the whole set.
pub fn load(patterns: &[String]) -> Result<Loaded, LoadErrors> {
    let read = read(patterns)?;
    let sources: Vec<Source<'_>> = read.files.iter().map(|f| Source::from_path(&f.name, &f.text)).collect();
    let flags = FlagSet::load(&sources)?;
    Ok(Loaded { flags, files: read.files.iter().map(|f| PathBuf::from(&f.name)).collect() })
}

/// Expands files and globs and reads every file.
pub fn read(patterns: &[String]) -> Result<ReadFiles, LoadErrors> {
    let paths = expand(patterns)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => files.push(FileText { name: path.to_string_lossy().into_owned(), text }),
            Err(error) => errors.push(LoadError::new(path.to_string_lossy(), format!("cannot read: {error}"))),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let mut hasher = Sha256::new();
    for file in &files {
        hasher.update((file.name.len() as u64).to_le_bytes());
        hasher.update(file.name.as_bytes());
        hasher.update((file.text.len() as u64).to_le_bytes());
        hasher.update(file.text.as_bytes());
    }
    Ok(ReadFiles { files, digest: hasher.finalize().into() })
}

/// Files named by the patterns, sorted and without duplicates. A plain path
/// must exist; a glob must match at least one file.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for pattern in patterns {
        if !is_glob(pattern) {
            let path = PathBuf::from(pattern);
            if path.is_file() {
                files.push(path);
            } else {
                errors.push(LoadError::new(pattern.as_str(), "no such file"));
            }
            continue;
        }
        match glob::glob(pattern) {
            Err(error) => errors.push(LoadError::new(pattern.as_str(), format!("invalid glob: {error}"))),
            Ok(paths) => {
                let before = files.len();
                files.extend(paths.filter_map(Result::ok).filter(|p| p.is_file()));
                if files.len() == before {
                    errors.push(LoadError::new(pattern.as_str(), "no files match this pattern"));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The directory to watch for a pattern, and whether to watch it
/// recursively (`**`): the longest leading part without glob characters.
pub fn watch_root(pattern: &str) -> (PathBuf, bool) {
    if !is_glob(pattern) {
        let parent = Path::new(pattern).parent().map(Path::to_path_buf).unwrap_or_default();
        return (non_empty(parent), false);
    }
    let mut root = PathBuf::new();
    for component in Path::new(pattern).components() {
        if is_glob(&component.as_os_str().to_string_lossy()) {
            break;
        }
        root.push(component);
    }
    (non_empty(root), pattern.contains("**"))
}

fn non_empty(path: PathBuf) -> PathBuf {
    if path.as_os_str().is_empty() { PathBuf::from(".") } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG: &str = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#;

    #[test]
    fn globs_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), FLAG).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "flags:\n  g:\n    state: ENABLED\n    variants: {x: true}\n")
            .unwrap();
        let pattern = format!("{}/*", dir.path().display());
        let loaded = load(std::slice::from_ref(&pattern)).unwrap();
        assert_eq!(loaded.flags.len(), 2);
        assert_eq!(loaded.files.len(), 2);
        assert_eq!(read(std::slice::from_ref(&pattern)).unwrap().digest, read(&[pattern]).unwrap().digest);

        let missing = load(&[format!("{}/nope.json", dir.path().display())]).unwrap_err();
        assert!(missing.to_string().ends_with("nope.json: no such file"), "{missing}");
        let empty = load(&[format!("{}/*.toml", dir.path().display())]).unwrap_err();
        assert!(empty.to_string().contains("no files match"), "{empty}");
    }

    #[test]
    fn watch_roots() {
        assert_eq!(watch_root("flags/*.yaml"), (PathBuf::from("flags"), false));
        assert_eq!(watch_root("flags/**/*.yaml"), (PathBuf::from("flags"), true));
        assert_eq!(watch_root("flags.json"), (PathBuf::from("."), false));
        assert_eq!(watch_root("/etc/rampart/f.json"), (PathBuf::from("/etc/rampart"), false));
    }
}
