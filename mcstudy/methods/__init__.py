"""The study's methods and their registry: METHODS maps each method id to its class (the baseline and
the peers, one file each in this package; MC-Learn's study adapters in mclearn.py), and the views
derived from the classes (NO_WALL_CLOCK_KNOB, METHOD_OWN_FIELDS). A new method is its class (its
plan_budget, wall_clock_note and own_fields) and one call of register_method."""
from __future__ import annotations

from typing import Callable

from mcstudy.config import MCLEARN_VARIANTS
from mcstudy.engine import Method, RunContext

from .baseline import Baseline, FullPass
from .infobatch import InfoBatch, infobatch_anneal_start
from .mclearn import MCLEARN_FIELDS, MCLearnMethod, MCLearnPaperMethod, check_variant_keys, last_layer_gradients, last_linear
from .rho_loss import RhoLoss, irreducible_losses
from .scored import MIN_SELECTION_RATE, ScoredBatches, selection_rate_plan
from .selective_backprop import SelectiveBackprop
from .short_schedule import ShortSchedule, short_schedule_length
from .uniform import Uniform
from .vcas import VCAS, VCASState, importance_keep


PEER_METHODS: dict[str, Callable[[RunContext], Method]] = {
    "short-schedule": ShortSchedule, "uniform": Uniform, "selective-backprop": SelectiveBackprop, "rho-loss": RhoLoss,
    "infobatch": InfoBatch, "vcas": VCAS,
}


METHODS: dict[str, Callable[[RunContext], Method]] = {
    "baseline": Baseline, "mclearn": MCLearnMethod, "mclearn-paper": MCLearnPaperMethod, **PEER_METHODS}
METHODS.update({name: MCLearnMethod for name in MCLEARN_VARIANTS})  # the variants differ by their presets' keys
# Views of the registry, derived from its classes (derive_registry_views; register_method keeps them current).
# Methods whose knobs do not bound wall-clock (their class's wall_clock_note) run once per seed, at their
# defaults. Every Config key but the bookkeeping ones is compared when a stored run is reused, except for
# methods that never read it: METHOD_OWN_FIELDS maps the ids of the methods that read keys to the keys only
# they read (their classes' own_fields), so changing, say, w_clip keeps the stored baseline
# (tests/test_results.py records which keys each method reads to check this).
NO_WALL_CLOCK_KNOB: dict[str, str] = {}
METHOD_OWN_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {}


def own_fields_by_readers(methods: dict[str, type]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """Return {the method ids that read them: the Config keys only they read}, from each method
    class's `own_fields` (a key several methods list goes under all of them, in registry order)."""
    found: dict[tuple[str, ...], tuple[str, ...]] = {}
    for key in dict.fromkeys(key for cls in methods.values() for key in cls.own_fields):
        readers = tuple(name for name, cls in methods.items() if key in cls.own_fields)
        found[readers] = found.get(readers, ()) + (key,)
    return found


def derive_registry_views() -> None:
    """Set NO_WALL_CLOCK_KNOB and METHOD_OWN_FIELDS, in place, from the classes in METHODS."""
    NO_WALL_CLOCK_KNOB.clear()
    NO_WALL_CLOCK_KNOB.update({name: cls.wall_clock_note for name, cls in METHODS.items() if cls.wall_clock_note})
    METHOD_OWN_FIELDS.clear()
    METHOD_OWN_FIELDS.update(own_fields_by_readers(METHODS))


def register_method(name: str, cls: type) -> type:
    """Add the method class `cls` (a Method: its plan_budget, wall_clock_note and own_fields say how
    budget studies plan it and which keys it reads) to METHODS under the id `name`, derive the
    registry's views again and return `cls`: a new method is its class and this one call. An id
    that another class holds raises ValueError."""
    if METHODS.get(name, cls) is not cls:
        raise ValueError(f"Method id {name!r} is taken by {METHODS[name].__name__}: register "
                         f"{cls.__name__} under another id.")
    METHODS[name] = cls
    derive_registry_views()
    return cls


derive_registry_views()
