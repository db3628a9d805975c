"""``/activelearning/random`` without MONAI Label's zero-weights crash.

MONAI Label's ``Random`` weights each unlabeled image by the seconds since a client last got it; when every candidate
was served within the current second all weights are 0 and ``random.choices`` raises ``ValueError`` (HTTP 500). This
strategy draws the same way but falls back to the first unlabeled image (sorted ids) in that case.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

logger = logging.getLogger(__name__)


class GuardedRandom(Strategy):
    """Random unlabeled image, favouring those not served recently."""

    def __init__(self) -> None:
        super().__init__("Random unlabeled image (least recently served favoured)")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """``{"id", "weight"}`` of the chosen image, or ``None`` when every image is labeled."""
        images = sorted(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        if not images:
            return None
        strategy = request.get("strategy", "random")
        now = int(time.time())
        weights = [
            max(0, now - int(datastore.get_image_info(i).get("strategy", {}).get(strategy, {}).get("ts", 0)))
            for i in images
        ]
        if sum(weights) <= 0:
            logger.info("random: every unlabeled image was just served; returning the first one")
            return {"id": images[0], "weight": 0}
        index = random.choices(range(len(images)), weights=weights)[0]
        return {"id": images[index], "weight": weights[index]}
