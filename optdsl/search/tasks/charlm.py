"""A tiny character-level transformer LM on a seeded Markov language of known entropy.

The language is a first-order Markov chain over ``VOCAB`` symbols with sparse
random transitions (rows drawn from Dirichlet(0.3)), sampled from its
stationary distribution. Every prediction sees at least the previous symbol,
so the best possible loss is exactly the chain's entropy rate (nats), which is
the problem's ``floor``.
"""

from __future__ import annotations

import math

import torch

from .base import Problem, cross_entropy, generator

VOCAB = 16
SIZES = {  # fidelity: (width, context, batch, steps)
    0: (16, 16, 16, 60),
    1: (32, 32, 16, 150),
    2: (32, 32, 16, 300),
}


class MarkovLanguage:
    """Transition matrix, stationary distribution and entropy rate of a random chain."""

    def __init__(self, seed: int, vocab: int = VOCAB, concentration: float = 0.3):
        gen = generator(seed)
        gamma = torch._standard_gamma(torch.full((vocab, vocab), concentration, dtype=torch.float64), generator=gen)
        self.transitions = gamma / gamma.sum(-1, keepdim=True)
        self.stationary = self._stationary()
        logs = torch.where(self.transitions > 0, self.transitions.log(), torch.zeros_like(self.transitions))
        self.entropy_rate = float(-(self.stationary[:, None] * self.transitions * logs).sum())

    def _stationary(self) -> torch.Tensor:
        pi = torch.full((self.transitions.shape[0],), 1.0 / self.transitions.shape[0], dtype=torch.float64)
        for _ in range(2000):
            pi = pi @ self.transitions
        return pi / pi.sum()

    def sample(self, count: int, length: int, gen: torch.Generator) -> torch.Tensor:
        """``count`` sequences of ``length`` symbols, each started from the stationary distribution."""
        out = torch.empty(count, length, dtype=torch.long)
        out[:, 0] = torch.multinomial(self.stationary.float(), count, replacement=True, generator=gen)
        probs = self.transitions.float()
        for t in range(1, length):
            out[:, t] = torch.multinomial(probs[out[:, t - 1]], 1, generator=gen).squeeze(-1)
        return out


class CharLM(Problem):
    """One pre-norm transformer block (single-head causal attention + MLP), batched over copies."""

    def __init__(self, fidelity: int, seed: int):
        width, self.context, batch, self.steps = SIZES[fidelity]
        gen = generator(seed)
        self.language = MarkovLanguage(seed)
        self.floor = self.language.entropy_rate
        self.data = self.language.sample(self.steps * batch, self.context + 1, gen).view(self.steps, batch, -1)
        d = width
        scale = 1 / math.sqrt(d)
        shapes = [(VOCAB, d), (self.context, d), (d, 3 * d), (d, d), (d, 2 * d), (2 * d,), (2 * d, d), (d,), (d, VOCAB)]
        self.init = [
            torch.randn(s, generator=gen) * (scale if len(s) == 2 else 0.0) for s in shapes
        ]
        self.mask = torch.triu(torch.ones(self.context, self.context, dtype=torch.bool), 1)

    def init_params(self):
        return self.init

    def loss(self, params, step):
        embed, position, qkv, out, w1, b1, w2, b2, unembed = params
        tokens = self.data[step]  # (B, T + 1)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        h = embed[:, inputs] + position[:, None]  # (L, B, T, d)
        q, k, v = (_norm(h) @ qkv[:, None]).chunk(3, dim=-1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        attention = torch.softmax(scores.masked_fill(self.mask, -math.inf), dim=-1)
        h = h + (attention @ v) @ out[:, None]
        mlp = torch.nn.functional.gelu(_norm(h) @ w1[:, None] + b1[:, None, None]) @ w2[:, None] + b2[:, None, None]
        h = h + mlp
        logits = _norm(h) @ unembed[:, None]  # (L, B, T, V)
        copies = logits.shape[0]
        return cross_entropy(logits.reshape(copies, -1, VOCAB), targets.reshape(-1))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, x.shape[-1:])
