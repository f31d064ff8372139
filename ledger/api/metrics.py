"""Prometheus metrics of `ledger serve` (`GET /metrics`, text format 0.0.4).

- `ledger_api_commands_total{outcome}`: commands POSTed, by outcome (applied, acknowledged,
  rejected);
- `ledger_api_events_written_total`: events those commands wrote (log head after − before);
- `ledger_api_command_batch_seconds`: time to apply one POST /v1/commands body;
- `ledger_log_head`: the last notification id of the event log;
- `ledger_projection_lag`: log head minus the lowest tracking position of the read models
  (`projections.runner.status`);
- `ledger_publisher_lag` (only with `--nats URL`): log head minus the `Ledger-Position` header
  of the last message in the JetStream stream (`--stream`, default LEDGER) that
  `ledger publish` writes; −1 when NATS cannot be asked.

Gauges are computed when scraped. The registry is the app's own, so two apps in one process
(tests) do not clash.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

if TYPE_CHECKING:
    from ledger.api.app import Store

log = logging.getLogger("ledger.api")


class Metrics:
    def __init__(self, store: Store, *, nats_url: str | None = None,
                 stream: str = "LEDGER") -> None:
        self.store, self.nats_url, self.stream = store, nats_url, stream
        disable_created_metrics()  # type: ignore[no-untyped-call] # no `_created` series: counters since the process started
        self.registry = CollectorRegistry()
        self.commands = Counter("ledger_api_commands", "Commands posted, by outcome",
                                ["outcome"], registry=self.registry)
        for outcome in ("applied", "acknowledged", "rejected"):
            self.commands.labels(outcome=outcome)
        self.events_written = Counter("ledger_api_events_written",
                                      "Events written by posted commands",
                                      registry=self.registry)
        self.batch_seconds = Histogram("ledger_api_command_batch_seconds",
                                       "Seconds to apply one POST /v1/commands body",
                                       registry=self.registry)
        self.log_head = Gauge("ledger_log_head", "Last notification id of the event log",
                              registry=self.registry)
        self.projection_lag = Gauge("ledger_projection_lag",
                                    "Log head minus the read models' lowest tracking position",
                                    registry=self.registry)
        self.publisher_lag = (Gauge("ledger_publisher_lag",
                                    "Log head minus the Ledger-Position of the last message "
                                    "published to the stream (-1: NATS not answering)",
                                    registry=self.registry) if nats_url else None)

    def render(self) -> tuple[bytes, str]:
        """Refresh the gauges and return the text exposition and its content type."""
        from projections.runner import status

        try:
            found = status(self.store.url)
            self.log_head.set(found.head)
            self.projection_lag.set(found.lag)
            if self.publisher_lag is not None:
                self.publisher_lag.set(self._publisher_lag(found.head))
        except Exception as error:  # noqa: BLE001 - a scrape never fails on a gauge
            log.warning("metrics: cannot read the store: %s", type(error).__name__)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _publisher_lag(self, head: int) -> int:
        import asyncio

        assert self.nats_url is not None
        try:
            position = asyncio.run(published_position(self.nats_url, self.stream))
        except Exception as error:  # noqa: BLE001 - NATS away: say so with -1
            log.warning("metrics: cannot ask NATS for the stream %s: %s", self.stream,
                        type(error).__name__)
            return -1
        return head - position


async def published_position(url: str, stream: str) -> int:
    """Return the `Ledger-Position` header of the stream's last message (0: empty stream)."""
    import nats  # type: ignore[import-not-found,unused-ignore]  # nats-py (`ledger publish`)

    connection: Any = await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                                         max_reconnect_attempts=0)
    try:
        jetstream = connection.jetstream()
        info = await jetstream.stream_info(stream)
        last = info.state.last_seq
        if not last:
            return 0
        message = await jetstream.get_msg(stream, seq=last)
        return int((message.headers or {}).get("Ledger-Position", 0))
    finally:
        await connection.close()
