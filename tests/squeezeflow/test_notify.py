"""Webhook notifications against a real HTTP receiver on loopback: the body, once per run/target/event, retries on a
transient error only, and never an exception."""

import json

import pytest

from squeezeflow.config import NotifyParams
from squeezeflow.notify import Event, Notifier
from tests.receiver import Receiver, unused_port_url


def notifier(tmp_path, url, **config) -> Notifier:
    return Notifier(NotifyParams(webhook_url=url, backoff_s=0.01, timeout_s=2, **config), tmp_path / "sent", "ws")


def test_a_promotion_is_posted_as_slack_text_and_fields(tmp_path):
    with Receiver() as rx:
        n = notifier(tmp_path, rx.url, dagster_url="http://dagster.example:3000/")
        assert n.send(Event("promoted", "cpu-int8", "abcdef1234", "sf-digits-cpu-int8", "3", "champion"))
    [body] = rx.bodies
    assert body["event"] == "promoted" and body["target"] == "cpu-int8" and body["version"] == "3"
    assert "sf-digits-cpu-int8 v3 is the new champion on cpu-int8" in body["text"]
    assert body["dagster_run_url"] == "http://dagster.example:3000/runs/abcdef1234"
    assert "<http://dagster.example:3000/runs/abcdef1234|run abcdef12>" in body["text"]


def test_each_run_target_and_event_is_sent_once(tmp_path):
    with Receiver() as rx:
        n = notifier(tmp_path, rx.url)
        held = Event("held_back", "cpu-int8", "run1", "m", "2", reason="gate failed: accuracy_drop 3.1 > 1")
        assert n.send(held)
        assert not n.send(held)  # a retried step, or a second process: already sent
        assert n.send(Event("held_back", "cpu-int8", "run2", "m", "3", reason="gate failed"))
        assert n.send(Event("failed", "cpu-int8", "run1", reason="x"))
    assert rx.events() == [("failed", "cpu-int8"), ("held_back", "cpu-int8"), ("held_back", "cpu-int8")]
    record = json.loads((tmp_path / "sent" / "run1" / "cpu-int8.held_back.json").read_text())
    assert record["delivered"] and record["attempts"] == 1


def test_a_transient_error_is_retried_until_delivered(tmp_path):
    with Receiver(statuses=[503, 500]) as rx:
        assert notifier(tmp_path, rx.url, retries=2).send(Event("unavailable", "gpu", "r", reason="no GPU"))
    assert rx.attempts == 3 and len(rx.bodies) == 1


@pytest.mark.parametrize("status,attempts", [(400, 1), (503, 3)])
def test_an_undeliverable_message_is_logged_not_raised(tmp_path, status, attempts):
    logged = []
    with Receiver(statuses=[status] * 5) as rx:
        ok = notifier(tmp_path, rx.url, retries=2).send(Event("failed", "t", "r", reason="boom"), log=logged.append)
    assert not ok and rx.attempts == attempts  # a 4xx is not retried: it will not pass on a second try
    assert len(logged) == 1 and f"after {attempts} attempt(s)" in logged[0] and str(status) in logged[0]


def test_an_unreachable_webhook_is_retried_then_logged(tmp_path):
    logged = []
    ok = notifier(tmp_path, unused_port_url(), retries=2).send(Event("failed", "t", "r", reason="x"),
                                                               log=logged.append)
    assert not ok and "after 3 attempt(s)" in logged[0] and "the run is unaffected" in logged[0]


def test_the_environment_wins_and_events_filter(tmp_path, monkeypatch):
    with Receiver() as rx:
        monkeypatch.setenv("MY_HOOK", rx.url)
        n = Notifier(NotifyParams(webhook_url="http://127.0.0.1:9/never", webhook_env="MY_HOOK",
                                  events=("failed",)), tmp_path, "ws")
        assert not n.send(Event("promoted", "t", "r", "m", "1", "champion"))
        assert n.send(Event("failed", "t", "r", reason="x"))
        monkeypatch.setenv("MY_HOOK", "slack.example/hook")
        logged = []
        assert not n.send(Event("failed", "t", "r2", reason="x"), log=logged.append)
    assert rx.events() == [("failed", "t")]
    assert "MY_HOOK" in logged[0] and "not an http(s) URL" in logged[0]


def test_no_webhook_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUEEZEFLOW_WEBHOOK_URL", raising=False)
    assert not Notifier(NotifyParams(), tmp_path, "ws").send(Event("failed", "t", "r", reason="x"))
    assert not (tmp_path / "r").exists()
