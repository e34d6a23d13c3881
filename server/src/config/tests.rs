//! Configuration: defaults, precedence, and every invalid case says why.

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rampart.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn resolve(args: ServeArgs) -> Result<ServerConfig, ConfigError> {
    let vars = |name: &str| (name == "PROD_KEY").then(|| "prod-secret-key".to_owned());
    ServerConfig::resolve(&args, &vars)
}

#[test]
fn quick_start_defaults_bind_loopback() {
    let config = resolve(ServeArgs { flags: vec!["f.json".into()], ..Default::default() }).unwrap();
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:8016");
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:8014");
    assert_eq!(config.environments[0].name, "default");
    assert!(config.open_evaluation());
}

#[test]
fn file_environments_keys_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "httpAddr: 127.0.0.1:9000\nenvironments:\n  production:\n    flags: [prod/*.yaml]\n    ramps: [ramps/*.yaml]\n    sdkKeys: [{env: PROD_KEY}]\n  staging:\n    flags: [/abs/s.json]\n    sdkKeys: [{value: staging-key-1}]\n",
    );
    let config = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap();
    assert_eq!(config.http_addr.port(), 9000);
    let production = &config.environments[0];
    assert_eq!(production.name, "production");
    assert_eq!(production.flags, vec![dir.path().join("prod/*.yaml").to_string_lossy().into_owned()]);
    assert_eq!(production.ramps, vec![dir.path().join("ramps/*.yaml").to_string_lossy().into_owned()]);
    assert_eq!(production.sdk_keys, vec![KeyDigest::of("prod-secret-key")]);
    assert_eq!(config.environments[1].flags, vec!["/abs/s.json".to_owned()]);
    assert!(!config.open_evaluation());
}

#[test]
fn command_line_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "httpAddr: 127.0.0.1:9000\nenvironments:\n  a:\n    flags: [x.json]\n");
    let args = ServeArgs { config: Some(path), http_addr: Some("0.0.0.0:7000".parse().unwrap()), ..Default::default() };
    assert_eq!(resolve(args).unwrap().http_addr.to_string(), "0.0.0.0:7000");
}

#[test]
fn the_redis_store_is_configured_from_the_file_or_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let flags = "environments:\n  a:\n    flags: [x]\n";
    let embedded = resolve(ServeArgs { flags: vec!["f".into()], ..Default::default() }).unwrap();
    assert!(matches!(embedded.store, StoreConfig::Embedded));
    assert_eq!(embedded.ramp_lease, DEFAULT_RAMP_LEASE);

    let path = write(
        dir.path(),
        &format!("store:\n  redis:\n    urlEnv: PROD_KEY_URL\n    prefix: team-a\nrampLeaseSeconds: 5\n{flags}"),
    );
    let vars = |name: &str| (name == "PROD_KEY_URL").then(|| "redis://:pw@cache:6379/2".to_owned());
    let config = ServerConfig::resolve(&ServeArgs { config: Some(path), ..Default::default() }, &vars).unwrap();
    let StoreConfig::Redis(redis) = &config.store else { panic!("redis expected") };
    assert_eq!((redis.url.as_str(), redis.prefix.as_str()), ("redis://:pw@cache:6379/2", "team-a"));
    assert_eq!(config.ramp_lease, Duration::from_secs(5));
    assert!(!format!("{config:?}").contains(":pw@"), "the password is not in Debug output");

    let cli = ServeArgs {
        flags: vec!["f".into()],
        redis_url: Some("rediss://cache:6380".into()),
        ramp_lease_seconds: Some(2.5),
        ..Default::default()
    };
    let config = resolve(cli).unwrap();
    assert!(matches!(&config.store, StoreConfig::Redis(r) if r.url == "rediss://cache:6380" && r.prefix == "rampart"));

    for (text, expected) in [
        ("store:\n  redis:\n    url: http://cache:6379\n", "must start with redis://"),
        ("store:\n  redis:\n    urlEnv: NOPE\n", "NOPE, which is not set"),
        ("store:\n  redis:\n    prefix: x\n", "needs url or urlEnv"),
        ("store:\n  redis:\n    url: redis://c\n    prefix: 'a b'\n", "may only use letters"),
        ("rampLeaseSeconds: 0.1\n", "between 0.5 and 3600"),
        ("store:\n  redis:\n    url: redis://c\n    caFile: ca.pem\n", "needs a rediss://"),
        ("store:\n  sqlite: {}\n", "unknown field `sqlite`"),
    ] {
        let path = write(dir.path(), &format!("{text}{flags}"));
        let error = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}\n→ {error}");
    }
}

