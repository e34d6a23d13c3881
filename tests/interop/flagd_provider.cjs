// Drives the npm @openfeature/flagd-provider (RPC or in-process mode)
// against Rampart, for Rampart's interop tests. Reads one JSON command per
// line on stdin and answers one JSON line each:
//   {"op": "init", "mode": "rpc"|"in-process", "host", "port", "selector"?}
//   {"op": "resolve", "type", "flag", "default", "context"?}
//   {"op": "waitFor", "type", "flag", "default", "context"?, "value", "timeoutMs"}
//   {"op": "close"}
'use strict';
const readline = require('node:readline');
const { OpenFeature } = require('@openfeature/server-sdk');
const { FlagdProvider } = require('@openfeature/flagd-provider');

const methods = {
  bool: 'getBooleanDetails',
  string: 'getStringDetails',
  number: 'getNumberDetails',
  object: 'getObjectDetails',
};
let client;
let changes = 0;

async function resolve(cmd) {
  const d = await client[methods[cmd.type]](cmd.flag, cmd.default, cmd.context || {});
  return {
    value: d.value,
    variant: d.variant ?? null,
    reason: d.reason,
    errorCode: d.errorCode ?? null,
    metadata: d.flagMetadata ?? {},
  };
}

async function handle(cmd) {
  switch (cmd.op) {
    case 'init': {
      const provider = new FlagdProvider({
        host: cmd.host, port: cmd.port, resolverType: cmd.mode, selector: cmd.selector, deadlineMs: 5000,
      });
      await OpenFeature.setProviderAndWait(provider);
      client = OpenFeature.getClient();
      client.addHandler('PROVIDER_CONFIGURATION_CHANGED', () => { changes += 1; });
      return { ok: true };
    }
    case 'resolve':
      return resolve(cmd);
    case 'waitFor': {
      const deadline = Date.now() + (cmd.timeoutMs || 20000);
      let last;
      while (Date.now() < deadline) {
        last = await resolve(cmd);
        if (JSON.stringify(last.value) === JSON.stringify(cmd.value)) return { ...last, changes };
        await new Promise((r) => setTimeout(r, 25));
      }
      return { timedOut: true, last, changes };
    }
    case 'close':
      await OpenFeature.close();
      return { ok: true };
    default:
      return { error: `unknown op ${cmd.op}` };
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    let answer;
    try {
      answer = await handle(cmd);
    } catch (e) {
      answer = { error: String((e && e.message) || e) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
    if (cmd.op === 'close') break;
  }
  process.exit(0);
}

main();
