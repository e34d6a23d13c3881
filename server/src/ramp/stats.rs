//! The statistics behind ramp decisions (docs/ramps.md), exact at any count.
//!
//! - [`clopper_pearson`]: exact one-sided bounds of a binomial proportion,
//!   from the regularized incomplete beta function.
//! - [`MixtureSprt`]: the always-valid relative guard. Conditional on the
//!   number of errors `k = e_t + e_c` in a bucket, the treatment's share is
//!   Binomial(k, p(r)) with `p(r) = r·n_t / (r·n_t + n_c)`, `r` the rate
//!   ratio. The likelihood ratio of "r spread over (r0, r_max]" against
//!   `r0 = 1 + tolerance`, averaged over a log-spaced grid, is a
//!   non-negative martingale under the null, so by Ville's inequality it
//!   exceeds `1/α` with probability at most α however often it is looked at.

use crate::model::{Arm, Pair};

/// Points of the mixture grid over `(r0, r_max]`.
const GRID: usize = 100;
/// The largest rate ratio the mixture puts weight on, unless `r0` is close.
const R_MAX: f64 = 10.0;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`.
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The continued fraction converges fast on this side of the mean.
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta, by the modified Lentz method.
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPSILON: f64 = 1e-15;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut result = d;
    let iterations = 200 + (a.max(b).sqrt() as usize) * 10;
    for m in 1..=iterations {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        result *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        result *= step;
        if (step - 1.0).abs() < EPSILON {
            break;
        }
    }
    result
}

/// The `q` quantile of Beta(a, b), by bisection on the CDF (monotone).
fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    let (mut low, mut high) = (0.0_f64, 1.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if incomplete_beta(a, b, mid) < q {
            low = mid;
        } else {
            high = mid;
        }
        if high - low < 1e-13 {
            break;
        }
    }
    0.5 * (low + high)
}

/// Exact one-sided bounds of a binomial proportion at `confidence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// `P(p < lower) ≤ 1 − confidence`.
    pub lower: f64,
    /// `P(p > upper) ≤ 1 − confidence`.
    pub upper: f64,
}

/// Clopper–Pearson one-sided bounds for `successes` out of `trials`. With
/// no trials nothing is known: `[0, 1]`.
pub fn clopper_pearson(successes: u64, trials: u64, confidence: f64) -> Bounds {
    if trials == 0 {
        return Bounds { lower: 0.0, upper: 1.0 };
    }
    let (x, n) = (successes.min(trials) as f64, trials as f64);
    let alpha = 1.0 - confidence;
    let lower = if x == 0.0 { 0.0 } else { beta_quantile(alpha, x, n - x + 1.0) };
    let upper = if x == n { 1.0 } else { beta_quantile(1.0 - alpha, x + 1.0, n - x) };
    Bounds { lower, upper }
}

/// The mixture SPRT of the rate ratio, over a sequence of buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureSprt {
    /// `r0 = 1 + tolerance`.
    pub r0: f64,
    /// The mixture likelihood ratio Λ; roll back when `≥ 1/α`.
    pub lambda: f64,
}

impl MixtureSprt {
    /// Λ over `buckets`.
    pub fn compute(tolerance: f64, buckets: &[Pair]) -> MixtureSprt {
        let mut sums = SprtSums::new(tolerance);
        sums.add(buckets);
        sums.result()
    }
}

/// The mixture's log-likelihood ratio at every grid point, summed over the
/// buckets added so far. Each bucket adds its own term (the likelihood
/// factorises over buckets), so a controller keeps the sums of a step's
/// closed buckets between ticks and adds only the new ones: a tick's cost
/// grows with the buckets that are new, not with the age of the step.
#[derive(Debug, Clone, PartialEq)]
pub struct SprtSums {
    tolerance: f64,
    r0: f64,
    /// `ln(r_max / r0) / GRID`: the grid's log spacing.
    step: f64,
    log_ratios: [f64; GRID],
    /// Buckets added.
    buckets: usize,
}

