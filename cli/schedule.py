"""Which job a free worker takes next: persona affinity, and jobs held by another process left for last.

A worker that has prepared a persona (with an engine) gets that persona's next job: its engine's models and the
prepared persona are already in its memory. A worker with nothing of its own takes a persona nobody has yet,
and only then one another worker has (so no worker idles while jobs remain).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


def affinity_key(plan: Any) -> tuple[str, str]:
    """What a worker keeps between jobs: the engine's models and the persona it prepared with them."""
    return plan.engine_name, str(plan.loaded.persona_file)


@dataclass
class Item:
    index: int  # the job's place in the batch's plan
    plan: Any
    wait: bool = False  # True: its output was held by another process; take it, waiting for that holder
    tries: int = 0  # workers that died rendering it


@dataclass
class AffinityQueue:
    items: list[Item] = field(default_factory=list)
    held: list[Item] = field(default_factory=list)  # claimed by another process when last tried
    seen: dict[Hashable, set] = field(default_factory=dict)  # worker -> affinity keys it has prepared

    @classmethod
    def of(cls, pending: Sequence[tuple[int, Any]]) -> AffinityQueue:
        return cls([Item(i, plan) for i, plan in pending])

    def __len__(self) -> int:
        return len(self.items) + len(self.held)

    def take(self, worker: Hashable) -> Item | None:
        """The next item for `worker`; held items come once no other is left, marked to wait for their holder."""
        if not self.items and self.held:
            item = self.held.pop(0)
            item.wait = True
            self.items.append(item)
        if not self.items:
            return None
        mine = self.seen.setdefault(worker, set())
        others = set().union(*(keys for w, keys in self.seen.items() if w != worker))
        keys = [affinity_key(item.plan) for item in self.items]
        pick = next((k for k, key in enumerate(keys) if key in mine), None)
        if pick is None:
            pick = next((k for k, key in enumerate(keys) if key not in others), 0)
        mine.add(keys[pick])
        return self.items.pop(pick)

    def put_back(self, item: Item) -> None:
        """An item whose worker died: first in line, so its segments are resumed soon."""
        self.items.insert(0, item)

    def hold(self, item: Item) -> None:
        self.held.append(item)
