"""Error text raised while computing on private rows, made safe for the data scientist to read."""

from __future__ import annotations

import re

# A number standing on its own, or a shape such as 2x5: not the digits inside a name such as
# mat1, float32 or conv2d.
_NUMBER = re.compile(
    r"\d+(?:x\d+)+|(?<![A-Za-z0-9_.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
)
_MAX_CHARS = 500


def redacted(text: str) -> str:
    """`text`'s first line, at most 500 characters, with every number replaced by `#`.

    torch's own messages quote tensor values ("Target 987654 is out of bounds", "index 7 is out
    of bounds for dimension 0 with size 3"). A failure reason reaches the data scientist, and a
    value from a private row must not; telling a value from a shape inside free text is guesswork,
    so every number goes. The reason still names the operation that failed.
    """
    lines = text.strip().splitlines()
    return _NUMBER.sub("#", lines[0] if lines else "")[:_MAX_CHARS]
