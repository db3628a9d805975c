"""The fine stage of zoom-in inference: building one from a whole-CT model, and storing it in that model's checkpoint.

A fine stage is a :class:`TextDiffSeg` at :data:`textdiffseg.config.FINE_STAGE`'s spacing that also takes the
coarse pass's probability of its prompt (``config.prior_channels``). It starts from a trained whole-CT model: every
weight is kept (convolutions do not depend on the voxel size) and the prior branch starts at zero, so before
training it computes what the whole-CT network computes on the finer grid.

Both stages live in one file (``checkpoint.save_checkpoint(..., fine_stage=)``):
``python -m textdiffseg.fine_stage --coarse MODEL.pt --fine RUN/model.pt --out BOTH.pt [--structure NAME ...]``
joins them; the fine pass refines the structures the fine stage records as trained (``--structure``: only those).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from textdiffseg.config import FINE_STAGE
from textdiffseg.networks.model import TextDiffSeg


def as_fine_stage(model: TextDiffSeg) -> TextDiffSeg:
    """A fine stage with ``model``'s weights (plus a zero prior branch); a fine stage is returned as is."""
    if model.takes_prior:
        return model
    fine = TextDiffSeg(replace(model.config, **FINE_STAGE, extra=dict(model.config.extra)))  # type: ignore[arg-type]
    missing, unexpected = fine.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith(("prior_encoder.", "prior_decoder.")) for key in missing):
        raise ValueError(f"cannot make a fine stage: unexpected {unexpected}, missing {missing}")
    return fine.to(next(model.parameters()).device).train(model.training)


def main(argv: list[str] | None = None) -> int:
    """``--coarse`` + ``--fine`` -> ``--out``: one checkpoint holding both stages (written atomically)."""
    from textdiffseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from textdiffseg.prompt_match import record_trained_structures, trained_structures

    p = argparse.ArgumentParser(prog="python -m textdiffseg.fine_stage", description=main.__doc__)
    p.add_argument("--coarse", type=Path, required=True, help="the whole-CT checkpoint")
    p.add_argument("--fine", type=Path, required=True, help="a fine stage (python -m textdiffseg.train --stage fine)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--structure",
        action="append",
        default=[],
        help="refine only this structure (repeatable; default: every structure the fine stage was trained on)",
    )
    args = p.parse_args(argv)
    try:
        coarse, _ = load_checkpoint(args.coarse)
        fine, _ = load_checkpoint(args.fine)
        if not fine.takes_prior or coarse.takes_prior:
            raise CheckpointError(f"{args.fine} must be a fine stage and {args.coarse} a whole-CT model")
        if coarse.config.text_fingerprint != fine.config.text_fingerprint:
            raise CheckpointError("the two stages were trained with different text encoders")
        if args.structure:
            unknown = sorted(set(args.structure) - set(trained_structures(fine.config)))
            if unknown:
                raise CheckpointError(f"the fine stage was not trained on {unknown}")
            record_trained_structures(fine.config, args.structure)
        save_checkpoint(args.out, coarse, fine_stage=fine)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
