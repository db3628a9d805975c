"""What a running training loop tells the outside world at the end of every epoch.

``run_training`` groups its steps into epochs of ``TrainOptions.steps_per_epoch`` steps. At each epoch end it logs one
line (loss, learning rate, validation Dice when it has a validation set, elapsed time, ETA) and hands the same
:class:`ProgressReport` to ``TrainHooks.on_progress`` (the MONAI Label task rewrites its ``train_stats`` file with
it). ``TrainHooks.validate`` scores the model being trained (mean Dice on held-out cases); the loop keeps the best
scoring weights. Validation runs on whole volumes and costs seconds, so :class:`ValidationSchedule` spaces it out to
take at most about a tenth of the run, and always scores the last weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from textdiffseg.networks.model import TextDiffSeg

VALIDATION_SHARE = 0.1  # at most about this share of the wall time goes to validation


@dataclass(frozen=True)
class ProgressReport:
    """The state of a run at the end of an epoch."""

    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    elapsed_s: float
    eta_s: float
    loss: float  # mean loss over the epoch's steps
    lr: float
    val_dice: float | None = None  # this epoch's validation score, when it was validated
    best_val_dice: float | None = None

    def as_stats(self) -> dict[str, object]:
        """Entries for a stats file (``train_stats``)."""
        stats: dict[str, object] = {
            "step": self.step,
            "steps": self.total_steps,
            "epoch": self.epoch,
            "total_epochs": self.total_epochs,
            "elapsed_s": round(self.elapsed_s, 1),
            "eta_s": round(self.eta_s, 1),
            "elapsed": _clock(self.elapsed_s),
            "eta": _clock(self.eta_s),
            "loss": round(self.loss, 4),
            "lr": self.lr,
        }
        if self.val_dice is not None:
            stats["val_dice"] = round(self.val_dice, 4)
        if self.best_val_dice is not None:
            stats["best_val_dice"] = round(self.best_val_dice, 4)
        return stats

    def log_line(self) -> str:
        """One log line, e.g. ``epoch 3/80 step 75/2000 loss 0.4120 lr 9.8e-05 val Dice 0.530 (best 0.550) ...``."""
        line = (
            f"epoch {self.epoch}/{self.total_epochs} step {self.step}/{self.total_steps} loss {self.loss:.4f} "
            f"lr {self.lr:.2e}"
        )
        if self.val_dice is not None:
            line += f" val Dice {self.val_dice:.3f}"
        if self.best_val_dice is not None:
            line += f" (best {self.best_val_dice:.3f})"
        return f"{line} elapsed {_clock(self.elapsed_s)} eta {_clock(self.eta_s)}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(round(max(0.0, seconds)))))


def eta_seconds(done: int, remaining: int, elapsed_s: float, budget_s: float | None) -> float:
    """Seconds left: the remaining steps at this run's pace, or what is left of the time budget if less."""
    eta = elapsed_s / max(1, done) * remaining
    if budget_s is not None:
        eta = min(eta, max(0.0, budget_s - elapsed_s))
    return eta


class ValidationSchedule:
    """When to validate: at the first epoch end, then once the training time since the last validation is at least
    ``(1 - share) / share`` times what that validation took (default: validation takes about a tenth of the run)."""

    def __init__(self, share: float = VALIDATION_SHARE) -> None:
        self.ratio = (1.0 - share) / share
        self.last_end: float | None = None
        self.last_cost = 0.0

    def due(self, now_s: float) -> bool:
        """Whether to validate at an epoch end reached at ``now_s`` (seconds into the run)."""
        return self.last_end is None or now_s - self.last_end >= self.ratio * self.last_cost

    def done(self, started_s: float, ended_s: float) -> None:
        """Record a validation that ran from ``started_s`` to ``ended_s``."""
        self.last_end, self.last_cost = ended_s, ended_s - started_s


