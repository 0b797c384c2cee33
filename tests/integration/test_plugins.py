"""Each kind of plug-in is one file plus its registration: a capture source
(`support/ticker_source.py`) and a sink (`support/tally_sink.py`) join a running daemon with
their config sections validated like the core's (a model output's file is shown by
`test_output_plugin.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.common import wait_until
from support.tally_sink import TallyPart
from support.tally_sink import plugin as tally
from support.ticker_source import TickerSource

from edge import capture
from edge.config import ConfigError
from edge.sinks import registry


@pytest.fixture
def registered() -> Iterator[None]:
    capture.register(TickerSource)
    registry.register(tally)
    yield
    capture.unregister(TickerSource.key)
    registry.unregister(tally.key)


def test_a_registered_source_and_sink_take_part_in_the_flow(
    registered: None, edge_config: Any, daemon_factory: Any
) -> None:
    cfg = edge_config(
        capture={"ticker": {"count": 4}}, tally={"enabled": True, "refuse": ["tick-2.png"]}
    )
    d = daemon_factory(cfg)
    sink = next(p for p in d.parts if isinstance(p, TallyPart))
    wait_until(lambda: len(sink.sink.delivered) == 3, 60, "3 records at the new sink")
    wait_until(lambda: d.indexes.keyword.num_docs == 4, 60, "all 4 indexed")
    assert d.health()["parts"]["tally"] is None and "capture-ticker" in {p.name for p in d.parts}
    assert sink.worker.set_aside == 1, "the refused record is set aside, the others go on"


def test_a_plugin_section_is_validated_and_its_typos_named(
    registered: None, edge_config: Any
) -> None:
    with pytest.raises(ConfigError, match=r"tally\.enabld: unknown key"):
        edge_config(tally={"enabld": True})
    with pytest.raises(ConfigError, match=r"capture\.ticker\.count: .*greater than or equal"):
        edge_config(capture__ticker={"count": -1})
    assert edge_config().section("capture.ticker", TickerSource.Config).count == 0
