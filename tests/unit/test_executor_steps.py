"""The http and command step handlers alone, against an httpx.MockTransport and real processes:
a webhook answering 500 is retryable and its retry carries the same Idempotency-Key; 404 fails the
step for good; a command exiting non-zero fails it; the execution limits file is read and checked."""

import json
import sys
from datetime import UTC, datetime

import httpx
import pytest

from core.experiments.executor import (
    DEFAULT_LIMITS_FILE,
    ExecutionLimits,
    LiveEnvironment,
    RetryableStepError,
    StepFailed,
    load_limits,
)
from core.experiments.playbook import STEP_TYPES
from core.experiments.steps import HANDLERS, StepContext, command_step, http_step
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOOK = {
    "id": "launch",
    "type": "http",
    "params": {"url": "https://hooks.example.test/x", "method": "POST", "body": {"a": 1}},
}


def context(step: dict, transport: httpx.BaseTransport | None = None, deadline: float | None = None) -> StepContext:
    return StepContext(
        warehouse=Warehouse("duckdb:///:memory:"),  # neither handler touches it
        experiment={"experiment_id": "exp-1", "currency": "USD"},
        step=step,
        environment=LiveEnvironment(clock=lambda: T0, transport=transport),
        clock=lambda: T0,
        run_id="run-1",
        attempt=1,
        deadline=deadline,
    )


def test_every_step_type_has_a_handler():
    assert set(HANDLERS) == set(STEP_TYPES)


def test_a_webhook_500_is_retryable_and_its_retry_carries_the_same_idempotency_key():
    seen: list[httpx.Request] = []
    statuses = [500, 200]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses.pop(0))

    transport = httpx.MockTransport(handle)
    with pytest.raises(RetryableStepError, match=r"POST https://hooks.example.test/x answered 500"):
        http_step(context(HOOK, transport))
    assert http_step(context(HOOK, transport)) == {
        "status_code": 200,
        "idempotency_key": "experiment:exp-1:step:launch",
    }
    assert [r.headers["Idempotency-Key"] for r in seen] == ["experiment:exp-1:step:launch"] * 2
    assert [json.loads(r.content) for r in seen] == [{"a": 1}] * 2


def test_a_webhook_404_fails_the_step_and_a_connection_error_is_retryable():
    with pytest.raises(StepFailed, match=r"answered 404 'no such hook': fix the playbook's url"):
        http_step(context(HOOK, httpx.MockTransport(lambda r: httpx.Response(404, text="no such hook"))))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RetryableStepError, match="connection refused"):
        http_step(context(HOOK, httpx.MockTransport(refuse)))


def test_a_command_exiting_non_zero_fails_the_step():
    step = {"id": "build", "type": "command", "params": {"argv": [sys.executable, "-c", "print('hi')"]}}
    assert command_step(context(step)) == {"returncode": 0, "stdout": "hi\n"}
    failing = {
        "id": "build",
        "type": "command",
        "params": {"argv": [sys.executable, "-c", "import sys; sys.exit('no disk left')"]},
    }
    with pytest.raises(StepFailed, match=r"step build \(command\): .* exited 1: 'no disk left'"):
        command_step(context(failing))
    with pytest.raises(StepFailed, match="command 'no-such-program-here' not found"):
        command_step(context({"id": "x", "type": "command", "params": {"argv": ["no-such-program-here"]}}))


def test_the_limits_file(tmp_path):
    assert load_limits(DEFAULT_LIMITS_FILE) == ExecutionLimits(max_wall_seconds=3600, max_attempts=3)
    path = tmp_path / "execution.yaml"
    path.write_text("limits:\n  max_attempts: 5\n  max_cost_minor: 1200\n")
    assert load_limits(path) == ExecutionLimits(max_attempts=5, max_cost_minor=1200)
    path.write_text("limits:\n  max_attempts: 0\n")
    with pytest.raises(ValueError, match="limits.max_attempts must be a positive integer, got 0"):
        load_limits(path)
    path.write_text("limits:\n  max_tries: 2\n")
    with pytest.raises(ValueError, match=r"unknown limits \['max_tries'\]"):
        load_limits(path)