#[test]
fn invalid_configurations_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("environments:\n  a:\n    flags: [x.json]\n    colour: red\n", "unknown field `colour`"),
        ("environments: {}\n", "no environments are configured"),
        ("httpAddr: localhost\nenvironments:\n  a:\n    flags: [x]\n", "httpAddr: 'localhost' is not an address"),
        ("environments:\n  a:\n    flags: []\n", "flags must list at least one"),
        ("prometheusUrl: localhost:9090\nenvironments:\n  a:\n    flags: [x]\n", "must be an http(s) URL"),
        ("environments:\n  a b:\n    flags: [x]\n", "environment name 'a b'"),
        ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{env: MISSING}]\n", "MISSING is not set"),
        ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{sha256: zz}]\n", "64 hexadecimal"),
        ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: short}]\n", "at least 8 characters"),
        ("environments:\n  a:\n    flags: [x]\n  b:\n    flags: [y]\n", "every environment needs sdkKeys"),
        (
            "environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: same-key-1}]\n  b:\n    flags: [y]\n    sdkKeys: [{value: same-key-1}]\n",
            "the same SDK key",
        ),
        (
            "environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: key-aaaa-1}]\n  b:\n    flags: [y]\n",
            "could not be reached: b",
        ),
    ];
    for (text, expected) in cases {
        let path = write(dir.path(), text);
        let error = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}\n→ {error}");
    }
    let neither = resolve(ServeArgs::default()).unwrap_err().to_string();
    assert!(neither.contains("nothing to serve"), "{neither}");
    let same = ServeArgs {
        flags: vec!["f".into()],
        http_addr: Some("127.0.0.1:9".parse().unwrap()),
        admin_addr: Some("127.0.0.1:9".parse().unwrap()),
        ..Default::default()
    };
    assert!(resolve(same).unwrap_err().to_string().contains("cannot share"));
    let defaults = resolve(ServeArgs { flags: vec!["f".into()], ..Default::default() }).unwrap();
    assert_eq!((defaults.grpc_addr.port(), defaults.sync_addr.port()), (8013, 8015));
}

#[test]
fn key_digests_are_not_printed() {
    assert_eq!(format!("{:?}", KeyDigest::of("secret")), "KeyDigest(…)");
}

