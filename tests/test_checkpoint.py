"""Checkpoints: identical outputs after a round trip, refusal of another text encoder, the loader, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textdiffseg import checkpoint
from textdiffseg.atomic_files import copy_atomic, torch_save_atomic, write_json_atomic
from textdiffseg.checkpoint import CheckpointError, load_checkpoint, load_for_inference, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder
from textdiffseg.text.tiny_bert import build_tiny_bert


def _model_for(encoder: TextEncoder) -> TextDiffSeg:
    torch.manual_seed(1)
    return TextDiffSeg(
        tiny_config(
            text_encoder=encoder.name, text_hidden_size=encoder.hidden_size, text_fingerprint=encoder.fingerprint
        )
    )


def _sample(model: TextDiffSeg, encoder: TextEncoder) -> torch.Tensor:
    tokens, mask = encoder.encode(["liver", "left kidney"])
    image = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    condition = model.eval().condition(image, tokens, mask)
    return sample_masks(model, condition, steps=3, generator=torch.Generator().manual_seed(5)).probability


def test_round_trip_gives_identical_outputs(tmp_path: Path, tiny_encoder: TextEncoder) -> None:
    model = _model_for(tiny_encoder)
    path = save_checkpoint(tmp_path / "m.pt", model, {"step": 7})
    loaded, extra = load_checkpoint(path, tiny_encoder)
    assert extra == {"step": 7}
    assert loaded.config == model.config
    torch.testing.assert_close(_sample(loaded, tiny_encoder), _sample(model, tiny_encoder), rtol=0, atol=0)


def test_other_encoder_is_refused_with_a_readable_message(tmp_path: Path, tiny_encoder: TextEncoder) -> None:
    path = save_checkpoint(tmp_path / "m.pt", _model_for(tiny_encoder))
    same_width = TextEncoder(str(build_tiny_bert(tmp_path / "other", hidden_size=32, seed=1)))
    with pytest.raises(CheckpointError, match="was trained with text encoder") as err:
        load_checkpoint(path, same_width)
    assert "fingerprint" in str(err.value) and "hidden size 32" in str(err.value)
    wider = TextEncoder(str(build_tiny_bert(tmp_path / "wide", hidden_size=48)))
    with pytest.raises(CheckpointError, match="hidden size 48"):
        load_checkpoint(path, wider)


def test_load_for_inference_reads_once_and_validates_the_encoder_once(
    tmp_path: Path, tiny_bert_dir: Path, tiny_encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TextDiffSeg(
        tiny_config(text_encoder=str(tiny_bert_dir), text_hidden_size=32, text_fingerprint=tiny_encoder.fingerprint)
    )
    path = save_checkpoint(tmp_path / "m.pt", model)
    reads, checks = [], []
    read, check = checkpoint.read_checkpoint, checkpoint.check_text_encoder
    monkeypatch.setattr(checkpoint, "read_checkpoint", lambda p: reads.append(p) or read(p))
    monkeypatch.setattr(checkpoint, "check_text_encoder", lambda *a, **k: checks.append(a) or check(*a, **k))
    cache: dict[str, TextEncoder] = {}
    loaded, encoder = load_for_inference(path, encoder_cache=cache)  # the encoder the checkpoint records
    assert (len(reads), len(checks)) == (1, 1)
    assert encoder.name == str(tiny_bert_dir) and cache == {str(tiny_bert_dir): encoder}
    assert not loaded.training and loaded.config == model.config
    assert load_for_inference(path, encoder_cache=cache)[1] is encoder, "a cached encoder is reused"
    wider = build_tiny_bert(tmp_path / "wide", hidden_size=48)
    with pytest.raises(CheckpointError, match="hidden size 48"):
        load_for_inference(path, text_encoder=str(wider))


def test_unreadable_files_give_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a TextDiffSeg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Payload:
    """Anything that needs pickle to rebuild (weights_only loading must refuse it)."""


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    torch.save({"format": "textdiffseg-checkpoint-v1", "config": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.pt")


def test_failed_save_leaves_the_old_file(tmp_path: Path) -> None:
    target = torch_save_atomic({"format": "x", "value": torch.ones(2)}, tmp_path / "m.pt")
    before = target.read_bytes()

    class Unsaveable:
        def __reduce__(self):  # noqa: ANN204 - pickle protocol
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        torch_save_atomic({"value": Unsaveable()}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "no temporary file is left behind"


def test_atomic_writers_publish_readable_files(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"weights")
    copied = copy_atomic(source, tmp_path / "out" / "copy.bin")
    written = write_json_atomic({"a": 1}, tmp_path / "stats.json")
    assert copied.read_bytes() == b"weights" and written.read_text() == '{\n  "a": 1\n}'
    assert {(p.stat().st_mode & 0o777) for p in (copied, written)} == {0o644}
