"""The words and phrases task analysis reads, and what each one says about a task.

Every cue is a word or a phrase of up to three words (hyphens count as spaces, so "off-by-one"
is the phrase "off by one"). A cue may vote for a task type, move the complexity score, mark the
task as critical, or count as a breadth word; one entry can do several. The tables are turned
into one dictionary at import, so analysis is a few dictionary look-ups per word.

Single words are also matched in their inflected forms (crash, crashes, crashed, crashing).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args


def words(text: str) -> list[str]:
    """A word list written as one string, which reads better in tables like these."""
    return text.split()


TaskType = Literal[
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
]
TYPES: tuple[TaskType, ...] = get_args(TaskType)
# Which type wins a tie: the more specific intent first, the catch-alls last.
TIE_ORDER: tuple[TaskType, ...] = (
    "bug_fix",
    "test",
    "docs",
    "review",
    "planning",
    "architecture",
    "refactor",
    "simple_edit",
    "question",
    "feature",
)

# -- task type -----------------------------------------------------------------------------
# (weight, "phrase|phrase|...") per type. Weight 3 is a near-certain sign, 1 a hint.
TYPE_CUES: dict[TaskType, tuple[tuple[float, str], ...]] = {
    "bug_fix": (
        (
            3,
            "bug|crash|broken|regression|panic|segfault|off by one|doesn't work|does not work|"
            "not working|stopped working|no longer works|traceback|stack trace|exception|hang|"
            "null pointer|wrong result|incorrect result|corrupt|corruption|misbehave|bugfix|"
            "hotfix|flaky|deadlock|race condition|memory leak|infinite loop|nullpointerexception|"
            "stack overflow|use after free|double free|wrong answer|fails to|failing|unhandled|"
            "users report|user reports|reported|reports that|truncated|supposed to|twice|drops|"
            "still accepted|dies|hangs forever|oom|out of memory|infinite render|render loop|"
            "goes into|started failing|doesn't compile|won't compile|does not compile|"
            "to compile|unbound variable|syntax error|not assignable|does not exist|"
            "cannot borrow|borrow checker|grows from|no longer|someone left|crashed|crashes|"
            "returns 500|returns 400|returns 404|throws 500|is slow|too slow|times out|"
            "works fine|only happens|happens when|1 in|sometimes",
        ),
        (
            2,
            "fail|failure|error|wrong|incorrect|incorrectly|undefined|nan|leak|times out|"
            "mismatch|unexpected|unexpectedly|throws|raises|freezes|stuck|erroneous|"
            "doesn't|isn't|never|garbled|duplicated entries|redact|make this safe|"
            "make it safe|restrict it|restrict this|injection|leaks|exposes|insecure|vulnerable|"
            "vulnerability|left in|broke|breaks|regressed|hangs|leak|still|anymore|"
            "should not|shouldn't|can't|cannot|won't|typeerror|keyerror|valueerror|"
            "attributeerror|indexerror|not found|404|500",
        ),
        (1, "issue|problem|slow|glitch|invalid|missing|empty|none|null|nil|errors"),
    ),
    "refactor": (
        (
            3,
            "refactor|restructure|reorganize|reorganise|decouple|deduplicate|dedupe|modularize|"
            "modularise|clean up|cleanup|tech debt|technical debt|dead code|code smell|"
            "god class|duplicated code|duplicate code|duplication|untangle|"
            "without changing behavior|without changing behaviour|same behavior|"
            "separation of concerns|single responsibility|dependency injection|own module|"
            "its own module|into its own|break it up|copy pasted|same fields|same errors|"
            "same behaviour|no behaviour changes|no behavior changes|behaviour changes|"
            "behavior changes|keep the signature|deprecated wrapper|switch to|still use|"
            "should be called|one helper|into one|pull the|move the|"
            "keep a deprecated|depend on the interface|inject it|existing code|same output|"
            "same result|same results|results must be identical|output must be identical",
        ),
        (
            2,
            "extract|simplify|consolidate|inline|rewrite|pull out|break up|generalize|callers|"
            "call sites|the callers|update the callers|signature|return type|to return|to take|"
            "generalise|readability|readable|maintainability|split|move|tidy|streamline|"
            "abstraction|helper functions|shared module|separate module|own module|"
            "into a class|into a function|into functions|into modules|reusable|"
            "hard coded|hardcoded|magic numbers",
        ),
        (
            1,
            "replace|convert|migrate|port|to use|switch|rework|boilerplate|legacy|nested|"
            "interface|inject|depend on|upgrade|hooks|helper|make it a|deprecated",
        ),
    ),
    "feature": (
        (
            3,
            "feature|new endpoint|new command|new subcommand|ability to|allow users|"
            "let users|users can|support for|add support|new option|new flag|new page|"
            "new field|new column|new api|new screen|users want|want to be able|"
            "should be able|work offline|should accept|should support|should allow|should let",
        ),
        (
            2,
            "add|implement|new|support|allow|enable|introduce|integrate|create|build|generate|"
            "expose|provide|opt in|toggle|webhook|subcommand|dashboard|pagination|widget|"
            "we need|need a|needs a|needs an|persist|sends an email|shortcut|keyboard shortcut|"
            "hotkey|"
            "sql query",
        ),
        # Things a feature is made of; bug reports name them too, so they only lean.
        (
            1,
            "api|service|handler|module|function|method|class|script|tool|bot|app|endpoint|"
            "option|flag|command|button|page|form|cli|ui|notification|export|filter|search|"
            "upload|download|sync|scheduler|queue|cache|retry|retries|query",
        ),
    ),
    "test": (
        (
            3,
            "unit test|integration test|e2e test|end to end test|coverage|fixture|"
            "test case|test suite|property based|fuzz|fuzzing|regression test|snapshot test|"
            "golden test|pytest|doctest|test coverage|unittest|jest|mocha|vitest|proptest|"
            "quickcheck|hypothesis|parametrize|parameterize|testing|table driven|property test|"
            "cargo fuzz",
        ),
        (2, "test|assert|assertion|mock|mocks|stub|stubs|edge cases|spec|specs|benchmark|tested"),
    ),
    "docs": (
        (
            3,
            "docs|documentation|docstring|readme|changelog|doc comment|doc comments|"
            "api reference|tutorial|user guide|guide|manpage|man page|javadoc|jsdoc|rustdoc|"
            "typedoc|usage example|usage examples|wiki|contributing guide|code comments|"
            "release notes|docs site|faq|documenting|undocumented|howto|changelog entry|"
            "comment|comments",
        ),
        (2, "describe|explain how to|write up|markdown|example|examples"),
        (1, "explain|diagram|document|section|outdated"),
    ),
    "review": (
        (
            3,
            "review|audit|code review|pull request|look over|critique|second opinion|"
            "sanity check|feedback|reviewing|peer review|security review|tell me what's wrong|"
            "what's wrong|whats wrong|anything wrong|is this safe|is this correct|is this right|"
            "is this ok|tell me if|before i approve|before i merge|go over|look through|"
            "take a look|look at|report what you find|security problems",
        ),
        (
            2,
            "inspect|assess|evaluate|vet|check for|look for|any issues|potential issues|"
            "problems with|pr|diff|go through|spot|smells|risks|concerns|weaknesses|"
            "improvements|suggest improvements|point out",
        ),
        (1, "check|quality|best practices|don't change anything"),
    ),
    "architecture": (
        (
            3,
            "architecture|architect|system design|high level design|design doc|layering|"
            "microservice|microservices|monolith|event driven|event sourcing|cqrs|"
            "plugin system|plugin architecture|module boundaries|component diagram|"
            "data model|trade offs|tradeoffs|trade off|adr|hexagonal|clean architecture|"
            "service boundaries|overall structure|how should we structure|design a|"
            "design the|design an|architectural|scalable design|reference architecture|"
            "where should|what goes where|data ownership|cut over|own service|"
            "multi tenancy|schema per tenant|caching strategy|propose a",
        ),
        (
            2,
            "design|structure|components|subsystem|blueprint|topology|interfaces between|"
            "choose between|which database|should we use|scalability|scalable|"
            "message queue|message bus|storage layer|persistence layer|infrastructure|"
            "extensible|pluggable|abstractions|boundaries|layers|approach|strategy|vs|versus|"
            "or just|should it|should we",
        ),
        (1, "system|platform|framework|schema|protocol|distributed"),
    ),
    "planning": (
        (
            3,
            "plan|roadmap|milestone|milestones|break down|breakdown|step by step plan|"
            "implementation plan|migration plan|rollout plan|prioritize|prioritise|"
            "work breakdown|task list|list the steps|outline the steps|phases|sprint|backlog|"
            "epic|epics|rollout|phased|break this down|break it down|into tasks|subtasks|"
            "tickets|turn this into|turn that into|turn it into|how long would|how long will|"
            "how long does|write the plan|the plan|sequence",
        ),
        (2, "estimate|timeline|steps|outline|schedule|stages|order of|sequence|deadline"),
        (1, "tasks|first|next|rollback"),
    ),
    "question": (
        (
            3,
            "difference between|what is|what are|what does|how does|how do|why does|why is|"
            "why do|is it possible|what happens|meaning of|purpose of|walk me through|"
            "help me understand|where is|where are|which one|is there|are there|how can i|"
            "how would|what would|when should|tell me|what's|how's|why's",
        ),
        (1, "understand|wondering|curious|confused|clarify|know"),
    ),
    "simple_edit": (
        (
            3,
            "typo|typos|misspelling|misspelled|misspelt|spelling|whitespace|indentation|"
            "trailing whitespace|capitalization|capitalisation|one line|one liner|reword|"
            "wording|unused import|unused imports|sort imports|copyright year|version number|"
            "bump|uncomment|comment out|print statement|log level|default value|rename|"
            "punctuation|string literal|hyphen|semicolon|too noisy|logged at|make it|give it|"
            "gitignore|copyright",
        ),
        (
            2,
            "constant|constants|log message|error message|label|placeholder|tooltip|color|"
            "colour|timeout value|default|text|title|variable|field name|shorten|lowercase|"
            "uppercase|increase|decrease|lower|raise the|change the",
        ),
        (1, "update|change|set|value|string|version|message"),
    ),
}

# The first verb of a request says most about its intent.
LEAD_WEIGHT = 4.0
LEAD_VERBS: dict[str, TaskType] = {
    **dict.fromkeys(
        words(
            "fix debug resolve repair patch troubleshoot diagnose investigate reproduce hotfix "
            "restrict redact sanitize sanitise escape harden "
            "unbreak"
        ),
        "bug_fix",
    ),
    **dict.fromkeys(
        words(
            "refactor restructure reorganize reorganise extract simplify decouple deduplicate "
            "dedupe consolidate split move inline rewrite modularize modularise untangle tidy "
            "streamline cleanup convert migrate port generalize generalise replace rework optimize "
            "optimise upgrade switch pull lift unify flatten"
        ),
        "refactor",
    ),
    **dict.fromkeys(
        words(
            "add implement create build introduce support enable allow integrate expose provide "
            "generate write wire hook let setup develop extend teach"
        ),
        "feature",
    ),
    **dict.fromkeys(words("test cover"), "test"),
    **dict.fromkeys(words("document annotate"), "docs"),
    **dict.fromkeys(words("review audit critique assess evaluate inspect vet proofread"), "review"),
    **dict.fromkeys(words("design architect propose sketch"), "architecture"),
    **dict.fromkeys(
        words("plan outline prioritize prioritise estimate schedule roadmap"), "planning"
    ),
    **dict.fromkeys(words("explain describe compare summarize summarise"), "question"),
    **dict.fromkeys(
        words(
            "rename bump change update tweak adjust set increase decrease lower raise remove "
            "delete correct capitalize reword swap disable uncomment sort bold reorder shorten"
        ),
        "simple_edit",
    ),
}
# Verbs whose meaning depends on their object: "add tests" is a test task, "update the README"
# a docs task, "fix a typo" a simple edit.
OBJECT_LED_VERBS = frozenset(
    words(
        "add write create update improve extend expand generate increase fix correct make complete "
        "fill change refresh rewrite revise clean tidy polish describe turn setup introduce"
    )
)
OBJECT_TYPES: dict[str, TaskType] = {
    **dict.fromkeys(
        words(
            "test tests unit integration e2e coverage fixture fixtures testcase testcases doctest "
            "doctests benchmark benchmarks assertions"
        ),
        "test",
    ),
    **dict.fromkeys(
        words(
            "docs documentation docstring docstrings readme changelog comments comment guide "
            "tutorial manpage wiki faq howto"
        ),
        "docs",
    ),
    **dict.fromkeys(
        words("plan roadmap milestones breakdown timeline estimates schedule tickets stories"),
        "planning",
    ),
    **dict.fromkeys(words("architecture adr diagram blueprint"), "architecture"),
    **dict.fromkeys(words("fuzz fuzzing fuzzer hypothesis property"), "test"),
    **dict.fromkeys(words("interface abstraction"), "refactor"),
    **dict.fromkeys(
        words(
            "typo typos spelling misspelling whitespace indentation capitalization wording "
            "punctuation warning warnings lint clippy"
        ),
        "simple_edit",
    ),
}
OBJECT_WINDOW = 6
# Verbs whose particle changes their meaning ("set up" builds, "set" edits a value): the pair
# reads as the verb it stands for.
PHRASAL_VERBS: dict[tuple[str, str], str] = {
    ("set", "up"): "setup",
    ("clean", "up"): "cleanup",
    ("speed", "up"): "optimize",
    ("break", "down"): "outline",
    ("break", "up"): "split",
    ("split", "up"): "split",
    ("pull", "out"): "extract",
    ("track", "down"): "debug",
    ("look", "into"): "investigate",
    ("figure", "out"): "investigate",
    ("look", "over"): "review",
    ("look", "at"): "review",
    ("look", "through"): "review",
    ("go", "over"): "review",
    ("go", "through"): "review",
    ("take", "a"): "review",
    ("write", "up"): "document",
}
# "fix the failing test" is a bug fix, not a test task: these verbs are diverted by other objects.
FIX_VERBS = frozenset({"fix", "correct", "repair"})

# Words that open a question; "can you ..." and "could you ..." are requests, not questions.
QUESTION_OPENERS = frozenset(
    words(
        "what why how where when which who whose is are does do did can could would should will "
        "was were has have isn't aren't doesn't don't what's how's why's whats hows"
    )
)
REQUEST_OPENERS = frozenset(words("can could would will"))
QUESTION_WEIGHT = 3.0
QUESTION_MARK_WEIGHT = 1.0
# Polite or framing words before the real verb: "please could you quickly add ...".
PREAMBLE = frozenset(
    words(
        "please pls kindly can could would will you we i need needs to let's lets us want "
        "should must go ahead and now also then first quickly just help me task todo"
    )
)
ERROR_OUTPUT_WEIGHT = 4.0

# -- complexity ----------------------------------------------------------------------------
# (delta, "phrase|..."): positive cues make a task harder, negative ones easier.
COMPLEXITY_CUES: tuple[tuple[float, str], ...] = (
    (
        0.15,
        "race condition|deadlock|concurrency|distributed|thread safe|thread safety|lock free|"
        "memory leak|consensus|sharding|replication|zero downtime|from scratch|overhaul|"
        "redesign|rearchitect|re architect|cache invalidation|eventual consistency|"
        "backward compatible|backwards compatible|backward compatibility|"
        "backwards compatibility|across services|multi tenant|multitenant|real time|"
        "high availability|horizontal scaling|intermittent|intermittently|nondeterministic|"
        "non deterministic|heisenbug|under load|data loss|fault tolerant|fault tolerance|"
        "leader election|exactly once|at least once|distributed tracing|state machine|"
        "garbage collector|lock contention|multithreaded|multi threaded|event sourcing|"
        "microservices|whole codebase|entire codebase|new subsystem|end to end|oom|"
        "out of memory|pprof|grows from|hangs forever|sigterm|graceful shutdown|n+1|n 1|p95|p99|"
        "monolith|data ownership|cut over|without downtime|no downtime|re encrypt|key rotation|"
        "offline|conflict handling|conflict resolution|service worker|multi tenancy|"
        "row level security|entry points|error isolation|schema evolution|event sourced|"
        "across the workspace|across the codebase|external customers|must not break|"
        "double charging|plugin boundary",
    ),
    (
        0.1,
        "callers|call sites|places that call|borrow checker|infinite loop|infinite render|"
        "render loop|memory usage|memory grows|leaking|leaks memory",
    ),
    (
        0.1,
        "performance|optimize|optimise|async|asynchronous|parallel|parallelize|scalability|"
        "scalable|streaming|protocol|plugin system|framework|engine|rewrite|migrate|"
        "rate limiting|rate limiter|backpressure|"
        "websocket|websockets|oauth|oauth2|sso|encryption|compiler|type system|subsystem|"
        "latency|throughput|bottleneck|legacy|complex|tricky|architecture|transaction|"
        "transactions|orchestration|scheduler|sandbox|interpreter|query planner|"
        "incremental|resumable|crash recovery|idempotent|idempotency|consistency|"
        "synchronization|synchronisation|locking|threads|pipeline|"
        "cross platform|multiple services|several modules|multiple modules|plugin|plugins|"
        "caching layer|"
        "heap|shutdown|blocked|channel|goroutine|goroutines|mutex|rotate|rollback|rollout|"
        "property test|hypothesis|fuzz|fuzzing|runnable examples|i18n|"
        "internationalization|localization|translations|background job|background jobs|"
        "subscription|single use|invalidate|invalidates|conflict|replay|rate limit|redis|cdn|"
        "projections|workspace|consistent|transition|strategy|walk me through|flow",
    ),
    (
        0.05,
        "schema|parser|generic|generics|profile|benchmark|multiple|several|hard|large|database|"
        "queue|integration|pagination|timeout|timeouts|network|http|sql|interface|trait|macro|"
        "macros|recursion|recursive|edge cases|error handling|logging|config|configuration|"
        "modules|components|endpoints|workflow|ci|docker|kubernetes|regression|flaky|deploy|"
        "deployment|retry logic|safely|safe|keep the signature|without breaking|must not",
    ),
    (
        0.08,
        "race|lifetime|lifetimes|ownership|1 in|sometimes|randomly|nondeterministically",
    ),
    (
        -0.15,
        "typo|typos|misspelling|misspelled|spelling|whitespace|indentation|one line|one liner|"
        "bump|version number|copyright year|unused import|unused imports|sort imports|"
        "capitalization|capitalisation|punctuation|comment out|uncomment|print statement|"
        "reword|wording|trivial|one word|single line|log level|hyphen|semicolon",
    ),
    (
        -0.08,
        "small|simple|tiny|minor|quick|single|just|only|default value|constant|log message|"
        "docstring|getter|setter|error message|placeholder|tooltip|label|"
        "straightforward|easy|obvious|little|short|only reads|only used in|single file|"
        "the local|local variable|one function|changelog entry|logged at|too noisy|script|"
        "shell script",
    ),
    (-0.05, "in the same file|same file"),
    (-0.04, "comment|field|string|message"),
)

# -- breadth -------------------------------------------------------------------------------
# Words that widen a task's reach; the strong ones rarely appear in a narrow task.
BREADTH_STRONG = (
    "every|across|system wide|everywhere|entire|whole|throughout|codebase wide|repo wide|"
    "project wide|globally|all modules|all files|all endpoints|all services|all callers|"
    "all call sites|every module|every file|whole project|across the codebase|pub items|"
    "public items|public functions|every public|all public|main packages|all packages"
)
BREADTH_WEAK = "all|each|any"
# Phrases with a breadth word that widen nothing: "every time" is about frequency.
NOT_BREADTH = (
    "every time|each time|all good|every run|any time|at all|all of them|every render|"
    "every request|every event|every call|every push|every page|every day|every night"
)
BREADTH_STRONG_WEIGHT = 0.08
BREADTH_WEAK_WEIGHT = 0.04

# -- quality -------------------------------------------------------------------------------
# What makes a task critical: a mistake here costs more than a premium model does.
CRITICAL_CUES: dict[str, str] = {
    "security": (
        "security|vulnerability|vulnerabilities|vulnerable|cve|xss|csrf|sql injection|"
        "injection|sanitize|sanitise|sanitization|exploit|security hole|ssrf|path traversal|"
        "privilege escalation|secrets|secret key|api key|api keys|escape html|attack|"
        "attacker|malicious|untrusted input|insecure|secure|cors|content security policy"
    ),
    "authentication": (
        "auth|authentication|authenticate|authenticated|login|logout|log in|sign in|signin|"
        "signup|sign up|password|passwords|jwt|jwts|oauth|oauth2|sso|saml|session token|"
        "access token|refresh token|auth token|bearer token|session cookie|mfa|2fa|totp|"
        "credentials|api token|openid|oidc|magic link|reset password|password reset|"
        "expired tokens|expired token|signed with|alg none|refresh token|session fixation"
    ),
    "authorization": (
        "authorization|authorisation|authorize|authorise|permission|permissions|rbac|acl|acls|"
        "access control|user roles|admin only|privileges|entitlements|role based"
    ),
    "cryptography": (
        "crypto|cryptography|cryptographic|encrypt|encryption|encrypted|decrypt|decryption|"
        "hashing|password hash|password hashing|bcrypt|argon2|scrypt|hmac|tls|ssl|certificate|"
        "certificates|private key|public key|aes|rsa|sha256|nonce|key rotation|"
        "digital signature|signing key|cipher"
    ),
    "payments": (
        "payment|payments|billing|stripe|paypal|checkout|credit card|credit cards|payout|"
        "payouts|charge the|subscription billing|double charging"
    ),
    "production data": (
        "production database|production data|prod database|prod db|production db|"
        "customer data|user data|pii|gdpr|personal data|data retention|backfill|live data|"
        "drop table|truncate table|delete user data|production records"
    ),
    "migrations": (
        "database migration|database migrations|schema migration|schema migrations|"
        "db migration|data migration|migration script|alembic|flyway|liquibase|alter table|"
        "drop column|add column|add a column|rename column|migrations"
    ),
    "a public API": (
        "public api|public apis|public interface|breaking change|breaking changes|"
        "api contract|semver|sdk|api versioning|public endpoint|public endpoints|"
        "exported api|versioned api|api compatibility|public rest api|public go sdk|public sdk|"
        "published crate|published package|published library|external customers|"
        "must not break|exported|api clients|api consumers|existing clients"
    ),
}
# A migration is a database migration unless it moves from, to or of something else ("the
# migration to pytest"); the verb "migrate" is one only next to data words. "production" is
# critical next to data words ("the production sessions table"), not in "prod crashed".
MIGRATION_NOUNS = frozenset({"migration", "migrations"})
NOT_DATA_MIGRATION = frozenset({"from", "to", "of", "away"})
MIGRATION_VERBS = frozenset({"migrate", "migrating", "migrated"})
PRODUCTION_WORDS = frozenset({"production", "prod"})
DATA_WORDS = frozenset(
    words(
        "database db schema table tables column columns sql postgres postgresql mysql sqlite "
        "records rows data"
    )
)

# -- verbs that start an action, for splitting "fix X and add Y" --------------------------
ACTION_VERBS = frozenset(
    set(LEAD_VERBS)
    | set(
        words(
            "ensure make use run check verify validate handle return raise log emit print show "
            "hide keep drop stop start send call pass throw store save load read parse render "
            "format clean tidy commit merge push deploy install configure publish release register "
            "wrap expose mark note list include exclude skip ignore catch retry measure profile "
            "benchmark look tell find figure go take get turn set sketch"
        )
    )
)
# Verbs that are also common nouns ("test cases", "document store"): an action only before
# a determiner or pronoun.
NOUN_VERBS = frozenset(
    words(
        "test document log plan design review check cache report list note mark print format "
        "release patch cover move sort split set change update support build run call"
    )
)
DETERMINERS = frozenset(
    words(
        "the a an this that these those it its them their his her our my your all every each any "
        "some one two three"
    )
)


class Cue(NamedTuple):
    """What one word or phrase says about a task (a tuple: thousands are built at import)."""

    types: dict[TaskType, float]
    complexity: float
    breadth: float
    critical: str | None


def _forms(word: str) -> list[str]:
    """The word and its regular inflections; over-generation is harmless for look-ups."""
    forms = [word, word + "s", word + "es", word + "ed", word + "d", word + "ing"]
    if word.endswith("e"):
        forms.append(word[:-1] + "ing")
    if word.endswith("y"):
        forms += [word[:-1] + "ies", word[:-1] + "ied"]
    if len(word) <= 5 and word[-1] not in "aeiouwxy":
        forms += [word + word[-1] + "ed", word + word[-1] + "ing"]
    return forms


def _inflected(phrases: str) -> list[str]:
    """Every phrase with its first word in each of its forms."""
    out: list[str] = []
    for phrase in phrases.split("|"):
        first, _, rest = phrase.partition(" ")
        tail = " " + rest if rest else ""
        out += [form + tail for form in _forms(first)]
    return out


def _build() -> dict[str, Cue]:
    types: dict[str, dict[TaskType, float]] = {}
    complexity: dict[str, float] = {}
    breadth: dict[str, float] = {}
    critical: dict[str, str] = {}
    for task_type, levels in TYPE_CUES.items():
        for weight, phrases in levels:
            for form in _inflected(phrases):
                votes = types.setdefault(form, {})
                votes[task_type] = max(votes.get(task_type, 0.0), weight)
    for delta, phrases in COMPLEXITY_CUES:
        for form in _inflected(phrases):
            complexity.setdefault(form, delta)  # the tables run strongest first
    for weight, phrases in (
        (BREADTH_STRONG_WEIGHT, BREADTH_STRONG),
        (BREADTH_WEAK_WEIGHT, BREADTH_WEAK),
        (0.0, NOT_BREADTH),
    ):
        for phrase in phrases.split("|"):
            breadth[phrase] = weight
    for category, phrases in CRITICAL_CUES.items():
        for form in _inflected(phrases):
            critical.setdefault(form, category)
    forms = types.keys() | complexity.keys() | breadth.keys() | critical.keys()
    # A phrase that holds a critical word stays critical ("security review", "login page").
    for form in forms:
        if " " in form and form not in critical:
            inner = next((critical[w] for w in form.split() if w in critical), None)
            if inner is not None:
                critical[form] = inner
    return {
        form: Cue(
            types.get(form, {}),
            complexity.get(form, 0.0),
            breadth.get(form, 0.0),
            critical.get(form),
        )
        for form in forms
    }


CUES: dict[str, Cue] = _build()


def _longest_from() -> dict[str, int]:
    longest: dict[str, int] = {}
    for form in CUES:
        first, *rest = form.split()
        if rest:
            longest[first] = max(longest.get(first, 1), len(rest) + 1)
    return longest


# For a word that starts a phrase, the most words any phrase starting with it has.
LONGEST_FROM: dict[str, int] = _longest_from()
