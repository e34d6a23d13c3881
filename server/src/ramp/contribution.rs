//! What one source may add to a ramp's evidence, relative to the evidence
//! the step already has.
//!
//! A ramp decides on counts, so whoever can add counts can steer it. The
//! bounds here are per ramped arm (a flag's treatment or control variant in
//! the current step) and per source:
//!
//! - **Reporter keys and relays** (credentials kept on servers) may report
//!   counts, but one source may add to an arm in one minute
//!   (`limits.outcomeSourceWindowSeconds`) at most
//!   `max(floor, evidence / 50, 3 × its busiest earlier minute)`. The floor
//!   is half the step's `minSamples` for the treatment (the control's
//!   scaled by its share of traffic), so no single request — nor a minute
//!   of them from one key — can bring the evidence a young step needs to
//!   decide; `evidence / 50` lets a mature step take what it routinely
//!   takes; the last term lets honest traffic carry on across steps and
//!   grow by at most three times a minute. A refused report says how much
//!   is allowed now; the Rust SDK and relays send that much and keep the
//!   rest for later, so honest traffic is delayed at a step's start, never
//!   lost.
//! - **SDK keys** (public; only where the environment opted in with
//!   `sdkKeyOutcomes`) report one outcome per entry, and one client address
//!   may add to an arm in a minute at most 5 % of the step's `minSamples`
//!   (at least 5, at most `outcomesPerClientPerMinute`) or 1 % of the
//!   arm's evidence, whichever is more: a single client never holds more
//!   than a sliver of what decides.
//! - **One targeting key** may account for at most
//!   `outcomesPerContextPerMinute` outcomes of a flag a minute, whoever
//!   reports it: one user cannot be thousands of users.
//!
//! Client addresses and targeting keys are counted in fixed-size sketches
//! (count-min, keyed with a per-process random hash, over a sliding
//! minute): memory does not grow with the number of clients, and an
//! estimate can only err high, so a bound is never exceeded.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::KeyDigest;

/// Which side of the comparison a variant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Treatment,
    Control,
}

/// A ramped arm as the controller last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    pub role: Role,
    /// The step's exposure of the treatment.
    pub basis_points: u32,
    /// The step's `minSamples` (per arm).
    pub min_samples: u64,
    /// The arm's exposures in the step, as last observed.
    pub evidence: u64,
}

const FULL: u64 = rampart_engine::ramp::FULL as u64;

impl Arm {
    /// An arm whose step is not known here (on a relay, which runs no
    /// ramps): only the absolute floors apply.
    pub fn unknown() -> Arm {
        Arm { role: Role::Treatment, basis_points: 0, min_samples: u64::MAX, evidence: 0 }
    }

    /// What one source may add in one second however young the step:
    /// half of `minSamples` for the treatment, scaled for the control by
    /// how much more traffic it gets.
    pub fn floor(&self) -> u64 {
        let half = (self.min_samples / 2).max(1);
        let treatment = u64::from(self.basis_points).clamp(1, FULL - 1);
        let (mine, other) = match self.role {
            Role::Treatment => (treatment, FULL - treatment),
            Role::Control => (FULL - treatment, treatment),
        };
        half.saturating_mul(mine.div_ceil(other).max(1))
    }
}

/// Who a report comes from, for the per-source bounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Anyone, in an open environment (no credentials configured at all:
    /// local development, on loopback unless configured otherwise). There
    /// is nobody to tell apart, so no source bound applies; start-up warns
    /// when such a server listens beyond loopback.
    Open,
    /// A reporter key.
    Key(KeyDigest),
    /// A relay forwarding its region's outcomes, by name.
    Relay(String),
    /// A client reporting with a public SDK key, by address.
    Client(IpAddr),
}

/// A report's contribution to one arm that is over its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Excess {
    /// A reporter or relay: more in one minute than its bound.
    Source { allowed: u64 },
    /// A public client: more in a minute than its bound.
    Client { allowed: u64 },
    /// One targeting key: more of one flag in a minute than its bound.
    Context { allowed: u64 },
}

