//! What a file is, read from its document's top-level `kind` (YAML or
//! JSON, quoted or not), not from the text of one line: `kind: Ramp` with
//! a comment after it, `"kind": "Release"` in JSON, or `kind:` inside a
//! flag's metadata all read as what they are.

use serde::Deserialize;

/// The kinds of file Rampart reads besides flag files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `kind: Ramp` (docs/ramps.md).
    Ramp,
    /// `kind: Release`: a pipeline of ramps across environments.
    Release,
    /// No top-level `kind` of ours: a flag file (or not YAML at all, which
    /// the flag loader reports with its line).
    Flags,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: Option<String>,
}

/// The kind of the document in `text`. The second parse runs under
/// serde-saphyr's default budget (250,000 nodes, 1,000,000 events, aliases
/// capped): a document past it is read as a flag file, which the flag
/// loader then checks under its own limits and refuses with file and line.
pub fn kind_of(text: &str) -> FileKind {
    // Only a document that names a kind somewhere is parsed a second time.
    if !text.contains("kind") {
        return FileKind::Flags;
    }
    let head: Option<Head> = serde_saphyr::from_str_with_options(text, rampart_engine::source::yaml_options()).ok();
    match head.and_then(|head| head.kind).as_deref() {
        Some("Ramp") => FileKind::Ramp,
        Some("Release") => FileKind::Release,
        _ => FileKind::Flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_is_the_documents_not_a_lines() {
        assert_eq!(kind_of("apiVersion: rampart.dev/v1\nkind: Ramp   # a comment\n"), FileKind::Ramp);
        assert_eq!(kind_of("kind: \"Release\"\nspec: {}\n"), FileKind::Release);
        assert_eq!(kind_of(r#"{"apiVersion": "rampart.dev/v1", "kind": "Release"}"#), FileKind::Release);
        // `kind` inside a flag's metadata is not the file's kind.
        let flags = "flags:\n  a:\n    metadata:\n      kind: Release\n    state: ENABLED\n";
        assert_eq!(kind_of(flags), FileKind::Flags);
        assert_eq!(kind_of("flags: {}\n"), FileKind::Flags);
    }

    #[test]
    fn a_document_past_the_parsers_budget_is_left_to_the_flag_loader() {
        // 300,000 nodes and a `kind`: the parse stops at the budget.
        let mut text = String::from("kind: Release\nvalues:\n");
        for index in 0..300_000 {
            text.push_str(&format!("  - {index}\n"));
        }
        assert_eq!(kind_of(&text), FileKind::Flags);
    }
}
