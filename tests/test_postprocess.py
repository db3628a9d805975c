"""``textdiffseg.postprocess``: organs keep their main pieces, lesions stay inside their organ, nothing from below the
diaphragm at the level of the chest; the rest untouched."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import WholeVolumePipeline
from textdiffseg.postprocess import (
    BELOW_DIAPHRAGM,
    LESION_ORGAN,
    PIECES,
    clean_probabilities,
    diaphragm_ceiling,
    lung_share,
    region_organs,
)


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def _probability(*masks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.where(m, 0.9, 0.1) for m in masks]).astype(np.float32))


def test_an_organ_keeps_its_main_piece_and_what_touches_it_but_not_a_distant_blob() -> None:
    shape = (40, 40, 40)
    organ = _ball(shape, (20, 20, 20), 8)
    attached = _ball(shape, (20, 20, 31), 1.5)  # z 30-32: one empty voxel (z 29) from the organ's surface (z 28)
    blob = _ball(shape, (4, 4, 4), 2)
    assert not (organ & attached).any()
    probability = _probability(organ | attached | blob)
    notes = clean_probabilities(probability, ["liver"])
    kept = (probability[0] > 0.5).numpy()
    assert kept[organ].all() and kept[attached].all() and not kept[blob].any()
    assert notes and notes[0].startswith("liver:")


def test_paired_organs_keep_two_pieces_and_free_text_is_untouched() -> None:
    shape = (40, 40, 40)
    left, right, speck = _ball(shape, (20, 8, 20), 5), _ball(shape, (20, 32, 20), 5), _ball(shape, (35, 20, 35), 1)
    probability = _probability(left | right | speck, left | right | speck)
    before = probability.clone()
    clean_probabilities(probability, ["kidney", None])
    both = (probability[0] > 0.5).numpy()
    assert both[left].all() and both[right].all() and not both[speck].any()
    assert torch.equal(probability[1], before[1])


def test_lesions_outside_their_organ_are_dropped_only_when_the_organ_is_segmented() -> None:
    shape = (40, 40, 40)
    liver = _ball(shape, (20, 20, 20), 9)
    inside, outside = _ball(shape, (20, 20, 24), 2), _ball(shape, (4, 36, 4), 2)
    lesions = inside | outside
    alone = _probability(lesions)
    clean_probabilities(alone, ["liver tumor"])
    assert (alone[0] > 0.5).numpy()[outside].all(), "no organ in the request: nothing to judge by"
    together = _probability(lesions, liver)
    clean_probabilities(together, ["liver tumor", "liver"])
    kept = (together[0] > 0.5).numpy()
    assert kept[inside].all() and not kept[outside].any()


def test_a_lesion_alone_is_kept_inside_the_organ_segmented_for_it() -> None:
    assert region_organs(["kidney tumor", "liver", "liver tumor", None]) == ["kidney"], "liver is in the request"
    assert region_organs(["kidney tumor", "right kidney", "colon tumor", "colon tumor"]) == ["colon"]
    assert region_organs(["liver", "free text", None]) == []
    shape = (40, 40, 40)
    kidney = _ball(shape, (20, 20, 20), 8)
    inside, outside = _ball(shape, (20, 20, 25), 2), _ball(shape, (4, 36, 4), 2)
    alone = _probability(inside | outside)
    notes = clean_probabilities(alone, ["kidney tumor"], {"kidney": kidney})
    kept = (alone[0] > 0.5).numpy()
    assert kept[inside].all() and not kept[outside].any()
    assert (
        len(notes) == 1 and notes[0].startswith(f"kidney tumor: {int(outside.sum())} voxel(s)") and "kidney" in notes[0]
    )
    nowhere = _probability(inside | outside)
    clean_probabilities(nowhere, ["kidney tumor"], {"kidney": np.zeros(shape, bool)})
    assert not (nowhere[0] > 0.5).any(), "no kidney found: no kidney tumour"
    named = _probability(inside | outside, kidney)
    clean_probabilities(named, ["kidney tumor", "left kidney"], {"kidney": np.zeros(shape, bool)})
    assert (named[0] > 0.5).numpy()[inside].all(), "an organ of the request comes first"


def _torso(slices: int, lungs_from: int | None, gas: tuple[int, int] | None = None) -> np.ndarray:
    """HU volume (x, y, z; z upwards) of a 1-voxel-per-5-mm torso: a soft-tissue ellipse in air, two lungs (-850 HU,
    about 40 % of the section) from slice ``lungs_from`` up, and optionally bowel gas filling slices ``gas``."""
    x, y = np.indices((60, 44))
    body = ((x - 30) / 27) ** 2 + ((y - 22) / 19) ** 2 <= 1
    lungs = (((x - 18) / 8) ** 2 + ((y - 22) / 12) ** 2 <= 1) | (((x - 42) / 8) ** 2 + ((y - 22) / 12) ** 2 <= 1)
    hu = np.full((60, 44, slices), -1000.0)
    hu[body] = 40.0
    for z in range(lungs_from if lungs_from is not None else slices, slices):
        hu[lungs, z] = -850.0
    if gas is not None:
        hu[((x - 30) / 14) ** 2 + ((y - 22) / 13) ** 2 <= 1, gas[0] : gas[1]] = -1000.0
    return hu


def test_the_chest_starts_where_lungs_fill_the_section_for_five_centimetres_not_at_bowel_gas() -> None:
    chest = _torso(40, lungs_from=16)
    assert lung_share(chest)[20] > 0.3 and lung_share(chest)[10] == 0
    assert diaphragm_ceiling(chest, 5.0) == 16 + 6, "30 mm above the lowest chest slice"
    assert diaphragm_ceiling(_torso(40, lungs_from=None), 5.0) is None, "an abdomen: no chest, no rule"
    gassy = _torso(40, lungs_from=None, gas=(10, 18))
    assert lung_share(gassy)[12] > 0.25, "gas fills the section, but for 40 mm only"
    assert diaphragm_ceiling(gassy, 5.0) is None


def test_structures_below_the_diaphragm_lose_their_pieces_at_the_level_of_the_chest() -> None:
    shape = (40, 40, 40)
    low, high = _ball(shape, (20, 12, 8), 4), _ball(shape, (20, 28, 30), 4)
    vessel = np.zeros(shape, bool)
    vessel[18:22, 18:22, 2:38] = True  # the aorta runs through the chest
    probability = _probability(low | high, high, vessel, low | high)
    notes = clean_probabilities(probability, ["right kidney", "urinary bladder", "aorta", "kidney"], ceiling=20)
    kept = (probability > 0.5).numpy()
    assert kept[0][low].all() and not kept[0][high].any()
    assert not kept[1].any(), "a bladder by the hilum is no bladder"
    assert kept[2][vessel].all() and kept[3][low].all() and not kept[3][high].any()
    assert len(notes) == 3 and all("level of the chest" in note for note in notes)
    untouched = _probability(low | high)
    assert clean_probabilities(untouched, ["kidney"], ceiling=None) == [], "no chest in the image: no rule"
    assert (untouched[0] > 0.5).numpy()[high].all()


def test_the_tables_name_only_vocabulary_structures() -> None:
    names = set(PromptVocabulary.load().names)
    assert set(PIECES) <= names and set(LESION_ORGAN) <= names and set(BELOW_DIAPHRAGM) <= names
    assert all(set(organs) <= names for organs in LESION_ORGAN.values())


class _FixedPipeline(WholeVolumePipeline):
    """A pipeline whose 'model' predicts a ball and a distant blob for every prompt."""

    def segment_volume(self, volume: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, None]:
        shape = tuple(volume.shape[1:])
        organ = _ball(shape, tuple(s // 2 for s in shape), 5) | _ball(shape, (1, 1, 1), 1)
        return _probability(*[organ] * len(prompts)), None


def test_the_pipeline_cleans_masks_by_default_and_says_so() -> None:
    image = MetaTensor(torch.zeros(1, 24, 24, 24), affine=torch.eye(4))
    cleaned = _FixedPipeline((1.0, 1.0, 1.0), (-160.0, 240.0)).predict(image, ["liver", "a free text blob"])
    raw = _FixedPipeline((1.0, 1.0, 1.0), (-160.0, 240.0), postprocess=False).predict(image, ["liver"])
    assert cleaned.label_map[1, 1, 1] == 2, "free text is left as predicted"
    assert (cleaned.label_map == 1).sum() < (raw.label_map == 1).sum() and raw.label_map[1, 1, 1] == 1
    assert [note.split(":")[0] for note in cleaned.postprocessing] == ["liver"] and raw.postprocessing == []


class _LesionPipeline(_FixedPipeline):
    """:class:`_FixedPipeline` that finds its 'kidney' in one corner only, and records the organs it was asked for."""

    asked: list[list[str]]

    def region_organs(self, anatomy: list[str | None]) -> list[str]:
        from textdiffseg.postprocess import region_organs as organs_of

        return organs_of(anatomy)

    def segment_organs(self, volume: torch.Tensor, organs: list[str]) -> dict[str, np.ndarray]:
        self.asked = [*getattr(self, "asked", []), organs]
        return {organ: _ball(tuple(volume.shape[1:]), (1, 1, 1), 2) for organ in organs}


def test_the_pipeline_segments_the_organ_of_a_lesion_prompted_alone_and_says_so() -> None:
    image = MetaTensor(torch.zeros(1, 24, 24, 24), affine=torch.eye(4))
    pipeline = _LesionPipeline((1.0, 1.0, 1.0), (-160.0, 240.0))
    prediction = pipeline.predict(image, ["kidney tumor", "spleen"])
    assert pipeline.asked == [["kidney"]]
    assert prediction.passes == [["coarse", "organ"], ["coarse"]]
    assert prediction.label_map[1, 1, 1] == 1 and prediction.label_map[12, 12, 12] != 1, "kept in the kidney"
    assert prediction.postprocessing[0].startswith("kidney tumor:")
    raw = _LesionPipeline((1.0, 1.0, 1.0), (-160.0, 240.0), postprocess=False)
    assert raw.predict(image, ["kidney tumor"]).passes == [["coarse"]] and not hasattr(raw, "asked")


def test_the_pipeline_finds_the_chest_in_the_image_and_empties_a_bladder_there() -> None:
    """The ball the fixed 'model' predicts sits mid-volume: in the chest of a chest CT, in the abdomen of another."""
    affine = torch.diag(torch.tensor([5.0, 5.0, 5.0, 1.0]))
    chest = MetaTensor(torch.from_numpy(_torso(24, lungs_from=0)).float()[None], affine=affine)
    abdomen = MetaTensor(torch.from_numpy(_torso(24, lungs_from=None)).float()[None], affine=affine)
    pipeline = _FixedPipeline((5.0, 5.0, 5.0), (-160.0, 240.0))
    in_chest = pipeline.predict(chest, ["urinary bladder", "heart"])
    centre = (30, 22, 12)  # the middle of the 60 x 44 x 24 volume
    assert in_chest.label_map[centre] == 2 and (in_chest.label_map == 2).sum() > 100, "the heart stays"
    assert (in_chest.label_map == 1).sum() < 10, "only the speck in the bottom 30 mm is left of the 'bladder'"
    assert any(n.startswith("urinary bladder:") and "level of the chest" in n for n in in_chest.postprocessing)
    assert pipeline.predict(abdomen, ["urinary bladder"]).label_map[centre] == 1
