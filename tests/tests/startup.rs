//! Why the server did not start is in its exit code, so a supervisor can
//! tell "fix the files" (64) from "the store holds data this version cannot
//! read" (65), "the store is unreachable, retry" (69) and "the port is
//! taken" (71) — and the message says which.

use std::process::Command;

use rampart_tests::{DEADLINE, FlagDir, free_port, output_within, rampart_bin, redis::Redis};

const FLAGS: &str = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#;

/// `rampart serve` with `args`, expected to exit: (code, stderr).
fn serve(args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(rampart_bin());
    command.arg("serve").args(args);
    for flag in ["--http-addr", "--admin-addr", "--grpc-addr", "--sync-addr"] {
        if !args.contains(&flag) {
            command.args([flag, "127.0.0.1:0"]);
        }
    }
    let output = output_within(command, DEADLINE);
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn each_start_up_failure_has_its_own_exit_code_and_says_why() {
    let dir = FlagDir::new();
    let flags = dir.write("flags.json", FLAGS);
    let data = dir.path("data").to_string_lossy().into_owned();

    // An invalid flag file: the configuration's fault.
    let broken = dir.write("broken.json", "{\"flags\": ");
    let (code, stderr) = serve(&["--flags", &broken, "--data-dir", &data]);
    assert_eq!(code, Some(64), "{stderr}");

    // The data directory cannot be created (a file is in the way).
    let blocked = dir.write("not-a-directory", "");
    let (code, stderr) = serve(&["--flags", &flags, "--data-dir", &blocked]);
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("cannot create the data directory"), "{stderr}");

    // Redis does not answer.
    let nobody = format!("redis://127.0.0.1:{}/0", free_port());
    let (code, stderr) = serve(&["--flags", &flags, "--redis-url", &nobody]);
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("redis"), "{stderr}");

    // Redis holds a record this version cannot read.
    let redis = Redis::start();
    redis.command(&["SADD", "{rampart}:environments", "default"]).expect("sadd");
    redis.command(&["HSET", "{rampart}:flags:default", "f", "not json"]).expect("hset");
    let (code, stderr) = serve(&["--flags", &flags, "--redis-url", &redis.url]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("cannot be read"), "{stderr}");

    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let (code, stderr) = serve(&["--flags", &flags, "--data-dir", &data, "--http-addr", &address]);
    assert_eq!(code, Some(71), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
}

#[test]
fn the_exit_codes_are_in_the_help() {
    let output = Command::new(rampart_bin()).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&output.stdout);
    for code in ["64", "65", "69", "70", "71"] {
        assert!(help.lines().any(|line| line.trim_start().starts_with(code)), "exit code {code} in --help:\n{help}");
    }
}
