//! The dashboard's flag changes: create and edit API-owned flags (with the
//! engine's errors shown inline), the kill switch, revert and promotion.
//! Each goes through the same write path as the admin API, with the
//! signed-in token's name as the actor and the form's reason in the audit.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use rampart_engine::FlagState;
use serde::Deserialize;

use super::layout::{Section, csrf_field, frame, reason_field, reason_field_with};
use super::{Csrf, Viewer, environment, flag_path, html, reason, submitted, viewer};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::policy::Action;
use crate::writes::{Actor, Definition, PromotionAction, WriteError};

const TEMPLATE: &str = r#"{
  "state": "ENABLED",
  "variants": { "on": true, "off": false },
  "defaultVariant": "off",
  "targeting": {}
}"#;

#[derive(Debug, Deserialize)]
pub(crate) struct DefinitionForm {
    csrf: Option<String>,
    /// The new flag's key (create).
    key: Option<String>,
    /// The version tag the editor started from (edit).
    expected: Option<String>,
    definition: String,
    reason: Option<String>,
    /// `save` after the difference was shown; anything else shows it
    /// first (edits only).
    intent: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StateForm {
    csrf: Option<String>,
    state: String,
    back: Option<String>,
    reason: Option<String>,
    /// The flag's key, typed (production environments).
    typed: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RevertForm {
    csrf: Option<String>,
    version: u64,
    reason: Option<String>,
    typed: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromoteForm {
    csrf: Option<String>,
    to: String,
    /// Set by the confirmation page: apply (otherwise show the difference).
    confirm: Option<String>,
    reason: Option<String>,
    typed: Option<String>,
}

impl Csrf for DefinitionForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl Csrf for StateForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl Csrf for RevertForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl Csrf for PromoteForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `GET …/new-flag`.
pub(crate) async fn create_form(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> super::Page {
    let viewer = viewer(&state, &request)?;
    if !viewer.may(Action::WriteFlag) {
        return Ok(read_only());
    }
    environment(&state, &path)?;
    Ok(html(StatusCode::OK, definition_page(&viewer, &path, None, "", (TEMPLATE, ""), None, None)))
}

/// `POST …/new-flag`.
pub(crate) async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> super::Page {
    let (submitted, viewer) = submitted::<DefinitionForm>(&state, &request, payload, Action::WriteFlag).await?;
    let key = submitted.key.as_deref().map(str::trim).unwrap_or("").to_owned();
    if state.environments.get(&path).is_some_and(|e| e.snapshot().flags.get(&key).is_some()) {
        let error = format!("A flag '{key}' exists already in {}: edit it instead.", path.as_str());
        return Ok(html(
            StatusCode::CONFLICT,
            definition_page(
                &viewer,
                &path,
                None,
                &key,
                (&submitted.definition, reason_text(&submitted)),
                Some((&error, None)),
                None,
            ),
        ));
    }
    save(&state, &viewer, &path, &key, None, submitted).await
}

/// `GET …/flags/{key}/edit`: API-owned flags only.
pub(crate) async fn edit_form(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> super::Page {
    let viewer = viewer(&state, &request)?;
    if !viewer.may(Action::WriteFlag) {
        return Ok(read_only());
    }
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let snapshot = environment.snapshot();
    let Some(record) = snapshot.api.get(&key) else {
        let message = match snapshot.file_of(&key) {
            Some(file) => format!("'{key}' is defined in {file}: change its rules there."),
            None => format!("There is no API-owned flag '{key}' in {name}."),
        };
        return Ok(super::layout::message_page(StatusCode::CONFLICT, "This flag cannot be edited here", &message));
    };
    let text = record.definition.as_ref().and_then(|d| serde_json::to_string_pretty(d).ok()).unwrap_or_default();
    let etag = crate::writes::version_tag(&snapshot, &key);
    Ok(html(
        StatusCode::OK,
        definition_page(&viewer, &name, Some((&key, etag.as_deref())), "", (&text, ""), None, None),
    ))
}

/// `POST …/flags/{key}/edit`.
pub(crate) async fn edit(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> super::Page {
    let (submitted, viewer) = submitted::<DefinitionForm>(&state, &request, payload, Action::WriteFlag).await?;
    let (name, key) = path.into_inner();
    // The version the editor started from: a change made meanwhile is not overwritten.
    let expected = submitted.expected.clone().filter(|tag| !tag.is_empty());
    save(&state, &viewer, &name, &key, expected, submitted).await
}

/// Compiles and writes a definition; on an error, the form again with it.
async fn save(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    key: &str,
    expected: Option<String>,
    submitted: DefinitionForm,
) -> super::Page {
    let editing = expected.as_deref().map(|tag| (key, Some(tag)));
    let again = |status: StatusCode, message: &str, line: Option<u64>| {
        let new_key = if editing.is_none() { key } else { "" };
        let typed_reason = reason_text(&submitted);
        let page = definition_page(
            viewer,
            name,
            editing,
            new_key,
            (&submitted.definition, typed_reason),
            Some((message, line)),
            None,
        );
        html(status, page)
    };
    let environment = environment(state, name)?;
    if let Err(error) = super::super::admin::check_key(key) {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &error.message, None));
    }
    let limits = rampart_engine::InputLimits {
        max_bytes: state.limits.definition_bytes,
        max_nodes: state.limits.definition_bytes,
    };
    let parsed = rampart_engine::Source::json("definition", &submitted.definition).parse_value(&limits);
    let mut value = match parsed {
        Ok(value) => value,
        Err(error) => return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &error.message, error.line.map(|l| l as u64))),
    };
    if let Some(fields) = value.as_object_mut() {
        fields.remove("key");
    } else {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, "The definition must be a JSON object.", None));
    }
    let shown = super::diff::text(Some(&value));
    let definition = match Definition::compile(key, value) {
        Ok(definition) => definition,
        Err(error) => return Ok(write_error(error, &again)),
    };
    if editing.is_some() && submitted.intent.as_deref() != Some("save") {
        // An edit shows its difference from the stored version first.
        let stored = environment.snapshot().api.get(key).and_then(|r| r.definition.clone());
        let review = super::diff::render("definition-diff", &super::diff::text(stored.as_ref()), &shown);
        let page = definition_page(
            viewer,
            name,
            editing,
            "",
            (&submitted.definition, reason_text(&submitted)),
            None,
            Some(review),
        );
        return Ok(html(StatusCode::OK, page));
    }
    let why = reason(submitted.reason.as_deref());
    let actor = Actor::new(&viewer.caller.name, why.as_deref());
    let created = expected.is_none();
    Ok(match state.writes.put(environment, actor, key, expected.as_deref(), definition).await {
        Ok(_) if created => super::notice::done(&flag_path(name, key), &format!("Created '{key}' in {name}.")),
        Ok(_) => super::notice::done(&flag_path(name, key), &format!("Saved '{key}' in {name}.")),
        Err(error) => write_error(error, &again),
    })
}

