"""Times HTTP requests from a process of its own, as a browser or another program would ask.

A client in the server's own process competes with it for the interpreter lock: its request
building and JSON parsing then count as the server's latency, and by an amount that varies
from run to run. For the same reason it is the standard library's `http.client` on one
kept-alive connection, not httpx: httpx's own work a request would count too.

    python bench/http_client.py < spec.json

The spec: {"base": "http://127.0.0.1:PORT", "repeats": R, "requests": [[path, params], ...]};
each request is asked once to warm up, then R passes over all of them; the answer, on stdout,
is the JSON list of every timed request's milliseconds (`bench/search.py` takes percentiles).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from typing import Any
from urllib.parse import urlencode, urlsplit


def timings(spec: dict[str, Any]) -> list[float]:
    """Milliseconds of each timed request, its answer read and parsed (a failed request
    raises: it is no timing)."""
    base = urlsplit(spec["base"])
    targets = [
        f"{path}?{urlencode(params)}" if params else str(path) for path, params in spec["requests"]
    ]
    conn = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port, timeout=30)

    def get(target: str) -> None:
        conn.request("GET", target)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status >= 400:
            raise RuntimeError(f"GET {target}: {answer.status} {body[:200]!r}")
        json.loads(body)

    for target in targets:
        get(target)
    samples = []
    for _ in range(int(spec["repeats"])):
        for target in targets:
            t0 = time.perf_counter()
            get(target)
            samples.append((time.perf_counter() - t0) * 1e3)
    conn.close()
    return samples


def main() -> None:
    json.dump(timings(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
