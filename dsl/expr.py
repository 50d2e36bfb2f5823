"""Safe expressions over a record's fields.

An expression is a small subset of Python, parsed once with `ast` and checked
against a whitelist; nothing is ever passed to `eval`. Field names never become
Python names: the kernel compiler turns them into dict lookups, so an
expression can only read the record it is given.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from uee.dsl.errors import Diagnostic, Position
from uee.dsl.functions import FUNCTIONS

# String methods usable as `field.lower()`; each maps to the function of the same name.
METHODS = {name for name, function in FUNCTIONS.items() if function.method}

_BIN_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_UNARY_OPS = (ast.Not, ast.USub, ast.UAdd)
_CONSTANT_TYPES = (str, int, float, bool, type(None))
MAX_EXPR_LENGTH = 4000


@dataclass(frozen=True)
class Expr:
    """A checked expression. `normalized` is equal for expressions that differ only in spacing."""

    text: str
    normalized: str
    fields: frozenset[str]
    pos: Position
    tree: ast.expr = field(compare=False, hash=False, repr=False)


class _Checker(ast.NodeVisitor):
    def __init__(self, text: str, pos: Position) -> None:
        self.text = text
        self.pos = pos
        self.errors: list[Diagnostic] = []
        self.fields: set[str] = set()

    def _at(self, node: ast.AST) -> Position:
        return _map_position(self.pos, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def _refuse(self, node: ast.AST, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic("DSL_BAD_EXPR", message, self._at(node), hint))

    def generic_visit(self, node: ast.AST) -> None:
        allowed = (
            ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.IfExp,
            ast.List, ast.Tuple, ast.Set, ast.Load,
            ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
            ast.In, ast.NotIn, ast.Is, ast.IsNot,
        )  # fmt: skip
        if not isinstance(node, allowed):
            self._refuse(node, f"{_describe(node)} is not allowed in an expression")
            return
        super().generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, _CONSTANT_TYPES):
            self._refuse(node, f"constant {node.value!r} is not allowed in an expression")

    def visit_Name(self, node: ast.Name) -> None:
        # A bare name is always a field, even one named like a function (`max > 10`):
        # functions are only ever called, never passed around.
        self.fields.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root = field_path(node)
        if node.attr.startswith("__"):
            self._refuse(node, f"'{node.attr}' is not a field name that expressions may read")
            return
        if root is None:
            self._refuse(node, "attribute access is only allowed on fields (customer.address.city)")
            return
        self.fields.add(root[0])

    def visit_Subscript(self, node: ast.Subscript) -> None:
        index = node.slice
        if (isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub)
                and isinstance(index.operand, ast.Constant)):
            index = index.operand  # items[-1]
        if not (isinstance(index, ast.Constant) and type(index.value) in (int, str)):
            self._refuse(node, "only constant indexes are allowed, like items[0], items[-1] "
                         "or m['key']")
            return
        self.visit(node.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if not isinstance(node.op, _BIN_OPS):
            self._refuse(node, f"operator {_describe(node.op)} is not allowed in an expression")
            return
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, _UNARY_OPS):
            self._refuse(node, f"operator {_describe(node.op)} is not allowed in an expression")
            return
        self.visit(node.operand)

    def visit_Call(self, node: ast.Call) -> None:
        if node.keywords:
            self._refuse(node, "keyword arguments are not allowed in an expression")
            return
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            self._refuse(node, "*args are not allowed in an expression")
            return
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in METHODS:
            self._check_arity(node, func.attr, len(node.args) + 1)
            self.visit(func.value)
        elif isinstance(func, ast.Name) and func.id in FUNCTIONS:
            self._check_arity(node, func.id, len(node.args))
        else:
            name = ast.unparse(func)
            self._refuse(node, f"unknown function '{name}'", _suggest(name.split(".")[-1]))
            return
        for arg in node.args:
            self.visit(arg)

    def _check_arity(self, node: ast.Call, name: str, count: int) -> None:
        low, high = FUNCTIONS[name].min_args, FUNCTIONS[name].max_args
        if count < low or (high is not None and count > high):
            wanted = (f"{low}" if low == high else f"{low} or more" if high is None
                      else f"{low}-{high}")
            self._refuse(node, f"{name}() takes {wanted} argument(s), got {count}")


def field_path(node: ast.expr) -> tuple[str, ...] | None:
    """`a.b.c` -> ('a', 'b', 'c'); None when the expression is not a chain of field names."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


