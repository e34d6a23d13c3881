//! Line differences between two flag definitions, shown before a change
//! is saved, reverted or promoted, and in a flag's history.
//!
//! Budget: the common start and end are set aside first (linear); the
//! middle is compared line by line (a longest common subsequence, the
//! product of its line counts in cells) only up to [`MAX_CELLS`] cells —
//! beyond that, the middle is shown as removed then added, which is still
//! a true difference, only not the shortest. At most [`MAX_SHOWN`] lines
//! are drawn; the rest is counted.

use maud::{Markup, html};
use serde_json::Value;

/// Largest middle compared line by line (4 million cells: ~4 MB, a few ms).
const MAX_CELLS: usize = 4_000_000;
/// Most lines drawn.
const MAX_SHOWN: usize = 2_000;
/// Unchanged lines kept around each change.
const CONTEXT: usize = 2;

/// One line of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'t> {
    Same(&'t str),
    Removed(&'t str),
    Added(&'t str),
}

/// The lines of `old` and `new` as kept, removed and added.
pub(crate) fn lines<'t>(old: &'t str, new: &'t str) -> Vec<Line<'t>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (middle_a, middle_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if middle_a.len().saturating_mul(middle_b.len()) <= MAX_CELLS {
        out.extend(common_subsequence(middle_a, middle_b));
    } else {
        out.extend(middle_a.iter().map(|l| Line::Removed(l)));
        out.extend(middle_b.iter().map(|l| Line::Added(l)));
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

/// The classic table of longest common subsequences, walked forwards.
fn common_subsequence<'t>(a: &[&'t str], b: &[&'t str]) -> Vec<Line<'t>> {
    let width = b.len() + 1;
    // lengths[i * width + j]: the longest common subsequence of a[i..] and b[j..].
    let mut lengths = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lengths[i * width + j] = if a[i] == b[j] {
                lengths[(i + 1) * width + j + 1] + 1
            } else {
                lengths[(i + 1) * width + j].max(lengths[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            (i, j) = (i + 1, j + 1);
        } else if lengths[(i + 1) * width + j] >= lengths[i * width + j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
    out
}

/// A definition as the diff compares it: pretty JSON, keys sorted.
pub(crate) fn text(definition: Option<&Value>) -> String {
    definition.and_then(|d| serde_json::to_string_pretty(d).ok()).unwrap_or_default()
}

/// What is drawn of a difference: lines near a change, and folds.
enum Drawn<'t> {
    Line(Line<'t>),
    Fold,
    More(usize),
}

/// The lines to draw: each change with [`CONTEXT`] lines around it, a
/// fold for each unchanged run between, at most [`MAX_SHOWN`] lines.
fn drawn<'t>(all: &[Line<'t>], changed: &[usize]) -> Vec<Drawn<'t>> {
    let near = |index: usize| {
        let at = changed.partition_point(|&c| c + CONTEXT < index);
        changed.get(at).is_some_and(|&c| c.abs_diff(index) <= CONTEXT)
    };
    let mut out = Vec::new();
    let mut shown = 0;
    for (index, line) in all.iter().enumerate() {
        if shown == MAX_SHOWN {
            out.push(Drawn::More(all.len() - index));
            break;
        }
        if near(index) {
            out.push(Drawn::Line(*line));
            shown += 1;
        } else if !matches!(out.last(), Some(Drawn::Fold)) {
            out.push(Drawn::Fold);
        }
    }
    out
}

/// The difference drawn: changed lines with a little context, `-`/`+`
/// marks (words for screen readers), long unchanged runs folded.
pub(crate) fn render(id: &str, old: &str, new: &str) -> Markup {
    let all = lines(old, new);
    let changed: Vec<usize> =
        all.iter().enumerate().filter(|(_, line)| !matches!(line, Line::Same(_))).map(|(i, _)| i).collect();
    if changed.is_empty() {
        return html! { p #(id) { "No difference." } };
    }
    let added = changed.iter().filter(|&&i| matches!(all[i], Line::Added(_))).count();
    html! {
        div.diff-block {
            p.help { (added) " lines added, " (changed.len() - added) " removed." }
            pre.diff #(id) tabindex="0" aria-label="Difference: removed lines marked minus, added lines plus" {
                @for item in drawn(&all, &changed) {
                    @match item {
                        Drawn::Line(Line::Same(text)) => { span.same { "  " (text) } "\n" }
                        Drawn::Line(Line::Removed(text)) => { del { "- " (text) } "\n" }
                        Drawn::Line(Line::Added(text)) => { ins { "+ " (text) } "\n" }
                        Drawn::Fold => { span.fold { "  …" } "\n" }
                        Drawn::More(count) => { span.fold { "… " (count) " more lines not shown" } "\n" }
                    }
                }
            }
        }
    }
}

/// An audit entry's "what changed" lines.
pub(crate) fn changes(lines: &[String]) -> Markup {
    html! { ul.changes { @for change in lines { li { (change) } } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_and_added_and_the_rest_kept() {
        let old = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
        let new = "{\n  \"a\": 1,\n  \"b\": 5,\n  \"c\": 3,\n  \"d\": 4\n}";
        let diff = lines(old, new);
        assert!(diff.contains(&Line::Removed("  \"b\": 2,")));
        assert!(diff.contains(&Line::Added("  \"b\": 5,")));
        assert!(diff.contains(&Line::Added("  \"d\": 4")));
        assert_eq!(diff.iter().filter(|l| matches!(l, Line::Same(_))).count(), 3, "{{, a and }} kept");
        let html = render("d", old, new).into_string();
        assert!(html.contains("<del>- ") && html.contains("<ins>+ "), "{html}");
    }

    #[test]
    fn a_middle_beyond_the_budget_is_removed_then_added() {
        let old: String = (0..3_000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..3_000).map(|i| format!("new {i}\n")).collect();
        // 9 million cells: over the budget, so no table is built.
        let diff = lines(&old, &new);
        assert_eq!(diff.len(), 6_000);
        assert!(matches!(diff[0], Line::Removed(_)) && matches!(diff[5_999], Line::Added(_)));
        let html = render("d", &old, &new).into_string();
        assert!(html.contains("4000 more lines not shown"), "drawn lines are bounded");
    }

    #[test]
    fn the_same_text_has_no_difference() {
        assert!(render("d", "x\ny", "x\ny").into_string().contains("No difference."));
    }
}
