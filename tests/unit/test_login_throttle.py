"""The throttle on wrong tokens, on a clock moved by hand: a few free tries per client, then a
wait that doubles up to a bound, one log line per burst, and never a lock-out for good."""

from __future__ import annotations

import logging

import pytest
from support.clock import FakeClock

from edge.api.throttle import FIRST_WAIT_S, LoginThrottle, client_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_few_wrong_tokens_are_free_then_the_wait_doubles_up_to_the_bound(clock: FakeClock):
    """Guessing at full speed is what this stops: after `free` wrong tokens each further one
    earns a wait twice the last, never more than `max_wait_s`."""
    t = LoginThrottle(free=3, max_wait_s=10, clock=clock)
    assert [t.failed("a") for _ in range(2)] == [0, 0]
    waits = []
    for _ in range(6):
        waits.append(t.failed("a"))
        assert t.wait("a") == waits[-1]
        clock.advance(waits[-1])  # the client waits its turn, then guesses again
        assert t.wait("a") == 0
    assert waits == [FIRST_WAIT_S, 2, 4, 8, 10, 10]


def test_the_wait_expires_and_a_right_token_clears_the_count(clock: FakeClock):
    """The owner of the token is never locked out for good: the wait runs out on its own, and
    a success starts the client's count afresh."""
    t = LoginThrottle(free=2, max_wait_s=300, clock=clock)
    for _ in range(6):
        t.failed("a")
    assert t.wait("a") == 16
    clock.advance(15.5)
    assert t.wait("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert t.wait("a") == 0
    t.succeeded("a")
    assert t.failed("a") == 0 and t.tracked() == 1


def test_a_client_quiet_for_twice_the_longest_wait_starts_afresh(clock: FakeClock):
    t = LoginThrottle(free=1, max_wait_s=5, clock=clock)
    t.failed("a")
    assert t.failed("a") == 2
    clock.advance(2 + 10.1)
    assert t.wait("a") == 0 and t.tracked() == 0
    assert t.failed("a") == 1  # the first wait again, not the next doubling


def test_clients_are_counted_apart_and_ipv6_by_its_64(clock: FakeClock):
    """One client's guesses cost another nothing; an IPv6 host cannot dodge its count by
    moving through the addresses of its /64."""
    t = LoginThrottle(free=1, max_wait_s=60, clock=clock)
    one = client_key({"client": ("2001:db8:1:2::10", 5000)})
    same_64 = client_key({"client": ("2001:db8:1:2:ffff::1", 5001)})
    other_64 = client_key({"client": ("2001:db8:1:3::10", 5002)})
    assert one == same_64 == "2001:db8:1:2::/64" and other_64 != one
    t.failed(one)
    assert t.failed(same_64) > 0
    assert t.wait(other_64) == 0 and t.wait("192.0.2.7") == 0
    assert client_key({"client": ("::ffff:192.0.2.7", 1)}) == "192.0.2.7"
    assert client_key({"client": ("192.0.2.7", 1)}) == "192.0.2.7"
    assert client_key({}) == "unknown"


def test_a_burst_is_logged_once_not_once_per_attempt(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """A flood of wrong tokens must not flood the journal: one line when a client starts to
    wait, and one more only for a later, separate burst."""
    t = LoginThrottle(free=5, max_wait_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="s3e.http"):
        for _ in range(300):
            t.failed("198.51.100.4")
            clock.advance(0.5)
        assert len(caplog.records) == 1
        assert "198.51.100.4" in caplog.text and "http.login_backoff_max_s" in caplog.text
        clock.advance(1000)
        for _ in range(10):
            t.failed("198.51.100.4")
    assert len(caplog.records) == 2


def test_memory_stays_bounded_under_many_addresses(clock: FakeClock):
    t = LoginThrottle(free=1, max_wait_s=60, clock=clock, max_clients=100)
    for i in range(10_000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert t.tracked() == 100
    assert t.wait("10.0.39.15") > 0  # the latest are kept
