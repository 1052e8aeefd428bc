"""The calculator: exact answers, people's notation, approximations, limits, and code that is refused."""

from __future__ import annotations

import re
import threading
from fractions import Fraction

import pytest

from app.errors import Cancelled
from app.tools.base import ToolError, ToolRegistry
from app.tools.calculator import MAX_DEPTH, MAX_LENGTH, Calculator, evaluate


def _display(expression: str) -> str:
    return evaluate(expression).display


@pytest.mark.parametrize(
    ("expression", "display"),
    [
        ("4837 * 219 + 17", "1059320"),
        ("2**100", "1267650600228229401496703205376"),
        ("(3 + 4) * 2", "14"),
        ("1/3 + 1/6", "1/2 = 0.5"),
        ("0.1 + 0.2", "0.3"),
        ("0.1 * 3", "0.3"),
        ("12.5", "12.5"),
        ("100/8", "25/2 = 12.5"),
        ("1/3", "1/3 ≈ 0.333333333333333"),
        ("1/7", "1/7 ≈ 0.142857142857143"),
        ("-2/3", "-2/3 ≈ -0.666666666666667"),
        ("2**-2", "0.25"),
        ("2**-100", "1/1267650600228229401496703205376 ≈ 7.88860905221012e-31"),
        ("-2**2", "-4"),
        ("2**3**2", "512"),
        ("10 // 3", "3"),
        ("-7 % 3", "2"),
        ("123456789012345678901234567890 * 987654321", "121932631124828532112482853211126352690"),
        ("99999999999999999999 + 1", "100000000000000000000"),
        ("1e3", "1000"),
        ("1e-5 + 1", "1.00001"),
        ("1.5e2 / 3", "50"),
        ("0x1F", "31"),
        ("sqrt(144)", "12"),
        ("sqrt(2.25)", "1.5"),
        ("sqrt(1/4)", "1/2 = 0.5"),
        ("root(27, 3)", "3"),
        ("root(-32, 5)", "-2"),
        ("cbrt(-27)", "-3"),
        ("8^(1/3)", "2"),
        ("(-8)^(1/3)", "-2"),
        ("4^1.5", "8"),
        ("(-27)^(2/3)", "9"),
        ("abs(-7.5)", "7.5"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(3.14159, 2)", "3.14"),
        ("round(1234.5678, -2)", "1200"),
        ("floor(-2.5)", "-3"),
        ("ceil(-2.5)", "-2"),
        ("factorial(20)", "2432902008176640000"),
        ("factorial(0)", "1"),
        ("gcd(12, 18)", "6"),
        ("lcm(4, 6, 10)", "60"),
        ("min(3, 1/2, 2)", "1/2 = 0.5"),
        ("max(2, 7, -1)", "7"),
        ("log(8, 2)", "3"),
        ("log(1/8, 2)", "-3"),
        ("log10(1000)", "3"),
        ("log2(1024)", "10"),
        ("ln(1)", "0"),
        ("exp(0)", "1"),
        ("sin(0)", "0"),
        ("cos(0)", "1"),
        ("acos(1)", "0"),
        ("floor(pi)", "3"),
        ("round(pi, 4)", "3.1416"),
        ("floor(sqrt(2)^2)", "2"),
    ],
)
def test_exact_results(expression: str, display: str) -> None:
    answer = evaluate(expression)
    assert answer.display == display
    assert answer.exact is not None


def test_2_to_the_100_is_the_whole_31_digit_number() -> None:
    answer = evaluate("2**100")
    assert answer.exact == Fraction(2**100)
    assert len(answer.display) == 31


def test_an_answer_keeps_the_exact_value_and_its_approximation() -> None:
    third = evaluate("1/3")
    assert third.exact == Fraction(1, 3)
    assert third.approx == "0.333333333333333"
    tenth = evaluate("0.1")
    assert tenth.exact == Fraction(1, 10)
    assert tenth.approx is None
    root = evaluate("sqrt(2)")
    assert root.exact is None
    assert root.approx == root.display == "1.4142135623731"


@pytest.mark.parametrize(
    ("expression", "display"),
    [
        ("4837 × 219 + 17", "1059320"),
        ("3 · 4", "12"),
        ("3 x 4", "12"),
        ("3x4", "12"),
        ("(2)x(3)", "6"),
        ("12 x 3 x 2", "72"),
        ("6 ÷ 4", "3/2 = 1.5"),
        ("2^10", "1024"),
        ("2^-2", "0.25"),
        ("−5 + 3", "-2"),
        ("1,234,567 + 1", "1234568"),
        ("1,234.5 * 2", "2469"),
        ("15% * 80", "12"),
        ("50%", "0.5"),
        ("12.5 %", "0.125"),
        ("(15%)", "0.15"),
        ("10 % 3", "1"),
        ("√16", "4"),
        ("√(2.25)", "1.5"),
        ("√ 144 + 1", "13"),
        ("2√9", "6"),
        ("∛8", "2"),
        ("3²+4²", "25"),
        ("2 + 2 =", "4"),
        ("  7  ", "7"),
        ("gcd(12,345)", "3"),
    ],
)
def test_peoples_notation(expression: str, display: str) -> None:
    assert _display(expression) == display


@pytest.mark.parametrize(
    ("expression", "display"),
    [
        ("sqrt(2)", "1.4142135623731"),
        ("√2", "1.4142135623731"),
        ("2^0.5", "1.4142135623731"),
        ("2**0.001", "1.00069338746258"),
        ("pi", "3.14159265358979"),
        ("e", "2.71828182845905"),
        ("π²", "9.86960440108936"),
        ("exp(1)", "2.71828182845905"),
        ("log(100)", "4.60517018598809"),
        ("log10(2)", "0.301029995663981"),
        ("ln(e)", "1"),
        ("sin(pi)", "0"),
        ("cos(pi/2)", "0"),
        ("tan(pi/4)", "1"),
        ("sin(pi/6)", "0.5"),
        ("sin(30°)", "0.5"),
        ("asin(1)", "1.5707963267949"),
        ("acos(-1)", "3.14159265358979"),
        ("atan(1) * 4", "3.14159265358979"),
        ("degrees(pi)", "180"),
        ("radians(180)", "3.14159265358979"),
        ("sqrt(2)^2 - 2", "0"),
        ("max(2, sqrt(5))", "2.23606797749979"),
        ("exp(-700)", "9.85967654375977e-305"),
        ("sqrt(2) * 10^20", "1.4142135623731e+20"),
        ("sin(1)", "0.841470984807897"),
        ("cos(10^50)", "-0.613528608233664"),
    ],
)
def test_irrational_results_are_approximate_to_15_digits(expression: str, display: str) -> None:
    answer = evaluate(expression)
    assert answer.exact is None
    assert answer.display == display


@pytest.mark.parametrize(
    ("expression", "line"),
    [
        ("4837 × 219 + 17", "4837 × 219 + 17 = 1059320"),
        ("1/3 + 1/6", "1/3 + 1/6 = 1/2 = 0.5"),
        ("1/3", "1/3 ≈ 0.333333333333333"),
        ("sqrt(2)", "sqrt(2) ≈ 1.4142135623731"),
        ("2 + 2 =", "2 + 2 = 4"),
    ],
)
def test_the_tool_echoes_the_expression_as_given(expression: str, line: str) -> None:
    result = Calculator().run({"expression": expression}, threading.Event())
    assert result.text == line
    assert result.ok
    assert result.files == ()
    assert result.seconds >= 0


def test_the_tool_stops_before_starting_when_cancelled() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Calculator().run({"expression": "1 + 1"}, cancel)


def test_the_tool_fits_the_registry() -> None:
    registry = ToolRegistry()
    registry.register(Calculator())
    tool = registry.get("calculator")
    assert tool.has_effects is False
    assert tool.timeout_s == 5.0
    assert registry.check_arguments("calculator", {"expression": "1+1"}) == {"expression": "1+1"}
    with pytest.raises(ToolError, match="must be a string"):
        registry.check_arguments("calculator", {"expression": 12})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "divides by zero"),
        ("1 % 0", "divides by zero"),
        ("5 // (2 - 2)", "divides by zero"),
        ("0 ** -1", "divides by zero"),
        ("sqrt(2) / 0", "divides by zero"),
        ("10**10**10", "about 10,000,000,000 digits"),
        ("2**100000", "about 30,103 digits"),
        ("(1/3)**100000", "digits"),
        ("1.0000001 ** 10**100", "digits"),
        ("2**33219 * 2**33219", "more than 10,000 digits"),
        ("1e99999", "digits"),
        ("exp(100000)", "digits"),
        ("factorial(5001)", "from 0 to 5,000"),
        ("factorial(10**100)", "from 0 to 5,000"),
        ("factorial(4000)", "digits"),
        ("factorial(-1)", "from 0 to 5,000"),
        ("factorial(2.5)", "must be a whole number"),
        ("gcd(2.5, 5)", "must be a whole number"),
        ("sqrt(-1)", "no real value"),
        ("(-2)**0.5", "no real value"),
        ("log(0)", "above 0"),
        ("ln(-1)", "above 0"),
        ("log(8, 1)", "base"),
        ("asin(2)", "from -1 to 1"),
        ("tan(pi/2)", "no value"),
        ("sin(10^200)", "10^100"),
        ("root(8, 0)", "1 or more"),
        ("root(8, 1.5)", "whole number"),
        ("sqrt(1, 2)", "takes 1 argument, not 2"),
        ("root(8)", "takes 2 arguments, not 1"),
        ("sqrt(1,234,567)", "takes 1 argument, not 3"),
        ("sqrt(x=2)", "by position"),
        ("1,23", "commas"),
        ("", "empty"),
        ("   ", "empty"),
        ("2(3)", "Write * between them"),
        ("sqrt", "is a function"),
    ],
)
def test_what_cannot_be_worked_out_is_refused_with_a_reason(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=re.escape(message)) as caught:
        evaluate(expression)
    assert caught.value.hint


