"""A model's answer, written in Markdown, as HTML that is safe to put on a page.

An answer is untrusted. Raw HTML in it is shown as text, never parsed (`<script>` reads as
`<script>`). No link or image a model wrote becomes one: `[label](url)` shows the label and
then the URL as text, so the page loads nothing and a reader sees where a link would go before
choosing to copy it (percent-encoded and in punycode, so a look-alike host cannot hide);
`javascript:` and other dangerous schemes are not even recognised as links and stay as the
text the model wrote. Control characters are shown as visible symbols (`forge.printable`).

Headings move down three levels (`#` becomes `<h4>`) so an answer's headings sit under its
card's `<h3>` in the page's outline. Past MAX_CHARS the answer is shown as plain text: the
parser takes a few seconds per megabyte, and one huge answer must not hold the report up.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from forge.printable import printable

MAX_CHARS = 100_000
HEADING_SHIFT = 3


def markdown_to_html(text: str) -> str:
    """`text` rendered as Markdown (CommonMark with tables and strikethrough), made safe."""
    text = printable(text)
    if len(text) > MAX_CHARS:
        return (
            f'<p class="note">{len(text):,} characters, too long to render as Markdown: '
            f"shown as plain text.</p><pre>{escape(text)}</pre>"
        )
    tokens = _PARSER.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1:]) + HEADING_SHIFT)}"
    html: str = _PARSER.renderer.render(tokens, _PARSER.options, {})
    return html


def _link_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return '<span class="link">'


def _link_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # Links do not nest in CommonMark, so the nearest opening before this one is its own.
    start = idx - 1
    while tokens[start].type != "link_open":
        start -= 1
    label = self.renderInlineAsText(tokens[start + 1 : idx], options, env)
    return f"</span>{_url(tokens[start], label)}"


def _image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children, options, env)
    return f'<span class="image">[image: {escape(alt)}]</span>{_url(token, label="")}'


def _url(token: Token, label: str) -> str:
    """The address a link or image points at, as text, unless the label already is it."""
    address = str(token.attrGet("src") or token.attrGet("href") or "")
    if not address or address == label:
        return ""
    return f' <span class="url">({escape(address)})</span>'


def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    parser.add_render_rule("link_open", _link_open)
    parser.add_render_rule("link_close", _link_close)
    parser.add_render_rule("image", _image)
    return parser


_PARSER = _parser()
