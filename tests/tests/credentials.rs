//! One decision about keys, the same on every transport: OFREP, the two
//! event streams, `/v1/outcomes` and gRPC refuse a missing or unknown key
//! (401 / UNAUTHENTICATED) and an admin token or, for outcomes, an SDK key
//! where reporter keys are required (403 / PERMISSION_DENIED).

use rampart_proto::flagd::evaluation::v2::ResolveBooleanRequest;
use rampart_proto::flagd::evaluation::v2::service_client::ServiceClient;
use rampart_tests::{FlagDir, Rampart, client};
use serde_json::json;

const SDK_KEY: &str = "production-sdk-key-1";
const REPORTER_KEY: &str = "production-reporter-key-1";
const ADMIN_TOKEN: &str = "the-admin-token-0123456789";
const UNKNOWN: &str = "not-a-key-of-anyone";

/// Which credential a request carries.
#[derive(Debug, Clone, Copy)]
enum Credential {
    None,
    Unknown,
    Admin,
    Sdk,
    Reporter,
}

impl Credential {
    fn secret(self) -> Option<&'static str> {
        match self {
            Credential::None => None,
            Credential::Unknown => Some(UNKNOWN),
            Credential::Admin => Some(ADMIN_TOKEN),
            Credential::Sdk => Some(SDK_KEY),
            Credential::Reporter => Some(REPORTER_KEY),
        }
    }
}

fn http_status(method: &str, url: &str, credential: Credential, body: Option<&str>) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client().request(method, url);
    if let Some(secret) = credential.secret() {
        request = request.bearer_auth(secret);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    if status == 200 && (url.contains("stream") || url.contains("events")) {
        // An open event stream: the status is the answer.
        return (status, serde_json::Value::Null);
    }
    (status, response.json().unwrap_or_default())
}

#[test]
fn every_transport_refuses_keys_the_same_way() {
    let dir = FlagDir::new();
    dir.write(
        "flags.json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    );
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.json]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n    \
             reporterKeys: [{{value: {REPORTER_KEY}}}]\nadminTokens: [{{name: ops, role: admin, value: {ADMIN_TOKEN}}}]\n"
        ),
    );
    let server = Rampart::start(&["--config", &config]);
    let evaluate = format!("{}/ofrep/v1/evaluate/flags/f", server.http);
    let stream = format!("{}/v1/stream", server.http);
    let events = format!("{}/ofrep/v1/events", server.http);
    let outcomes = format!("{}/v1/outcomes", server.http);
    let report = json!({"outcomes": [{"flag": "f", "variant": "on", "ok": 1, "error": 0}]}).to_string();

    use Credential::*;
    let cases: &[(&str, &str, Option<&str>, Credential, u16)] = &[
        ("POST", &evaluate, Some("{}"), None, 401),
        ("POST", &evaluate, Some("{}"), Unknown, 401),
        ("POST", &evaluate, Some("{}"), Admin, 403),
        ("POST", &evaluate, Some("{}"), Sdk, 200),
        ("GET", &stream, Option::None, None, 401),
        ("GET", &stream, Option::None, Admin, 403),
        ("GET", &stream, Option::None, Sdk, 200),
        ("GET", &events, Option::None, Unknown, 401),
        ("GET", &events, Option::None, Admin, 403),
        ("POST", &outcomes, Some(&report), None, 401),
        ("POST", &outcomes, Some(&report), Admin, 403),
        // This environment takes outcomes only from its reporter keys.
        ("POST", &outcomes, Some(&report), Sdk, 403),
        ("POST", &outcomes, Some(&report), Reporter, 200),
    ];
    for (method, url, body, credential, expected) in cases {
        let (status, answer) = http_status(method, url, *credential, *body);
        assert_eq!(status, *expected, "{method} {url} with {credential:?}: {answer}");
        if status == 401 || status == 403 {
            let message = answer["errorDetails"].as_str().or(answer["error"]["message"].as_str()).unwrap_or_default();
            assert!(!message.is_empty(), "{method} {url} with {credential:?} says why: {answer}");
        }
    }

    // gRPC, with the key in the call's metadata.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut grpc = ServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect");
        for (credential, expected) in [
            (None, tonic::Code::Unauthenticated),
            (Unknown, tonic::Code::Unauthenticated),
            (Admin, tonic::Code::PermissionDenied),
            (Sdk, tonic::Code::Ok),
        ] {
            let mut request =
                tonic::Request::new(ResolveBooleanRequest { flag_key: "f".into(), context: Option::None });
            if let Some(secret) = credential.secret() {
                request.metadata_mut().insert("authorization", format!("Bearer {secret}").parse().expect("ascii"));
            }
            let code = match grpc.resolve_boolean(request).await {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            };
            assert_eq!(code, expected, "gRPC with {credential:?}");
        }
    });
}