impl SprtSums {
    pub fn new(tolerance: f64) -> SprtSums {
        let tolerance = tolerance.max(0.0);
        let r0 = 1.0 + tolerance;
        let r_max = if r0 * 2.0 > R_MAX { r0 * R_MAX } else { R_MAX };
        SprtSums { tolerance, r0, step: (r_max / r0).ln() / GRID as f64, log_ratios: [0.0; GRID], buckets: 0 }
    }

    /// Whether these sums were made for `tolerance`.
    pub fn is_for(&self, tolerance: f64) -> bool {
        self.tolerance == tolerance.max(0.0)
    }

    /// How many buckets have been added.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// Adds `buckets`' terms. Buckets with the same split contribute
    /// through their summed errors, which keeps uniform traffic cheap.
    pub fn add(&mut self, buckets: &[Pair]) {
        self.buckets += buckets.len();
        let mut groups: Vec<(u64, u64, u64, u64)> = buckets
            .iter()
            .filter(|b| b.treatment.exposures > 0 && b.control.exposures > 0)
            .filter(|b| b.treatment.errors + b.control.errors > 0)
            .map(|b| (b.treatment.exposures, b.control.exposures, b.treatment.errors, b.control.errors))
            .collect();
        groups.sort_unstable();
        let mut merged: Vec<(u64, u64, u64, u64)> = Vec::with_capacity(groups.len());
        for group in groups {
            match merged.last_mut() {
                Some(last) if last.0 == group.0 && last.1 == group.1 => {
                    last.2 += group.2;
                    last.3 += group.3;
                }
                _ => merged.push(group),
            }
        }
        let r0 = self.r0;
        for (n_t, n_c, e_t, e_c) in merged {
            let (n_t, n_c, e_t, e_c) = (n_t as f64, n_c as f64, e_t as f64, e_c as f64);
            let p0 = r0 * n_t / (r0 * n_t + n_c);
            let (ln_p0, ln_q0) = (p0.ln(), (1.0 - p0).ln());
            for (j, log_ratio) in self.log_ratios.iter_mut().enumerate() {
                let r = r0 * (self.step * (j + 1) as f64).exp();
                let p = r * n_t / (r * n_t + n_c);
                *log_ratio += e_t * (p.ln() - ln_p0) + e_c * ((1.0 - p).ln() - ln_q0);
            }
        }
    }

    /// Λ over the buckets added: the mean of the grid's likelihood ratios.
    pub fn result(&self) -> MixtureSprt {
        if self.log_ratios.iter().all(|l| *l == 0.0) {
            return MixtureSprt { r0: self.r0, lambda: 1.0 };
        }
        // Mean of exponentials, shifted by the maximum to stay finite.
        let max = self.log_ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = self.log_ratios.iter().map(|l| (l - max).exp()).sum::<f64>() / GRID as f64;
        let log_lambda = max + mean.ln();
        MixtureSprt { r0: self.r0, lambda: if log_lambda > 700.0 { f64::MAX } else { log_lambda.exp() } }
    }
}

/// `P(X ≥ k)` for `X ~ Binomial(n, 1/2)`: the one-sided sign test.
pub fn sign_test(n: u64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    incomplete_beta(k as f64, (n - k + 1) as f64, 0.5)
}

/// Upper bound of the rate ratio r = λ_t/λ_c at `confidence`, from the
/// exact bound on the treatment's share of the errors, mapped back through
/// `p = r·n_t / (r·n_t + n_c)` with the step's total exposures. `None`
/// without errors (nothing bounds the ratio) or without exposures.
pub fn ratio_upper(treatment: Arm, control: Arm, confidence: f64) -> Option<f64> {
    let k = treatment.errors + control.errors;
    if k == 0 || treatment.exposures == 0 || control.exposures == 0 {
        return None;
    }
    let p = clopper_pearson(treatment.errors, k, confidence).upper;
    if p >= 1.0 {
        return Some(f64::INFINITY);
    }
    Some(p * control.exposures as f64 / ((1.0 - p) * treatment.exposures as f64))
}

