"""Ledger URLs: which backend a URL names, and how to show one without its password."""

from __future__ import annotations

import re

# user:password@ in a URL's authority; also `password=...` in a query string or a DSN.
_AUTH_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PARAM_PASSWORD = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def mask_url(text: str) -> str:
    """`text` with any password in it (a URL's user:password@, or password=...) as ***."""
    return _PARAM_PASSWORD.sub(r"\1***", _AUTH_PASSWORD.sub(r"\1***@", text))


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in ("postgresql", "postgres")
