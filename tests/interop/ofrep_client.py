"""Resolves flags through Rampart with the OpenFeature Python SDK and the
OFREP provider from PyPI, for Rampart's interop tests.

Usage: ofrep_client.py BASE_URL [HEADERS_JSON] < requests.json
Each request: {"type": bool|string|int|float|object, "flag", "default",
"targetingKey"?, "attributes"?}. Prints a JSON list of
{"value", "variant", "reason", "errorCode"}.
"""
import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def main() -> None:
    base_url = sys.argv[1]
    headers = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    api.set_provider(OFREPProvider(base_url, headers_factory=lambda: dict(headers), timeout=10.0))
    client = api.get_client()
    resolvers = {
        "bool": client.get_boolean_details,
        "string": client.get_string_details,
        "int": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }
    results = []
    for request in json.load(sys.stdin):
        context = EvaluationContext(
            targeting_key=request.get("targetingKey"),
            attributes=request.get("attributes", {}),
        )
        details = resolvers[request["type"]](request["flag"], request["default"], context)
        results.append(
            {
                "value": details.value,
                "variant": details.variant,
                "reason": getattr(details.reason, "value", details.reason),
                "errorCode": getattr(details.error_code, "value", details.error_code),
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
