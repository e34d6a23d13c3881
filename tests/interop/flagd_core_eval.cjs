// Evaluates rules and flags with the reference evaluator @openfeature/flagd-core
// (npm), for Rampart's differential tests. Reads one JSON request on stdin,
// writes one JSON answer on stdout.
//
//   {"mode": "rules", "cases": [{"rule", "data", "flagKey"?, "now"?}]}
//     -> [{"result": any} | {"throws": string}]
//   {"mode": "flags", "document": {...}, "evaluations": [{"flag", "context", "type"?, "now"?}]}
//     -> [{"value"?, "variant"?, "reason", "errorCode"?}]
'use strict';
const { FeatureFlag, FlagdCore } = require('@openfeature/flagd-core');

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const realNow = Date.now;

function withClock(now, fn) {
  Date.now = now === undefined ? realNow : () => now * 1000;
  try {
    return fn();
  } finally {
    Date.now = realNow;
  }
}

function evaluateRules(cases) {
  return cases.map((c) => {
    const flag = new FeatureFlag(c.flagKey || 'flag', {
      state: 'ENABLED',
      variants: { x: 'x' },
      defaultVariant: 'x',
      targeting: c.rule,
    }, quiet);
    if (flag._targetingParseErrorMessage) return { parseError: flag._targetingParseErrorMessage };
    try {
      const result = withClock(c.now, () => flag._targeting.evaluate(c.flagKey || 'flag', c.data, quiet));
      return { result: result === undefined ? null : result };
    } catch (e) {
      return { throws: String((e && (e.message || e.type)) || e) };
    }
  });
}

// The code default a caller passes; an unmistakable marker so "no value"
// (use your default) can be told apart from a real value.
const MARKER = '__rampart_code_default__';
const TYPES = { bool: 'boolean', string: 'string', number: 'number', object: 'object' };

function evaluateFlags(document, evaluations) {
  const core = new FlagdCore(undefined, quiet);
  core.setConfigurations(JSON.stringify(document));
  return evaluations.map((e) => withClock(e.now, () => {
    let r;
    if (e.type) {
      r = core.resolve(TYPES[e.type], e.flag, MARKER, e.context || {}, quiet);
    } else {
      const flag = core.getFlag(e.flag);
      r = flag
        ? (flag.state === 'DISABLED' ? { reason: 'DISABLED' } : flag.evaluate(e.context || {}, quiet))
        : { reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND' };
    }
    const out = { reason: r.reason };
    if (r.value !== undefined && r.value !== MARKER) out.value = r.value;
    if (r.variant !== undefined && out.value !== undefined) out.variant = r.variant;
    if (r.errorCode) out.errorCode = r.errorCode;
    return out;
  }));
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const answer = request.mode === 'rules'
    ? evaluateRules(request.cases)
    : evaluateFlags(request.document, request.evaluations);
  process.stdout.write(JSON.stringify(answer));
});
