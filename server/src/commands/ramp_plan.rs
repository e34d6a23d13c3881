//! `rampart ramp plan FILE`: what a ramp file would do at a given traffic,
//! as a table (the model is [`crate::ramp::plan`]).

use crate::ramp::plan::{plan, words};

/// `rampart ramp plan FILE --traffic … --baseline-error …`: the plan as a
/// table. Exit 0, 1 when a step would not advance, 64 for an invalid file.
#[allow(clippy::print_stdout)] // a command's report
pub fn run(args: &crate::cli::RampPlanArgs) -> std::process::ExitCode {
    let name = args.file.display().to_string();
    let spec =
        match std::fs::read_to_string(&args.file).map_err(|e| format!("{name}: cannot read: {e}")).and_then(|text| {
            crate::ramp::spec::parse(&name, &text)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        }) {
            Ok(spec) => spec,
            Err(message) => {
                eprintln!("rampart ramp plan: {message}");
                return std::process::ExitCode::from(crate::exit::CONFIG);
            }
        };
    let planned = plan(&spec, args.traffic, args.baseline_error);
    println!(
        "{}: {} steps at {:.0} evaluations/min, baseline error rate {}%, guard interval {}",
        spec.name,
        planned.steps.len(),
        args.traffic * 60.0,
        args.baseline_error * 100.0,
        words(spec.interval)
    );
    println!("{:<5} {:>8} {:>10} {:>16} {:>22}", "step", "percent", "hold", "advances after", "detects a regression");
    for (index, step) in planned.steps.iter().enumerate() {
        let after = step.advances_after.map_or_else(|| "never".to_owned(), words);
        let detects = step.detectable_ratio.map_or_else(
            || "—".to_owned(),
            |r| format!("×{r:.2} ({:.3}%)", (r * args.baseline_error * 100.0).min(100.0)),
        );
        println!("{:<5} {:>7}% {:>10} {:>16} {:>22}", index + 1, step.percent, words(step.hold), after, detects);
        for warning in &step.warnings {
            println!("      ! {warning}");
        }
    }
    match planned.total {
        Some(total) => {
            println!("total: about {} to 100% if the treatment is as good as the control", words(total));
            std::process::ExitCode::SUCCESS
        }
        None => {
            println!("total: the ramp would not complete at this traffic");
            std::process::ExitCode::from(crate::exit::PROBLEMS)
        }
    }
}
