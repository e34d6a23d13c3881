//! A web handler using Rampart's Rust SDK: flags are evaluated locally on
//! every request, and changes made on the server arrive by themselves.
//!
//! Start a server, then this example:
//!
//! ```sh
//! cargo run -p rampart-server -- serve --flags examples/flags.yaml
//! cargo run -p rampart-sdk --example sdk_web_handler
//! curl 'http://127.0.0.1:8080/checkout?user=user-42&email=ana@example.com'
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};
use rampart_sdk::{Client, Context};
use serde_json::json;

async fn checkout(
    client: web::Data<Client>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let user = query.get("user").cloned().unwrap_or_else(|| "anonymous".into());
    let mut context = Context::with_targeting_key(user);
    if let Some(email) = query.get("email") {
        context.insert("email", email.clone());
    }
    // Local evaluation: no network call, nanoseconds per flag.
    let new_checkout = client.bool_value("new-checkout", &context, false);
    let banner = client.string_value("welcome-banner", &context, "Welcome!");
    let per_page = client.int_value("search-results-per-page", &context, 10);
    let theme = client.json_details("theme", &context, json!({}));
    HttpResponse::Ok().json(json!({
        "checkout": if new_checkout { "new" } else { "classic" },
        "banner": banner,
        "resultsPerPage": per_page,
        "theme": theme.value,
        "themeReason": theme.reason.as_str(),
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let client = Client::builder()
        .endpoint(std::env::var("RAMPART_SYNC_URL").unwrap_or_else(|_| "http://127.0.0.1:8015".into()))
        // Serve these values if the server cannot be reached at start-up.
        .bootstrap_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.yaml"))
        .build()
        .map_err(std::io::Error::other)?;
    if let Err(error) = client.wait_ready(std::time::Duration::from_secs(2)).await {
        eprintln!("rampart not reachable yet ({error}); serving bootstrap values");
    }
    client.on_change(|keys| eprintln!("flags changed: {keys:?}"));
    let data = web::Data::new(client);
    HttpServer::new(move || App::new().app_data(data.clone()).route("/checkout", web::get().to(checkout)))
        .bind(("127.0.0.1", 8080))?
        .run()
        .await
}
