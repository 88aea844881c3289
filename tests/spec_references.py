"""Eager transcriptions of reference optimizers that have no installable package.

Each class restates, one tensor at a time and in the reference's own order of
operations, the update of the file it cites (repository, path and commit). They
are written from reading that code, not copied from it; where a reference
also exposes options the spec leaves out, only the options used are written.
"""

from __future__ import annotations

import math

import torch


class Eager(torch.optim.Optimizer):
    """A per-tensor loop: subclasses give ``init_state(p)`` and ``update(p, g, state, group)``.

    ``state["t"]`` is the step count, 1 on the first step.
    """

    def __init__(self, params, **defaults):
        super().__init__(params, defaults)

    def init_state(self, p: torch.Tensor) -> dict:
        return {}

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(t=0, **self.init_state(p))
                state["t"] += 1
                self.update(p, p.grad, state, group)


def _zeros(p, *names):
    return {n: torch.zeros_like(p) for n in names}


class AdaMomentumRef(Eager):
    """AdaMomentum as hfassold/omni_optimizer my_adamomentum.py @ 51aa377ee1d6 (decoupled decay,
    rectify/amsgrad off) and lavish619/AdaMomentum-Optimizer-Experiments utils/optimizer.py
    @ 0e807b8e2598 (class Adamomentum: L2 decay, ``weight_decouple=False`` here)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, weight_decouple=True):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, weight_decouple=weight_decouple)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_var")

    def update(self, p, g, st, group):
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b1, b2 = group["betas"]
        if group["weight_decouple"]:
            p.mul_(1.0 - lr * wd)
        elif wd != 0:
            g = g.add(p, alpha=wd)
        t = st["t"]
        m, v = st["exp_avg"], st["exp_avg_var"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(m, m, value=1 - b2)
        denom = v.add_(eps).sqrt() / math.sqrt(1 - b2**t)  # eps goes into the state, in place
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


def linear_warmup(step, end, start=0.0, warmup=1):
    """apple/ml-ademamix pytorch/ademamix.py linear_warmup_scheduler."""
    if step < warmup:
        a = step / float(warmup)
        return (1.0 - a) * start + a * end
    return end


def half_life_warmup(step, end, start=0.0, warmup=1):
    """apple/ml-ademamix pytorch/ademamix.py linear_hl_warmup_scheduler."""

    def f(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    def f_inv(x):
        return math.pow(0.5, 1 / (x + 1))

    if step < warmup:
        a = step / float(warmup)
        return f_inv((1.0 - a) * f(start) + a * f(end))
    return end


class AdEMAMixRef(Eager):
    """apple/ml-ademamix pytorch/ademamix.py @ c3d73c09f128: warm-ups None by default, evaluated
    at the 1-based step; the slow EMA is not bias-corrected; decay added to the update."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=None,
                 alpha_warmup=None, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, alpha=alpha, beta3_warmup=beta3_warmup,
                         alpha_warmup=alpha_warmup, eps=eps, weight_decay=weight_decay)

    def init_state(self, p):
        return _zeros(p, "exp_avg_fast", "exp_avg_slow", "exp_avg_sq")

    def update(self, p, g, st, group):
        b1, b2, b3_final = group["betas"]
        t = st["t"]
        alpha = group["alpha"]
        if group["alpha_warmup"] is not None:
            alpha = linear_warmup(t, alpha, 0, group["alpha_warmup"])
        b3 = b3_final
        if group["beta3_warmup"] is not None:
            b3 = half_life_warmup(t, b3_final, b1, group["beta3_warmup"])
        fast, slow, sq = st["exp_avg_fast"], st["exp_avg_slow"], st["exp_avg_sq"]
        if b1 != 0.0:
            fast.mul_(b1).add_(g, alpha=1 - b1)
        else:
            fast = g
        slow.mul_(b3).add_(g, alpha=1 - b3)
        sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (sq.sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
        update = (fast.div(1 - b1**t) + alpha * slow) / denom
        update.add_(p, alpha=group["weight_decay"])
        p.add_(-group["lr"] * update)


class AnologExperimentsRef(Eager):
    """Adrienkgz/ano-experiments optimizers/anolog.py @ ae4afa8b9bde: beta1 = 1 - 1/ln(max(2, t)),
    no bias correction of v, eps inside the square root."""

    def __init__(self, params, lr=1e-4, betas=(0.92, 0.999), weight_decay=0.0, eps=1e-8):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq")

    def update(self, p, g, st, group):
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b2 = group["betas"][1]
        b1 = 1 - 1 / math.log(max(2, st["t"]))
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        g2 = torch.square(g)
        sign_term = torch.sign(g2 - v)  # against the old v: read before v decays
        v.mul_(b2).add_(sign_term * g2, alpha=1 - b2)
        update = lr / torch.sqrt(v + eps) * g.abs() * torch.sign(m)
        if wd != 0.0:
            p.mul_(1 - lr * wd)
        p.add_(-update)


def tf_linear_sign_decay(global_step, decay_steps):
    """tensorflow contrib/opt/python/training/sign_decay.py get_linear_decay_fn."""
    step = min(global_step, decay_steps)
    return max(0.0, float(int(decay_steps) - int(step)) / float(decay_steps))


class TFSignRef(Eager):
    """TensorFlow 1.x contrib PowerSign / AddSign (contrib/opt/python/training/powersign.py @ 512e8c40bc7f,
    addsign.py @ 8cc94441bd3b; dense kernels ApplyPowerSign / ApplyAddSign in
    core/kernels/training_ops.cc @ b7d3cf66f3d1): m first, then the step.

    ``decay_steps`` None is sign_decay_fn=None (decay 1); otherwise the linear decay of the
    global step as apply_gradients passes it, before its increment (t - 1).
    """

    def __init__(self, params, kind, lr=0.1, beta=0.9, base=math.e, alpha=1.0, decay_steps=None):
        super().__init__(params, lr=lr, beta=beta, logbase=math.log(base), alpha=alpha, decay_steps=decay_steps)
        self.kind = kind

    def init_state(self, p):
        return _zeros(p, "m")

    def update(self, p, g, st, group):
        beta = group["beta"]
        decay = 1.0 if group["decay_steps"] is None else tf_linear_sign_decay(st["t"] - 1, group["decay_steps"])
        m = st["m"]
        m.copy_(m * beta + g * (1 - beta))
        sign_gm = g.sign() * m.sign()
        if self.kind == "powersign":
            scale = torch.exp(group["logbase"] * decay * sign_gm)
        else:
            scale = group["alpha"] + decay * sign_gm
        p.sub_(group["lr"] * scale * g)


class LarsRef(Eager):
    """timm timm/optim/lars.py @ aa4b5850c154 (huggingface/pytorch-image-models)."""

    def __init__(self, params, lr=1.0, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 trust_coeff=0.001, eps=1e-8, trust_clip=False, always_adapt=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, trust_coeff=trust_coeff, eps=eps, trust_clip=trust_clip,
                         always_adapt=always_adapt)

    def update(self, p, g, st, group):
        wd, momentum = group["weight_decay"], group["momentum"]
        if wd != 0 or group["always_adapt"]:
            w_norm, g_norm = p.norm(2.0), g.norm(2.0)
            ratio = group["trust_coeff"] * w_norm / (g_norm + w_norm * wd + group["eps"])
            ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, ratio, 1.0), 1.0)
            if group["trust_clip"]:
                ratio = torch.clamp(ratio / group["lr"], max=1.0)
            g = g.add(p, alpha=wd).mul_(ratio)
        if momentum != 0:
            if "momentum_buffer" not in st:
                buf = st["momentum_buffer"] = torch.clone(g).detach()
            else:
                buf = st["momentum_buffer"]
                buf.mul_(momentum).add_(g, alpha=1.0 - group["dampening"])
            g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


