//! Production environments (`protected: true`) look and act dangerous:
//! every page about one says so, and a kill switch, abort, promotion or
//! revert there asks the operator to type the name of what it acts on.
//!
//! The server holds the rule, not only the dialog: a form for a protected
//! environment whose `typed` field is not the name changes nothing.

use actix_web::http::StatusCode;
use maud::{Markup, html};

use super::Refusal;
use crate::environment::Environment;

/// A protected environment's mark, for the top of its pages.
pub(crate) fn banner(environment: &Environment) -> Markup {
    banner_if(environment.protected, &environment.name)
}

/// The mark, for pages that know only the environment's name.
pub(crate) fn banner_if(protected: bool, name: &str) -> Markup {
    html! {
        @if protected {
            p.protected-banner { strong { "Production: " (name) } " — changes here reach real users." }
        }
    }
}

/// A small badge beside an environment's name in lists.
pub(crate) fn badge(environment: &Environment) -> Markup {
    html! { @if environment.protected { " " span.badge.bad { "production" } } }
}

/// What a confirmed form carries for the dialog: the name to type, when
/// the environment asks for it.
pub(crate) fn typed_field(protected: bool, name: &str) -> Markup {
    html! {
        @if protected {
            input type="hidden" name="typed" value="" data-type-to-confirm=(name);
        }
    }
}

/// Refuses the action unless the environment is unprotected or `typed`
/// is exactly `name`.
pub(crate) fn check(environment: &Environment, name: &str, typed: Option<&str>) -> Result<(), Refusal> {
    if !environment.protected || typed.map(str::trim) == Some(name) {
        return Ok(());
    }
    Err(Refusal::page(
        StatusCode::BAD_REQUEST,
        "Type the name to confirm",
        format!(
            "{} is a production environment: this action asks you to type '{name}' in the confirmation. \
             Nothing was changed.",
            environment.name
        ),
    ))
}
