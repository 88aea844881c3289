"""Proxy problems needing no download: quadratic, Rosenbrock, logistic regression, MLPs.

Each class is one task at one fidelity; ``fidelity`` 0 is the smallest (every
candidate), 1 and 2 are larger and longer (the funnel, the held-out ranking).
Everything is drawn from ``seed``: the same seed gives the same problem.
"""

from __future__ import annotations

import math
from functools import cache

import torch

from .base import Problem, batched_linear, cross_entropy, generator

STEPS = (100, 200, 400)


class NoisyQuadratic(Problem):
    """0.5 (x - x*)^T A (x - x*), A rotated with eigenvalues log-spaced over [1e-3, 1]; gradient noise 0.1.

    The minimum x* is random (not 0), so shrinking the parameters is no shortcut.
    """

    def __init__(self, fidelity: int, seed: int):
        self.steps = STEPS[fidelity]
        self.dim = (32, 64, 128)[fidelity]
        gen = generator(seed)
        q, _ = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=gen))
        eig = torch.logspace(-3, 0, self.dim)
        self.a = q @ torch.diag(eig) @ q.T
        self.minimum = torch.randn(self.dim, generator=gen)
        self.x0 = self.minimum + torch.randn(self.dim, generator=gen)
        self.noise = 0.1 * torch.randn(self.steps, self.dim, generator=gen)

    def init_params(self):
        return [self.x0]

    def loss(self, params, step):
        x = params[0] - self.minimum  # (L, d)
        return 0.5 * ((x @ self.a) * x).sum(-1)

    def measure(self, params, step):
        """The noiseless loss is reported; its gradient gets the step's noise added."""
        value = self.loss(params, step)
        return value + (params[0] * self.noise[step]).sum(-1), value


class Rosenbrock(Problem):
    """The mean of 8 independent 2-D Rosenbrock functions started near (-1.2, 1)."""

    def __init__(self, fidelity: int, seed: int):
        self.steps = STEPS[fidelity]
        gen = generator(seed)
        self.start = torch.tensor([-1.2, 1.0]) + 0.1 * torch.randn(8, 2, generator=gen)

    def init_params(self):
        return [self.start]

    def loss(self, params, step):
        (xy,) = params  # (L, 8, 2)
        x, y = xy[..., 0], xy[..., 1]
        return ((1 - x) ** 2 + 100 * (y - x * x) ** 2).mean(-1)


class LogisticRegression(Problem):
    """Binary logistic regression on 512 Gaussian points labelled by a noisy teacher."""

    def __init__(self, fidelity: int, seed: int):
        self.steps = STEPS[fidelity]
        dim = (16, 32, 64)[fidelity]
        gen = generator(seed)
        self.x = torch.randn(512, dim, generator=gen)
        teacher = 3 * torch.randn(dim, generator=gen) / math.sqrt(dim)
        self.y = torch.bernoulli(torch.sigmoid(self.x @ teacher), generator=gen)
        self.batches = torch.randint(0, 512, (self.steps, 64), generator=gen)
        self.dim = dim

    def init_params(self):
        return [torch.zeros(self.dim), torch.zeros(1)]

    def loss(self, params, step):
        w, b = params  # (L, d), (L, 1)
        idx = self.batches[step]
        logits = self.x[idx] @ w.T + b.T  # (B, L)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, self.y[idx, None].expand_as(logits), reduction="none"
        ).mean(0)


class MLPClassifier(Problem):
    """A one-hidden-layer ReLU MLP on minibatches of a fixed (x, label) dataset."""

    def __init__(self, fidelity: int, seed: int, x: torch.Tensor, y: torch.Tensor, classes: int):
        self.steps = STEPS[fidelity]
        self.hidden = (32, 64, 128)[fidelity]
        gen = generator(seed + 1)
        self.x, self.y, self.classes = x, y, classes
        self.batches = torch.randint(0, len(x), (self.steps, 64), generator=gen)
        fan_in = x.shape[1]
        self.init = [
            torch.randn(fan_in, self.hidden, generator=gen) / math.sqrt(fan_in),
            torch.zeros(self.hidden),
            torch.randn(self.hidden, classes, generator=gen) / math.sqrt(self.hidden),
            torch.zeros(classes),
        ]

    def init_params(self):
        return self.init

    def loss(self, params, step):
        w1, b1, w2, b2 = params
        idx = self.batches[step]
        hidden = torch.relu(batched_linear(self.x[idx], w1, b1))
        return cross_entropy(batched_linear(hidden, w2, b2), self.y[idx])


def synthetic_mlp(fidelity: int, seed: int) -> MLPClassifier:
    """4 classes of 16-d Gaussian inputs labelled by a random two-layer teacher."""
    gen = generator(seed)
    x = torch.randn(1024, 16, generator=gen)
    teacher = torch.tanh(x @ torch.randn(16, 32, generator=gen)) @ torch.randn(32, 4, generator=gen)
    return MLPClassifier(fidelity, seed, x, teacher.argmax(-1), 4)


@cache
def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (shipped inside the package), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target, dtype=torch.long)


def digits_mlp(fidelity: int, seed: int) -> MLPClassifier:
    """An MLP classifier of the 8x8 digit images (64 inputs, 10 classes)."""
    x, y = digits_data()
    return MLPClassifier(fidelity, seed, x, y, 10)
