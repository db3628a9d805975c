"""Prompts the model does not know: paraphrases keep their structure, nonsense and untrained structures get an empty
mask and a warning (packaged MiniLM encoder); checkpoints record what they were trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from textdiffseg.checkpoint import load_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.inference import Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import (
    LEGACY_TRAINED_STRUCTURES,
    UNKNOWN_BELOW,
    PromptMatcher,
    record_trained_structures,
    trained_structures,
)

PARAPHRASES = {"hepatic parenchyma": "liver", "kidney left": "left kidney", "spleen organ": "spleen"}
NONSENSE = ("banana", "car engine", "asdfgh")


@pytest.fixture(scope="module")
def matcher(default_encoder) -> PromptMatcher:  # noqa: ANN001
    return PromptMatcher(default_encoder, LEGACY_TRAINED_STRUCTURES)


def test_paraphrases_keep_their_structure_and_nonsense_is_unknown(matcher: PromptMatcher) -> None:
    for text, structure in PARAPHRASES.items():
        match = matcher.match(text)
        assert match.known and match.nearest == structure and match.similarity >= UNKNOWN_BELOW, match
        assert match.as_json()["understood_as"] == structure and match.warning is None
    for text in NONSENSE:
        match = matcher.match(text)
        assert not match.known and match.similarity < UNKNOWN_BELOW, match
        assert match.as_json()["understood_as"] is None and f"'{text}'" in match.warning


def test_a_vocabulary_structure_the_model_did_not_learn_is_unknown(matcher: PromptMatcher) -> None:
    match = matcher.match("aorta")  # in the vocabulary, not among the 12 structures of an old checkpoint
    assert not match.known and "in the vocabulary but not among the 12 structures" in match.warning
    assert matcher.match("IVC").known is False
    assert matcher.match("the liver").similarity == pytest.approx(1.0, abs=1e-4)


def test_structures_are_recorded_and_old_checkpoints_fall_back() -> None:
    config = tiny_config()
    assert trained_structures(config) == LEGACY_TRAINED_STRUCTURES
    record_trained_structures(config, ["spleen", "liver", "liver"])
    assert trained_structures(config) == ("liver", "spleen")
    assert trained_structures(type(config).from_json(config.to_json())) == ("liver", "spleen")


@pytest.mark.slow
def test_trained_checkpoint_records_its_structures(trained_tiny) -> None:  # noqa: ANN001
    from conftest import TINY_TRAIN_STRUCTURES

    model, _ = load_checkpoint(trained_tiny.run_dir / "model.pt", trained_tiny.encoder)
    assert trained_structures(model.config) == tuple(sorted(TINY_TRAIN_STRUCTURES))


@pytest.mark.slow
def test_unknown_prompt_gets_an_empty_mask_and_a_warning(trained_tiny, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    from monai.transforms import EnsureChannelFirst, LoadImage

    image = EnsureChannelFirst()(LoadImage(image_only=True)(str(trained_tiny.cases[0].image)))
    segmenter = Segmenter(trained_tiny.model, trained_tiny.encoder)
    prompts = ["hepatic parenchyma", "banana", "pancreas"]  # pancreas: in the vocabulary, not trained here
    with caplog.at_level("WARNING", logger="textdiffseg.inference"):
        prediction = segmenter.predict(image, prompts, values=[1, 60, 6])
    liver, banana, pancreas = prediction.matches
    assert liver.known and liver.nearest == "liver"
    assert (prediction.label_map == 1).sum() > 100, "the paraphrase is segmented as the liver"
    for i, match in ((1, banana), (2, pancreas)):
        assert not match.known and match.warning
        assert float(prediction.probability[i].max()) == 0.0 and float(prediction.uncertainty[i].max()) == 0.0
    assert not np.isin(prediction.label_map, [60, 6]).any()
    assert "banana" in caplog.text and "pancreas" in caplog.text


def test_unknown_prompts_skip_the_model_but_count_in_the_budget(default_encoder) -> None:  # noqa: ANN001
    model = TextDiffSeg(tiny_config())
    segmenter = Segmenter(model, default_encoder, steps=1, max_denoiser_calls=1)
    image = MetaTensor(torch.zeros(1, 12, 12, 10), affine=torch.diag(torch.tensor([6.0, 6.0, 6.0, 1.0])))
    with pytest.raises(ValueError, match="2 prompt"):
        segmenter.predict(image, ["liver", "banana"])
    calls = []
    segmenter = Segmenter(model, default_encoder, steps=1)
    segmenter.predict_normalized = lambda volume, prompts: calls.append(prompts) or torch.zeros(  # type: ignore[method-assign]
        3, len(prompts), *volume.shape[1:]
    )
    segmenter.predict(image, ["banana", "liver", "car engine"])
    assert calls == [["liver"]]
    segmenter.predict(image, ["banana"])
    assert calls == [["liver"]], "no model call when no prompt is known"
    assert Segmenter(model, default_encoder, unknown_below=None).predict(image, ["banana"]).matches is None


def test_a_narrowed_run_records_only_what_it_trains_when_told_to_forget(  # noqa: ANN001
    tmp_path: Path, train_phantom_dir: Path, tiny_encoder
) -> None:
    from textdiffseg.train_loop import TrainOptions, run_training

    def tiny_run(out: Path, structures: tuple[str, ...], **kwargs: object) -> tuple[str, ...]:
        opts = TrainOptions(data=train_phantom_dir, out=out, steps=2, preset="tiny", prompts_per_volume=2,
                            progress=False, structures=structures, **kwargs)  # type: ignore[arg-type]
        run_training(opts, encoder=tiny_encoder)
        return trained_structures(load_checkpoint(out / "model.pt", tiny_encoder)[0].config)

    assert tiny_run(tmp_path / "first", ("liver", "spleen")) == ("liver", "spleen")
    first = tmp_path / "first" / "model.pt"
    assert tiny_run(tmp_path / "union", ("liver", "pancreas"), init_from=first) == ("liver", "pancreas", "spleen")
    narrowed = tiny_run(tmp_path / "narrowed", ("liver", "pancreas"), init_from=first, forget_untrained=True)
    assert narrowed == ("liver", "pancreas"), "spleen, no longer trained, is no longer claimed"
