//! A blue-green / canary *deployment* driven by Rampart: a small router
//! that sends each request to the blue or the green backend by a flag
//! evaluated on the request's user, and reports how each request went, so
//! a ramp on the flag moves traffic 5 → 25 → 100 % and rolls it back to
//! blue by itself when green fails. The kill switch (disable the flag)
//! sends everyone to blue in one call.
//!
//! ```sh
//! cargo run -p rampart-server -- serve --flags examples/deploy/flags.yaml --ramps examples/deploy/green-ramp.yaml
//! BLUE_URL=http://127.0.0.1:9001 GREEN_URL=http://127.0.0.1:9002 \
//!   cargo run -p rampart-sdk --example blue_green_router
//! curl -H 'X-User: user-42' http://127.0.0.1:8090/     # answered by blue or green (header X-Backend)
//! ```
//!
//! Settings from the environment: `RAMPART_SYNC_URL` (default
//! `http://127.0.0.1:8015`), `ROUTER_ADDR` (`127.0.0.1:8090`), `BLUE_URL`,
//! `GREEN_URL`, `ROUTER_FLAG` (`backend`, a string flag with variants
//! `blue` and `green`).

use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use rampart_sdk::{Client, Context, Outcome};

struct Router {
    flags: Client,
    http: reqwest::Client,
    flag: String,
    blue: String,
    green: String,
}

async fn route(router: web::Data<Router>, request: HttpRequest) -> HttpResponse {
    let user = request.headers().get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("anonymous").to_owned();
    let context = Context::with_targeting_key(user);
    // Blue unless the flag says green: when Rampart is away or the flag is
    // disabled (the kill switch), everyone gets blue.
    let choice = router.flags.string_details(&router.flag, &context, "blue");
    let (name, base) = if choice.value == "green" { ("green", &router.green) } else { ("blue", &router.blue) };
    let answer = router.http.get(format!("{base}{}", request.uri())).send().await;
    let (status, body) = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(_) => (502, Default::default()),
    };
    // The ramp's guard counts these, per variant.
    let outcome = if status >= 500 { Outcome::Error } else { Outcome::Ok };
    router.flags.record_outcome(&router.flag, &choice, outcome);
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    HttpResponse::build(status).insert_header(("x-backend", name)).body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let setting = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let flags = Client::builder()
        .endpoint(setting("RAMPART_SYNC_URL", "http://127.0.0.1:8015"))
        .outcome_interval(Duration::from_millis(250))
        .build()
        .map_err(std::io::Error::other)?;
    if let Err(error) = flags.wait_ready(Duration::from_secs(10)).await {
        eprintln!("rampart not reachable yet ({error}); routing everyone to blue");
    }
    let router = web::Data::new(Router {
        flags,
        http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(std::io::Error::other)?,
        flag: setting("ROUTER_FLAG", "backend"),
        blue: setting("BLUE_URL", "http://127.0.0.1:9001"),
        green: setting("GREEN_URL", "http://127.0.0.1:9002"),
    });
    let address = setting("ROUTER_ADDR", "127.0.0.1:8090");
    let server = HttpServer::new(move || App::new().app_data(router.clone()).default_service(web::to(route)))
        .workers(2)
        .bind(&address)?;
    eprintln!("routing on http://{address}");
    server.run().await
}