class AdanRef(Eager):
    """sail-sg/Adan adan.py @ 2c65beaf4007, _single_tensor_adan with max_grad_norm = 0 (no clipping):
    neg_pre_grad starts as -g on the first step, so the first difference is 0."""

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, no_prox=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq", "exp_avg_diff")

    def update(self, p, g, st, group):
        b1, b2, b3 = group["betas"]
        lr, wd, t = group["lr"], group["weight_decay"], st["t"]
        if t == 1:
            st["neg_pre_grad"] = g.clone().mul_(-1.0)
        neg = st["neg_pre_grad"]
        m, n, d = st["exp_avg"], st["exp_avg_sq"], st["exp_avg_diff"]
        neg.add_(g)  # now g - g_prev
        m.mul_(b1).add_(g, alpha=1 - b1)
        d.mul_(b2).add_(neg, alpha=1 - b2)
        neg.mul_(b2).add_(g)  # now g + b2 * (g - g_prev)
        n.mul_(b3).addcmul_(neg, neg, value=1 - b3)
        denom = (n.sqrt() / math.sqrt(1.0 - b3**t)).add_(group["eps"])
        step_size, step_size_diff = lr / (1.0 - b1**t), lr * b2 / (1.0 - b2**t)
        if group["no_prox"]:
            p.mul_(1 - lr * wd)
        p.addcdiv_(m, denom, value=-step_size)
        p.addcdiv_(d, denom, value=-step_size_diff)
        if not group["no_prox"]:
            p.div_(1 + lr * wd)
        neg.zero_().add_(g, alpha=-1.0)


