"""Whether a task is critical: a mistake there costs more than a premium model does.

Critical means the change touches security, authentication or authorization, cryptography,
payments, production data, database migrations or a public API. What counts is what the change
touches, not the words an issue happens to hold:
- a file, folder or code symbol the task names ("app/auth/passwords.py", `BCRYPT_COST`,
  "migrations/0042_split_names.py") says what it touches, whatever the words around it;
- a specific term of the field ("JWT", "CSRF", "Stripe", "public API") counts where the author
  writes it, but not inside a quoted error message, a code span, a version dump or a traceback
  (those never reach the prose it reads);
- a common word that also names a subject ("password", "migration", "login", "checkout",
  "permission", "sdk") counts only with support: an action on it ("add a migration", "reset
  the password"), another critical term or name of the same kind, or data words for "migrate".
  "password" in a one-line regex fix, or Django's migrations framework named in a bug report,
  is not a critical change.
The reasons quote what said so.
"""

from __future__ import annotations

import re
from typing import Literal

from forge.routing.reading import CueReading
from forge.routing.signals import READ_CHARS, TextSignals
from forge.routing.vocabulary import (
    DATA_WORDS,
    MIGRATION_NOUNS,
    MIGRATION_VERBS,
    NOT_DATA_MIGRATION,
    PRODUCTION_WORDS,
    words,
)

Quality = Literal["standard", "critical"]

# Words that name a subject as often as they name a risky change: they need support.
WEAK_WORDS = (
    "password|passwords|login|logout|sign in|signin|sign up|signup|log in|logged in|logs in|"
    "auth|authenticate|authenticated|credentials|permission|permissions|privileges|secure|"
    "security|insecure|sanitize|sanitise|sanitized|sanitization|attack|attacker|malicious|"
    "injection|secrets|cors|checkout|exported|sdk|certificate|certificates|tls|ssl|nonce|"
    "cipher|hashing|aes|rsa|migrations|migration|api clients|existing clients"
)
WEAK = frozenset(WEAK_WORDS.split("|"))
# Verbs that make a weak word the object of the change ("reset the password").
ACTIONS = frozenset(
    words(
        "add adds adding implement store hash rotate reset change encrypt decrypt expose require "
        "enforce run write apply create generate verify protect redact revoke support remove "
        "replace switch move upgrade migrate squash"
    )
)
ACTION_REACH = 3  # words between the verb and the word it acts on
# Quoted strings (error messages, values) and code spans in the prose: not what is touched.
QUOTED = re.compile(r"`[^`\n]*`|\"[^\"\n]{0,200}\"|(?<!\w)'[^'\n]{0,200}'(?!\w)")
NOT_WORD = re.compile(r"[^a-z0-9']+")
# The parts of a name (a path or a code symbol, split at "/", "_", ".", "-" and camel case) that
# say what a change touches. "keys" counts only in a path ("crypto/keys.py", not `dict_keys`).
NAME_PARTS: dict[str, str] = {
    **dict.fromkeys(
        words("auth authn login logout password passwords passwd jwt oauth oauth2 credentials"),
        "authentication",
    ),
    **dict.fromkeys(words("authz permission permissions rbac acl acls"), "authorization"),
    **dict.fromkeys(
        words("crypto cryptography encrypt encryption decrypt cipher hmac bcrypt argon2 signing"),
        "cryptography",
    ),
    **dict.fromkeys(
        words("payment payments billing stripe paypal checkout invoice invoices refund refunds"),
        "payments",
    ),
    **dict.fromkeys(words("security csrf xss sanitize sanitizer"), "security"),
    **dict.fromkeys(words("public sdk"), "a public API"),
}
PATH_PARTS = {"keys": "cryptography", "secrets": "cryptography"}
NAME_SPLIT = re.compile(r"[/_.\-]+|(?<=[a-z0-9])(?=[A-Z])")
# A migration file of an application: "migrations/0042_split_names.py", alembic's versions.
MIGRATION_FILE = re.compile(r"migrations?/\d|alembic/versions/")
DATA_REACH = 4  # words after "migrate" where its data must be named


