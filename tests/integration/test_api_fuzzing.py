"""schemathesis over each service's OpenAPI, authenticated: no 5xx, responses match the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningStack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = "25"


def _credentials(stack: RunningStack, service: str) -> list[str]:
    if service == "dispatch_center":
        return [f"X-API-Key: {stack.api_key}"]
    if service == "station_worker":
        return [f"Authorization: Bearer {stack.manager_token('st-shaxi')}"]
    return [f"Authorization: Bearer {stack.supervisor_token}"]


@pytest.mark.parametrize("service", ["dispatch_center", "station_worker", "audit"])
def test_the_api_holds_up_to_generated_requests(
    stack: RunningStack, service: str, tmp_path: Path
) -> None:
    headers = [arg for h in _credentials(stack, service) for arg in ("-H", h)]
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{stack.urls[service]}/openapi.json",
            *headers,
            "--checks",
            "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
