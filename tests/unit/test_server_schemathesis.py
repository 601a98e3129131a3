"""Schemathesis over the whole OpenAPI schema: generated requests never cause a 5xx, and every
response matches the status codes, content types and schemas the schema declares.

Runs against the app in-process with a tiny model; streaming routes are exercised too (each
accepted run streams to the end, so generated max_new_tokens is kept small by the context
check or by the tiny model's speed). Example counts stay modest to keep this under a minute.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import llmvis.analyses.attention
import llmvis.analyses.tokens  # noqa: F401
from llmvis.generation import generate
from llmvis.trace import GenerationRequest, SamplingParams
from server_helpers import make_app
from tiny_models import tiny_loaded

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Built at import: schemathesis needs the schema when pytest collects the tests.
DATA_DIR = tempfile.mkdtemp(prefix="llmvis-schemathesis-")
APP = make_app(Path(DATA_DIR), tiny_loaded("llama"), queue_size=100)
# One saved run, so that routes under /api/runs/{run_id} (views included) compute, not just 404.
RUN = generate(
    tiny_loaded("llama"),
    GenerationRequest(
        mode="completion", prompt="The capital of France is", params=SamplingParams(temperature=0, max_new_tokens=6)
    ),
)
APP.state.store.save(RUN)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, headers={"host": "127.0.0.1:5050"})


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    APP.state.engine.close()
    APP.state.store.close()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case):
    if case.operation.path == "/api/model/load" and isinstance(case.body, dict):
        case.body = {**(case.body or {}), "trust_remote_code": False}  # never load code; keep it cheap
    if "run_id" in (case.path_parameters or {}) and case.method != "DELETE":
        case.path_parameters["run_id"] = RUN.id
    case.call_and_validate(headers={"host": "127.0.0.1:5050"}, checks=CHECKS)
