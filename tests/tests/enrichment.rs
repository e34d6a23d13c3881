//! What an environment adds to every evaluation context — static values
//! and request headers — over OFREP and gRPC, with the server's values
//! winning over the client's.

use rampart_proto::flagd::evaluation::v2::ResolveStringRequest;
use rampart_proto::flagd::evaluation::v2::service_client::ServiceClient;
use rampart_tests::{FlagDir, Rampart, post};
use serde_json::json;

const FLAGS: &str = r#"{"flags": {"where": {"state": "ENABLED", "variants": {"eu": "eu", "us": "us", "none": "none"},
  "defaultVariant": "none", "targeting": {"if": [
    {"==": [{"var": "tier"}, "gold"]}, {"var": "region"}, {"==": [{"var": "region"}, "eu"]}, "eu", "none"]}}}}"#;

#[test]
fn static_values_and_headers_enrich_every_context() {
    let dir = FlagDir::new();
    dir.write("flags.json", FLAGS);
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  default:\n    flags: [flags.json]\n    context: {region: eu}\n    contextFromHeaders: {X-Tier: tier}\n",
    );
    let server = Rampart::start(&["--config", &config]);
    let url = format!("{}/ofrep/v1/evaluate/flags/where", server.http);
    // The static value applies, and beats the client's own.
    let answer = post(&url, &json!({"context": {"region": "us"}}).to_string(), &[]);
    assert_eq!(answer.body["value"], "eu", "{}", answer.text);
    // The header is mapped into the context.
    let answer = post(&url, "{}", &[("x-tier", "gold")]);
    assert_eq!((answer.body["value"].as_str(), answer.body["reason"].as_str()), (Some("eu"), Some("TARGETING_MATCH")));
    // And the same over gRPC (headers are the call's metadata).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut client = ServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect");
        let mut request = tonic::Request::new(ResolveStringRequest { flag_key: "where".into(), context: None });
        request.metadata_mut().insert("x-tier", "gold".parse().expect("ascii"));
        let answer = client.resolve_string(request).await.expect("resolve").into_inner();
        assert_eq!(answer.value.as_deref(), Some("eu"));
    });
}
