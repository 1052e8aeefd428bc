"""An exact calculator the model can call, so arithmetic in a reply is worked out rather than guessed.

The text is never run as Python. People's notation (×, ÷, ^, −, 1,234,567, 15 %, √2, 30°) is first
rewritten into Python's arithmetic syntax, then parsed with `ast` and walked node by node; only
numbers, pi and e, the arithmetic operators and the functions in `FUNCTIONS` are allowed.
Numbers are exact: literals become `Fraction`s read from their digits (0.1 is 1/10), so sums,
products, quotients and integer powers are exact. Only an irrational step (a root that is not
exact, a logarithm, trigonometry, pi, e) makes the value approximate: a `Decimal` carried at 30
significant digits and shown to 15. Every step is bounded — sizes are estimated before a power or
factorial is computed — so a call finishes in well under a second.
"""

from __future__ import annotations

import ast
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal, DecimalException, Overflow, localcontext
from fractions import Fraction
from functools import lru_cache
from typing import Any

from app.errors import Cancelled
from app.tools.base import ToolError, ToolResult

Value = Fraction | Decimal  # exact, or approximate at PRECISION digits

PRECISION = 30  # significant digits of approximate values
SHOWN = 15  # significant digits shown of an approximate value
NOISE = Decimal("1e-25")  # below this, relative to its operands, an approximate value is rounding noise: 0
MAX_DIGITS = 10_000  # the largest number the calculator makes, in decimal digits
MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))
MAX_LENGTH = 2_000  # characters of an expression
MAX_DEPTH = 50  # levels of brackets, function calls, powers and signs
MAX_FACTORIAL = 5_000
MAX_DECIMAL_PLACES = 30  # an exact value with more places than this is shown as a fraction
MAX_ANGLE = Decimal(10) ** 100

