"""What of a server's text may be shown: all of it, or nothing when it may hold a secret.

A careless or hostile server can echo the key it received, re-encoded: percent-encoded,
lower-cased, base64, HTML entities, hex, ``\\u`` escapes, or with a tab, NUL, NBSP or
zero-width space slipped in. Masking such an echo means recognising every encoding, and a
missed one leaks the key into the terminal and the append-only journal. So the text is
not masked: :func:`may_reveal` decides, erring towards yes, and :func:`shown_server_text`
drops the whole text when it says yes.

How :func:`may_reveal` decides: the text (its first :data:`MAX_SCANNED` characters) is
decoded in every way listed above, two layers deep; each decoded *view* and each secret
are reduced to their *skeleton* (compatibility-decomposed, accents stripped, lower case,
ASCII letters and digits only, so that any inserted separator or change of case vanishes);
the text may reveal a secret when a view's skeleton holds the secret's skeleton, or any
:data:`FRAGMENT` consecutive characters of it (a truncated echo).
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

#: Only this much of a server's text is ever looked at (and far less is shown).
MAX_SCANNED = 2_000
#: At most this many characters of a server's text are shown.
MAX_SHOWN = 200
#: An echo of this many consecutive letters and digits of a secret counts as an echo.
FRAGMENT = 12
#: Decoding layers: a base64 of a percent-encoded key is still found.
DEPTH = 2
#: Shown instead of a server's text that may hold a secret.
WITHHELD_NOTE = "réponse de l'OPCO non affichée : elle semblait contenir la clé ou un secret envoyé"

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]+")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[0-7]{1,3}|.)", re.DOTALL)
_MAX_VIEWS = 64
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "a": "\a"}


def shown_server_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` as it may be shown and journalled: one printable line of at most
    :data:`MAX_SHOWN` characters, or :data:`WITHHELD_NOTE` when it may reveal a secret.

    Contract: the result never reveals any of ``secrets`` in any encoding :func:`may_reveal`
    knows; it contains no control, format or surrogate character, so it can be written to
    a terminal, JSON or SQLite as it is. Only the first :data:`MAX_SCANNED` characters of
    ``text`` are considered.
    """
    scanned = text[:MAX_SCANNED]
    kept = tuple(secrets)
    if may_reveal(scanned, kept):
        return WITHHELD_NOTE
    line = " ".join("".join(c if c.isprintable() else " " for c in scanned).split())
    if len(line) > MAX_SHOWN:
        line = line[: MAX_SHOWN - 1] + "…"
    # The one-line form is a different string: checked too, the contract is about what is shown.
    return WITHHELD_NOTE if may_reveal(line, kept) else line


def may_reveal(text: str, secrets: Iterable[str]) -> bool:
    """Whether ``text`` may hold one of ``secrets``, plainly or encoded (see the module)."""
    wanted = [_Wanted.of(secret) for secret in secrets if secret]
    if not wanted:
        return False
    for view in _views(text):
        flat = _skeleton(view)
        grams = {flat[i : i + FRAGMENT] for i in range(len(flat) - FRAGMENT + 1)}
        folded = view.casefold()
        if any(item.found(flat, grams, folded) for item in wanted):
            return True
    return False


@dataclass(frozen=True)
class _Wanted:
    """One secret as :func:`may_reveal` looks for it."""

    skeleton: str
    fragments: frozenset[str]
    #: A secret with few letters and digits is also looked for as it is, case aside.
    folded: str | None

    @classmethod
    def of(cls, secret: str) -> _Wanted:
        skeleton = _skeleton(secret)
        fragments = frozenset(
            skeleton[i : i + FRAGMENT] for i in range(len(skeleton) - FRAGMENT + 1)
        )
        folded = secret.casefold() if len(skeleton) < 6 else None
        return cls(skeleton, fragments, folded)

    def found(self, flat: str, grams: set[str], folded: str) -> bool:
        if self.folded is not None and self.folded in folded:
            return True
        if not self.skeleton:
            return False
        return self.skeleton in flat or not self.fragments.isdisjoint(grams)


def _skeleton(text: str) -> str:
    """The ASCII letters and digits of ``text``, lower case, after compatibility decomposition
    (a full-width « Ａ » or an « é » count as « a » and « e »)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _views(text: str) -> list[str]:
    """``text`` and what it decodes to, :data:`DEPTH` layers deep (at most ``_MAX_VIEWS``)."""
    views = [text]
    seen = {text}
    layer = [text]
    for _ in range(DEPTH):
        found: list[str] = []
        for view in layer:
            for decoded in _decodings(view):
                if decoded not in seen and len(views) < _MAX_VIEWS:
                    seen.add(decoded)
                    views.append(decoded)
                    found.append(decoded)
        layer = found
    return views


def _decodings(text: str) -> list[str]:
    """One layer of decoding of ``text``, each way it could have been encoded."""
    decoded = [
        unquote(text),
        html.unescape(text),
        _unescape(text),
        # Separators removed, so that a base64 or hex echo cut by a space, a NUL or a dash
        # is whole again.
        "".join(c for c in text if c.isprintable() and not c.isspace()),
        _NOT_BASE64.sub("", text),
    ]
    decoded.extend(_decode_runs(text))
    return [item for item in decoded if item != text]


def _unescape(text: str) -> str:
    """Backslash escapes (JSON, Python, C) decoded; any other escaped character kept."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body[0] in "ux" and len(body) > 1:
            return chr(int(body[1:], 16))
        if body[0] in "01234567":
            return chr(int(body, 8))
        return _SIMPLE_ESCAPES.get(body, body)

    return _ESCAPE.sub(one, text)


def _decode_runs(text: str) -> list[str]:
    """Every base64 (standard or URL-safe, any alignment) and hex run of ``text``, decoded.

    A run is decoded from each of its possible starting offsets, because the letters before
    an encoded echo (« refuse » in « refuseQ0xFLUFCQw== ») look like base64 too.
    """
    decoded: list[str] = []
    for match in _BASE64_RUN.finditer(text):
        run = match.group(0).rstrip("=").replace("-", "+").replace("_", "/")
        for offset in range(4):
            part = run[offset:]
            part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
            try:
                raw = base64.b64decode(part + "=" * (-len(part) % 4), validate=True)
            except (binascii.Error, ValueError):
                continue
            decoded.append(raw.decode("latin-1"))
    for match in _HEX_RUN.finditer(text):
        run = match.group(0)
        for offset in range(2):
            part = run[offset:]
            part = part[: len(part) - len(part) % 2]
            decoded.append(bytes.fromhex(part).decode("latin-1"))
    return decoded
