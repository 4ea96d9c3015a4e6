"""Text a model or a server sent, made safe to show on a terminal.

An answer is untrusted: `ESC ]2;title BEL` would set the window title, `ESC [2J` clear the
screen, `ESC ]52;c;...` write the clipboard, and the one-byte C1 forms (U+009B is CSI) do the
same on terminals that read them. Every place forge prints such text to a terminal passes it
through `printable`, which keeps newline and tab and shows every other control character as a
visible symbol instead of obeying it. JSON keeps the exact text (JSON escapes it).
"""

from __future__ import annotations

# C0 controls as their Unicode Control Pictures (ESC -> U+241B), DEL as U+2421; C1 controls
# have no pictures, so they are written out as escapes (`\x9b`).
_VISIBLE: dict[int, str] = {code: chr(0x2400 + code) for code in range(0x20)}
_VISIBLE[0x7F] = "\u2421"
_VISIBLE.update({code: f"\\x{code:02x}" for code in range(0x80, 0xA0)})
del _VISIBLE[ord("\n")], _VISIBLE[ord("\t")]


def printable(text: str) -> str:
    """`text` with every control character but newline and tab shown, not obeyed.

    A Windows line end (`\\r\\n`) looks the same as `\\n` on a terminal, so it becomes one; a
    lone carriage return, which would let a line overwrite itself, is shown as `␍`.
    """
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return text.translate(_VISIBLE)