def may_leave_json(expr: Expr) -> bool:
    """True when the expression, given a record of JSON values, can compute a value JSON has
    no place for: a non-finite float (`amount * 1e308`, `float(text)`) or a set. The kernel
    checks such values only where they can arise, keeping the check off the common path."""
    return _may_leave_json(expr.tree)


def _may_leave_json(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, float) and node.value - node.value != 0.0
    if isinstance(node, ast.Name | ast.Attribute | ast.Compare):
        return False  # a field holds what was decoded; a comparison is a bool
    if isinstance(node, ast.BinOp | ast.Set):
        return True  # arithmetic can overflow to inf or make nan
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        function = FUNCTIONS.get(name)
        if function is not None and function.json_safe:
            return False
        if function is not None and function.leaves_json:
            return True  # float("nan")
    return any(_may_leave_json(child) for child in ast.iter_child_nodes(node))


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "a lambda", "NamedExpr": "an assignment (:=)", "Await": "await",
        "Yield": "yield", "ListComp": "a list comprehension", "DictComp": "a dict comprehension",
        "SetComp": "a set comprehension", "GeneratorExp": "a generator expression",
        "Starred": "*unpacking", "Dict": "a dict literal", "JoinedStr": "an f-string",
        "Pow": "'**'", "BitAnd": "'&'", "BitOr": "'|'", "BitXor": "'^'", "LShift": "'<<'",
        "RShift": "'>>'", "MatMult": "'@'", "Invert": "'~'", "Slice": "a slice",
    }  # fmt: skip
    kind = type(node).__name__
    return names.get(kind, kind)


def _suggest(name: str) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _map_position(start: Position, lineno: int, col_offset: int) -> Position:
    """Map a 1-based line and 0-based column inside the expression onto the file."""
    if lineno == 1:
        return Position(start.path, start.line, start.col + col_offset)
    return start.shifted(lineno - 1, col_offset + 1)


def parse_expr(text: str, pos: Position, verbatim: bool = True
               ) -> tuple[Expr | None, list[Diagnostic]]:
    """Parse and check one expression; `pos` is where its text starts in the file. When the
    text is not verbatim in the file (a block or folded scalar), every problem is reported at
    `pos`, since columns inside the text are not columns in the file."""
    expr, problems = _parse_expr(text, pos)
    if not verbatim:
        problems = [Diagnostic(p.code, p.message, pos, p.hint) for p in problems]
    return expr, problems


def _parse_expr(text: str, pos: Position) -> tuple[Expr | None, list[Diagnostic]]:
    source = text.strip()
    lead = len(text) - len(text.lstrip())
    pos = Position(pos.path, pos.line, pos.col + lead)
    if not source:
        return None, [Diagnostic("DSL_BAD_EXPR", "empty expression", pos)]
    if len(source) > MAX_EXPR_LENGTH:
        return None, [Diagnostic("DSL_BAD_EXPR", f"expression longer than {MAX_EXPR_LENGTH} "
                                 "characters", pos, "split the work over several stages")]
    try:
        tree = ast.parse(source, mode="eval")
        checker = _Checker(source, pos)
        checker.visit(tree)
        normalized = ast.unparse(tree)
    except SyntaxError as exc:
        at = _map_position(pos, exc.lineno or 1, (exc.offset or 1) - 1)
        return None, [Diagnostic("DSL_BAD_EXPR", f"invalid expression: {exc.msg}", at)]
    except (RecursionError, MemoryError):
        return None, [Diagnostic("DSL_BAD_EXPR", "expression nested too deeply", pos,
                                 "split the work over several stages")]
    if checker.errors:
        return None, checker.errors
    expr = Expr(
        text=source,
        normalized=normalized,
        fields=frozenset(checker.fields),
        pos=pos,
        tree=tree.body,
    )
    return expr, []
