"""``/scoring/diffusion_uncertainty``: score every unlabeled image by the diffusion ensemble's uncertainty.

For each image without a ``final`` label, the model segments the prompts of ``--conf uncertainty_prompts`` (by
default every structure the served checkpoint was trained on, ``textdiffseg.prompt_match.trained_structures``) with
``--conf uncertainty_ensemble`` samples per prompt; ``textdiffseg.uncertainty.image_uncertainty`` reduces the per-prompt
binary entropy to one number (mean over the voxels where any prompt's probability exceeds 0.05 of the largest
per-prompt entropy). The score and the time are stored in the image info as ``diffusion_uncertainty`` and
``diffusion_uncertainty_ts``, which ``/activelearning/diffusion_uncertainty`` ranks by.

An image scored after the served checkpoint was last written is not scored again unless the request says
``"force": true``. Images the model cannot read are skipped (logged).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.activelearning.diffusion_uncertainty import SCORE_KEY, SCORE_TS_KEY
from lib.configs.textdiffseg import AppSettings
from textdiffseg.inference import InvalidInputError
from textdiffseg.params import ParamReader
from textdiffseg.prompt_match import trained_structures
from textdiffseg.service import SegmentationService
from textdiffseg.uncertainty import image_uncertainty

logger = logging.getLogger(__name__)


class DiffusionUncertaintyScoring(ScoringMethod):
    """Caches an image-level uncertainty score for each unlabeled image."""

    def __init__(self, settings: AppSettings, service: SegmentationService) -> None:
        super().__init__(
            f"Diffusion-ensemble uncertainty of unlabeled images ({settings.uncertainty_ensemble} samples)"
        )
        self.settings = settings
        self.service = service
        self._load = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")])

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, float]:
        """Score the unlabeled images; returns ``{image id: score}`` for every unlabeled image (fresh or cached)."""
        force = ParamReader(request, "scoring request").flag("force", False)
        model_mtime = self.service.checkpoint().stat().st_mtime  # raises CheckpointError when nothing can be served
        # the site's chosen prompts, else the structures the served model was trained on (others would only add
        # empty maps, and memory)
        prompts = list(self.settings.uncertainty_prompts or trained_structures(self.service.model()[0].config))
        scores: dict[str, float] = {}
        for image_id in sorted(datastore.get_unlabeled_images()):
            info = datastore.get_image_info(image_id)
            if not force and SCORE_KEY in info and float(info.get(SCORE_TS_KEY, 0)) >= model_mtime:
                scores[image_id] = float(info[SCORE_KEY])
                continue
            image = self._load({"image": datastore.get_image_uri(image_id)})["image"]
            try:
                # Not under the per-request compute budget: the conf (vocabulary, uncertainty_ensemble) sizes this run.
                prediction = self.service.segment(
                    image, prompts, ensemble=self.settings.uncertainty_ensemble, budgeted=False
                )
            except InvalidInputError as err:
                logger.warning("not scoring %s: %s", image_id, err)
                continue
            score = image_uncertainty(prediction.probability, prediction.uncertainty)
            datastore.update_image_info(image_id, {SCORE_KEY: score, SCORE_TS_KEY: time.time()})
            scores[image_id] = score
            logger.info("diffusion_uncertainty %s = %.4f", image_id, score)
        return scores
