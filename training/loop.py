"""Pieces every training loop here shares: a mixed-precision optimiser step and early stopping on a score."""

from __future__ import annotations

import copy

import torch

from training.progress import JobProgress


def amp_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> float:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


class EarlyStopping:
    """Keeps the best weights by a validation score (higher is better); says when `patience` epochs gave none."""

    def __init__(self, model: torch.nn.Module, patience: int, metric: str, progress: JobProgress):
        self.model, self.patience, self.metric, self.progress = model, patience, metric, progress
        self.best, self.best_state, self.stale = float("-inf"), copy.deepcopy(model.state_dict()), 0

    def should_stop(self, epoch: int, score: float) -> bool:
        if score > self.best:
            self.best, self.best_state, self.stale = score, copy.deepcopy(self.model.state_dict()), 0
            return False
        self.stale += 1
        if self.stale >= self.patience:
            self.progress.log(f"early stop after epoch {epoch}: best validation {self.metric} {self.best:.4f}")
            return True
        return False

    def restore_best(self) -> None:
        self.model.load_state_dict(self.best_state)
        self.model.eval()