/// Conservative upper bound of `rate_t − rate_c`: the treatment's upper
/// bound minus the control's lower bound, each at `(1 + confidence) / 2`.
pub fn difference_upper(treatment: Arm, control: Arm, confidence: f64) -> Option<f64> {
    if treatment.exposures == 0 || control.exposures == 0 {
        return None;
    }
    let each = (1.0 + confidence) / 2.0;
    let t = clopper_pearson(treatment.errors, treatment.exposures, each).upper;
    let c = clopper_pearson(control.errors, control.exposures, each).lower;
    Some(t - c)
}

/// Smallest rate ratio the relative guard would detect with about 80 %
/// power from `expected` errors in total at the current split: a rough
/// guide for operators, not a decision input. Normal approximation of the
/// one-sided binomial test on the treatment's error share.
pub fn detectable_ratio(share: f64, expected_errors: f64, alpha: f64) -> Option<f64> {
    if expected_errors < 1.0 || !(0.0..1.0).contains(&share) || share <= 0.0 {
        return None;
    }
    let z = normal_quantile(1.0 - alpha) + 0.84;
    let p = (share + z * (share * (1.0 - share) / expected_errors).sqrt()).min(0.999_999);
    // Invert p = r·s / (r·s + (1 − s)).
    Some(p * (1.0 - share) / ((1.0 - p) * share))
}

