"""MONAI Label app serving TextDiffSeg: type what to segment in a CT, correct it, retrain on the corrections.

Start it with ``python -m monailabel.main start_server --app apps/textdiffseg_app --studies DIR [--conf k v ...]``;
the ``--conf`` knobs are documented in ``lib/configs/textdiffseg.py``.

Tasks: infer ``textdiffseg`` (``lib/infers/text_prompt.py``; also listed as ``textdiffseg_clicks``,
``lib/infers/point_prompt.py``), trainer ``textdiffseg`` (``lib/trainers/``), strategies ``random`` (guarded),
``first``, ``diffusion_uncertainty``, scoring ``dice`` and ``diffusion_uncertainty``.

MONAI Label drops every ``lib`` module and re-executes this file when it (re)loads the app, then removes the app
folder from ``sys.path``: every ``lib`` module is therefore imported here, at import time (directly or through the
modules below), never lazily inside a function.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.scoring.dice import Dice

import textdiffseg
from lib.activelearning.diffusion_uncertainty import DiffusionUncertainty
from lib.activelearning.random_guarded import GuardedRandom
from lib.configs.textdiffseg import MODEL_NAME, build_service, parse_conf
from lib.datastores.checked_local import CheckedLocalDatastore
from lib.datastores.dicomweb import create_dicomweb_datastore
from lib.infers.point_prompt import CLICK_MODEL_NAME, PointPromptInfer
from lib.infers.text_prompt import TextPromptInfer
from lib.infers.uncertainty_label import store_uncertainty_label
from lib.scoring.diffusion_uncertainty import DiffusionUncertaintyScoring
from lib.trainers.textdiffseg import TextDiffSegTrainer
from textdiffseg_server.install import install_into_running_server
from textdiffseg_server.names import UnsafeNameError, check_inside, check_name

logger = logging.getLogger(__name__)

# However the server was started (plain ``monailabel start_server`` included), its FastAPI app gets the protections
# of ``textdiffseg_server`` now, during start-up and before the first request (idempotent on ``POST /reload``).
install_into_running_server()


def check_infer_input(image: object) -> None:
    """The image of an infer request: a safe datastore id, or a file MONAI Label itself put in the temp or session
    folder (an upload, a session); any other server path is refused (``UnsafeNameError``, HTTP 400)."""
    if not isinstance(image, str):
        return
    if os.path.isabs(image):
        roots = [tempfile.gettempdir(), settings.MONAI_LABEL_SESSION_PATH]
        for root in roots:
            try:
                check_inside(image, root, "image")
                return
            except UnsafeNameError:
                continue
        raise UnsafeNameError("image is not a datastore id")
    check_name(image, "image")


class TextDiffSegApp(MONAILabelApp):
    """The app: settings and the shared segmentation service are built before MONAI Label calls ``init_*``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.settings = parse_conf(conf, app_dir)
        self.service = build_service(self.settings)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="TextDiffSeg",
            description="Text-prompted 3D CT segmentation with a latent diffusion model",
            version=textdiffseg.__version__,
            # a list (name of value i + 1 at position i), as MONAI Label builds it itself: OHIF's MONAI Label panel
            # appends to /info's top-level "labels" and fails on connect ("all_labels.push is not a function")
            # when it is a dict; the model's own "labels" stay {name: value}.
            labels=list(self.settings.vocabulary.index_map()),
        )
        self._auto_update_scoring = self._auto_update_scoring and self.settings.auto_update_scoring
        served = self.settings.current_model()
        logger.info("TextDiffSeg app ready; serving %s", served if served else "nothing yet (no checkpoint)")

    def init_datastore(self) -> Datastore:
        """A studies folder becomes a :class:`CheckedLocalDatastore` (names and stored files checked)."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        logger.info("Using the studies folder %s (checked local datastore)", self.studies)
        return CheckedLocalDatastore(
            self.studies,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            max_voxels=self.settings.max_file_voxels,
        )

    def _init_dicomweb_datastore(self) -> Datastore:
        """``--studies http(s)://...``: final labels become DICOM-SEG via pydicom-seg; dcmqi is never fetched."""
        logger.info("Using DICOMweb %s (DICOM-SEG written with pydicom-seg, no dcmqi)", self.studies)
        names = {idx: name for name, idx in self.settings.vocabulary.index_map().items()}
        return create_dicomweb_datastore(self.studies, names, self.settings.vocabulary)

    def init_infers(self) -> dict[str, InferTask]:
        """One text-prompted segmentation model, also listed as a ``vista3d`` model for OHIF's Point Prompts tab
        while the served checkpoint takes clicks (``lib.infers.point_prompt``)."""
        return {
            MODEL_NAME: TextPromptInfer(self.settings, self.service),
            CLICK_MODEL_NAME: PointPromptInfer(self.settings, self.service),
        }

    def init_trainers(self) -> dict[str, TrainTask]:
        """Fine-tuning on the submitted labels."""
        return {MODEL_NAME: TextDiffSegTrainer(self.settings)}

    def init_strategies(self) -> dict[str, Strategy]:
        """Guarded random, first unlabeled, and most uncertain unlabeled image."""
        return {"random": GuardedRandom(), "first": First(), "diffusion_uncertainty": DiffusionUncertainty()}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """MONAI Label's Dice (final vs original labels) and the diffusion uncertainty of unlabeled images."""
        return {"dice": Dice(), "diffusion_uncertainty": DiffusionUncertaintyScoring(self.settings, self.service)}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer on a checked input, then store the optional uncertainty map (tag ``uncertainty``)."""
        check_infer_input(request.get("image"))
        result = super().infer(request, datastore)
        store_uncertainty_label(result, request.get("image"), datastore or self.datastore())
        return result
