"""User filter expressions (row policies, ``where=`` filters): parsed with pglast,
checked against a whitelist, and deparsed — never pasted into SQL as typed.

Example::

    >>> safe_predicate("consent and amount > 10", columns={"consent", "amount"})
    'consent AND amount > 10'
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
        name = ".".join(f.sval for f in node.funcname)
        if name.removeprefix("pg_catalog.") not in SAFE_FUNCTIONS or node.agg_star or node.over or node.agg_filter:
            raise InvalidInput(f"filter expression {text!r}: function {name!r} is not allowed")
    elif isinstance(node, ast.A_Expr):
        ops = [f.sval for f in (node.name or ()) if isinstance(f, ast.String)]
        if node.kind.name not in ("AEXPR_OP", "AEXPR_IN", "AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN",
                                  "AEXPR_LIKE", "AEXPR_ILIKE", "AEXPR_NULLIF", "AEXPR_DISTINCT",
                                  "AEXPR_NOT_DISTINCT"):
            raise InvalidInput(f"filter expression {text!r}: {node.kind.name} is not allowed")
        if node.kind.name == "AEXPR_OP" and any(op not in SAFE_OPERATORS for op in ops):
            raise InvalidInput(f"filter expression {text!r}: operator {ops} is not allowed")
    elif isinstance(node, ast.TypeName):
        names = [f.sval for f in node.names if isinstance(f, ast.String)]
        if names[-1] not in SAFE_CASTS:
            raise InvalidInput(f"filter expression {text!r}: cast to {names[-1]!r} is not allowed")
        return
    elif isinstance(node, ast.SQLValueFunction):
        if node.op.name.removeprefix("SVFOP_") not in SAFE_VALUE_FUNCTIONS:
            raise InvalidInput(f"filter expression {text!r}: {node.op.name} is not allowed")
        return
    for slot in node.__slots__:
        _check(getattr(node, slot, None), text, columns)
