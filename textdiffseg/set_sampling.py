"""Set how a checkpoint samples, its weights untouched: ``python -m textdiffseg.set_sampling SRC --out DST
--steps N [--timestep-spacing trailing]``.

The DDIM step count and where the steps sit on the training timesteps (``ModelConfig.sampling_steps`` and
``timestep_spacing``) need no training, so a trained model can be given better ones; the server's ``--conf
sampling_steps`` and a request's ``sampling_steps`` still override the step count. A fine stage in the checkpoint
gets the same settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textdiffseg.checkpoint import CheckpointError, rewrite_config
from textdiffseg.config import TIMESTEP_SPACINGS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m textdiffseg.set_sampling", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the checkpoint to copy")
    p.add_argument("--out", type=Path, required=True, help="where the copy is written (atomically; may be SRC)")
    p.add_argument("--steps", type=int, required=True, help="DDIM steps at inference (>= 1)")
    p.add_argument("--timestep-spacing", choices=TIMESTEP_SPACINGS, default="trailing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        out = rewrite_config(a.src, a.out, sampling_steps=a.steps, timestep_spacing=a.timestep_spacing)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: {a.steps} DDIM step(s), {a.timestep_spacing} spacing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
