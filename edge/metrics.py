"""Prometheus metrics of one daemon, in a registry of its own (so two daemons in one test
process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "s3e_images_accepted", "Images stored durably, by source", ["source"], registry=r
        )
        self.duplicates = Counter(
            "s3e_images_duplicate", "Images already in the store (same sha256)", registry=r
        )
        self.processed = Counter("s3e_images_processed", "Images analysed", registry=r)
        self.reanalysed = Counter(
            "s3e_images_reanalysed", "Images analysed again with a newer bundle", registry=r
        )
        self.errors = Counter("s3e_errors", "Errors, by kind", ["kind"], registry=r)
        self.stage = Histogram(
            "s3e_stage_seconds",
            "Latency per pipeline stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.indexed = Counter("s3e_records_indexed", "Records committed to the index", registry=r)

    def gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """A value read at scrape time (index size, queue depth)."""
        Gauge(name, doc, registry=self.registry).set_function(fn)

    def observe_ms(self, timings: dict[str, float]) -> None:
        for key, ms in timings.items():
            self.stage.labels(key.removesuffix("_ms")).observe(ms / 1e3)

    def stage_means_ms(self) -> dict[str, float]:
        """Mean latency per stage since start, from the histogram's sums and counts."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for metric in self.stage.collect():
            for s in metric.samples:
                if s.name.endswith("_sum"):
                    sums[s.labels["stage"]] = s.value
                elif s.name.endswith("_count"):
                    counts[s.labels["stage"]] = s.value
        return {k: round(v / counts[k] * 1e3, 3) for k, v in sums.items() if counts.get(k)}

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value, by the name it is exported under (`s3e_records_indexed_total`,
        `s3e_errors_total` with `{"kind": "store"}`): what /metrics shows, read without
        parsing the text. Raises KeyError for a sample the registry does not have (a misspelt
        name, or a label set never counted), so a wrong name cannot pass for a zero."""
        got = self.registry.get_sample_value(name, labels or {})
        if got is None:
            raise KeyError(f"no sample {name} {labels or {}} in this registry")
        return got

    def render(self) -> bytes:
        return generate_latest(self.registry)
