"""Turn the library's documented errors into HTTP errors with the library's one-line message.

MONAI Label's ``/infer`` endpoint runs the task in-process (or waits on a thread pool), so an ``HTTPException`` raised
by the task reaches FastAPI and is answered as that status with ``{"detail": message}``; anything else becomes a plain
500 without a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

from textdiffseg.checkpoint import CheckpointError
from textdiffseg.inference import ComputeBudgetError, InvalidInputError, VolumeTooLargeError
from textdiffseg.prompts import PromptError
from textdiffseg.text.encoder import TextEncoderError


@contextmanager
def as_http_errors() -> Iterator[None]:
    """400 bad prompt / parameters / image, 413 volume too large or over the compute budget, 503 no usable checkpoint
    or text encoder."""
    try:
        yield
    except PromptError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    except (VolumeTooLargeError, ComputeBudgetError) as err:
        raise HTTPException(status_code=413, detail=str(err)) from err
    except InvalidInputError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    except (CheckpointError, TextEncoderError) as err:
        raise HTTPException(status_code=503, detail=str(err)) from err
