"""Prometheus metrics, one registry per node (several nodes may share a process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from node.engine import Engine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class EngineCollector(Collector):
    """Reads the engine's counters at scrape time instead of mirroring them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        replicator = engine.raft
        gauges: dict[str, tuple[str, float]] = {
            "shoal_applied_index": (
                "Index of the last applied log entry",
                engine.state.applied_index,
            ),
            "shoal_libraries": ("Libraries on this node", len(engine.state.libraries)),
            "shoal_ready": ("1 when the node takes traffic", int(engine.ready_reason() is None)),
        }
        if replicator is not None:
            gauges["shoal_commit_index"] = (
                "Index of the last committed entry",
                replicator.commit_index,
            )
            gauges["shoal_term"] = ("Current term", replicator.term)
            gauges["shoal_is_leader"] = ("1 on the leader", int(replicator.is_leader))
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        refused = CounterMetricFamily(
            "shoal_peer_requests_refused",
            "Requests from other nodes refused: another cluster's, or not a member's",
            labels=["reason"],
        )
        for reason, count in engine.peer_refusals.items():
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "shoal_peer_requests_without_cluster_id",
            "Requests taken from members that sent no cluster id (nodes of an older Shoal)",
            value=engine.peer_requests_without_id,
        )
        chunks = GaugeMetricFamily("shoal_chunks", "Chunks per library", labels=["library"])
        for library in list(engine.state.libraries.values()):
            chunks.add_metric([library.info.name], len(library.chunks))
        yield chunks
        if replicator is None:
            return
        stats = replicator.stats
        counters: dict[str, tuple[str, float]] = {
            "shoal_wal_entries": ("Log entries written", stats.entries),
            "shoal_wal_batches": ("Append batches (group commits)", stats.batches),
            "shoal_wal_fsyncs": ("fsync calls on the log", stats.fsyncs),
            "shoal_wal_fsync_seconds": ("Time spent in log fsync", stats.fsync_seconds),
            "shoal_wal_bytes": ("Bytes appended to the log", engine.log_store.bytes_written),
            "shoal_apply_seconds": ("Time spent applying entries", stats.apply_seconds),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)
        histograms = {
            "shoal_raft_leader_gap_seconds": (
                "Time between messages from the leader, on a follower", replicator.leader_gaps),
            "shoal_raft_loop_lag_seconds": (
                "How late the Raft loop's ticks ran", replicator.loop_lag),
        }  # fmt: skip
        for name, (doc, gaps) in histograms.items():
            yield HistogramMetricFamily(name, doc, buckets=gaps.cumulative(), sum_value=gaps.total)


class NodeMetrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoal_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shoal_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(EngineCollector(engine))
