//! The GitOps round trip against a running server:
//!
//! - `rampart diff FILES… --environment ENV`: what would change if these
//!   flag and ramp files were what the environment serves — flags created,
//!   deleted or changed (in words, as the history shows changes), ramps
//!   added, removed or edited — for a pull-request comment. `FILES` are
//!   taken as the environment's whole set of files; API-owned flags are
//!   not touched by files and are listed only when a file would clash
//!   with one.
//! - `rampart export ENV`: the environment's API-owned flags as a flagd
//!   flag file, to move them into git.
//!
//! Exit codes: 0 done (`diff --exit-code`: 1 when something would change);
//! 1 the server refused; 2 it could not be reached; 64 the files are invalid.

use std::collections::BTreeMap;
use std::process::ExitCode;

use rampart_engine::{FlagSet, Source};
use serde_json::{Value, json};

use crate::admin_client::{AdminClient, Failure, report};
use crate::cli::{DiffArgs, ExportArgs, ServerArgs};
use crate::exit;
use crate::writes::describe;

/// Every flag of `environment`: (summary, definition as served).
fn served_flags(api: &AdminClient, environment: &str) -> Result<BTreeMap<String, (Value, Value)>, Failure> {
    let list = api.get(&format!("/admin/v1/environments/{environment}/flags"))?;
    let mut flags = BTreeMap::new();
    for summary in list["flags"].as_array().into_iter().flatten() {
        let Some(key) = summary["key"].as_str() else { continue };
        let view = api.get(&format!("/admin/v1/environments/{environment}/flags/{}", encode(key)))?;
        flags.insert(key.to_owned(), (summary.clone(), view["definition"].clone()));
    }
    Ok(flags)
}

fn client(server: &ServerArgs) -> Result<AdminClient, Failure> {
    AdminClient::new(&server.url, server.token.as_deref())
}

