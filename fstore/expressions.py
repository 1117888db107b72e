"""User filter expressions (row policies, ``where=`` filters): parsed with pglast,
checked against a whitelist, and deparsed — never pasted into SQL as typed.

Row policies go one step further: :func:`predicate_tree` turns the expression into the
structured form that the database itself renders into SQL (``fstore.predicate_sql`` in
``sql/functions/35_row_policies.sql``), so the database accepts no free text at all.

Example::

    >>> safe_predicate("consent and amount > 10", columns={"consent", "amount"})
    'consent AND amount > 10'
    >>> predicate_tree("not is_pep")
    {'not': {'column': 'is_pep'}}
    >>> safe_predicate("1=1; drop table x")
    Traceback (most recent call last):
    ...
    fstore.errors.InvalidInput: ...
"""

from __future__ import annotations

from collections.abc import Collection

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from fstore.errors import InvalidInput

SAFE_FUNCTIONS = frozenset({
    "lower", "upper", "coalesce", "abs", "length", "date_trunc", "now", "greatest", "least",
    "round", "floor", "ceil", "nullif",
})
SAFE_OPERATORS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "~~", "!~~", "~~*", "!~~*"})
SAFE_CASTS = frozenset({
    "int2", "int4", "int8", "float4", "float8", "numeric", "text", "varchar", "bool",
    "date", "timestamp", "timestamptz", "interval",
})
SAFE_VALUE_FUNCTIONS = frozenset({"CURRENT_DATE", "CURRENT_TIMESTAMP", "SESSION_USER", "CURRENT_USER"})
# Node types that may appear at all; anything else (subqueries, row/array constructors of
# queries, parameter references, star columns...) is refused.
ALLOWED_NODES = (
    ast.BoolExpr, ast.A_Expr, ast.NullTest, ast.BooleanTest, ast.ColumnRef, ast.A_Const,
    ast.String, ast.Integer, ast.Float, ast.Boolean, ast.TypeCast, ast.TypeName, ast.FuncCall,
    ast.SQLValueFunction,
)


