"""The typed schema of forge.toml (SPEC section 2).

Every section refuses unknown keys; cross-references (a model's provider, ladder entries, local
model roles) are checked once the whole file is known.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Annotated, Literal

# forge uses no pydantic plugin; not scanning installed packages for one saves start-up time.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Environment variable names, by convention upper case: anything else is taken for a pasted key.
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "proxy-authorization"}
# Header names that carry a credential by any other spelling (x-goog-api-key, x-auth-token).
SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie")

TASK_TYPES = (
    "simple_edit",
    "bug_fix",
    "refactor",
    "feature",
    "test",
    "docs",
    "review",
    "architecture",
    "planning",
    "question",
    "critical",
)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Usd = Annotated[Decimal, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Section):
    """Seconds; `first_token` and `idle` are measured on the stream, `total` on the whole call."""

    connect: PositiveFloat = 10.0
    first_token: PositiveFloat = 60.0
    idle: PositiveFloat = 30.0
    total: PositiveFloat = 600.0


class ProviderConfig(Section):
    api: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str | None = None
    discover: Literal["ollama", "openai", "openrouter", "none"] = "none"
    max_concurrency: PositiveInt | None = None
    requests_per_minute: PositiveInt | None = None
    requests_per_day: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    timeout: Timeouts = Timeouts()
    headers: dict[str, str] = {}
    proxy: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        # The value is never echoed: it may be the key itself.
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                "expected the NAME of an environment variable in upper case (e.g. GROQ_API_KEY); "
                "this looks like a literal key, which forge refuses to read from a file"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_literal_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            lowered = name.lower()
            secret = lowered in SECRET_HEADERS or any(w in lowered for w in SECRET_HEADER_WORDS)
            if secret and "${" not in header:
                raise ValueError(
                    f"header {name!r} holds a literal credential; write it as "
                    '"${SOME_ENV_VAR}" so the secret stays in the environment'
                )
        return value


class ModelConfig(Section):
    provider: str
    id: str
    tier: str | None = None
    context_window: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None
    max_concurrency: PositiveInt | None = None
    input_price: Usd | None = None
    output_price: Usd | None = None
    cached_input_price: Usd | None = None
    capabilities: list[str] = []
    edit_format: Literal["search_replace", "whole"] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None


# The tiers forge knows without being told, cheapest first: the default ladder.
BUILTIN_TIERS = ("local", "free", "cheap", "premium")


class TiersConfig(Section):
    ladder: list[str] = list(BUILTIN_TIERS)
    simple_edit: list[str] | None = None
    bug_fix: list[str] | None = None
    refactor: list[str] | None = None
    feature: list[str] | None = None
    test: list[str] | None = None
    docs: list[str] | None = None
    review: list[str] | None = None
    architecture: list[str] | None = None
    planning: list[str] | None = None
    question: list[str] | None = None
    critical: list[str] | None = None

    def ladders(self) -> dict[str, list[str]]:
        """Every ladder that is set, keyed by its name (`ladder` is the default)."""
        named = {name: getattr(self, name) for name in TASK_TYPES}
        return {"ladder": self.ladder} | {k: v for k, v in named.items() if v is not None}


class RoutingConfig(Section):
    max_concurrent_tasks: PositiveInt = 4
    enable_parallel_execution: bool = True
    strategy: Literal["cost", "latency", "least_loaded", "round_robin"] = "cost"
    max_attempts_per_tier: PositiveInt = 2
    max_total_attempts: PositiveInt = 6
    long_context_threshold_tokens: PositiveInt = 32_000
    learn_from_history: bool = True
    # One model call: retries and fallbacks share this many HTTP attempts and this deadline.
    max_call_attempts: PositiveInt = 4
    call_deadline_seconds: PositiveFloat = 300.0
    # The model (alias) that reads each validated run-milestone attempt before it is
    # committed, as `--review MODEL` does; rungs using the same model are left out.
    reviewer: str | None = None


class LocalModelsConfig(Section):
    router: str | None = None
    coder: str | None = None
    validator: str | None = None


class CustomValidator(Section):
    name: str
    command: str
    parser: Literal["junit", "sarif", "regex", "exit_code"] = "exit_code"
    pattern: str | None = None
    stage: Literal["syntax", "build", "lint", "test"] = "lint"
    timeout: PositiveFloat | None = None


class ValidationConfig(Section):
    enable_syntax_check: bool = True
    enable_build_check: bool = True
    enable_test_execution: bool = True
    enable_lint_check: bool = True
    commands: dict[str, str] = {}
    custom: list[CustomValidator] = []
    timeout_seconds: PositiveFloat = 600.0
    timeouts: dict[str, PositiveFloat] = {}
    # Tools (ruff, mypy, pytest, cargo, clippy) or validator names that may be missing: skipped
    # with the reason instead of failing the gate as "could not run".
    optional: list[str] = []
    # Variables named like credentials that the validators of model-written code keep (tests
    # that need a DATABASE_URL with a password in it); every other credential is dropped.
    pass_env: list[str] = []
    # "bwrap": the validators of model-written code run under bubblewrap: no network, only the
    # worktree and a private /tmp writable, the home hidden but for the toolchains and caches
    # they need (read-only). Unavailable bubblewrap is an error (exit 2), never a silent
    # unsandboxed run. `forge validate --sandbox` does the same on your own tree.
    sandbox: Literal["none", "bwrap"] = "none"
    # Folders (fnmatch patterns, relative to the repository root) whose projects and files are
    # not validated; each is listed in the report as "not validated".
    exclude: list[str] = []


class ContextConfig(Section):
    max_context_tokens: PositiveInt = 32_000
    enable_differential_context: bool = True
    enable_summarized_context: bool = True


class CostConfig(Section):
    daily_budget_usd: Usd | None = Decimal("5")
    warn_threshold_usd: Usd | None = None
    stop_threshold_usd: Usd | None = None
    run_budget_usd: Usd | None = None
    max_premium_calls_per_day: Annotated[int, Field(ge=0)] | None = None
    # Whose day the daily budget is on a shared (PostgreSQL) ledger: each person's, or the team's.
    scope: Literal["user", "team"] = "user"

    @model_validator(mode="after")
    def _ordered(self) -> CostConfig:
        stop = self.daily_stop
        warn = self.warn_threshold_usd
        if warn is not None and stop is not None and warn > stop:
            raise ValueError(f"warn_threshold_usd ({warn}) is above the stop threshold ({stop})")
        return self

    @property
    def daily_stop(self) -> Decimal | None:
        """The day's hard limit: `stop_threshold_usd`, else the daily budget."""
        if self.stop_threshold_usd is not None:
            return self.stop_threshold_usd
        return self.daily_budget_usd

    @property
    def daily_warn(self) -> Decimal | None:
        if self.warn_threshold_usd is not None:
            return self.warn_threshold_usd
        stop = self.daily_stop
        return None if stop is None else stop * Decimal("0.8")


