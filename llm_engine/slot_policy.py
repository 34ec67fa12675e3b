"""Which expert lives in which bank slot: a frequency-weighted LRU policy for one layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Plan:
    slots: np.ndarray  # slot for each requested expert, same order as the request
    misses: np.ndarray  # positions (into the request) whose expert must be read from disk


class SlotPolicy:
    """Assigns the experts one call needs to `capacity` slots.

    With `retain` off every call reads all of its experts (the OS page cache is then the
    only cache). With it on, slots keep their expert across calls; a victim is the slot
    whose expert has the lowest use count divided by its age in calls, so experts that are
    both frequent and recent stay.

    `place` puts a guess of the next call's experts into slots ahead of it (next-layer
    prefetch, a saved hot list): it counts no use. A bank that keeps nothing between calls
    keeps what was placed until its next call, which finds those experts in their slots.
    """

    def __init__(self, num_experts: int, capacity: int, retain: bool):
        self.capacity = capacity
        self.retain = retain
        self.slot_of = np.full(num_experts, -1, dtype=np.int64)
        self.expert_in = np.full(capacity, -1, dtype=np.int64)
        self.uses = np.zeros(num_experts, dtype=np.float64)
        self.last = np.zeros(num_experts, dtype=np.float64)
        self.tick = 0

    def plan(self, experts: np.ndarray) -> Plan:
        """Slots for `experts` (unique ids, len <= capacity); updates the residency table."""
        n = len(experts)
        if n > self.capacity:
            raise ValueError(f"{n} experts requested but the bank has {self.capacity} slots")
        self.tick += 1
        self.uses[experts] += 1
        self.last[experts] = self.tick
        if not self.retain:
            # Only experts placed ahead of this call hold slots; the rest take the free ones.
            slots = self.slot_of[experts].copy()
            self.forget()
            misses = np.flatnonzero(slots < 0)
            if len(misses):
                slots[misses] = np.setdiff1d(np.arange(self.capacity), slots[slots >= 0])[: len(misses)]
            return Plan(slots, misses)
        return self._assign(experts)

    def place(self, experts: np.ndarray) -> Plan:
        """Slots for a guess of the next call's experts (unique ids, len <= capacity), counting no use;
        `misses` are those not in the bank already."""
        if len(experts) > self.capacity:
            raise ValueError(f"{len(experts)} experts placed but the bank has {self.capacity} slots")
        if not self.retain:
            self.forget()
            slots = np.arange(len(experts), dtype=np.int64)
            self.slot_of[experts] = slots
            self.expert_in[: len(experts)] = experts
            return Plan(slots, slots.copy())
        return self._assign(experts)

    def forget(self) -> None:
        """Nothing is in the bank any more (another layer sharing it wrote into it)."""
        self.slot_of[self.expert_in[self.expert_in >= 0]] = -1
        self.expert_in[:] = -1

    def _assign(self, experts: np.ndarray) -> Plan:
        slots = self.slot_of[experts].copy()
        misses = np.flatnonzero(slots < 0)
        if len(misses):
            wanted = np.zeros(self.capacity, dtype=bool)
            wanted[slots[slots >= 0]] = True
            holders = self.expert_in
            empty = holders < 0
            score = np.where(
                empty,
                -1.0,
                self.uses[np.maximum(holders, 0)] / (1.0 + self.tick - self.last[np.maximum(holders, 0)]),
            )
            score[wanted] = np.inf
            victims = np.argsort(score, kind="stable")[: len(misses)]
            for pos, slot in zip(misses, victims):
                old = self.expert_in[slot]
                if old >= 0:
                    self.slot_of[old] = -1
                self.expert_in[slot] = experts[pos]
                self.slot_of[experts[pos]] = slot
                slots[pos] = slot
        return Plan(slots, misses)
