"""Shape expressions: torch's own arithmetic parses; anything sympify would evaluate beyond it is
refused, naming what it refused, and nothing is ever evaluated."""

from __future__ import annotations

import pytest

from grid_common.shape_expressions import MAX_CHARS, ShapeExpressionError, check_shape_expression

S = "Symbol('s77', positive=True, integer=True)"
SYMBOLS = {"s77", "u0"}

# What torch 2.13 wrote when exporting real models (attention, GRU, slicing, `//` and `%`).
ACCEPTED = [
    S,
    f"Mul(Integer(8), {S})",
    f"Min(Integer(16), Mul(Integer(16), {S}))",
    f"Add(FloorDiv({S}, Integer(3)), Mod({S}, Integer(3)), Integer(2))",
    f"Add({S}, Integer(-1))",
    f"Max(Integer(1), PythonMod({S}, Integer(4)))",
    "Symbol('u0', integer=True)",
    "Integer(0)",
    "Symbol('s77')",
]


@pytest.mark.parametrize("expr", ACCEPTED)
def test_torch_shape_arithmetic_is_accepted(expr: str) -> None:
    check_shape_expression(expr, SYMBOLS)


REFUSED = {
    "__import__('os').mkdir('x')": "'__import__' is not shape arithmetic",
    "(lambda: 1)()": "expected a function such as Add, found '\\('",
    "lambda: 1": "'lambda' is not shape arithmetic|character ':'",
    f"{S}.__class__": "character '.'",
    "Integer(8).__class__.__mro__": "character '.'",
    "exec('print(1)')": "'exec' is not shape arithmetic",
    f"Pow({S}, Integer(2))": "'Pow' is not shape arithmetic",
    "Function('f')(Integer(1))": "'Function' is not shape arithmetic",
    "Symbol('s78', integer=True)": "symbol 's78' is not one of the program's dimensions",
    "Symbol('__import__')": "symbol '__import__' is not one",
    "Symbol('s77', commutative=True)": "'commutative' is not a symbol assumption",
    "Symbol('s77', integer=__import__('os'))": "integer= must be True or False",
    'Symbol("s77")': "character '\"'",
    "Mod(Integer(1))": "Mod takes 2 arguments, not 1",
    f"FloorDiv({S}, Integer(2), Integer(3))": "FloorDiv takes 2 arguments, not 3",
    "Add(Integer(1))": "Add takes 2 arguments, not 1",
    f"{S} * 8": "character '\\*'",
    "8*s77": "expected a function such as Add, found '8'",
    "s77": "expected '\\('",
    "Integer(1_000)": "found '_000'",
    "Integer(007)": "expected '\\)', found '0'",
    "Integer(8.5)": "character '.'",
    "Integer(s77)": "expected the end of the expression|found 's77'",
    "Integer(8)\nimport os": "character '\\\\n'",
    "Integer(8), Integer(9)": "expected the end of the expression, found ','",
    "Integer(8)); __import__('os')": "expected the end of the expression, found '\\)'",
    "Mul(" * 40 + "Integer(1)" + ", Integer(1))" * 40: "nests deeper than 32",
    "Add(" + ", ".join(["Integer(1)"] * 400) + ")": f"longer than {MAX_CHARS}",
    "": "expected a function such as Add, found the end",
    "Integer(": "expected the end|found the end",
}


@pytest.mark.parametrize("expr", REFUSED)
def test_anything_else_is_refused_by_name(expr: str) -> None:
    with pytest.raises(ShapeExpressionError, match=REFUSED[expr]):
        check_shape_expression(expr, SYMBOLS)


def test_only_strings_are_expressions() -> None:
    with pytest.raises(ShapeExpressionError, match="not a string"):
        check_shape_expression(8, SYMBOLS)


def test_a_program_without_dimensions_accepts_no_symbol() -> None:
    with pytest.raises(ShapeExpressionError, match="it has none"):
        check_shape_expression(S, set())
