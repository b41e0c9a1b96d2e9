"""The de-identification engine: pure functions over pydicom datasets, no I/O."""

from indexer.deid.engine import DeidResult, Identity, apply
from indexer.deid.profile import Plan, compile_plan
from indexer.deid.table import Action, Option, load_table


def basic_plan(options: tuple[Option, ...] = ()) -> Plan:
    """The Basic Profile plan with these options."""
    return compile_plan(load_table(), options)


__all__ = [
    "Action",
    "DeidResult",
    "Identity",
    "Option",
    "Plan",
    "apply",
    "basic_plan",
    "compile_plan",
    "load_table",
]
