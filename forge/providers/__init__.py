"""Model providers: the HTTP client, its failures, limits, breaker, catalogue and secrets."""