/// The reason as the operator typed it.
fn reason_text(form: &DefinitionForm) -> &str {
    form.reason.as_deref().unwrap_or("")
}

/// A refused write, on the form: the engine's first error line with it.
fn write_error(error: WriteError, again: &dyn Fn(StatusCode, &str, Option<u64>) -> HttpResponse) -> HttpResponse {
    let line = match &error {
        WriteError::Invalid(errors) => errors.iter().find_map(|e| e.line).map(|l| l as u64),
        _ => None,
    };
    let api = ApiError::from(error);
    let status = if api.status.is_server_error() { api.status } else { StatusCode::UNPROCESSABLE_ENTITY };
    again(status, &api.message, line)
}

/// The create or edit form; `editing` is the key and version being edited.
fn definition_page(
    viewer: &Viewer,
    environment: &str,
    editing: Option<(&str, Option<&str>)>,
    new_key: &str,
    (text, reason): (&str, &str),
    error: Option<(&str, Option<u64>)>,
    review: Option<Markup>,
) -> Markup {
    let title = match editing {
        Some((key, _)) => format!("Edit {key}"),
        None => format!("New flag in {environment}"),
    };
    let action = match editing {
        Some((key, _)) => format!("{}/edit", flag_path(environment, key)),
        None => format!("/ui/environments/{}/new-flag", super::encode_query(environment)),
    };
    frame(
        &title,
        Some(viewer),
        Section::Flags,
        html! {
            h1 { (title) }
            @if let Some((message, line)) = error {
                div.alert.bad #definition-error role="alert" {
                    p { strong { "The flag was not saved. " } (message) }
                    @if let Some(line) = line { p { "Line " (line) " of the definition." } }
                }
            }
            @if let Some(review) = &review {
                section.review aria-labelledby="review-heading" {
                    h2 #review-heading { "The change, before it is saved" }
                    (review)
                    p { "Nothing is saved yet. Save it below, or change the definition and review again." }
                }
            }
            form.definition method="post" action=(action) {
                (csrf_field(viewer))
                @match editing {
                    Some((_, tag)) => { input type="hidden" name="expected" value=(tag.unwrap_or("")); }
                    None => {
                        label for="flag-key" { "Key" }
                        input #flag-key type="text" name="key" required pattern="[A-Za-z0-9][A-Za-z0-9._:\\-]{0,255}"
                            aria-describedby="flag-key-help" autocomplete="off" value=(new_key);
                        p.help #flag-key-help { "Letters, digits, '.', '_', '-' and ':'; starting with a letter or digit." }
                    }
                }
                label for="flag-definition" { "Definition (flagd's flag format, JSON)" }
                @if error.is_some() {
                    textarea #flag-definition name="definition" rows="18" spellcheck="false" aria-invalid="true"
                        aria-describedby="definition-error" { (text) }
                } @else {
                    textarea #flag-definition name="definition" rows="18" spellcheck="false" { (text) }
                }
                (reason_field_with("flag-reason", reason))
                @match (editing, review.is_some()) {
                    (Some(_), true) => button type="submit" name="intent" value="save" { "Save this change" },
                    (Some(_), false) => button type="submit" name="intent" value="review" { "Review the change" },
                    (None, _) => button type="submit" { "Save" },
                }
            }
        },
    )
}