/// Minutes of its own a source's history keeps (the latest).
const HISTORY_MINUTES: usize = 10;
/// A source may add this many times its busiest earlier minute.
const GROWTH: u64 = 3;
/// What a mature step takes from one source in a minute, as a part of
/// the arm's evidence (1/50).
const STEP_SHARE: u64 = 50;
/// What a public client may add in a minute, as a part of the arm's
/// evidence (1/100).
const CLIENT_SHARE: u64 = 100;
/// …and in a young step, as a part of its `minSamples` (1/20), but never
/// less than a few outcomes (a browser reports a handful at once).
const YOUNG_CLIENT_SHARE: u64 = 20;
const YOUNG_CLIENT_FLOOR: u64 = 5;

/// One source's accepted outcomes for one arm, in the latest minutes it
/// reported in (a relay's may be old ones it is catching up on).
#[derive(Debug, Default, Clone)]
struct Minutes {
    minutes: VecDeque<(u64, u64)>,
}

impl Minutes {
    fn count(&self, minute: u64) -> u64 {
        self.minutes.iter().filter(|(m, _)| *m == minute).map(|(_, n)| *n).sum()
    }

    /// The busiest minute other than `minute`.
    fn busiest_besides(&self, minute: u64) -> u64 {
        self.minutes.iter().filter(|(m, _)| *m != minute).map(|(_, n)| *n).max().unwrap_or(0)
    }

    fn latest(&self) -> u64 {
        self.minutes.iter().map(|(m, _)| *m).max().unwrap_or(0)
    }

    fn add(&mut self, minute: u64, count: u64) {
        match self.minutes.iter_mut().find(|(m, _)| *m == minute) {
            Some((_, total)) => *total = total.saturating_add(count),
            None => {
                self.minutes.push_back((minute, count));
                if self.minutes.len() > HISTORY_MINUTES {
                    self.minutes.pop_front();
                }
            }
        }
    }
}

/// A count-min sketch over a sliding minute: two one-minute tables, the
/// previous one weighed by how much of it the last minute still covers.
#[derive(Debug)]
struct Sketch {
    hasher: RandomState,
    minute: u64,
    current: Vec<u32>,
    previous: Vec<u32>,
}

const SKETCH_ROWS: usize = 4;
const SKETCH_WIDTH: usize = 1 << 14;

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            hasher: RandomState::new(),
            minute: 0,
            current: vec![0; SKETCH_ROWS * SKETCH_WIDTH],
            previous: vec![0; SKETCH_ROWS * SKETCH_WIDTH],
        }
    }

    fn cells(&self, key: &impl Hash) -> [usize; SKETCH_ROWS] {
        let hash = self.hasher.hash_one(key);
        let (h1, h2) = (hash as u32 as usize, ((hash >> 32) as usize) | 1);
        std::array::from_fn(|row| row * SKETCH_WIDTH + (h1.wrapping_add(row.wrapping_mul(h2)) % SKETCH_WIDTH))
    }

    fn turn(&mut self, now_ms: u64) {
        let minute = now_ms / 60_000;
        if minute == self.minute {
            return;
        }
        if minute == self.minute + 1 {
            std::mem::swap(&mut self.current, &mut self.previous);
        } else {
            self.previous.fill(0);
        }
        self.current.fill(0);
        self.minute = minute;
    }

    /// The estimated count over the last minute (never below the truth).
    fn estimate(&self, cells: &[usize; SKETCH_ROWS], now_ms: u64) -> u64 {
        let left_of_previous = 60_000 - now_ms % 60_000;
        let current = cells.iter().map(|&cell| self.current[cell]).min().unwrap_or(0);
        let previous = cells.iter().map(|&cell| self.previous[cell]).min().unwrap_or(0);
        // The previous minute weighed by how much of it the last minute
        // still covers (an estimate: the part of it that is gone is not known).
        u64::from(current) + u64::from(previous) * left_of_previous / 60_000
    }

    fn add(&mut self, cells: &[usize; SKETCH_ROWS], count: u64) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        for &cell in cells {
            self.current[cell] = self.current[cell].saturating_add(count);
        }
    }
}