def judge_quality(
    reading: CueReading, lowered: list[str], signals: TextSignals
) -> tuple[Quality, tuple[str, ...]]:
    touched: dict[str, list[str]] = {}
    kinds = _name_kinds(signals)
    unquoted = ""
    if reading.critical or kinds:
        unquoted = _plain(QUOTED.sub(" ", signals.prose[:READ_CHARS]))
    named = _named(signals, kinds, unquoted) if kinds else {}
    for category, keys in reading.critical.items():
        kept = [k for k in keys if f" {_plain(k).strip()} " in unquoted]
        weak = [k for k in kept if k.lower() in WEAK]
        if len(weak) < len(kept) or (weak and _supported(category, weak, lowered, named)):
            touched[category] = kept
    words_seen = set(lowered)
    has_data = not DATA_WORDS.isdisjoint(words_seen)
    if "migrations" not in touched and has_data:
        for index, word in enumerate(lowered):
            following = lowered[index + 1] if index + 1 < len(lowered) else ""
            noun = word in MIGRATION_NOUNS and following not in NOT_DATA_MIGRATION
            verb = word in MIGRATION_VERBS and not DATA_WORDS.isdisjoint(
                lowered[index + 1 : index + 1 + DATA_REACH]
            )
            if (noun and _acted_on(lowered, index)) or verb:
                touched["migrations"] = [word]
                break
    if "production data" not in touched and has_data:
        production = next((w for w in lowered if w in PRODUCTION_WORDS), None)
        if production is not None:
            touched["production data"] = [production]
    for category, names in named.items():
        found = touched.setdefault(category, [])
        found += [n for n in names if n not in found]
    if signals.unsafe_sql:
        touched.setdefault("security", []).append("SQL built from strings")
    if not touched:
        return "standard", ()
    reasons = tuple(
        f"{category} ({', '.join(repr(w) for w in found[:3])})"
        for category, found in touched.items()
    )
    return "critical", reasons


def _plain(text: str) -> str:
    """Lowered words between single spaces: "Row-Level Security" reads "row level security"."""
    return f" {NOT_WORD.sub(' ', text.lower())} "


def _name_kinds(signals: TextSignals) -> dict[str, set[str]]:
    """The critical kinds each named file or symbol's parts say, for those that say any."""
    found: dict[str, set[str]] = {}
    files = set(signals.files)
    for name in (*signals.files, *signals.symbols):
        parts = [p.lower() for p in NAME_SPLIT.split(name) if p]
        kinds = {NAME_PARTS[p] for p in parts if p in NAME_PARTS}
        if name in files:
            kinds |= {PATH_PARTS[p] for p in parts if p in PATH_PARTS}
            if MIGRATION_FILE.search(name):
                kinds.add("migrations")
        if kinds:
            found[name] = kinds
    return found


def _named(signals: TextSignals, kinds: dict[str, set[str]], unquoted: str) -> dict[str, list[str]]:
    """Critical kinds of the names, by kind; a symbol only where it stands outside quotes."""
    found: dict[str, list[str]] = {}
    files = set(signals.files)
    for name, said in kinds.items():
        if name not in files and _plain(name) not in unquoted:
            continue  # a name inside a quoted message or query
        for kind in sorted(said):
            found.setdefault(kind, []).append(name)
    return found


def _supported(
    category: str, weak: list[str], lowered: list[str], named: dict[str, list[str]]
) -> bool:
    if category in named or len({w.lower() for w in weak}) >= 2:
        return True
    firsts = {w.lower().split()[0] for w in weak}
    return any(word in firsts and _acted_on(lowered, i) for i, word in enumerate(lowered))


def _acted_on(lowered: list[str], index: int) -> bool:
    """An action verb shortly before the word at `index` ("write the migration")."""
    return any(w in ACTIONS for w in lowered[max(0, index - ACTION_REACH) : index])