def safe_predicate(text: str, columns: Collection[str] | None = None) -> str:
    """Parse a boolean SQL expression, check it against the whitelist, return it deparsed.

    ``columns``, when given, is the set of column names the expression may use.
    Raises :class:`InvalidInput` naming what was refused.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("a filter expression must be a non-empty string")
    try:
        statements = parse_sql(f"SELECT 1 WHERE {text}")
    except ParseError as exc:
        raise InvalidInput(f"filter expression {text!r} is not valid SQL: {exc}") from exc
    if len(statements) != 1:
        raise InvalidInput(f"filter expression {text!r} must be a single expression")
    select = statements[0].stmt
    if not isinstance(select, ast.SelectStmt) or select.whereClause is None or any(
        getattr(select, part) for part in ("fromClause", "groupClause", "havingClause", "sortClause",
                                           "limitCount", "withClause")
    ):
        raise InvalidInput(f"filter expression {text!r} must be a single expression")
    _check(select.whereClause, text, set(columns) if columns is not None else None)
    return RawStream()(select.whereClause)


def _check(node: object, text: str, columns: set[str] | None) -> None:
    if isinstance(node, tuple):
        for item in node:
            _check(item, text, columns)
        return
    if node is None or isinstance(node, (str, int, float, bool)):
        return
    if not isinstance(node, ALLOWED_NODES):
        raise InvalidInput(f"filter expression {text!r} uses {type(node).__name__}, which is not allowed")
    if isinstance(node, ast.ColumnRef):
        names = [f.sval for f in node.fields if isinstance(f, ast.String)]
        if len(names) != 1 or len(node.fields) != 1:
            raise InvalidInput(f"filter expression {text!r}: use plain column names, not {node.fields!r}")
        if columns is not None and names[0] not in columns:
            raise InvalidInput(f"filter expression {text!r}: unknown column {names[0]!r}")
    elif isinstance(node, ast.FuncCall):
        _function_name(node, text)
    elif isinstance(node, ast.A_Expr):
        ops = [f.sval for f in (node.name or ()) if isinstance(f, ast.String)]
        if node.kind.name not in ("AEXPR_OP", "AEXPR_IN", "AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN",
                                  "AEXPR_LIKE", "AEXPR_ILIKE", "AEXPR_NULLIF", "AEXPR_DISTINCT",
                                  "AEXPR_NOT_DISTINCT"):
            raise InvalidInput(f"filter expression {text!r}: {node.kind.name} is not allowed")
        if node.kind.name == "AEXPR_OP" and any(op not in SAFE_OPERATORS for op in ops):
            raise InvalidInput(f"filter expression {text!r}: operator {ops} is not allowed")
    elif isinstance(node, ast.TypeName):
        _cast_type(node, text)
        return
    elif isinstance(node, ast.SQLValueFunction):
        if node.op.name.removeprefix("SVFOP_") not in SAFE_VALUE_FUNCTIONS:
            raise InvalidInput(f"filter expression {text!r}: {node.op.name} is not allowed")
        return
    for slot in node.__slots__:
        _check(getattr(node, slot, None), text, columns)


def _qualified(names: tuple[object, ...]) -> list[str]:
    return [n.sval if isinstance(n, ast.String) else repr(n) for n in names]


def _cast_type(node: ast.TypeName, text: str) -> str:
    """The whitelisted type of a cast, checked whole: ``t`` or ``pg_catalog.t``, no modifier."""
    names = _qualified(node.names)
    whole = ".".join(names)
    if not (len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog")) or names[-1] not in SAFE_CASTS:
        raise InvalidInput(f"filter expression {text!r}: cast to {whole!r} is not allowed")
    if node.typmods or node.arrayBounds or node.setof or node.pct_type:
        raise InvalidInput(f"filter expression {text!r}: cast to {whole!r} takes no modifier")
    return names[-1]


def _function_name(node: ast.FuncCall, text: str) -> str:
    """The whitelisted name of a function call, checked whole (``f`` or ``pg_catalog.f``)."""
    names = _qualified(node.funcname)
    whole = ".".join(names)
    if (not (len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog")) or names[-1] not in SAFE_FUNCTIONS
            or node.agg_star or node.over or node.agg_filter or node.agg_order or node.agg_distinct
            or node.func_variadic or node.agg_within_group):
        raise InvalidInput(f"filter expression {text!r}: function {whole!r} is not allowed")
    return names[-1]


_BINARY = {"=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "%"}
_LIKE = {"~~": (False, False), "!~~": (False, True), "~~*": (True, False), "!~~*": (True, True)}
_TESTS = {"IS_TRUE": ("true", False), "IS_NOT_TRUE": ("true", True), "IS_FALSE": ("false", False),
          "IS_NOT_FALSE": ("false", True), "IS_UNKNOWN": ("unknown", False), "IS_NOT_UNKNOWN": ("unknown", True)}
_SPECIALS = {"SVFOP_SESSION_USER": "session_user", "SVFOP_CURRENT_USER": "current_user",
             "SVFOP_CURRENT_DATE": "current_date", "SVFOP_CURRENT_TIMESTAMP": "current_timestamp"}


def predicate_tree(text: str, columns: Collection[str] | None = None) -> dict[str, object]:
    """Parse a row-policy predicate into the structured tree the database renders.

    The same whitelist as :func:`safe_predicate`; ``columns`` limits the column names.
    Raises :class:`InvalidInput` naming what was refused.
    """
    safe_predicate(text, columns)
    where = parse_sql(f"SELECT 1 WHERE {text}")[0].stmt.whereClause
    return _tree(where, text)


def _number(value: str) -> dict[str, object]:
    if value.startswith("-"):
        return {"op": "-", "args": [{"number": value[1:]}]}
    return {"number": value}


def _tree(node: object, text: str) -> dict[str, object]:
    if isinstance(node, ast.BoolExpr):
        args = [_tree(a, text) for a in node.args]
        kind = node.boolop.name
        if kind == "NOT_EXPR":
            return {"not": args[0]}
        return {"and" if kind == "AND_EXPR" else "or": args}
    if isinstance(node, ast.ColumnRef):
        return {"column": node.fields[0].sval}
    if isinstance(node, ast.A_Const):
        if node.isnull:
            return {"null": True}
        value = node.val
        if isinstance(value, ast.Integer):
            return _number(str(value.ival))
        if isinstance(value, ast.Float):
            return _number(value.fval)
        if isinstance(value, ast.Boolean):
            return {"boolean": bool(value.boolval)}
        return {"string": value.sval}
    if isinstance(node, ast.TypeCast):
        return {"cast": _tree(node.arg, text), "type": _cast_type(node.typeName, text)}
    if isinstance(node, ast.FuncCall):
        return {"function": _function_name(node, text), "args": [_tree(a, text) for a in node.args or ()]}
    if isinstance(node, ast.SQLValueFunction):
        return {"special": _SPECIALS[node.op.name]}
    if isinstance(node, ast.NullTest):
        return {"is_null": _tree(node.arg, text), "negated": node.nulltesttype.name == "IS_NOT_NULL"}
    if isinstance(node, ast.BooleanTest):
        test, negated = _TESTS[node.booltesttype.name]
        return {"is": _tree(node.arg, text), "test": test, "negated": negated}
    if isinstance(node, ast.A_Expr):
        kind = node.kind.name
        op = node.name[0].sval if node.name else ""
        if kind == "AEXPR_OP" and op in _LIKE:
            insensitive, negated = _LIKE[op]
            return {"like": _tree(node.lexpr, text), "pattern": _tree(node.rexpr, text),
                    "insensitive": insensitive, "negated": negated}
        if kind == "AEXPR_OP" and op in _BINARY:
            if node.lexpr is None:
                return {"op": op, "args": [_tree(node.rexpr, text)]}
            return {"op": op, "args": [_tree(node.lexpr, text), _tree(node.rexpr, text)]}
        if kind == "AEXPR_OP" and op == "!=":
            return {"op": "<>", "args": [_tree(node.lexpr, text), _tree(node.rexpr, text)]}
        if kind == "AEXPR_IN":
            return {"in": _tree(node.lexpr, text), "list": [_tree(v, text) for v in node.rexpr], "negated": op == "<>"}
        if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN"):
            low, high = node.rexpr
            return {"between": _tree(node.lexpr, text), "low": _tree(low, text), "high": _tree(high, text),
                    "negated": kind == "AEXPR_NOT_BETWEEN"}
        if kind in ("AEXPR_LIKE", "AEXPR_ILIKE"):
            return {"like": _tree(node.lexpr, text), "pattern": _tree(node.rexpr, text),
                    "insensitive": kind == "AEXPR_ILIKE", "negated": op.startswith("!")}
        if kind == "AEXPR_NULLIF":
            return {"function": "nullif", "args": [_tree(node.lexpr, text), _tree(node.rexpr, text)]}
        if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
            return {"distinct_from": [_tree(node.lexpr, text), _tree(node.rexpr, text)],
                    "negated": kind == "AEXPR_NOT_DISTINCT"}
    raise InvalidInput(f"filter expression {text!r}: {type(node).__name__} cannot be used in a row policy")
