//! The small languages inside a ramp file: durations (`1h30m`) and
//! PromQL templates with `{{variables}}`.

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
