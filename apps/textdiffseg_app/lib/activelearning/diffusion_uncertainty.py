"""``/activelearning/diffusion_uncertainty``: the unlabeled image the model is least sure about.

Ranks the unlabeled images (no ``final`` label) by the ``diffusion_uncertainty`` score that
``/scoring/diffusion_uncertainty`` caches in each image's info, and returns the highest. Images never scored are
skipped; when none is scored it returns the first unlabeled image and says so in ``selection``.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

logger = logging.getLogger(__name__)

SCORE_KEY = "diffusion_uncertainty"
SCORE_TS_KEY = "diffusion_uncertainty_ts"


def _score(info: dict[str, Any]) -> float | None:
    value = info.get(SCORE_KEY)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class DiffusionUncertainty(Strategy):
    """Highest cached diffusion-ensemble uncertainty first."""

    def __init__(self) -> None:
        super().__init__("Most uncertain unlabeled image (run /scoring/diffusion_uncertainty first)")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """``{"id", "diffusion_uncertainty", "selection"}``, or ``None`` when every image is labeled."""
        images = sorted(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        if not images:
            return None
        scored = [(s, i) for i in images if (s := _score(datastore.get_image_info(i))) is not None]
        if not scored:
            logger.info("diffusion_uncertainty: no unlabeled image is scored yet; returning the first one")
            return {
                "id": images[0],
                "selection": "no unlabeled image has a diffusion_uncertainty score yet (run "
                "/scoring/diffusion_uncertainty); returned the first unlabeled image",
            }
        score, image = max(scored, key=lambda pair: pair[0])
        logger.info("diffusion_uncertainty: %s (%.4f) among %d scored of %d", image, score, len(scored), len(images))
        return {
            "id": image,
            SCORE_KEY: score,
            "selection": f"highest diffusion_uncertainty among {len(scored)} scored of {len(images)} unlabeled images",
        }
