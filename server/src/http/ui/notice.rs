//! "Done" messages after an action: the form's answer redirects to the
//! page that shows the result, and that page says what was done, in a
//! status region that screen readers announce.
//!
//! The message travels in a short-lived cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/ui`, one minute) rather than in the address:
//! a link someone sends cannot make the dashboard claim an action that
//! never happened, and reloading the page does not repeat it (the first
//! page that shows it clears it).

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

/// The cookie's name.
const COOKIE: &str = "rampart_notice";
/// Longest message kept (a flag key is at most 256 bytes).
const MAX_CHARS: usize = 600;

/// `303 See Other` to `location`, which then says `message`.
pub(crate) fn done(location: &str, message: &str) -> HttpResponse {
    let text: String = message.chars().take(MAX_CHARS).collect();
    let cookie = Cookie::build(COOKIE, super::encode_query(&text))
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(Duration::seconds(60))
        .finish();
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).cookie(cookie).finish()
}

/// The message waiting for this request's page, if any.
pub(crate) fn waiting(request: &HttpRequest) -> Option<String> {
    let cookie = request.cookie(COOKIE)?;
    let text = percent_decode(cookie.value())?;
    let text: String = text.chars().filter(|c| !c.is_control()).take(MAX_CHARS).collect();
    (!text.is_empty()).then_some(text)
}

/// Whether this request's page shows the waiting message: a page load,
/// not the live updates' own fetches (they only swap live regions).
pub(crate) fn shows(request: &ServiceRequest) -> bool {
    request.cookie(COOKIE).is_some()
        && request.method() == actix_web::http::Method::GET
        && !request.headers().contains_key("x-rampart-live")
}

/// Middleware's second half: a page that showed the message clears it.
pub(crate) fn clear_shown<B: MessageBody>(shows: bool, mut response: ServiceResponse<B>) -> ServiceResponse<B> {
    if shows && response.status().is_success() {
        let mut gone = Cookie::build(COOKIE, "").path("/ui").http_only(true).same_site(SameSite::Strict).finish();
        gone.make_removal();
        if let Ok(value) = header::HeaderValue::from_str(&gone.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `%XX` sequences back to bytes; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_cookie_and_control_characters_do_not() {
        let encoded = super::super::encode_query("Disabled 'new-checkout' in staging — 100 %");
        assert_eq!(percent_decode(&encoded).as_deref(), Some("Disabled 'new-checkout' in staging — 100 %"));
        assert_eq!(percent_decode("%E2%82"), None, "cut UTF-8 is no message");
        assert_eq!(percent_decode("%4"), Some("%4".into()), "a short escape stays as it is");
        let request = actix_web::test::TestRequest::default()
            .cookie(Cookie::new(COOKIE, super::super::encode_query("a\nb")))
            .to_http_request();
        assert_eq!(waiting(&request).as_deref(), Some("ab"));
    }
}
