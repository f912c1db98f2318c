"""The shape arithmetic a torch.export archive may carry, read by a grammar of Grid's own.

torch's loader hands every shape expression of an archive (`expr_str`) to `sympy.sympify`, which
evaluates Python. So before anything loads an archive, each expression must parse under this
grammar, which admits only what torch 2.13 writes (sympy's `srepr` form) for integer
arithmetic on the export's own dimension symbols:

    expr     := call
    call     := FUNCTION "(" expr ("," expr)* ")"      Add Mul Min Max: two or more
                                                         FloorDiv Mod PythonMod: exactly two
              | "Integer" "(" ["-"] DIGITS ")"
              | "Symbol" "(" "'" NAME "'" ("," KEYWORD "=" ("True" | "False"))* ")"

NAME must be a symbol of the program's range_constraints and KEYWORD one of sympy's assumption
names below. Nothing is evaluated here: the text is tokenized and parsed, and whatever lies
outside the grammar is refused with the token that put it there. Exporting real models
(Linear, Conv2d, BatchNorm, GroupNorm, TransformerEncoderLayer, Embedding, GRU, LSTM, slicing
and `//`, `%` on the batch size) gives only these forms; torch 2.13 writes no infix ones.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

MAX_CHARS = 2000
MAX_DEPTH = 32
# Function name -> (fewest, most) arguments; None for no upper bound.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "Add": (2, None),
    "Mul": (2, None),
    "Min": (2, None),  # the exporter's clamp of a slice's end, e.g. in attention
    "Max": (2, None),
    "FloorDiv": (2, 2),
    "Mod": (2, 2),
    "PythonMod": (2, 2),
}
ASSUMPTIONS = frozenset(
    {"positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite"}
)
_TOKEN = re.compile(
    r" *(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>-?(?:0|[1-9][0-9]*))"
    r"|'(?P<string>[^'\\]*)'|(?P<punct>[(),=]))"
)


class ShapeExpressionError(ValueError):
    """An expression outside the grammar; the message names what was refused."""


@dataclass(frozen=True)
class _Token:
    kind: str  # name, int, string, punct or end
    text: str


def check_shape_expression(text: object, symbols: Collection[str]) -> None:
    """Refuse `text` unless it is integer arithmetic, in torch's form, on `symbols`.

    `symbols` are the program's own dimension symbols (its range_constraints). Raises
    ShapeExpressionError naming the function, keyword, symbol or character refused.
    """
    if not isinstance(text, str):
        raise ShapeExpressionError("it is not a string")
    if len(text) > MAX_CHARS:
        raise ShapeExpressionError(f"it is longer than {MAX_CHARS} characters")
    parser = _Parser(_tokens(text), frozenset(symbols))
    parser.expr(0)
    parser.expect("end", "")


def _tokens(text: str) -> Iterator[_Token]:
    """The tokens of `text` in order, read as the parser asks, so a refusal names the first
    thing outside the grammar."""
    position = 0
    while text[position:].strip(" "):
        match = _TOKEN.match(text, position)
        if match is None:
            bad = text[position:].lstrip(" ")[:1]
            raise ShapeExpressionError(f"the character {bad!r} is not part of shape arithmetic")
        kind = match.lastgroup
        assert kind is not None
        yield _Token(kind, match.group(kind))
        position = match.end()
    yield _Token("end", "")


class _Parser:
    """Recursive descent over the tokens; every method consumes exactly what it accepts."""

    def __init__(self, tokens: Iterator[_Token], symbols: frozenset[str]) -> None:
        self.tokens = tokens
        self.ahead: _Token | None = None
        self.symbols = symbols

    def peek(self) -> _Token:
        if self.ahead is None:
            self.ahead = next(self.tokens, _Token("end", ""))
        return self.ahead

    def take(self) -> _Token:
        token = self.peek()
        self.ahead = None
        return token

    def expect(self, kind: str, text: str) -> _Token:
        token = self.take()
        if token.kind != kind or (text and token.text != text):
            wanted = repr(text) if text else "the end of the expression"
            raise ShapeExpressionError(f"expected {wanted}, found {_shown(token)}")
        return token

    def expr(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ShapeExpressionError(f"it nests deeper than {MAX_DEPTH} calls")
        token = self.take()
        if token.kind != "name":
            raise ShapeExpressionError(f"expected a function such as Add, found {_shown(token)}")
        self.expect("punct", "(")
        if token.text == "Integer":
            self.expect("int", "")
        elif token.text == "Symbol":
            self.symbol()
        elif token.text in FUNCTIONS:
            self.arguments(token.text, depth)
            return
        else:
            raise ShapeExpressionError(
                f"{token.text!r} is not shape arithmetic Grid accepts (only Integer, Symbol, "
                f"{', '.join(FUNCTIONS)})"
            )
        self.expect("punct", ")")

    def arguments(self, function: str, depth: int) -> None:
        fewest, most = FUNCTIONS[function]
        count = 0
        while True:
            self.expr(depth + 1)
            count += 1
            if self.peek().text != ",":
                break
            self.take()
        self.expect("punct", ")")
        if count < fewest or (most is not None and count > most):
            raise ShapeExpressionError(f"{function} takes {fewest} arguments, not {count}")

    def symbol(self) -> None:
        name = self.take()
        if name.kind != "string":
            raise ShapeExpressionError(f"expected a symbol's quoted name, found {_shown(name)}")
        if name.text not in self.symbols:
            raise ShapeExpressionError(
                f"the symbol {name.text!r} is not one of the program's dimensions "
                f"({', '.join(sorted(self.symbols)) or 'it has none'})"
            )
        while self.peek().text == ",":
            self.take()
            keyword = self.expect("name", "")
            if keyword.text not in ASSUMPTIONS:
                raise ShapeExpressionError(f"{keyword.text!r} is not a symbol assumption")
            self.expect("punct", "=")
            value = self.expect("name", "")
            if value.text not in ("True", "False"):
                raise ShapeExpressionError(f"{keyword.text}= must be True or False")


def _shown(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "string":
        return f"the string {token.text!r}"
    return repr(token.text)
