"""Curated packs: versioned YAML shipped with Almanac (``curated/*.yaml``), each a list of catalog books
(by name and flavour, resolved to the newest dated release), map regions and models; and the plan that
sets a pack's size against the free disk before anything starts."""

from .packs import Pack, PackError, PackItem, load_packs
from .plan import Plan, PlanItem, plan_pack

__all__ = ["Pack", "PackError", "PackItem", "Plan", "PlanItem", "load_packs", "plan_pack"]
