//! Flag files → a compiled flag set. The one loading path, used by the
//! server at start-up and on every reload, and by `rampart validate`, so the
//! two can never disagree about what is valid.

use std::io::Read;
use std::path::{Path, PathBuf};

use rampart_engine::{FlagSet, InputLimits, Limit, LoadError, LoadErrors, Source};
use sha2::{Digest, Sha256};

use crate::limits::Limits;
use crate::paths::{self, GlobError};

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
/// invalid flag, a limit exceeded) rejects the whole set.
pub fn load(patterns: &[String], limits: &Limits) -> Result<Loaded, LoadErrors> {
    let read = read(patterns, limits)?;
    let sources: Vec<Source<'_>> = read.files.iter().map(|f| Source::from_path(&f.name, &f.text)).collect();
    let flags = FlagSet::load_with(&sources, &limits.flag_files)?;
    Ok(Loaded { flags, files: read.files.iter().map(|f| PathBuf::from(&f.name)).collect() })
}

/// Expands files and globs and reads every file. The files' sizes are
/// checked before they are read, so a file over the limit costs nothing.
pub fn read(patterns: &[String], limits: &Limits) -> Result<ReadFiles, LoadErrors> {
    let paths = expand(patterns, limits.glob_files)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    let mut total = 0usize;
    for path in &paths {
        let name = path.to_string_lossy();
        match read_bounded(path, &limits.flag_files, &mut total) {
            Ok(text) => files.push(FileText { name: name.into_owned(), text }),
            Err(error) => {
                errors.push(LoadError { file: name.into_owned(), ..error });
                break;
            }
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

/// Reads a file if it fits in what is left of the budget (`total` is what
/// earlier files took); a file that grows while it is read is cut at the
/// limit and refused.
pub fn read_bounded(path: &Path, limits: &InputLimits, total: &mut usize) -> Result<String, LoadError> {
    let too_large = |size: u64| {
        LoadError::new(
            "",
            format!(
                "is {size} bytes; with the files before it that is more than the limit of {} bytes (limits.flagFileBytes)",
                limits.max_bytes
            ),
        )
        .with_limit(Limit::DocumentBytes)
    };
    let left = limits.max_bytes.saturating_sub(*total) as u64;
    let file = std::fs::File::open(path).map_err(|e| LoadError::new("", format!("cannot read: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > left {
        return Err(too_large(size));
    }
    let mut text = String::with_capacity(size as usize);
    file.take(left + 1).read_to_string(&mut text).map_err(|e| LoadError::new("", format!("cannot read: {e}")))?;
    if text.len() as u64 > left {
        return Err(too_large(text.len() as u64));
    }
    *total += text.len();
    Ok(text)
}

/// What a pattern that names no file means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNothingMatches {
    /// An error: a flag file that is missing is a typo, not an empty set.
    Refuse,
    /// Nothing to read: removing the last ramp file is how a team stops
    /// managing ramps from files, and it must not break reloads (a plain
    /// path whose folder does not exist is still an error).
    Allow,
}

/// Files named by the patterns, sorted and without duplicates. A plain path
/// must exist; a glob must match at least one file, and at most
/// `glob_files` (limits.globFiles).
pub fn expand(patterns: &[String], glob_files: usize) -> Result<Vec<PathBuf>, LoadErrors> {
    expand_files(patterns, glob_files, WhenNothingMatches::Refuse)
}

/// [`expand`], saying what a pattern that names nothing means.
pub fn expand_files(
    patterns: &[String],
    glob_files: usize,
    nothing: WhenNothingMatches,
) -> Result<Vec<PathBuf>, LoadErrors> {
    let allow = nothing == WhenNothingMatches::Allow;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for pattern in patterns {
        if !is_glob(pattern) {
            let path = PathBuf::from(pattern);
            if path.is_file() {
                files.push(path);
            } else if !allow {
                errors.push(LoadError::new(pattern.as_str(), "no such file"));
            } else if !path.parent().is_some_and(|p| p.as_os_str().is_empty() || p.is_dir()) {
                errors.push(LoadError::new(pattern.as_str(), "no such directory"));
            }
            continue;
        }
        match paths::matching(pattern, glob_files) {
            Err(error) => errors.push(glob_error(pattern, error)),
            Ok(paths) if paths.is_empty() && !allow => {
                errors.push(LoadError::new(pattern.as_str(), "no files match this pattern"));
            }
            Ok(paths) => files.extend(paths),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

pub use crate::paths::is_glob;

/// A glob that cannot be expanded, as a load error (too many files is the
/// `glob_files` limit).
pub fn glob_error(pattern: &str, error: GlobError) -> LoadError {
    LoadError::new(pattern, error.to_string())
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
        let limits = Limits::default();
        let loaded = load(std::slice::from_ref(&pattern), &limits).unwrap();
        assert_eq!(loaded.flags.len(), 2);
        assert_eq!(loaded.files.len(), 2);
        assert_eq!(
            read(std::slice::from_ref(&pattern), &limits).unwrap().digest,
            read(&[pattern], &limits).unwrap().digest
        );

        let missing = load(&[format!("{}/nope.json", dir.path().display())], &limits).unwrap_err();
        assert!(missing.to_string().ends_with("nope.json: no such file"), "{missing}");
        let empty = load(&[format!("{}/*.toml", dir.path().display())], &limits).unwrap_err();
        assert!(empty.to_string().contains("no files match"), "{empty}");
    }

    #[test]
    fn files_over_the_byte_limit_are_refused_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), FLAG).unwrap();
        std::fs::write(dir.path().join("b.json"), FLAG.replace("\"f\"", "\"g\"")).unwrap();
        let pattern = format!("{}/*.json", dir.path().display());
        let mut limits = Limits::default();
        limits.flag_files.max_bytes = FLAG.len() + 10;
        let errors = read(std::slice::from_ref(&pattern), &limits).unwrap_err();
        let error = errors.iter().next().unwrap();
        assert!(error.file.ends_with("b.json"), "{error}");
        assert_eq!(error.limit, Some(Limit::DocumentBytes));
        assert!(error.message.contains("limits.flagFileBytes"), "{error}");
        limits.flag_files.max_bytes = 2 * FLAG.len() + 10;
        assert_eq!(load(&[pattern], &limits).unwrap().flags.len(), 2);
    }

    #[test]
    fn watch_roots() {
        assert_eq!(watch_root("flags/*.yaml"), (PathBuf::from("flags"), false));
        assert_eq!(watch_root("flags/**/*.yaml"), (PathBuf::from("flags"), true));
        assert_eq!(watch_root("flags.json"), (PathBuf::from("."), false));
        assert_eq!(watch_root("/etc/rampart/f.json"), (PathBuf::from("/etc/rampart"), false));
    }
}
