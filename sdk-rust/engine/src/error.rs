//! Load errors: what is wrong with a flag definition, and where.

use std::fmt;

/// One problem in a flag definition: the file, the line when known, the
/// flag when the problem is inside one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub flag: Option<String>,
    pub message: String,
    /// The input limit that was exceeded, when that is the problem.
    pub limit: Option<crate::limits::Limit>,
    /// The text is not JSON (or YAML) at all, as opposed to a document
    /// that is well formed but invalid.
    pub malformed: bool,
    /// The ramp the problem is in, for tools that report ramp files with
    /// flag files (the server's `rampart validate`).
    pub ramp: Option<String>,
}

impl LoadError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            file: file.into(),
            line: None,
            flag: None,
            message: message.into(),
            limit: None,
            malformed: false,
            ramp: None,
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn with_limit(mut self, limit: crate::limits::Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn in_ramp(mut self, ramp: impl Into<String>) -> Self {
        self.ramp = Some(ramp.into());
        self
    }

    pub fn in_flag(mut self, flag: impl Into<String>) -> Self {
        self.flag = Some(flag.into());
        self
    }
}

/// `file:line: flag 'key': message` — the shape compilers use, so editors
/// and CI annotations can jump to it.
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(ramp) = &self.ramp {
            write!(f, "ramp '{ramp}': ")?;
        } else if let Some(flag) = &self.flag {
            write!(f, "flag '{flag}': ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// Every problem found in a flag set; the set is rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    pub fn iter(&self) -> impl Iterator<Item = &LoadError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One line per problem.
impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<LoadError> for LoadErrors {
    fn from(error: LoadError) -> Self {
        LoadErrors(vec![error])
    }
}

/// serde_json appends " at line L column C"; we report the line separately.
pub(crate) fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(index) => &message[..index],
        None => message,
    }
}
