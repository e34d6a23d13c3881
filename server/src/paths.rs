//! Files named by glob patterns, found by a bounded walk.
//!
//! A glob is matched by walking the directories under its literal prefix.
//! Symbolic links are followed (configuration is often mounted that way),
//! but each real directory is entered once, so links that loop back
//! (`a -> .`, two links to each other) end the walk instead of spinning; and
//! the walk stops with an error once it has seen more entries than
//! [`crate::limits::Limits::glob_files`] allows, so a pattern pointed at a
//! huge tree is refused rather than left to run.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

/// Why a pattern could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    Invalid(String),
    /// More files matched, or more entries had to be looked at, than allowed.
    TooMany {
        limit: usize,
    },
}

impl std::fmt::Display for GlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlobError::Invalid(message) => write!(f, "invalid glob: {message}"),
            GlobError::TooMany { limit } => {
                write!(f, "the pattern reaches more than {limit} files and directories (limits.globFiles); narrow it")
            }
        }
    }
}

/// Whether a pattern has glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files matching `pattern`, sorted. `limit` bounds the files matched
/// and, ten times over, the entries looked at.
pub fn matching(pattern: &str, limit: usize) -> Result<Vec<PathBuf>, GlobError> {
    let compiled = Pattern::new(pattern).map_err(|e| GlobError::Invalid(e.to_string()))?;
    let (root, depth) = root_and_depth(pattern);
    let options =
        MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };
    let mut walk = Walk { limit, seen: 0, visited: HashSet::new(), found: Vec::new() };
    walk.directory(&root, depth, &|path: &Path| compiled.matches_path_with(strip_dot(path), options))?;
    walk.found.sort();
    Ok(walk.found)
}

struct Walk {
    limit: usize,
    /// Entries looked at.
    seen: usize,
    /// Real (canonical) directories entered.
    visited: HashSet<PathBuf>,
    found: Vec<PathBuf>,
}

impl Walk {
    /// Walks `dir` down to `depth` more levels (`None`: any depth).
    fn directory(
        &mut self,
        dir: &Path,
        depth: Option<usize>,
        matches: &dyn Fn(&Path) -> bool,
    ) -> Result<(), GlobError> {
        let Ok(real) = dir.canonicalize() else { return Ok(()) };
        if !self.visited.insert(real) {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
        for entry in entries.flatten() {
            self.seen += 1;
            if self.seen > self.limit.saturating_mul(10) {
                return Err(GlobError::TooMany { limit: self.limit });
            }
            let path = entry.path();
            // Follows links: a link to a file is a file, a link to a directory a directory.
            let Ok(metadata) = std::fs::metadata(&path) else { continue };
            if metadata.is_file() {
                if matches(&path) {
                    self.found.push(path);
                    if self.found.len() > self.limit {
                        return Err(GlobError::TooMany { limit: self.limit });
                    }
                }
            } else if metadata.is_dir() && depth.is_none_or(|d| d > 1) {
                self.directory(&path, depth.map(|d| d - 1), matches)?;
            }
        }
        Ok(())
    }
}

/// The directory to start from (the pattern's longest prefix without glob
/// characters) and how many levels below it a match can be (`None` with
/// `**`).
fn root_and_depth(pattern: &str) -> (PathBuf, Option<usize>) {
    let mut root = PathBuf::new();
    let mut rest = 0;
    let mut in_glob = false;
    for component in Path::new(pattern).components() {
        if !in_glob && !is_glob(&component.as_os_str().to_string_lossy()) {
            root.push(component);
        } else {
            in_glob = true;
            rest += 1;
        }
    }
    if root.as_os_str().is_empty() {
        root = PathBuf::from(".");
    }
    (root, (!pattern.contains("**")).then_some(rest.max(1)))
}

/// `./a/b` → `a/b`, so a relative pattern without `./` matches.
fn strip_dot(path: &Path) -> &Path {
    match path.components().next() {
        Some(Component::CurDir) => path.strip_prefix(".").unwrap_or(path),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_a_shell_glob() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        for file in ["x.yaml", "y.json", "a/z.yaml", "a/b/w.yaml"] {
            std::fs::write(base.join(file), "").unwrap();
        }
        let names = |pattern: &str| -> Vec<String> {
            matching(&format!("{}/{pattern}", base.display()), 100)
                .unwrap()
                .iter()
                .map(|p| p.strip_prefix(base).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names("*.yaml"), ["x.yaml"]);
        assert_eq!(names("*/*.yaml"), ["a/z.yaml"]);
        assert_eq!(names("**/*.yaml"), ["a/b/w.yaml", "a/z.yaml", "x.yaml"]);
        assert_eq!(names("a/**/*.yaml"), ["a/b/w.yaml", "a/z.yaml"]);
        assert!(matches!(matching("[", 10), Err(GlobError::Invalid(_))));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("r.yaml"), "").unwrap();
        std::os::unix::fs::symlink(base, base.join("self")).unwrap();
        std::os::unix::fs::symlink(base.join("other"), base.join("loop")).unwrap();
        std::os::unix::fs::symlink(base.join("loop"), base.join("other")).unwrap();
        let started = std::time::Instant::now();
        let found = matching(&format!("{}/**/*.yaml", base.display()), 100).unwrap();
        assert_eq!(found, [base.join("r.yaml")]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn too_many_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("{i}.yaml")), "").unwrap();
        }
        let pattern = format!("{}/*.yaml", dir.path().display());
        assert_eq!(matching(&pattern, 10), Err(GlobError::TooMany { limit: 10 }));
        assert_eq!(matching(&pattern, 20).unwrap().len(), 20);
    }
}
