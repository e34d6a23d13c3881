//! The admin API from the command line: the one client `rampart ramp …`,
//! `rampart release …`, `rampart diff` and `rampart export` call a running
//! server with, and how their failures become exit codes ([`crate::exit`]):
//! 1 the server refused, 2 it could not be reached.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::exit;

/// A failed step of a command: its exit code and what to print.
#[derive(Debug)]
pub(crate) struct Failure(pub u8, pub String);

/// A running server's admin API.
pub(crate) struct AdminClient {
    client: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    pub(crate) fn new(url: &str, token: Option<&str>) -> Result<AdminClient, Failure> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure(exit::UNREACHABLE, e.to_string()))?;
        Ok(AdminClient { client, base: url.trim_end_matches('/').to_owned(), token: token.map(str::to_owned) })
    }

    /// `GET {url}{path}`: the JSON answer of a 2xx.
    pub(crate) fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    /// `POST {url}{path}` with a JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Value, Failure> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response =
            request.send().map_err(|e| Failure(exit::UNREACHABLE, format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            Err(Failure(exit::PROBLEMS, format!("{status}: {message}")))
        }
    }
}

/// The exit code of a command's result, its failure printed.
pub(crate) fn report(command: &str, result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("rampart {command}: {message}");
            ExitCode::from(code)
        }
    }
}