/// The contribution bounds shared by every outcome endpoint.
#[derive(Debug)]
pub struct Contributions {
    /// The window a reporter's or relay's bound is counted over (a minute
    /// unless configured).
    window_ms: u64,
    per_client_per_minute: u64,
    per_context_per_minute: u64,
    /// (environment, flag, variant, source) → its minutes; reporters and
    /// relays are configured credentials and arms are active ramps, so
    /// this is bounded; sources silent for ten minutes are dropped.
    sources: Mutex<HashMap<(String, String, String, Source), Minutes>>,
    clients: Mutex<Sketch>,
    contexts: Mutex<Sketch>,
}

/// One arm's share of a report, checked together.
#[derive(Debug, Clone)]
pub struct Share<'a> {
    pub flag: &'a str,
    pub variant: &'a str,
    pub arm: Arm,
    pub count: u64,
}

impl Contributions {
    pub fn new(limits: &crate::limits::Limits) -> Contributions {
        Contributions {
            window_ms: limits.outcome_source_window.as_millis().max(1) as u64,
            per_client_per_minute: limits.outcomes_per_client_per_minute,
            per_context_per_minute: limits.outcomes_per_context_per_minute,
            sources: Mutex::default(),
            clients: Mutex::new(Sketch::new()),
            contexts: Mutex::new(Sketch::new()),
        }
    }

