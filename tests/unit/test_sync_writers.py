"""Only the change writers store a payment's sync columns: everyone else asks the decision."""

from __future__ import annotations

import ast
from pathlib import Path

import reconciler
from reconciler.services.schedule import SYNC_COLUMNS

PACKAGE = Path(reconciler.__file__).parent
# The one decision (`domain.payment.apply`) and its two writers (Core and ORM rows).
WRITERS = (PACKAGE / "services" / "changes.py", PACKAGE / "adapters" / "repository" / "changes.py")
DECISIONS = (PACKAGE / "domain" / "sync.py", PACKAGE / "domain" / "payment.py")  # touch no row


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr in SYNC_COLUMNS
                and not _another_table(target.value)
            ):
                found.append((node.lineno, target.attr))
        if isinstance(node, ast.Call) and _builds_a_row(node.func):
            for keyword in node.keywords:
                if keyword.arg in SYNC_COLUMNS:
                    found.append((node.lineno, keyword.arg))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
        ):
            found.append((node.lineno, "setattr"))
    return found


# Rows of other tables that happen to have a column of the same name (a delivery's own
# `last_error` and `last_delay_s`, kept by `domain.delivery`).
OTHER_ROWS = {"delivery", "deliveries", "deliveries_table", "endpoint"}


def _another_table(value: ast.expr) -> bool:
    return isinstance(value, ast.Name) and value.id in OTHER_ROWS


def _builds_a_row(func: ast.expr) -> bool:
    """`Payment(...)`, or `.values(...)` of an UPDATE/INSERT of any table but another's."""
    if isinstance(func, ast.Name):
        return func.id == "Payment"
    if not isinstance(func, ast.Attribute) or func.attr != "values":
        return False
    statement = func.value
    while isinstance(statement, ast.Call) and isinstance(statement.func, ast.Attribute):
        statement = statement.func.value  # walk back through .where(...) and friends
    if isinstance(statement, ast.Call) and statement.args:
        return not _another_table(statement.args[0])
    return True


def test_no_module_but_the_store_writes_sync_columns() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in (*WRITERS, *DECISIONS) or "simulator" in path.parts:
            continue  # the simulator is a separate program with its own words
        for line, column in _writes(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} writes {column}")
    assert offenders == []


def test_the_checker_sees_each_way_of_writing_a_column() -> None:
    source = (
        "payment.sync_state = 'x'\n"
        "payment.poll_attempts += 1\n"
        "Payment(next_poll_at=None)\n"
        "update(payments).values(give_up_at=None)\n"
        "list_payments(sync_state='polling')\n"
        "delivery.last_error = 'x'\n"
        "update(deliveries).where(a).values(last_error='x')\n"
        "setattr(payment, name, value)\n"
    )
    assert [column for _, column in _writes(ast.parse(source))] == [
        "sync_state",
        "poll_attempts",
        "next_poll_at",
        "give_up_at",
        "setattr",
    ]
