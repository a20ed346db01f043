"""Requests generated from the app's own OpenAPI schema: never a 5xx, always answered as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serve.conftest import Trained, settings_for, wait_until
from tickercast.config import load_settings
from tickercast.serve.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Building an app is cheap (the model loads only when its lifespan starts): list its operations.
SPEC = create_app(load_settings()).openapi()
OPERATIONS = sorted((method.upper(), path) for path, item in SPEC["paths"].items() for method in item)
# Negative data needs something to break: only operations with parameters or a body get it.
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or {"parameters", "requestBody"} & set(SPEC["paths"][path][method.lower()])
]


@pytest.fixture(scope="module")
def api_schema(trained: Trained) -> Iterator[schemathesis.BaseSchema]:
    from schemathesis.python import asgi

    app = create_app(settings_for(trained.root, model_dir=trained.bundle))
    # Loading the schema starts the app's lifespan (the model loads in the background).
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    wait_until(lambda: app.state.holder.current is not None, what="the model to load")
    yield schema
    asgi.shutdown_lifespans()


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_never_fails_and_answers_as_documented(api_schema, method: str, path: str, mode) -> None:
    operation = next(
        result.ok()
        for result in api_schema.get_all_operations()
        if result.ok().method.upper() == method and result.ok().path == path
    )

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case) -> None:
        case.call_and_validate(checks=CHECKS)

    check()