class LedgerConfig(Section):
    """`[ledger]`: where the ledger lives. Unset: SQLite in forge's home (one person); a
    `postgresql://` URL: a team's shared database (FORGE_LEDGER_URL overrides)."""

    url: str | None = None
    # Seconds a PostgreSQL ledger waits for its database to come back, once open: a call's
    # settlement and the run's own writes try again that long before they give up.
    outage_wait_s: PositiveFloat = 30.0

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else None
        if scheme not in ("postgresql", "postgres"):
            # Never echo the value: it may hold the database's password.
            found = "no scheme" if scheme is None else f"the scheme {scheme[:20]!r}"
            raise ValueError(
                "expected a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL (leave it unset "
                f"for the local SQLite ledger), found {found}"
            )
        return value


class RoleConfig(Section):
    """`[roles.NAME]` for `forge fanout --roles`: the system prompt a role's models receive."""

    system: str
    models: list[str] = []


class FanoutConfig(Section):
    """`[fanout]`: the models `forge fanout` asks when the command line names none."""

    models: list[str] = []  # aliases or provider/model-id
    tier: str | None = None  # every model of this tier, after `models`


class ExecutionConfig(Section):
    """`[execution]`: where `forge run-milestone` runs its tasks. "local": in worktrees on this
    machine; "ray": as Ray tasks on a cluster's nodes (the optional extra `forge-cli[ray]`),
    merged here. `ray_address` is the cluster's (e.g. "10.0.0.5:6379"); unset, Ray's own
    RAY_ADDRESS, then a cluster started on this machine."""

    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None


class ForgeConfig(Section):
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    tiers: TiersConfig = TiersConfig()
    routing: RoutingConfig = RoutingConfig()
    local_models: LocalModelsConfig = LocalModelsConfig()
    validation: ValidationConfig = ValidationConfig()
    context: ContextConfig = ContextConfig()
    cost: CostConfig = CostConfig()
    ledger: LedgerConfig = LedgerConfig()
    roles: dict[str, RoleConfig] = {}
    fanout: FanoutConfig = FanoutConfig()
    execution: ExecutionConfig = ExecutionConfig()

    def tier_names(self) -> set[str]:
        return {m.tier for m in self.models.values() if m.tier}

    def models_in(self, rung: str) -> list[str]:
        """Model aliases a ladder rung stands for: a tier's models, or the one alias it names."""
        if rung in self.models:
            return [rung]
        return [alias for alias, m in self.models.items() if m.tier == rung]
