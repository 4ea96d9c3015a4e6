"""Real servers for the interop tests, one per test session (per xdist worker), installed once
per machine (see real_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.real_servers import litellm_proxy, llama_server

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


@pytest.fixture(scope="session")
def llama_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two real llama-servers serving Gemma 3 270M: a 1,024-token window and a 4,096-token one."""
    with (
        llama_server(tmp_path_factory.mktemp("llama-small"), context=1024) as small,
        llama_server(tmp_path_factory.mktemp("llama-wide"), context=4096) as wide,
    ):
        yield small, wide
