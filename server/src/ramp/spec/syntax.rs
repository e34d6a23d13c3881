//! The small languages inside a ramp file: durations (`1h30m`) and
//! PromQL templates with `{{variables}}`.

use std::time::Duration;

/// Variables a PromQL template may use.
pub const TEMPLATE_VARIABLES: [&str; 5] = ["flag", "variant", "environment", "window", "ramp"];

/// What is wrong with a query template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("an unclosed {{{{")]
    Unclosed,
    #[error("unknown template variable '{{{{{0}}}}}' (known: flag, variant, environment, window, ramp)")]
    UnknownVariable(String),
}

/// Checks that a template only uses known `{{variables}}`.
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..end].trim();
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(TemplateError::UnknownVariable(name.to_owned()));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Fills a template's `{{variables}}`.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}", name = name), value);
        out = out.replace(&format!("{{{{ {name} }}}}", name = name), value);
    }
    out
}

/// Parses a duration like `90s`, `1m`, `1h30m`, `500ms` or `2d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::try_from_secs_f64(value * seconds).ok()?;
    }
    Some(total)
}
