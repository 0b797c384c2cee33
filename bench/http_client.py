"""Times HTTP requests from a process of its own, as a browser or another program would ask.

A client in the server's own process competes with it for the interpreter lock: its request
building and JSON parsing then count as the server's latency (at 100k records on 2 cores,
hybrid `/search` p99 with the client inside against outside: 13.6 against 11.9 ms in one run,
21.8 against 13.5 in the next).

    python bench/http_client.py < spec.json

The spec: {"base": "http://127.0.0.1:PORT", "repeats": R, "requests": [[path, params], ...]};
each request is asked once to warm up, then R passes over all of them; the answer, on stdout,
is the JSON list of every timed request's milliseconds (`bench/search.py` takes percentiles).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx


def timings(spec: dict[str, Any]) -> list[float]:
    """Milliseconds of each timed request (a failed request raises: it is no timing)."""
    requests = [(str(path), dict(params)) for path, params in spec["requests"]]
    samples = []
    with httpx.Client(base_url=spec["base"]) as client:
        for path, params in requests:
            client.get(path, params=params).raise_for_status()
        for _ in range(int(spec["repeats"])):
            for path, params in requests:
                t0 = time.perf_counter()
                r = client.get(path, params=params)
                r.raise_for_status()
                r.json()
                samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def main() -> None:
    json.dump(timings(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