/// `POST …/flags/{key}/state`: the kill switch.
pub(crate) async fn set_state(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> super::Page {
    let (submitted, viewer) = submitted::<StateForm>(&state, &request, payload, Action::SwitchFlag).await?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let Some(wanted) = FlagState::parse(&submitted.state) else {
        return Ok(super::layout::message_page(
            StatusCode::BAD_REQUEST,
            "Not changed",
            "The state must be ENABLED or DISABLED.",
        ));
    };
    super::protected::check(environment, &key, submitted.typed.as_deref())?;
    let why = reason(submitted.reason.as_deref());
    let actor = Actor::new(&viewer.caller.name, why.as_deref());
    let said = match wanted {
        FlagState::Enabled => format!("Enabled '{key}' in {name}."),
        FlagState::Disabled => format!("Disabled '{key}' in {name}: every application now gets its default."),
    };
    Ok(match state.writes.set_state(environment, actor, &key, None, wanted).await {
        Ok(_) if submitted.back.as_deref() == Some("list") => {
            super::notice::done(&format!("/ui/environments/{}/flags", super::encode_query(&name)), &said)
        }
        Ok(_) => super::notice::done(&flag_path(&name, &key), &said),
        Err(error) => refused(error),
    })
}

/// `POST …/flags/{key}/revert`.
pub(crate) async fn revert(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> super::Page {
    let (submitted, viewer) = submitted::<RevertForm>(&state, &request, payload, Action::RevertFlag).await?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    super::protected::check(environment, &key, submitted.typed.as_deref())?;
    let why = reason(submitted.reason.as_deref());
    let actor = Actor::new(&viewer.caller.name, why.as_deref());
    Ok(match state.writes.revert(environment, actor, &key, None, submitted.version).await {
        Ok(_) => super::notice::done(
            &flag_path(&name, &key),
            &format!("Reverted '{key}' in {name} to version {}.", submitted.version),
        ),
        Err(error) => refused(error),
    })
}

/// `POST …/flags/{key}/promote`: first the difference (a dry run), then,
/// confirmed, the promotion.
pub(crate) async fn promote(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> super::Page {
    let (submitted, viewer) = submitted::<PromoteForm>(&state, &request, payload, Action::PromoteFlag).await?;
    let (name, key) = path.into_inner();
    let (from, to) = (environment(&state, &name)?, environment(&state, &submitted.to)?);
    let dry_run = submitted.confirm.as_deref() != Some("yes");
    if !dry_run {
        super::protected::check(to, &key, submitted.typed.as_deref())?;
    }
    let why = reason(submitted.reason.as_deref());
    let actor = Actor::new(&viewer.caller.name, why.as_deref());
    let promotion = match state.writes.promote(from, to, actor, Some(std::slice::from_ref(&key)), dry_run).await {
        Ok(promotion) => promotion,
        Err(error) => return Ok(refused(error)),
    };
    if !dry_run {
        let said = format!("Promoted '{key}' from {name} to {}.", to.name);
        return Ok(super::notice::done(&flag_path(&to.name, &key), &said));
    }
    let item = promotion.items.first();
    let unchanged = item.is_none_or(|i| i.action == PromotionAction::Unchanged);
    let content = html! {
        h1 { "Promote " (key) " from " (name) " to " (to.name) }
        @match item {
            Some(item) if item.action == PromotionAction::Create => p { "Creates the flag in " (to.name) "." },
            Some(item) if item.action == PromotionAction::Update => p { "Changes the flag in " (to.name) ":" },
            _ => p { "The flag in " (to.name) " is the same already: nothing to promote." },
        }
        @if let Some(item) = item { ul.changes #promotion-changes { @for change in &item.changes { li { (change) } } } }
        @if !unchanged {
            (super::diff::render(
                "promotion-diff",
                &super::diff::text(to.snapshot().flags.get(&key).map(|f| f.definition()).as_ref()),
                &super::diff::text(from.snapshot().flags.get(&key).map(|f| f.definition()).as_ref()),
            ))
        }
        @if !unchanged {
            form method="post" action={ (flag_path(&name, &key)) "/promote" } {
                (csrf_field(&viewer))
                input type="hidden" name="to" value=(to.name);
                input type="hidden" name="confirm" value="yes";
                @if to.protected {
                    label for="promote-typed" { (to.name) " is production: type " code { (key) } " to confirm" }
                    input #promote-typed type="text" name="typed" autocomplete="off" spellcheck="false" required;
                }
                (reason_field("promote-reason"))
                button type="submit" { "Promote to " (to.name) }
            }
        }
        p { a href=(flag_path(&name, &key)) { "Back to the flag" } }
    };
    Ok(html(StatusCode::OK, frame("Promote", Some(&viewer), Section::Flags, content)))
}

/// A write the store or the rules refused, as a page.
fn refused(error: WriteError) -> HttpResponse {
    let api = ApiError::from(error);
    let status = if api.status.is_server_error() { api.status } else { StatusCode::CONFLICT };
    super::layout::message_page(status, "Not changed", &api.message)
}

fn read_only() -> HttpResponse {
    super::layout::message_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "Your token has the role 'read': it sees everything and changes nothing.",
    )
}
