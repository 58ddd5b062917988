"""``--pair FILE``: an explicit mapping from A's tensor names to B's, for what automatic
pairing (:func:`xentdbg.compare.params.match_parameters`) leaves ambiguous.

JSON, an object::

    {"dense_1/kernel": "['middle']['w']", "dense_2/kernel": "['last_hidden']['w']"}

or TOML, top-level keys (quote names holding ``/`` or brackets)::

    "dense_1/kernel" = "['middle']['w']"

Names are those of the parameter tables xentdbg prints (``xentdbg compare`` shows both
sides' tables when pairing fails). The file is untrusted input: its size is checked
before it is read, and anything but a flat string-to-string mapping is refused.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from xentdbg.errors import UsageError
from xentdbg.paths import describe_not_file

MAX_BYTES = 1 << 20  # a mapping of a few thousand names; anything larger is not a pair file
_HINT = 'Write {"A name": "B name", ...} as JSON, or "A name" = "B name" lines as TOML.'


def load_pair_file(path: str) -> dict[str, str]:
    """The mapping in ``path``, A's names to B's. Raises :class:`UsageError` (exit 2)."""
    p = Path(path)
    if not p.is_file() or not os.access(p, os.R_OK):
        raise UsageError(f"--pair {path}: {describe_not_file(p)}.", hint=_HINT)
    kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise UsageError(f"--pair {path}: {size} bytes, more than a pair file's {MAX_BYTES}.", hint=_HINT)
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # the file may have grown since
    except OSError as e:
        raise UsageError(f"--pair {path}: cannot be read ({e.strerror or e}).", hint=_HINT) from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"--pair {path}: more than a pair file's {MAX_BYTES} bytes.", hint=_HINT)
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except ValueError as e:  # JSONDecodeError, TOMLDecodeError, or an integer of more than 4300 digits
        raise UsageError(f"--pair {path}: not valid {kind}: {e}", hint=_HINT) from None
    except RecursionError:  # both parsers recurse once per level of nesting
        raise UsageError(f"--pair {path}: {kind} nested too deeply; a pair file is a flat mapping.",
                         hint=_HINT) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UsageError(f"--pair {path}: expected a flat mapping of A's tensor names to B's names.", hint=_HINT)
    if len(set(data.values())) != len(data):
        raise UsageError(f"--pair {path}: a B name is given for two A names.", hint=_HINT)
    return dict(data)