#[test]
fn relays_name_their_upstream_environments_and_token_and_relay_tokens_their_scope() {
    let relay_vars = |name: &str| (name == "RAMPART_RELAY_TOKEN").then(|| "relay-secret".to_owned());
    let args = || ServeArgs {
        upstream: Some("http://primary:8015/".into()),
        relay_environments: vec!["production".into()],
        ..Default::default()
    };
    let config = ServerConfig::resolve(&args(), &relay_vars).unwrap();
    let relay = config.relay.as_ref().unwrap();
    assert_eq!(
        (relay.url.as_str(), relay.environments.as_slice()),
        ("http://primary:8015", &["production".to_owned()][..])
    );
    assert_eq!(config.environments[0].name, "production");
    assert!(!config.open_evaluation(), "a relay learns its keys from the upstream");
    assert!(!format!("{config:?}").contains("relay-secret"));
    let error = |args: ServeArgs, vars: &dyn Fn(&str) -> Option<String>| {
        ServerConfig::resolve(&args, vars).unwrap_err().to_string()
    };
    assert!(error(args(), &|_| None).contains("RAMPART_RELAY_TOKEN"));
    assert!(error(ServeArgs { relay_environments: vec![], ..args() }, &relay_vars).contains("--environment"));
    assert!(error(ServeArgs { upstream: Some("primary:8015".into()), ..args() }, &relay_vars).contains("http"));

    let dir = tempfile::tempdir().unwrap();
    for (token, message) in [
        ("{name: edge, role: relay, value: relay-token-000000001}", "names the environments"),
        ("{name: ops, role: admin, environments: [production], value: admin-token-000000001}", "only relay tokens"),
        ("{name: edge, role: relay, environments: [nowhere], value: relay-token-000000001}", "'nowhere'"),
    ] {
        let path = write(
            dir.path(),
            &format!(
                "environments:\n  production:\n    flags: [p.json]\n    sdkKeys: [{{value: sdk-key-0001}}]\nadminTokens:\n  - {token}\n"
            ),
        );
        let got = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
        assert!(got.contains(message), "{token}: {got}");
    }
}

#[test]
fn the_otlp_receiver_is_off_unless_configured_and_shares_no_address() {
    let off = resolve(ServeArgs { flags: vec!["f".into()], ..Default::default() }).unwrap();
    assert_eq!(off.otlp_http_addr, None);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "otlpHttpAddr: 127.0.0.1:4318\nenvironments:\n  a:\n    flags: [x]\n");
    let on = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap();
    assert_eq!(on.otlp_http_addr, Some("127.0.0.1:4318".parse().unwrap()));
    assert_eq!(on.otlp_grpc_addr, None, "each receiver is turned on by itself");
    let grpc = ServeArgs {
        flags: vec!["f".into()],
        otlp_grpc_addr: Some("127.0.0.1:8013".parse().unwrap()),
        ..Default::default()
    };
    let error = resolve(grpc).unwrap_err().to_string();
    assert!(error.contains("gRPC and OTLP/gRPC listeners cannot share"), "{error}");
    let cli = ServeArgs {
        flags: vec!["f".into()],
        otlp_http_addr: Some("127.0.0.1:8016".parse().unwrap()),
        ..Default::default()
    };
    let error = resolve(cli).unwrap_err().to_string();
    assert!(error.contains("HTTP and OTLP/HTTP listeners cannot share"), "{error}");
    let path = write(dir.path(), "otlpHttpAddr: nowhere\nenvironments:\n  a:\n    flags: [x]\n");
    let error = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
    assert!(error.contains("otlpHttpAddr: 'nowhere'"), "{error}");
}

#[test]
fn otlp_export_needs_an_http_endpoint_and_a_sample_between_0_and_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = |text: &str| {
        let path = write(dir.path(), &format!("{text}\nenvironments:\n  a:\n    flags: [x]\n"));
        resolve(ServeArgs { config: Some(path), ..Default::default() })
    };
    let export = config("otlpExport: {endpoint: 'http://collector:4318'}").unwrap().otlp_export.unwrap();
    assert_eq!((export.evaluation_sample, export.service_name.as_str()), (0.01, "rampart"));
    let error = config("otlpExport: {endpoint: 'collector:4318'}").unwrap_err().to_string();
    assert!(error.contains("not an http:// or https:// URL"), "{error}");
    let error = config("otlpExport: {endpoint: 'http://c', evaluationSample: 2}").unwrap_err().to_string();
    assert!(error.contains("evaluationSample: 2 is not between 0 and 1"), "{error}");
    let error = config("otlpExport: {evaluationSample: 0.5}").unwrap_err().to_string();
    assert!(error.contains("name the collector's endpoint"), "{error}");
    let cli =
        ServeArgs { flags: vec!["f".into()], otlp_export: Some("https://otel:4318".into()), ..Default::default() };
    assert_eq!(resolve(cli).unwrap().otlp_export.unwrap().endpoint, "https://otel:4318");
}
