"""Real servers for the interop tests, one per test session (per xdist worker), installed once
per machine (see real_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.real_servers import litellm_proxy

ANSWER_A = "It's simple to use and easy to get started"
ANSWER_B = "It is simple to use and easy to start"

# model name on the proxy -> its mock_response
LITELLM_MOCKS = {
    "mock-a": ANSWER_A,
    "mock-b": ANSWER_B,
    "mock-500": "litellm.InternalServerError",
    "mock-429": "litellm.RateLimitError",
}


@pytest.fixture(scope="session")
def litellm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real LiteLLM proxy serving LITELLM_MOCKS."""
    with litellm_proxy(LITELLM_MOCKS, tmp_path_factory.mktemp("litellm")) as url:
        yield url