_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}
_REFUSED_OPERATORS = {ast.Not: "not", ast.Invert: "~", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|"}
_REFUSED_OPERATORS |= {ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}
_SYMBOLS = {"×": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "∕": "/", "−": "-", "–": "-", "^": "**", "²": "**2 "}
_SYMBOLS["³"] = "**3 "  # the space keeps 3²5 from becoming 3**25
_EXPONENT = r"(?:[eE][+-]?\d+)?"
_PLAIN = re.compile(rf"0[xXbBoO][\da-fA-F_]+|\d[\d_]*(?:\.[\d_]*)?{_EXPONENT}|\.\d[\d_]*{_EXPONENT}", re.ASCII)
_GROUPED = re.compile(rf"\d{{1,3}}(?:,\d{{3}})+(?!,?\d)(?:\.\d*)?{_EXPONENT}", re.ASCII)  # 1,234,567.5
_NAME = re.compile(r"[^\W\d²³][^\W²³]*")  # letters, then letters and digits; ² and ³ are powers
_OPERAND = re.compile(r"\s*[\w.(√∛]")


@dataclass(frozen=True)
class Answer:
    """A result: `exact` when it is known exactly, `approx` its 15-digit decimal when that is not exact.

    `display` is the right-hand side to show: "1059320", "0.3", "1/2 = 0.5", "1/3 ≈ 0.333333333333333",
    or, for an approximate value (`exact` is None), "1.4142135623731"."""

    exact: Fraction | None
    approx: str | None
    display: str

    def line(self, expression: str) -> str:
        """The expression and its answer: "4837 × 219 + 17 = 1059320", "sqrt(2) ≈ 1.4142135623731"."""
        expression = " ".join(expression.split()).removesuffix("=").rstrip()
        if self.exact is not None and self.display.startswith(expression.replace(" ", "") + " "):
            return self.display  # "1/3" is answered "1/3 ≈ 0.333…", not "1/3 = 1/3 ≈ 0.333…"
        return f"{expression} {'≈' if self.exact is None else '='} {self.display}"


def evaluate(expression: str) -> Answer:
    """Work out `expression` exactly where possible; a ToolError says what could not be read or done."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(
            f"The expression is {len(expression):,} characters long; the calculator reads at most {MAX_LENGTH:,}.",
            "Split the calculation into smaller steps.",
        )
    source, where = _rewrite(expression)
    if not source.strip():
        raise ToolError("The expression is empty.", "Send the arithmetic to work out, e.g. 4837 * 219 + 17.")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as exc:
        at = (getattr(exc, "offset", None) or 0) - 1
        raise _unreadable(expression, where[at] if 0 <= at < len(where) else None) from exc
    walker = _Walker(source)
    with localcontext(Context(prec=PRECISION, Emax=MAX_DIGITS, Emin=-MAX_DIGITS)):
        try:
            value = walker.value(tree.body, 0)
        except (ZeroDivisionError, DecimalException, OverflowError) as exc:
            raise _arithmetic_error(exc) from exc
        return _answer(value, walker.divided)


class Calculator:
    """The calculator as a tool: {"expression": "…"} in, "expression = answer" out."""

    name = "calculator"
    description = (
        "Works out arithmetic exactly (whole numbers of any size, decimals, fractions, percentages, powers, roots, "
        "logarithms and trigonometry in radians); use it for any calculation instead of working it out yourself."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "The arithmetic, e.g. '4837 * 219 + 17', '15% * 80', 'sqrt(2) / 3' or '2^100'. "
                "Functions: sqrt, cbrt, root(x, n), abs, round(x, digits), floor, ceil, factorial, gcd, lcm, "
                "log(x) (natural), log(x, base), ln, log10, log2, exp, sin, cos, tan, asin, acos, atan, degrees, "
                "radians, min, max; constants pi and e.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    }
    has_effects = False
    timeout_s = 5.0

    def run(self, arguments: dict[str, Any], cancel: threading.Event) -> ToolResult:
        """Evaluate `arguments["expression"]`; raises ToolError for what cannot be worked out, Cancelled when asked."""
        if cancel.is_set():
            raise Cancelled()
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolError("The argument 'expression' must be a string.", "Send the arithmetic as text.")
        started = time.perf_counter()
        answer = evaluate(expression)
        return ToolResult(answer.line(expression), seconds=time.perf_counter() - started)


# People's notation → Python's arithmetic syntax -----------------------------------------------------------


def _rewrite(text: str) -> tuple[str, list[int]]:
    """Python syntax for `text`, and for each of its characters the index in `text` it came from."""
    text = text.rstrip()
    text = text.removesuffix("=")  # "2 + 2 ="
    out: list[str] = []
    where: list[int] = []
    calls: list[bool] = []  # for each open bracket: does it hold a function's arguments?
    previous = ""  # the kind of the last token: "number", "name", "close" or ""

    def emit(piece: str, at: int, verbatim: bool = False) -> None:
        out.append(piece)
        where.extend(at + i if verbatim else at for i in range(len(piece)))

    def unglued(at: int) -> None:  # 2pi, 1if: Python only warns about some numbers glued to names
        if _NAME.match(text, at) and not _times(text, at, "number"):
            raise _unreadable(text, at)

    i = len(text) - len(text.lstrip())
    while i < len(text):
        char = text[i]
        number = (_PLAIN if calls and calls[-1] else _GROUPED).match(text, i) or _PLAIN.match(text, i)
        if char.isspace():
            emit(" ", i)
            i += 1
            continue
        if number:
            digits, i = number.group().replace(",", ""), number.end()
            suffix = re.match(r"\s*([%°])", text[i:])
            decimal = not digits.startswith(("0x", "0X", "0b", "0B", "0o", "0O"))
            if suffix and decimal and suffix.group(1) == "%" and not _OPERAND.match(text, i + suffix.end()):
                emit(_percent(digits), number.start())
                i += suffix.end()
            elif suffix and decimal and suffix.group(1) == "°":
                emit(f"radians({digits})", number.start())
                i += suffix.end()
            else:
                emit(digits, number.start(), verbatim="," not in number.group())
            previous = "number"
            unglued(i)
        elif _times(text, i, previous):
            emit("*", i)
            i += 1
            previous = ""
        elif (name := _NAME.match(text, i)) is not None:
            emit(name.group(), i, verbatim=True)
            i, previous = name.end(), "name"
        elif char in "√∛":
            function = ("*" if previous in ("number", "close") else "") + ("sqrt" if char == "√" else "cbrt")  # 2√2
            after = i + 1 + len(text[i + 1 :]) - len(text[i + 1 :].lstrip())
            operand = _PLAIN.match(text, after) or _NAME.match(text, after)
            if after < len(text) and text[after] == "(":
                emit(function, i)
                i, previous = after, "name"
            elif operand is not None and not text.startswith("(", operand.end()):
                emit(f"{function}({operand.group()})", i)
                i, previous = operand.end(), "close"
            else:
                emit(char, i)  # left for the parser to point at
                i += 1
        else:
            if char == "\\":
                raise _unreadable(text, i)  # never arithmetic, and the start of escapes Python warns about
            if char == "(":
                calls.append(previous == "name")
                if len(calls) > MAX_DEPTH:
                    raise _too_deep()
            elif char == ")" and calls:
                calls.pop()
            emit(_SYMBOLS.get(char, char), i)
            i += 1
            previous = "close" if char in ")²³" else ""
    return "".join(out), where


def _percent(digits: str) -> str:
    """15 % → 0.15, exactly; digits Decimal cannot read (1__0) are left for the parser to point at."""
    try:
        number = Decimal(digits)
    except ArithmeticError:
        return digits + "%"
    return digits + "%" if number.is_nan() else str(number.scaleb(-2, Context(prec=MAX_LENGTH)))


def _times(text: str, i: int, previous: str) -> bool:
    """Is the x at `i` a multiplication sign, as in 3 x 4 or (2)x(3)?"""
    return text[i] in "xX" and previous in ("number", "close") and re.match(r"\s*[\d.(√∛]", text[i + 1 :]) is not None


# Walking the parsed expression ----------------------------------------------------------------------------


class _Walker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.divided = False  # did the expression divide? Then an exact result is also shown as a fraction.

    def value(self, node: ast.expr, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, ast.BinOp):  # a + b - c … is one level: walk its left-hand chain without recursion
            chain: list[ast.BinOp] = []
            while isinstance(node, ast.BinOp):
                chain.append(node)
                node = node.left
            result = self.value(node, depth + 1)
            for step in reversed(chain):
                if type(step.op) not in _OPERATORS:
                    raise _not_allowed(step)
                self.divided |= isinstance(step.op, ast.Div)
                result = _binary(step.op, result, self.value(step.right, depth + 1))
            return result
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand = self.value(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id in ("pi", "π"):
                return +_pi(PRECISION)
            if node.id == "e":
                return Decimal(1).exp()
            if node.id in FUNCTIONS:
                raise ToolError(f"'{node.id}' is a function.", f"Write it with brackets: {node.id}(…).")
            raise ToolError(f"The calculator does not know the name '{node.id}'.", _hint())
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise _not_allowed(node)

    def constant(self, node: ast.Constant) -> Fraction:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _not_allowed(node)
        if isinstance(node.value, int):
            return _checked(Fraction(node.value))
        number = Decimal(ast.get_source_segment(self.source, node) or repr(node.value))  # the digits, not the float
        if abs(number.adjusted()) > MAX_DIGITS:
            raise _too_big(abs(number.adjusted()))
        return Fraction(number)

    def call(self, node: ast.Call, depth: int) -> Value:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call)):
                raise ToolError("A number or bracket is followed directly by '('.", "Write * between them: 2*(3+4).")
            raise _not_allowed(node.func)
        name = node.func.id
        if name not in FUNCTIONS:
            raise ToolError(f"The calculator has no function '{name}'.", _hint())
        if node.keywords:
            raise ToolError(f"{name}() takes its arguments by position, not by name.", f"Write e.g. {name}(2).")
        low, high, function = FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} or more" if high == MAX_LENGTH else f"{low} to {high}"
            raise ToolError(
                f"{name}() takes {wanted} argument{'s' if wanted != '1' else ''}, not {len(node.args)}.",
                "Separate arguments with commas; write numbers without thousands separators inside brackets.",
            )
        return function(*(self.value(argument, depth + 1) for argument in node.args))


_PHRASES: dict[type[ast.AST], str] = {ast.Attribute: "attribute access with '.'", ast.Subscript: "indexing with [ ]"}
_PHRASES |= dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions")
_PHRASES |= {ast.Lambda: "lambda functions", ast.Compare: "comparisons", ast.BoolOp: "'and' and 'or'"}
_PHRASES |= {ast.IfExp: "'if … else'", ast.NamedExpr: "assignments", ast.Starred: "unpacking with *"}
_PHRASES |= {ast.List: "lists", ast.Set: "sets", ast.Dict: "dictionaries", ast.JoinedStr: "text"}
_PHRASES[ast.Tuple] = "commas outside a function's brackets (inside them, write 1234567, not 1,234,567)"


def _not_allowed(node: ast.AST) -> ToolError:
    if isinstance(node, ast.Constant):
        what = f"the value {node.value!r}"
    elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
        what = f"the operator '{_REFUSED_OPERATORS.get(type(node.op), type(node.op).__name__)}'"
    else:
        what = _PHRASES.get(type(node), f"{type(node).__name__} expressions")
    return ToolError(f"The calculator does not allow {what}.", _hint())


def _hint() -> str:
    return f"Use numbers, + - * / ^ ( ), %, pi, e and the functions {', '.join(FUNCTIONS)}."


# Arithmetic -----------------------------------------------------------------------------------------------


def _binary(op: ast.operator, a: Value, b: Value) -> Value:
    if isinstance(op, ast.Pow):
        return _power(a, b)
    if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
        raise ZeroDivisionError()
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        exact = {ast.Add: a.__add__, ast.Sub: a.__sub__, ast.Mult: a.__mul__, ast.Div: a.__truediv__}.get(type(op))
        if exact is not None:
            return _checked(exact(b))
        if isinstance(op, ast.FloorDiv):
            return Fraction(a // b)
        return a % b
    x, y = _dec(a), _dec(b)
    if isinstance(op, (ast.Add, ast.Sub)):
        return _noise(x + y if isinstance(op, ast.Add) else x - y, max(abs(x), abs(y)))
    if isinstance(op, ast.Mult):
        return x * y
    if isinstance(op, ast.Div):
        return x / y
    whole = (x / y).to_integral_value(ROUND_FLOOR)
    return whole if isinstance(op, ast.FloorDiv) else _noise(x - y * whole, abs(x))


def _power(a: Value, b: Value) -> Value:
    if isinstance(b, Fraction) and b.denominator == 1:
        if isinstance(a, Decimal):
            return a ** int(b)
        if (size := _power_digits(a, int(b))) > MAX_DIGITS:
            raise _too_big(size)
        return _checked(a ** int(b))
    if a < 0 and not (isinstance(b, Fraction) and b.denominator % 2):
        raise ToolError("A negative number to a fractional power has no real value.", "Check the signs.")
    if isinstance(b, Fraction):  # a ** (m/n) is the n-th root of a, to the power m
        root = _root(a, Fraction(b.denominator))
        return _power(root, Fraction(b.numerator)) if isinstance(root, Fraction) else root**b.numerator
    return _dec(a) ** b if a else _power(a, Fraction(1 if b > 0 else -1))


def _power_digits(base: Fraction, exponent: int) -> float:
    """About how many digits the numerator or denominator of base ** exponent has, before computing it."""
    if abs(base) in (0, 1):
        return 1.0
    if exponent.bit_length() > 1000:
        return math.inf
    return abs(exponent) * max(math.log10(abs(base.numerator)), math.log10(base.denominator))


def _root(x: Value, n: Value) -> Value:
    degree = _whole(n, "The degree of a root")
    if degree < 1:
        raise ToolError("The degree of a root must be 1 or more.", "Write e.g. root(27, 3).")
    if x < 0 and degree % 2 == 0:
        raise ToolError("An even root of a negative number has no real value.", "Check the signs.")
    if isinstance(x, Fraction):
        top, bottom = _iroot(abs(x.numerator), degree), _iroot(x.denominator, degree)
        if top**degree == abs(x.numerator) and bottom**degree == x.denominator:
            return Fraction(top, bottom) * (-1 if x < 0 else 1)
    size = abs(_dec(x))
    result = size.sqrt() if degree == 2 else size ** (Decimal(1) / degree)
    return -result if x < 0 else result


def _iroot(a: int, n: int) -> int:
    """The whole part of the n-th root of a ≥ 0 (Newton's method on integers)."""
    if a < 2 or n == 1:
        return a
    if n == 2:
        return math.isqrt(a)
    if n >= a.bit_length():
        return 1
    x = 1 << -(-a.bit_length() // n)
    while (y := ((n - 1) * x + a // x ** (n - 1)) // n) < x:
        x = y
    return x


def _log(x: Value, base: Value | None = None) -> Value:
    if x <= 0:
        raise ToolError("A logarithm needs a number above 0.", "Check the argument of log, ln, log10 or log2.")
    if base is not None and (base <= 0 or base == 1):
        raise ToolError("The base of a logarithm must be above 0 and not 1.", "Write e.g. log(8, 2).")
    if x == 1:
        return Fraction(0)
    result = _dec(x).ln() / (_dec(base).ln() if base is not None else 1)
    if isinstance(x, Fraction) and isinstance(base, Fraction):  # log(8, 2) is exactly 3
        whole = int(result.to_integral_value())
        if abs(result - whole) < NOISE and _power_digits(base, whole) <= MAX_DIGITS and base**whole == x:
            return Fraction(whole)
    return result


def _trig(name: str, x: Value) -> Value:
    if x == 0:
        return Fraction(1 if name == "cos" else 0)
    if abs(_dec(x)) > MAX_ANGLE:
        raise ToolError(f"{name}() works with angles up to 10^100 radians.", "Reduce the angle first, e.g. x % (2*pi).")
    sine, cosine = _sin_cos(_dec(x))
    scale = max(abs(_dec(x)), Decimal(1)) if isinstance(x, Decimal) else Decimal(0)  # exact angles have no noise
    sine, cosine = _noise(sine, scale), _noise(cosine, scale)
    if name == "tan" and cosine == 0:
        raise ToolError("tan() has no value at odd multiples of pi/2.", "Check the angle.")
    return sine if name == "sin" else cosine if name == "cos" else sine / cosine


def _asin(x: Value) -> Value:
    if not -1 <= x <= 1:
        raise ToolError("asin() and acos() need a number from -1 to 1.", "Check the argument.")
    if x == 0:
        return Fraction(0)
    d = _dec(x)
    return (_pi(PRECISION) / 2).copy_sign(d) if abs(d) == 1 else _atan(d / (1 - d * d).sqrt())


def _acos(x: Value) -> Value:
    return Fraction(0) if x == 1 else _noise(_pi(PRECISION) / 2 - _dec(_asin(x)), Decimal(1))


def _rounded(x: Value, places: Value | None = None, mode: str = "round") -> Value:
    digits = 0 if places is None else _whole(places, "The number of digits to round to")
    if abs(digits) > MAX_DIGITS:
        raise _too_big(abs(digits))
    exact = Fraction(Context(prec=PRECISION - 5).plus(x)) if isinstance(x, Decimal) else x
    scaled = exact * Fraction(10) ** digits
    if mode == "round":
        whole = math.floor(abs(scaled) + Fraction(1, 2)) * (-1 if scaled < 0 else 1)  # halves away from zero
    else:
        whole = math.floor(scaled) if mode == "floor" else math.ceil(scaled)
    result = Fraction(whole) / Fraction(10) ** digits
    if isinstance(x, Decimal) and abs(whole) >= 10**SHOWN:
        return _dec(result)  # more digits than an approximation knows: it stays approximate
    return result


def _whole(value: Value, what: str) -> int:
    if isinstance(value, Decimal):
        value = Fraction(Context(prec=PRECISION - 5).plus(value))
    if value.denominator != 1:
        raise ToolError(f"{what} must be a whole number.", "Round it first, e.g. with round().")
    return value.numerator


def _factorial(n: Value) -> Fraction:
    whole = _whole(n, "The argument of factorial()")
    if not 0 <= whole <= MAX_FACTORIAL:
        raise ToolError(f"factorial() works for whole numbers from 0 to {MAX_FACTORIAL:,}.", "Use a smaller number.")
    size = math.lgamma(whole + 1) / math.log(10)
    if size > MAX_DIGITS:
        raise _too_big(size)
    return Fraction(math.factorial(whole))


def _gcd_lcm(function: Callable[..., int]) -> Callable[..., Value]:
    return lambda *values: _checked(
        Fraction(function(*(_whole(v, f"Each argument of {function.__name__}()") for v in values)))
    )


def _exact_key(value: Value) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(value)


def _unless_zero(result: Value, function: Callable[[Decimal], Decimal]) -> Callable[[Value], Value]:
    return lambda x: result if x == 0 else function(_dec(x))


# Decimal helpers ------------------------------------------------------------------------------------------


def _dec(value: Value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value.numerator) / Decimal(value.denominator)


def _noise(value: Decimal, scale: Decimal) -> Decimal:
    """0 when `value` is smaller than the rounding error of approximations of size `scale`."""
    return Decimal(0) if abs(value) < scale * NOISE else value


def _checked(value: Fraction) -> Fraction:
    if max(abs(value.numerator).bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise _too_big(None)
    return value


@lru_cache(maxsize=8)
def _pi(precision: int) -> Decimal:
    with localcontext() as context:
        context.prec = precision + 5
        pi = 4 * (4 * _atan_series(Decimal(1) / 5) - _atan_series(Decimal(1) / 239))  # Machin's formula
        context.prec = precision
        return +pi


def _atan_series(x: Decimal) -> Decimal:
    total, power, k = x, x, 1
    while True:
        power *= -x * x
        term = power / (2 * k + 1)
        if total + term == total:
            return total
        total, k = total + term, k + 1


def _atan(x: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec += 10
        if abs(x) > 1:
            result = (_pi(context.prec) / 2).copy_sign(x) - _atan(1 / x)
        else:
            halvings = 0
            while abs(x) > Decimal("0.1"):  # atan(x) = 2 atan(x / (1 + sqrt(1 + x²)))
                x, halvings = x / (1 + (1 + x * x).sqrt()), halvings + 1
            result = _atan_series(x) * 2**halvings
    return +result


def _sin_cos(x: Decimal) -> tuple[Decimal, Decimal]:
    with localcontext() as context:
        context.prec = PRECISION + 10 + max(0, x.adjusted())
        x = x.remainder_near(2 * _pi(context.prec))
        context.prec = PRECISION + 10
        sums = []
        for start in (1, 0):  # Taylor series of sin, then cos
            term = x if start else Decimal(1)
            total, n = term, start
            while True:
                n += 2
                term = -term * x * x / (n * (n - 1))
                if total + term == total:
                    break
                total += term
            sums.append(total)
    return +sums[0], +sums[1]


FUNCTIONS: dict[str, tuple[int, int, Callable[..., Value]]] = {
    "sqrt": (1, 1, lambda x: _root(x, Fraction(2))),
    "cbrt": (1, 1, lambda x: _root(x, Fraction(3))),
    "root": (2, 2, _root),
    "abs": (1, 1, abs),
    "round": (1, 2, _rounded),
    "floor": (1, 1, lambda x: _rounded(x, None, "floor")),
    "ceil": (1, 1, lambda x: _rounded(x, None, "ceil")),
    "factorial": (1, 1, _factorial),
    "gcd": (1, MAX_LENGTH, _gcd_lcm(math.gcd)),
    "lcm": (1, MAX_LENGTH, _gcd_lcm(math.lcm)),
    "log": (1, 2, _log),
    "ln": (1, 1, _log),
    "log10": (1, 1, lambda x: _log(x, Fraction(10))),
    "log2": (1, 1, lambda x: _log(x, Fraction(2))),
    "exp": (1, 1, _unless_zero(Fraction(1), Decimal.exp)),
    "sin": (1, 1, lambda x: _trig("sin", x)),
    "cos": (1, 1, lambda x: _trig("cos", x)),
    "tan": (1, 1, lambda x: _trig("tan", x)),
    "asin": (1, 1, _asin),
    "acos": (1, 1, _acos),
    "atan": (1, 1, _unless_zero(Fraction(0), lambda d: _atan(d))),
    "degrees": (1, 1, _unless_zero(Fraction(0), lambda d: d * 180 / _pi(PRECISION))),
    "radians": (1, 1, _unless_zero(Fraction(0), lambda d: d * _pi(PRECISION) / 180)),
    "min": (1, MAX_LENGTH, lambda *values: min(values, key=_exact_key)),
    "max": (1, MAX_LENGTH, lambda *values: max(values, key=_exact_key)),
}


# Showing results and errors -------------------------------------------------------------------------------


def _answer(value: Value, divided: bool) -> Answer:
    if isinstance(value, Decimal):
        return Answer(None, _approx(value), _approx(value))
    top, bottom = value.numerator, value.denominator
    if bottom == 1:
        return Answer(value, None, _integer(top))
    twos = (bottom & -bottom).bit_length() - 1
    rest, fives = bottom >> twos, 0
    while rest % 5 == 0 and fives <= MAX_DECIMAL_PLACES:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    if rest == 1 and places <= MAX_DECIMAL_PLACES:
        digits = _integer(abs(top) * 10**places // bottom).rjust(places + 1, "0")
        decimal = f"{'-' if top < 0 else ''}{digits[:-places]}.{digits[-places:]}"
        return Answer(value, None, f"{_integer(top)}/{bottom} = {decimal}" if divided else decimal)
    approx = _approx(_dec(value))
    return Answer(value, approx, f"{_integer(top)}/{_integer(bottom)} ≈ {approx}")


def _integer(n: int) -> str:
    return format(Decimal(n), "f")  # str() refuses integers above 4,300 digits


def _approx(value: Decimal) -> str:
    if value.is_zero():
        return "0"
    shown = Context(prec=SHOWN).plus(value).normalize(Context(prec=SHOWN))
    exponent = shown.adjusted()
    if -7 < exponent < SHOWN:
        return format(shown, "f")
    return f"{format(shown.scaleb(-exponent), 'f')}e{exponent:+d}"


def _too_big(digits: float | None) -> ToolError:
    if digits is None or not math.isfinite(digits):
        size = f"more than {MAX_DIGITS:,}"
    else:
        size = f"about {digits:,.0f}" if digits < 1e12 else f"about 10^{math.log10(digits):.0f}"
    return ToolError(
        f"The result would have {size} digits; the calculator works with numbers up to {MAX_DIGITS:,} digits.",
        "Use a smaller calculation, or work with logarithms (log10) of the numbers instead.",
    )


def _unreadable(text: str, at: int | None) -> ToolError:
    place = f"character {at + 1} ('{text[at]}')" if at is not None else "the end"
    return ToolError(
        f"Could not read the expression at {place}.",
        "Check the brackets and operators; write multiplication with * (2*pi) and powers with ^ or **.",
    )


def _too_deep() -> ToolError:
    return ToolError(f"The expression is nested more than {MAX_DEPTH} levels deep.", "Split it into smaller steps.")


def _arithmetic_error(exc: Exception) -> ToolError:
    if isinstance(exc, ZeroDivisionError):  # decimal's DivisionByZero is one too
        return ToolError("The expression divides by zero.", "Check the divisor; a division by 0 has no value.")
    if isinstance(exc, (OverflowError, Overflow)):
        return _too_big(None)
    return ToolError("The expression has no real value.", "Check the arguments of its functions and powers.")
