"""/metrics: webhook delays as a histogram, missed and late webhooks, per gateway.

Read at scrape time from the process's own totals (since it started), like any counter:
per gateway, never per account, so the series stay few.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from reconciler.services.context import Context
from reconciler.services.reliability import METRIC_BUCKETS


class ReliabilityCollector(Collector):
    """The webhook reliability totals of this process, per gateway."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        delays = HistogramMetricFamily(
            "reconciler_webhook_delay_seconds",
            "Gateway's event time to webhook received (first deliveries)",
            labels=["gateway"],
        )
        terminal = CounterMetricFamily(
            "reconciler_webhook_terminal_statuses",
            "Terminal statuses learned, by what told them first (webhook or poll)",
            labels=["gateway", "first"],
        )
        missed = CounterMetricFamily(
            "reconciler_webhooks_missed",
            "Terminal statuses a poll found before any webhook (minus late: never came)",
            labels=["gateway"],
        )
        late = CounterMetricFamily(
            "reconciler_webhooks_late",
            "Terminal webhooks that came after a poll had found their status",
            labels=["gateway"],
        )
        for gateway, totals in sorted(self.ctx.reliability.snapshot().items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*METRIC_BUCKETS, float("inf")), totals.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            delays.add_metric([gateway], buckets, totals.delay_sum)
            terminal.add_metric([gateway, "webhook"], totals.by_webhook)
            terminal.add_metric([gateway, "poll"], totals.polled_first)
            missed.add_metric([gateway], totals.polled_first)
            late.add_metric([gateway], totals.late)
        yield delays
        yield terminal
        yield missed
        yield late