/// A path segment with everything but unreserved characters escaped.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `rampart export ENV`.
#[allow(clippy::print_stdout)] // the exported file goes to standard output without --output
pub fn export(args: &ExportArgs) -> ExitCode {
    let result = client(&args.server).and_then(|api| served_flags(&api, &args.environment)).and_then(|flags| {
        let exported: serde_json::Map<String, Value> = flags
            .into_iter()
            .filter(|(_, (summary, _))| summary["source"] == "api")
            .map(|(key, (_, definition))| (key, definition))
            .collect();
        let count = exported.len();
        let document = json!({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": exported});
        let text = serde_json::to_string_pretty(&document).unwrap_or_default() + "\n";
        // What is written must load as it is.
        FlagSet::load(&[Source::json("export", &text)])
            .map_err(|errors| Failure(exit::SOFTWARE, format!("the export does not load: {errors}")))?;
        match &args.output {
            Some(path) => path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(path, &text))
                .map_err(|e| Failure(exit::PROBLEMS, format!("cannot write {}: {e}", path.display())))
                .map(|()| eprintln!("wrote {count} API-owned flags of '{}' to {}", args.environment, path.display())),
            None => {
                print!("{text}");
                Ok(())
            }
        }
    });
    report("export", result)
}

/// `rampart diff FILES…`.
#[allow(clippy::print_stdout)] // a command's report
pub fn diff(args: &DiffArgs) -> ExitCode {
    let result = load_files(&args.files, &args.environment).and_then(|(flags, ramps)| {
        let api = client(&args.server)?;
        let served = served_flags(&api, &args.environment)?;
        let server_ramps = api.get("/admin/v1/ramps")?;
        let lines = changes(&args.environment, &flags, &ramps, &served, &server_ramps);
        if lines.is_empty() {
            println!("no changes: the files match what {} serves", code(&args.environment));
            return Ok(false);
        }
        println!("## Changes to {} if these files are deployed\n", code(&args.environment));
        for line in &lines {
            println!("{line}");
        }
        Ok(true)
    });
    match result {
        Ok(true) if args.exit_code => ExitCode::from(exit::PROBLEMS),
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => report("diff", Err(failure)),
    }
}

/// A ramp as the diff compares it.
#[derive(Debug, Clone, PartialEq)]
struct RampShape {
    flag: String,
    steps: Vec<f64>,
    revision: u64,
}

/// The flag files' flags (definitions as written) and the ramp files' ramps.
/// A flag of the files as the server would read it.
struct LocalFlag {
    definition: Value,
    /// Its flag set's metadata merged with its own: what the server shows
    /// for a flag under a ramp (the ramp's overlay carries it).
    merged_metadata: Value,
}

#[allow(clippy::type_complexity)]
fn load_files(
    paths: &[std::path::PathBuf],
    environment: &str,
) -> Result<(BTreeMap<String, LocalFlag>, BTreeMap<String, RampShape>), Failure> {
    let mut texts = Vec::new();
    let mut ramps = BTreeMap::new();
    for path in paths {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| Failure(exit::CONFIG, format!("{name}: cannot read: {e}")))?;
        let refused = |errors: Vec<rampart_engine::LoadError>| {
            Failure(exit::CONFIG, errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        };
        let kind = crate::ramp::kind::kind_of(&text);
        if kind == crate::ramp::kind::FileKind::Release {
            // The release's stage in this environment, as the server reads it.
            if let Some(spec) = crate::ramp::release::stage_for(&name, &text, environment, None).map_err(refused)? {
                let steps = spec.steps.iter().map(|s| f64::from(s.basis_points) / 100.0).collect();
                ramps.insert(spec.name.clone(), RampShape { flag: spec.flag.clone(), steps, revision: spec.revision });
            }
        } else if kind == crate::ramp::kind::FileKind::Ramp {
            let spec = crate::ramp::spec::parse(&name, &text).map_err(refused)?;
            let steps = spec.steps.iter().map(|s| f64::from(s.basis_points) / 100.0).collect();
            ramps.insert(spec.name.clone(), RampShape { flag: spec.flag.clone(), steps, revision: spec.revision });
        } else {
            texts.push((name, text));
        }
    }
    let sources: Vec<Source<'_>> = texts.iter().map(|(name, text)| Source::from_path(name, text)).collect();
    let set = FlagSet::load(&sources).map_err(|errors| Failure(exit::CONFIG, errors.to_string()))?;
    let flags = set
        .iter()
        .map(|flag| {
            let merged = Value::Object(flag.metadata().clone());
            (flag.key().to_owned(), LocalFlag { definition: flag.definition(), merged_metadata: merged })
        })
        .collect();
    Ok((flags, ramps))
}

/// The changes, one line each, in words.
fn changes(
    environment: &str,
    flags: &BTreeMap<String, LocalFlag>,
    ramps: &BTreeMap<String, RampShape>,
    served: &BTreeMap<String, (Value, Value)>,
    server_ramps: &Value,
) -> Vec<String> {
    let mut lines = Vec::new();
    let ramped: BTreeMap<&str, &str> = server_ramps["ramps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["environment"] == environment && r["percent"].as_f64().is_some_and(|p| p > 0.0))
        .filter_map(|r| Some((r["flag"].as_str()?, r["name"].as_str()?)))
        .collect();
    for (key, LocalFlag { definition, merged_metadata }) in flags {
        match served.get(key) {
            None => lines.push(format!("- flag {}: created", code(key))),
            Some((summary, _)) if summary["source"] == "api" => lines.push(format!(
                "- flag {}: **conflict** — the server has an API-owned flag of this key; the files would be \
                 refused until it is deleted (or exported and deleted)",
                code(key)
            )),
            Some((summary, current)) => {
                let mut current = current.clone();
                let mut notes = Vec::new();
                // What the files do not decide: a kill-switch override and a
                // running ramp's overlay stay as they are.
                if summary["overridden"] == true {
                    current["state"] = definition["state"].clone();
                    notes.push("its kill-switch override stays".to_owned());
                }
                if let Some(ramp) = ramped.get(key.as_str())
                    && let Some(fields) = current.as_object_mut()
                {
                    // The ramp's overlay serves its own targeting and the
                    // flag set's metadata merged in: compare like with like,
                    // so the files a server serves diff clean under a ramp.
                    match definition.get("targeting") {
                        Some(targeting) => fields.insert("targeting".into(), targeting.clone()),
                        None => fields.remove("targeting"),
                    };
                    if fields.get("metadata") == Some(merged_metadata) {
                        match definition.get("metadata") {
                            Some(metadata) => fields.insert("metadata".into(), metadata.clone()),
                            None => fields.remove("metadata"),
                        };
                    }
                    notes.push(format!("targeting not compared: ramp {} serves it", code(ramp)));
                }
                let described = describe(Some(&current), Some(definition));
                let note = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
                if !described.is_empty() {
                    lines.push(format!("- flag {}: {}{note}", code(key), described.join("; ")));
                }
            }
        }
    }
    for (key, (summary, _)) in served {
        if summary["source"] == "file" && !flags.contains_key(key) {
            let file = summary["file"].as_str().unwrap_or("a file");
            lines.push(format!("- flag {}: deleted (now from {})", code(key), code(file)));
        }
    }
    let mut served_ramps = BTreeMap::new();
    for ramp in server_ramps["ramps"].as_array().into_iter().flatten().filter(|r| r["environment"] == environment) {
        let Some(name) = ramp["name"].as_str() else { continue };
        let steps = ramp["steps"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        let shape = RampShape {
            flag: ramp["flag"].as_str().unwrap_or_default().to_owned(),
            steps,
            revision: ramp["revision"].as_u64().unwrap_or(0),
        };
        served_ramps.insert(name.to_owned(), (shape, ramp["state"].as_str().unwrap_or("?").to_owned()));
    }
    let ladder = |steps: &[f64]| steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ");
    for (name, shape) in ramps {
        match served_ramps.get(name) {
            None => {
                lines.push(format!("- ramp {}: added on {}, {}", code(name), code(&shape.flag), ladder(&shape.steps)))
            }
            Some((current, state)) => {
                let mut what = Vec::new();
                if current.flag != shape.flag {
                    what.push(format!("flag {} → {}", code(&current.flag), code(&shape.flag)));
                }
                if current.steps != shape.steps {
                    what.push(format!("steps {} → {}", ladder(&current.steps), ladder(&shape.steps)));
                }
                if current.revision != shape.revision {
                    what.push(format!(
                        "revision {} → {} (a new run starts; it is {state} now)",
                        current.revision, shape.revision
                    ));
                }
                if !what.is_empty() {
                    lines.push(format!("- ramp {}: {}", code(name), what.join("; ")));
                }
            }
        }
    }
    for (name, (current, state)) in &served_ramps {
        if !ramps.contains_key(name) {
            lines.push(format!(
                "- ramp {} on {}: removed — it stops and its flag keeps its current exposure (it is {})",
                code(name),
                code(&current.flag),
                code(state)
            ));
        }
    }
    lines
}

/// A name as a Markdown code span that cannot end early or spill into the
/// rest of a pull-request comment: control characters (line breaks
/// included) are shown escaped, and the fence is longer than any run of
/// backticks inside.
fn code(text: &str) -> String {
    let shown: String = text
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    let longest = shown.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // A space keeps a leading or trailing backtick apart from the fence.
    let pad = if shown.starts_with('`') || shown.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{shown}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::code;

    #[test]
    fn names_stay_inside_their_code_span() {
        assert_eq!(code("checkout"), "`checkout`");
        let hostile = code("a\n\nNo other changes.\n\n<!--");
        assert!(!hostile.contains('\n'), "{hostile}");
        assert_eq!(hostile, "`a\\n\\nNo other changes.\\n\\n<!--`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }
}