class MarsRef(Eager):
    """AGI-Arena/MARS MARS/optimizers/mars.py @ 4831e28eba86, is_approx=True, amsgrad=False;
    ``mars_type`` "mars-adamw" or "mars-lion". As there, eps, gamma, mars_type and the 1-D
    settings are the constructor's, and the 1-D learning rate is lr * (lr_1d / constructor lr)."""

    def __init__(self, params, lr=3e-3, betas=(0.95, 0.99), eps=1e-8, weight_decay=0.0, gamma=0.025,
                 mars_type="mars-adamw", optimize_1d=False, lr_1d=3e-3, betas_1d=(0.9, 0.95), weight_decay_1d=0.1):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.eps, self.gamma, self.mars_type, self.optimize_1d = eps, gamma, mars_type, optimize_1d
        self.lr_1d_factor, self.betas_1d, self.weight_decay_1d = lr_1d / lr, betas_1d, weight_decay_1d

    def init_state(self, p):
        return _zeros(p, "exp_avg", "last_grad", "exp_avg_sq")

    def update(self, p, g, st, group):
        lr, wd, t = group["lr"], group["weight_decay"], st["t"]
        b1, b2 = group["betas"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if self.optimize_1d or g.dim() == 2:
            c = (g - st["last_grad"]).mul(self.gamma * (b1 / (1.0 - b1))).add(g)
            c_norm = torch.norm(c)
            if c_norm > 1.0:
                c = c / c_norm
            m.mul_(b1).add_(c, alpha=1.0 - b1)
            if self.mars_type == "mars-adamw":
                v.mul_(b2).addcmul_(c, c, value=1.0 - b2)
                denom = v.sqrt().mul(1 / math.sqrt(1.0 - b2**t)).add(self.eps).mul(1.0 - b1**t)
                p.add_(-lr * torch.mul(p, wd).add(m.div(denom)))
            else:
                p.add_(-lr * torch.mul(p, wd).add(m.sign()))
        else:
            b1, b2 = self.betas_1d
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = v.sqrt().mul(1 / math.sqrt(1.0 - b2**t)).add(self.eps).mul(1.0 - b1**t)
            p.add_(-lr * self.lr_1d_factor * torch.mul(p, self.weight_decay_1d).add(m.div(denom)))
        st["last_grad"] = g