def test_a_long_expression_is_refused() -> None:
    with pytest.raises(ToolError, match=f"at most {MAX_LENGTH:,}"):
        evaluate("1" * (MAX_LENGTH + 1))
    assert evaluate("+".join(["1"] * (MAX_LENGTH // 2))).display == str(MAX_LENGTH // 2)  # long but flat is fine


@pytest.mark.parametrize(
    "expression",
    [
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "sqrt(" * (MAX_DEPTH + 1) + "2" + ")" * (MAX_DEPTH + 1),
        "-" * 1000 + "1",
        "2**" * (MAX_DEPTH + 1) + "1",
    ],
)
def test_deep_nesting_is_refused(expression: str) -> None:
    with pytest.raises(ToolError, match=f"nested more than {MAX_DEPTH} levels"):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "place"),
    [
        ("2 +* 3", "character 4 ('*')"),
        ("1 +", "the end"),
        ("(1", "character 1 ('(')"),
        ("1,234 ^ 2 +* 1", "character 12 ('*')"),
        ("2 ? 3", "character 3 ('?')"),
        ("2pi", "character 2 ('p')"),
        ("3²5", "character 3 ('5')"),
        ("1j", "character 2 ('j')"),
        ("1if 1 else 2", "character 2 ('i')"),
        ("1 + \\ 2", "character 5 ('\\')"),
    ],
)
def test_syntax_errors_say_where(expression: str, place: str) -> None:
    with pytest.raises(ToolError) as caught:
        evaluate(expression)
    assert caught.value.message == f"Could not read the expression at {place}."


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "no function '__import__'"),
        ("__import__('os').system('ls')", "attribute access"),
        ("().__class__", "attribute access"),
        ("(1).__class__.__bases__", "attribute access"),
        ("open('x')", "no function 'open'"),
        ("eval('1')", "no function 'eval'"),
        ("exec('1')", "no function 'exec'"),
        ("(lambda: 1)()", "lambda"),
        ("lambda: 1", "lambda"),
        ("[x for x in (1, 2)]", "comprehensions"),
        ("sum(x for x in (1, 2))", "no function 'sum'"),
        ("{x: 1 for x in (1,)}", "comprehensions"),
        ("x", "does not know the name 'x'"),
        ("os", "does not know the name 'os'"),
        ("__builtins__", "does not know the name"),
        ("[1, 2]", "lists"),
        ("(1, 2)[0]", "indexing"),
        ("'a' * 3", "the value 'a'"),
        ("f'{1}'", "text"),
        ("True + 1", "the value True"),
        ("None", "the value None"),
        ("1 < 2", "comparisons"),
        ("1 and 2", "'and' and 'or'"),
        ("1 if 1 else 2", "'if … else'"),
        ("(y := 2)", "assignments"),
        ("1 << 2", "'<<'"),
        ("~1", "'~'"),
        ("not 1", "'not'"),
        ("pi(2)", "no function 'pi'"),
    ],
)
def test_code_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=re.escape(message)):
        evaluate(expression)