@dataclass
class TrainHooks:
    """What a caller of ``run_training`` plugs in (called on the main rank only).

    ``on_progress`` gets every epoch's report. ``validate`` scores the model being trained (higher is better, e.g.
    mean Dice on held-out cases); with it the run keeps the best scoring weights as its ``model.pt``.
    """

    on_progress: Callable[[ProgressReport], None] | None = None
    validate: Callable[[TextDiffSeg], float] | None = None


class EpochMonitor:
    """Groups a run's steps into epochs; at each epoch end validates when due, keeps the best weights (through
    ``save_best``), logs a line and calls ``hooks.on_progress``.

    Args:
        total_steps: the run's step count (its last step ends the last epoch, however long).
        steps_per_epoch: steps per epoch (at least 1).
        budget_s: the run's time budget (for the ETA), if any.
        hooks: the caller's hooks.
        save_best: saves the current weights as the best ones.
        log: where the epoch lines go (``logger.info``).
        first_step: the step the run starts from (resumed runs).
    """

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        budget_s: float | None,
        hooks: TrainHooks,
        save_best: Callable[[], None],
        log: Callable[[str], None],
        first_step: int = 0,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        self.total_steps, self.steps_per_epoch, self.budget_s = total_steps, steps_per_epoch, budget_s
        self.hooks, self.save_best, self.log = hooks, save_best, log
        self.first_step = first_step
        self.losses: list[float] = []
        self.schedule = ValidationSchedule()
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_val: float | None = None
        self.validated_step: int | None = None
        self.reports = 0

    @property
    def total_epochs(self) -> int:
        """Epochs in the whole run (the last may be shorter)."""
        return -(-self.total_steps // self.steps_per_epoch)

    def after_step(self, step: int, loss: float, lr: float, elapsed_s: float, model: TextDiffSeg) -> None:
        """Record a step's loss; at an epoch end, report (``elapsed_s``: seconds into the run)."""
        self.losses.append(loss)
        if step % self.steps_per_epoch == 0 or step == self.total_steps:
            self._report(step, lr, elapsed_s, model, final=step == self.total_steps)

    def finish(self, step: int, lr: float, elapsed_s: float, model: TextDiffSeg) -> None:
        """The run stopped (steps done or time up): score the last weights and report what is not reported yet."""
        if self.losses or (self.hooks.validate is not None and self.validated_step != step):
            self._report(step, lr, elapsed_s, model, final=True)

    def _validate(self, step: int, elapsed_s: float, model: TextDiffSeg, final: bool) -> tuple[float | None, float]:
        """Validate when due (always at the end); returns the score (``None``: not validated) and its seconds."""
        if self.hooks.validate is None or not (final or self.schedule.due(elapsed_s)):
            return None, 0.0
        start = time.perf_counter()
        score = float(self.hooks.validate(model))
        cost = time.perf_counter() - start
        self.schedule.done(elapsed_s, elapsed_s + cost)
        self.last_val, self.validated_step = score, step
        if self.best_val is None or score > self.best_val:
            self.best_val, self.best_step = score, step
            self.save_best()
        return score, cost

    def _report(self, step: int, lr: float, elapsed_s: float, model: TextDiffSeg, final: bool) -> None:
        score, cost = self._validate(step, elapsed_s, model, final)
        elapsed_s += cost
        done = step - self.first_step
        remaining = 0 if final else self.total_steps - step
        report = ProgressReport(
            step=step,
            total_steps=self.total_steps,
            epoch=-(-step // self.steps_per_epoch),
            total_epochs=self.total_epochs,
            elapsed_s=elapsed_s,
            eta_s=eta_seconds(done, remaining, elapsed_s, self.budget_s),
            loss=sum(self.losses) / len(self.losses) if self.losses else float("nan"),
            lr=lr,
            val_dice=score,
            best_val_dice=self.best_val,
        )
        self.losses = []
        self.reports += 1
        self.log(report.log_line())
        if self.hooks.on_progress is not None:
            self.hooks.on_progress(report)
