"""Drives the PyPI openfeature-provider-flagd (RPC or in-process mode)
against Rampart, for Rampart's interop tests. Reads one JSON command per
line on stdin and answers one JSON line each (same protocol as
flagd_provider.cjs):
  {"op": "init", "mode": "rpc"|"in-process", "host", "port", "selector"?}
  {"op": "resolve", "type", "flag", "default", "context"?}
  {"op": "waitFor", "type", "flag", "default", "context"?, "value", "timeoutMs"}
  {"op": "close"}
"""
import json
import sys
import time

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext

client = None


def resolve(cmd):
    context = dict(cmd.get("context") or {})
    targeting_key = context.pop("targetingKey", None)
    ctx = EvaluationContext(targeting_key=targeting_key, attributes=context)
    method = {
        "bool": client.get_boolean_details,
        "string": client.get_string_details,
        "number": client.get_float_details,
        "int": client.get_integer_details,
        "object": client.get_object_details,
    }[cmd["type"]]
    default = cmd["default"]
    if cmd["type"] == "number":
        default = float(default)
    d = method(cmd["flag"], default, ctx)
    return {
        "value": d.value,
        "variant": d.variant,
        "reason": getattr(d.reason, "value", d.reason),
        "errorCode": getattr(d.error_code, "value", d.error_code),
        "metadata": dict(d.flag_metadata or {}),
    }


def handle(cmd):
    global client
    op = cmd["op"]
    if op == "init":
        mode = ResolverType.RPC if cmd["mode"] == "rpc" else ResolverType.IN_PROCESS
        provider = FlagdProvider(
            host=cmd["host"], port=cmd["port"], resolver_type=mode, selector=cmd.get("selector"), deadline_ms=5000
        )
        api.set_provider(provider)
        client = api.get_client()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = client.get_provider_status()
            if getattr(status, "value", status) == "READY":
                return {"ok": True}
            time.sleep(0.02)
        return {"error": "provider not ready: " + str(client.get_provider_status())}
    if op == "resolve":
        return resolve(cmd)
    if op == "waitFor":
        deadline = time.monotonic() + cmd.get("timeoutMs", 20000) / 1000
        last = None
        while time.monotonic() < deadline:
            last = resolve(cmd)
            if last["value"] == cmd["value"]:
                return last
            time.sleep(0.025)
        return {"timedOut": True, "last": last}
    if op == "close":
        api.shutdown()
        return {"ok": True}
    return {"error": "unknown op " + op}


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            answer = handle(cmd)
        except Exception as error:  # noqa: BLE001 - reported to the test
            answer = {"error": repr(error)}
        print(json.dumps(answer), flush=True)
        if cmd["op"] == "close":
            break


if __name__ == "__main__":
    main()
