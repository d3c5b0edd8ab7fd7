"""schemathesis over each service's OpenAPI, authenticated: no 5xx, responses match the schema.

Each run takes a fresh random seed, printed and named in a failure (``SWD_FUZZ_SEED=<seed>``
repeats it). Strings may hold NUL and any other control character, and about half the cases
get one put into a parameter or body string (``fuzz_hooks.py``). Generated ``callback_url``
values are fuzzed too: the stack lets the center call back loopback hosts only and refuses any
other host at intake without resolving it (``LOOPBACK_CALLBACKS``), so no generated address is
ever called.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.db import transaction_in
from tests.conftest import RunningStack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = "25"


async def _viewer_operator(stack: RunningStack) -> str:
    """A read-only operator: the operator API's reads are fuzzed fully, its writes get 403
    (random writes would change the routing the other tests rely on)."""
    from services.dispatch_center.admin import create_operator

    async with transaction_in("dispatch_center", stack.database_url) as conn:
        _, token = await create_operator(conn, "fuzzing-viewer", "viewer", reissue=True)
    return token


def _credentials(stack: RunningStack, service: str) -> list[str]:
    if service == "dispatch_center":
        viewer = asyncio.run(_viewer_operator(stack))
        return [f"X-API-Key: {stack.api_key}", f"Authorization: Bearer {viewer}"]
    if service == "station_worker":
        return [f"Authorization: Bearer {stack.manager_token('st-shaxi')}"]
    return [f"Authorization: Bearer {stack.supervisor_token}"]


@pytest.mark.parametrize("service", ["dispatch_center", "station_worker", "audit"])
def test_the_api_holds_up_to_generated_requests(
    stack: RunningStack, service: str, tmp_path: Path
) -> None:
    headers = [arg for h in _credentials(stack, service) for arg in ("-H", h)]
    seed = os.environ.get("SWD_FUZZ_SEED") or str(random.randrange(2**32))
    print(f"schemathesis seed for {service}: {seed} (SWD_FUZZ_SEED={seed} repeats it)")
    schema = httpx.get(f"{stack.urls[service]}/openapi.json").json()
    openapi = tmp_path / "openapi.json"
    openapi.write_text(json.dumps(schema))
    # The generated callback URLs meet the loopback-only rule, never a connection elsewhere.
    assert stack.local.env()["SWD_CALLBACK_ALLOWED_HOSTS_ONLY"] == "true"
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st),
            "run",
            str(openapi),
            "--url",
            stack.urls[service],
            *headers,
            "--checks",
            "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            seed,
            "--generation-allow-x00",
            "true",
            "--generation-codec",
            "utf-8",
            "--phases",
            "examples,coverage,fuzzing",
            # The server-sent event stream stays open by design; it is tested on its own.
            "--exclude-path-regex",
            "/stream$",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "SCHEMATHESIS_TELEMETRY": "false",
            "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("fuzz_hooks.py")),
        },
    )
    assert result.returncode == 0, f"seed {seed}\n" + result.stdout[-6000:] + result.stderr[-2000:]
