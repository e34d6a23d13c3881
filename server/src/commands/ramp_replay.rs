//! `rampart ramp replay FILE --from … --to …`: the controller's decisions
//! over past Prometheus data (docs/ramps.md, Spinnaker's retrospective
//! mode), with a simulated clock: the same `decide` and the same bucket
//! reading as a live ramp, one tick per interval, nothing changed anywhere.

use std::process::ExitCode;

use crate::cli::ReplayArgs;
use crate::model::{HoldReason, Status};
use crate::ramp::decide;
use crate::ramp::evidence::Observation;
use crate::ramp::prometheus::{Cache, Names, PrometheusSource};
use crate::ramp::spec::{self, MetricSource};

#[allow(clippy::print_stdout)] // a command's report
pub fn run(args: &ReplayArgs) -> ExitCode {
    match replay(args) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rampart ramp replay: {message}");
            ExitCode::from(1)
        }
    }
}

fn replay(args: &ReplayArgs) -> Result<Vec<String>, String> {
    let name = args.file.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {name}: {e}"))?;
    let spec = spec::parse(&name, &text)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let MetricSource::Prometheus(guard) = &spec.guard.source else {
        return Err("replay needs a ramp guarded by Prometheus (guard.prometheus): outcome reports are not kept".into());
    };
    let control = match &spec.control {
        Some(control) => control.clone(),
        None => {
            let loaded = crate::loader::load(&args.flags, &crate::limits::Limits::default())
                .map_err(|e| format!("{e} (pass --flags to resolve the control)"))?;
            let flag = loaded.flags.get(&spec.flag).ok_or_else(|| format!("flag '{}' is not in --flags", spec.flag))?;
            flag.default_variant().ok_or("the flag has no default variant: name spec.control")?.to_owned()
        }
    };
    let from = crate::time::parse(&args.from).ok_or("--from is not an RFC 3339 time")?;
    let to = crate::time::parse(&args.to).ok_or("--to is not an RFC 3339 time")?;
    let source = PrometheusSource::new(args.prometheus_url.clone()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let interval = spec.interval.as_millis() as u64;
    let cache = std::sync::Mutex::new(Cache::default());
    let mut run = spec.new_run(&control, "replay".into(), from);
    let mut lines = Vec::new();
    let mut now = from;
    while now <= to && !run.status.is_terminal() {
        let names = Names {
            flag: &spec.flag,
            environment: &args.environment,
            ramp: &spec.name,
            treatment: &run.treatment,
            control: &run.control,
        };
        let mut observation = Observation { flag_enabled: true, ..Default::default() };
        let result = runtime.block_on(async {
            if matches!(run.status, Status::Pending { .. }) {
                source.ready(guard, now).await.map(|()| Vec::new())
            } else {
                source.buckets(guard, names, &cache, (&run.run_id, run.step_started_at), interval, now).await
            }
        });
        match result {
            Ok(buckets) => observation.buckets = buckets,
            Err(error) if matches!(run.status, Status::Pending { .. }) => return Err(error.to_string()),
            Err(_) => observation.missing = Some(HoldReason::MetricsUnavailable),
        }
        for metric in &spec.metrics {
            let step = (run.run_id.as_str(), run.step_started_at);
            let values = runtime.block_on(source.metric_values(guard, metric, names, step, interval, now)).ok();
            observation.metrics.push((metric.name.clone(), values));
        }
        let decision = decide::decide(&run, &spec, &observation, now, None);
        for event in &decision.events {
            let evidence = &decision.evidence;
            lines.push(if args.json {
                serde_json::json!({
                    "at": crate::time::rfc3339(now),
                    "event": event.name(),
                    "reason": event.reason,
                    "state": decision.run.status.name(),
                    "percent": decision.run.percent(),
                    "treatment": evidence.treatment,
                    "control": evidence.control,
                    "lambda": evidence.lambda,
                })
                .to_string()
            } else {
                format!(
                    "{}  {:<18} {:<22} {:>6}%  treatment {}/{}  control {}/{}  Λ {}",
                    crate::time::rfc3339(now),
                    event.name(),
                    event.reason.clone().unwrap_or_default(),
                    decision.run.percent(),
                    evidence.treatment.errors,
                    evidence.treatment.exposures,
                    evidence.control.errors,
                    evidence.control.exposures,
                    evidence.lambda.map_or("-".into(), |l| format!("{l:.2}")),
                )
            });
        }
        run = decision.run;
        now += interval;
    }
    Ok(lines)
}