/// Standard normal quantile (Acklam's rational approximation, ~1e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -39.696_830_286_653_76,
        220.946_098_424_520_5,
        -275.928_510_446_968_7,
        138.357_751_867_269,
        -30.664_798_066_147_16,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -54.476_098_798_224_06,
        161.585_836_858_040_9,
        -155.698_979_859_886_6,
        66.801_311_887_719_72,
        -13.280_681_552_885_72,
    ];
    const C: [f64; 6] = [
        -0.007_784_894_002_430_293,
        -0.322_396_458_041_136_5,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [0.007_784_695_709_041_462, 0.322_467_129_070_039_8, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-12)
    }

    #[test]
    fn incomplete_beta_matches_closed_forms() {
        // I_x(1, b) = 1 − (1 − x)^b and I_x(a, 1) = x^a.
        for &(b, x) in &[(1.0, 0.3), (5.0, 0.01), (4000.0, 0.0005), (38_000.0, 0.0001)] {
            assert!(close(incomplete_beta(1.0, b, x), 1.0 - (1.0_f64 - x).powf(b), 1e-9), "{b} {x}");
        }
        assert!(close(incomplete_beta(3.0, 1.0, 0.4), 0.064, 1e-9));
        // Symmetry I_x(a, b) = 1 − I_{1−x}(b, a).
        let v = incomplete_beta(7.5, 30.0, 0.2);
        assert!(close(v, 1.0 - incomplete_beta(30.0, 7.5, 0.8), 1e-9));
        // Binomial CDF: P(X ≤ 2) for Binomial(10, 0.3) = 0.3827827864.
        assert!(close(1.0 - incomplete_beta(3.0, 8.0, 0.3), 0.382_782_786_4, 1e-8));
    }

    #[test]
    fn clopper_pearson_matches_published_values() {
        // Zero successes: upper = 1 − α^(1/n) (the rule of three).
        let b = clopper_pearson(0, 4000, 0.975);
        assert!(close(b.upper, 1.0 - 0.025_f64.powf(1.0 / 4000.0), 1e-7));
        assert_eq!(b.lower, 0.0);
        // 5 of 20 at 95 % one-sided: R's binom.test(5, 20, alt="less")$conf.int = 0.4556.
        assert!(close(clopper_pearson(5, 20, 0.95).upper, 0.455_6, 1e-3));
        // binom.test(5, 20, alt="greater") lower = 0.1040.
        assert!(close(clopper_pearson(5, 20, 0.95).lower, 0.104_0, 2e-3));
        assert_eq!(clopper_pearson(3, 3, 0.99).upper, 1.0);
        assert_eq!(clopper_pearson(0, 0, 0.99), Bounds { lower: 0.0, upper: 1.0 });
    }

    #[test]
    fn the_worked_numbers_of_the_specification() {
        let arm = |errors, exposures| Arm { exposures, errors };
        // 1/2 000 vs 38/38 000: r upper (95 %) ≈ 2.5.
        let r = ratio_upper(arm(1, 2000), arm(38, 38_000), 0.95).unwrap();
        assert!((2.3..2.7).contains(&r), "{r}");
        // 0/4 000 vs 4/76 000: difference upper ≈ 0.09 pp → advances under 0.1 pp.
        let d = difference_upper(arm(0, 4000), arm(4, 76_000), 0.95).unwrap();
        assert!((0.000_85..0.001).contains(&d), "{d}");
        // 0/3 000 vs 3/57 000: ≈ 0.12 pp → holds.
        let d = difference_upper(arm(0, 3000), arm(3, 57_000), 0.95).unwrap();
        assert!((0.001_1..0.001_3).contains(&d), "{d}");
        // 2/20 000 vs 20/380 000: ≈ 0.03 pp.
        let d = difference_upper(arm(2, 20_000), arm(20, 380_000), 0.95).unwrap();
        assert!(d < 0.000_35, "{d}");
    }

    #[test]
    fn the_mixture_grows_with_a_regression_and_stays_small_without() {
        let pair = |t: (u64, u64), c: (u64, u64)| Pair {
            treatment: Arm { exposures: t.0, errors: t.1 },
            control: Arm { exposures: c.0, errors: c.1 },
        };
        // 10× spike: 25 % of 2 000/min at 0.5 % vs 5 %.
        let spike = MixtureSprt::compute(0.2, &[pair((500, 25), (1500, 7))]);
        assert!(spike.lambda >= 100.0, "{}", spike.lambda);
        // Same rates in both arms.
        let healthy = MixtureSprt::compute(0.2, &[pair((500, 3), (1500, 9)); 10]);
        assert!(healthy.lambda < 1.0, "{}", healthy.lambda);
        // No errors at all: no evidence either way.
        assert_eq!(MixtureSprt::compute(0.2, &[pair((500, 0), (1500, 0))]).lambda, 1.0);
    }

    #[test]
    fn sums_kept_between_ticks_give_what_one_computation_gives() {
        let buckets: Vec<Pair> = (0..500u64)
            .map(|i| Pair {
                treatment: Arm { exposures: 400 + i % 17, errors: (i * 7) % 5 },
                control: Arm { exposures: 1200 + i % 13, errors: (i * 3) % 4 },
            })
            .collect();
        let mut sums = SprtSums::new(0.1);
        for chunk in buckets.chunks(37) {
            sums.add(chunk);
            let whole = MixtureSprt::compute(0.1, &buckets[..sums.buckets()]);
            assert!(close(sums.result().lambda, whole.lambda, 1e-9), "{} vs {}", sums.result().lambda, whole.lambda);
        }
        assert_eq!(sums.buckets(), 500);
        assert!(sums.is_for(0.1) && !sums.is_for(0.2));
    }

    #[test]
    fn sign_test_tails() {
        assert!(close(sign_test(6, 6), 1.0 / 64.0, 1e-9));
        assert!(close(sign_test(10, 8), 56.0 / 1024.0, 1e-9));
        assert_eq!(sign_test(5, 0), 1.0);
    }

    #[test]
    fn normal_quantile_is_accurate() {
        assert!(close(normal_quantile(0.975), 1.959_963_985, 1e-7));
        assert!(close(normal_quantile(0.99), 2.326_347_874, 1e-7));
        assert!(close(normal_quantile(0.001), -3.090_232_306, 1e-7));
    }
}
