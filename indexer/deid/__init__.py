"""The de-identification engine: pure functions over pydicom datasets, no I/O."""

from collections.abc import Iterable

from indexer.deid.burned_in import BurnedInPolicy
from indexer.deid.engine import DeidResult, Identity, apply, explain
from indexer.deid.pixels import Mask
from indexer.deid.profile import RULES_VERSION, VIDEO_RULES_VERSION, Plan, compile_plan
from indexer.deid.rules import RuleSet
from indexer.deid.table import Action, Option, load_safe_private, load_table, parse_options
from indexer.errors import RuleError


def basic_plan(options: Iterable[Option] = ()) -> Plan:
    """The Basic Profile plan with these options."""
    return compile_plan(load_table(), options)


def build_plan(
    option_names: Iterable[str] = (),
    *,
    burned_in: str = "reject",
    rules: RuleSet | None = None,
    pixel_masks: tuple[Mask, ...] = (),
) -> Plan:
    """The Basic Profile with options named in any accepted spelling.

    Raises
    ------
    RuleError
        An unknown or contradictory option, or an unknown burned-in policy.

    """
    try:
        options = parse_options(option_names)
        policy = BurnedInPolicy(burned_in)
    except ValueError as e:
        raise RuleError(str(e)) from None
    if policy is BurnedInPolicy.CLEAN and not pixel_masks:
        raise RuleError("the 'clean' burned-in policy needs a pixel masks file (pixel_masks_file)")
    return compile_plan(
        load_table(),
        options,
        burned_in=policy,
        rules=rules,
        safe_private=load_safe_private(),
        pixel_masks=pixel_masks,
    )


__all__ = [
    "RULES_VERSION",
    "VIDEO_RULES_VERSION",
    "Action",
    "DeidResult",
    "Identity",
    "Option",
    "Plan",
    "apply",
    "basic_plan",
    "compile_plan",
    "explain",
    "load_table",
]
