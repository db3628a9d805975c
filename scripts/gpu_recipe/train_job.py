"""One training run of the GPU recipe, with prompt embeddings from a stored table, then a quick evaluation.

``python scripts/gpu_recipe/train_job.py TABLE EVAL_SOURCES -- TRAIN_FLAGS...``: ``TABLE`` is written by
``python -m textdiffseg.text.precomputed``; ``EVAL_SOURCES`` is a comma-separated list of folders or case lists
(``name=path``) the trained model is scored on; ``TRAIN_FLAGS`` are ``python -m textdiffseg.train``'s.
Writes ``RUN/summary.json`` and ``RUN/eval_<name>.json`` / ``.md`` beside the checkpoints.
"""

from __future__ import annotations

import json
import logging
import sys

import torch

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import load_case_list, load_folder
from textdiffseg.evaluate import format_table, score_cases
from textdiffseg.inference import Segmenter
from textdiffseg.text.precomputed import PrecomputedTextEncoder
from textdiffseg.train import parse_args
from textdiffseg.train_loop import run_training


def main() -> None:
    torch.backends.cudnn.benchmark = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    split = sys.argv.index("--")
    table, eval_sources = sys.argv[1], sys.argv[2]
    opts = parse_args(sys.argv[split + 1 :])
    encoder = PrecomputedTextEncoder(table)
    summary = run_training(opts, encoder=encoder)  # type: ignore[arg-type]
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    model, _ = load_for_inference(opts.out / "model.pt", device=opts.device, encoder_cache={"default": encoder})
    segmenter = Segmenter(model, encoder, device=opts.device)  # type: ignore[arg-type]
    for item in filter(None, eval_sources.split(",")):
        name, source = item.split("=", 1)
        cases = load_case_list(source) if source.endswith(".json") else load_folder(source)
        scores = score_cases(segmenter, cases)
        (opts.out / f"eval_{name}.json").write_text(json.dumps(scores, indent=1))
        table_md = format_table(scores)
        (opts.out / f"eval_{name}.md").write_text(table_md + "\n")
        print(f"== {opts.out.name} {name}\n{table_md}", flush=True)


if __name__ == "__main__":
    main()