    /// Checks a report's shares of each arm from `source` (`groups`: the
    /// seconds of its own the source sent them in, with each arm's share;
    /// `now` in unix ms) and, when all fit, records them; nothing is
    /// recorded when one does not. Errs with the first share over its
    /// bound: (flag, variant, excess).
    pub fn admit(
        &self,
        environment: &str,
        source: &Source,
        groups: &[(u64, Vec<Share<'_>>)],
        now: u64,
    ) -> Result<(), (String, Option<String>, Excess)> {
        match source {
            Source::Client(address) => {
                let shares: Vec<&Share<'_>> = groups.iter().flat_map(|(_, shares)| shares).collect();
                self.admit_client(environment, *address, &shares, now)
            }
            Source::Key(_) | Source::Relay(_) => self.admit_source(environment, source, groups, now / self.window_ms),
            Source::Open => Ok(()),
        }
    }

    fn admit_source(
        &self,
        environment: &str,
        source: &Source,
        groups: &[(u64, Vec<Share<'_>>)],
        now_minute: u64,
    ) -> Result<(), (String, Option<String>, Excess)> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let key = |share: &Share<'_>| {
            (environment.to_owned(), share.flag.to_owned(), share.variant.to_owned(), source.clone())
        };
        // Growth is measured against what the source sent before this
        // request.
        let mut scratch: HashMap<(String, String, String, Source), (u64, Minutes)> = HashMap::new();
        // Weighed by the minute they arrive in, whatever seconds a relay
        // names: minutes made up inside one batch cannot add up.
        let minute = now_minute;
        for (_, shares) in groups {
            for share in shares {
                let (busiest, minutes) = scratch.entry(key(share)).or_insert_with(|| {
                    let before = sources.get(&key(share)).cloned().unwrap_or_default();
                    (before.busiest_besides(minute), before)
                });
                let current = minutes.count(minute);
                let allowed =
                    share.arm.floor().max(share.arm.evidence / STEP_SHARE).max(busiest.saturating_mul(GROWTH));
                if current.saturating_add(share.count) > allowed {
                    let excess = Excess::Source { allowed: allowed.saturating_sub(current) };
                    return Err((share.flag.to_owned(), Some(share.variant.to_owned()), excess));
                }
                minutes.add(minute, share.count);
            }
        }
        for (key, (_, minutes)) in scratch {
            sources.insert(key, minutes);
        }
        if sources.len() > 4096 {
            // Sources silent for ten minutes start again from their floor.
            sources.retain(|_, minutes| minutes.latest() + 10 > now_minute);
        }
        Ok(())
    }

    fn admit_client(
        &self,
        environment: &str,
        address: IpAddr,
        shares: &[&Share<'_>],
        now: u64,
    ) -> Result<(), (String, Option<String>, Excess)> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.turn(now);
        let mut summed: Vec<(&Share<'_>, u64, [usize; SKETCH_ROWS])> = Vec::new();
        for share in shares {
            match summed.iter_mut().find(|(s, _, _)| s.flag == share.flag && s.variant == share.variant) {
                Some((_, count, _)) => *count = count.saturating_add(share.count),
                None => {
                    let cells = clients.cells(&(environment, share.flag, share.variant, address));
                    summed.push((share, share.count, cells));
                }
            }
        }
        for (share, count, cells) in &summed {
            let young = (share.arm.min_samples / YOUNG_CLIENT_SHARE)
                .clamp(YOUNG_CLIENT_FLOOR, self.per_client_per_minute.max(YOUNG_CLIENT_FLOOR));
            let allowed = young.max(share.arm.evidence / CLIENT_SHARE);
            let used = clients.estimate(cells, now);
            if used.saturating_add(*count) > allowed {
                let excess = Excess::Client { allowed: allowed.saturating_sub(used) };
                return Err((share.flag.to_owned(), Some(share.variant.to_owned()), excess));
            }
        }
        for (_, count, cells) in &summed {
            clients.add(cells, *count);
        }
        Ok(())
    }

    /// Checks what each targeting key accounts for (`contexts`: (flag,
    /// context id) → outcomes in this report) and records it when all fit.
    pub fn admit_contexts(
        &self,
        environment: &str,
        contexts: &HashMap<(&str, u64), u64>,
        now: u64,
    ) -> Result<(), (String, Option<String>, Excess)> {
        if contexts.is_empty() {
            return Ok(());
        }
        let mut sketch = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        sketch.turn(now);
        let cells: Vec<_> = contexts
            .iter()
            .map(|((flag, context), count)| (*flag, sketch.cells(&(environment, flag, context)), *count))
            .collect();
        for (flag, cells, count) in &cells {
            let used = sketch.estimate(cells, now);
            if used.saturating_add(*count) > self.per_context_per_minute {
                let allowed = self.per_context_per_minute.saturating_sub(used);
                return Err(((*flag).to_owned(), None, Excess::Context { allowed }));
            }
        }
        for (_, cells, count) in &cells {
            sketch.add(cells, *count);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(role: Role, basis_points: u32, evidence: u64) -> Arm {
        Arm { role, basis_points, min_samples: 1000, evidence }
    }

    fn contributions() -> Contributions {
        Contributions::new(&crate::limits::Limits::default())
    }

    fn share(variant: &str, arm: Arm, count: u64) -> Share<'_> {
        Share { flag: "f", variant, arm, count }
    }

    /// A direct report: one part, in the second it arrives.
    fn at(
        c: &Contributions,
        source: &Source,
        shares: &[Share<'_>],
        now: u64,
    ) -> Result<(), (String, Option<String>, Excess)> {
        c.admit("e", source, &[(now / 1000, shares.to_vec())], now)
    }

    #[test]
    fn the_floor_is_half_the_minimum_scaled_by_the_arms_traffic() {
        assert_eq!(arm(Role::Treatment, 500, 0).floor(), 500);
        assert_eq!(arm(Role::Control, 500, 0).floor(), 500 * 19);
        assert_eq!(arm(Role::Treatment, 5000, 0).floor(), 500);
        assert_eq!(arm(Role::Control, 5000, 0).floor(), 500);
        assert_eq!(arm(Role::Treatment, 7500, 0).floor(), 1500);
        assert_eq!(arm(Role::Treatment, 10_000, 0).floor(), 500 * 9999);
    }

    #[test]
    fn a_young_step_takes_less_than_it_needs_to_decide_from_one_source() {
        let c = contributions();
        let key = Source::Key(KeyDigest::of("reporter"));
        let treatment = arm(Role::Treatment, 500, 0);
        // The forged report of the issue: 50,000 errors at once.
        let refused = at(&c, &key, &[share("on", treatment, 50_000)], 1_000).unwrap_err();
        assert_eq!(refused.2, Excess::Source { allowed: 500 });
        // Within the floor, then nothing more in the same minute.
        at(&c, &key, &[share("on", treatment, 400)], 1_000).unwrap();
        let refused = at(&c, &key, &[share("on", treatment, 200)], 59_000).unwrap_err();
        assert_eq!(refused.2, Excess::Source { allowed: 100 });
        // Another reporter has its own bound.
        at(&c, &Source::Key(KeyDigest::of("other")), &[share("on", treatment, 500)], 1_500).unwrap();
    }

    #[test]
    fn honest_traffic_grows_threefold_a_minute_and_a_mature_step_takes_a_fiftieth() {
        let c = contributions();
        let key = Source::Relay("eu".into());
        let treatment = arm(Role::Treatment, 500, 0);
        at(&c, &key, &[share("on", treatment, 500)], 1_000).unwrap();
        at(&c, &key, &[share("on", treatment, 1500)], 61_000).unwrap();
        assert!(at(&c, &key, &[share("on", treatment, 4501)], 121_000).is_err());
        at(&c, &key, &[share("on", treatment, 4500)], 121_000).unwrap();
        let mature = arm(Role::Treatment, 500, 1_000_000);
        at(&c, &key, &[share("on", mature, 20_000)], 600_000).unwrap();
        assert!(at(&c, &key, &[share("on", mature, 1)], 600_500).is_err());
    }

    #[test]
    fn minutes_made_up_inside_one_forwarded_batch_add_up() {
        let c = contributions();
        let relay = Source::Relay("leaked".into());
        let young = arm(Role::Treatment, 500, 0);
        // Fifty minutes of a relay's own, each at the floor, in one call:
        // weighed together, by the minute they arrive in.
        let groups: Vec<(u64, Vec<Share<'_>>)> =
            (0..50).map(|minute| (minute * 60, vec![share("on", young, 500)])).collect();
        assert_eq!(c.admit("e", &relay, &groups, 3_000_000).unwrap_err().2, Excess::Source { allowed: 0 });
        assert!(c.admit("e", &relay, &groups[..1], 3_000_000).is_ok(), "nothing of the refused call was kept");
    }

    #[test]
    fn one_arm_over_its_bound_refuses_the_whole_report() {
        let c = contributions();
        let key = Source::Key(KeyDigest::of("reporter"));
        let shares = [share("off", arm(Role::Control, 500, 0), 100), share("on", arm(Role::Treatment, 500, 0), 501)];
        assert!(at(&c, &key, &shares, 1_000).is_err());
        // Nothing was recorded: the control's full floor is still there.
        at(&c, &key, &[share("off", arm(Role::Control, 500, 0), 500 * 19)], 1_000).unwrap();
    }

    #[test]
    fn a_public_client_gets_a_sliver_per_minute() {
        let c = contributions();
        let client = Source::Client("192.0.2.7".parse().unwrap());
        let young = arm(Role::Treatment, 500, 0);
        // 5 % of minSamples (1,000) a minute at first.
        for _ in 0..50 {
            at(&c, &client, &[share("on", young, 1)], 10_000).unwrap();
        }
        assert_eq!(at(&c, &client, &[share("on", young, 1)], 20_000).unwrap_err().2, Excess::Client { allowed: 0 });
        let other = Source::Client("192.0.2.8".parse().unwrap());
        at(&c, &other, &[share("on", young, 1)], 20_000).unwrap();
        // Two minutes later the client may report again.
        at(&c, &client, &[share("on", young, 1)], 130_000).unwrap();
        // A step with a million outcomes takes 10,000 from one client a minute.
        let mature = arm(Role::Treatment, 500, 1_000_000);
        assert!(at(&c, &client, &[share("on", mature, 9_000)], 130_000).is_ok());
        assert!(at(&c, &client, &[share("on", mature, 1_001)], 130_000).is_err());
    }

    #[test]
    fn one_targeting_key_cannot_be_thousands_of_users() {
        let c = contributions();
        let many = HashMap::from([(("f", 42), 50_000)]);
        assert_eq!(c.admit_contexts("e", &many, 1_000), Err(("f".into(), None, Excess::Context { allowed: 60 })));
        let one = HashMap::from([(("f", 42), 1)]);
        for _ in 0..60 {
            c.admit_contexts("e", &one, 1_000).unwrap();
        }
        assert!(c.admit_contexts("e", &one, 1_000).is_err());
        assert!(c.admit_contexts("e", &HashMap::from([(("f", 43), 1)]), 1_000).is_ok());
        assert!(c.admit_contexts("e", &HashMap::from([(("g", 42), 1)]), 1_000).is_ok());
    }
}
