"""Reference encodings kept by content key, so a crop seen before is not sent through the VAE encoder again.

A looped photo persona is the same crop in every frame, a video persona repeats its frames when the speech is
longer (ping-pong): keyed by what the crop is computed from (face_region.crop_key plus device, dtype and face
size), its latent distribution can be reused. Reuse gives the same frames as a fresh encode only when the encode
of one crop does not depend on the other crops of its batch: encode each distinct crop on its own (diffusers' VAE
encode is per image, but batch-dependent kernels may round differently), and draw the samples per frame from the
chunk's generator.

    cache = LatentCache(256)                       # one per engine (a batch of jobs), per device and dtype
    value = cache.get(key)
    if value is None:
        value = encode(crop); cache.encoded += 1; cache.put(key, value)
    else:
        cache.reused += 1
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class LatentCache:
    """Values by content key, least recently used first out, at most `max_items` (0: nothing kept).

    Values stay on the device they were computed on. `encoded` counts items computed (for a VAE: crops sent through
    the encoder), `reused` items served without computing (from this cache, or a repeat inside the same chunk);
    the caller keeps both counts."""

    def __init__(self, max_items: int = 256):
        self.max_items = int(max_items)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.encoded = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.max_items <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
