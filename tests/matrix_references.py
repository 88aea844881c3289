"""Eager transcriptions of the spec library's part-2 references that have no installable
package (or whose package cannot express the execution order a test needs).

Like ``spec_references``: each class restates, one tensor at a time and in the
reference's own order of operations, the update of the file it cites (repository,
path and commit), written from reading that code. Options beyond the reference's own
(``bf16``, ``order``) exist only to measure the reference against itself in another
valid execution order: with them at their defaults the transcription is the reference.
"""

from __future__ import annotations

import math

import torch

from spec_references import Eager, _zeros

KELLER = (3.4445, -4.7750, 2.0315)


def newton_schulz(G, steps, coefficients=KELLER, eps=1e-7, *, bf16=True, eps_style="add", form="keller",
                  normalize_first=False):
    """The quintic Newton-Schulz iteration of Keller Jordan's zeropower_via_newtonschulz5
    (KellerJordan/Muon muon.py @ 00ba60d3a0d1) and torch's _zeropower_via_newtonschulz (torch 2.13
    torch/optim/_muon.py), on a matrix (2-D) or a batch of them.

    ``eps_style``: "add" is Keller's ``X / (|X| + eps)``, "clamp" torch's ``X / |X|.clamp(min=eps)``.
    ``form``: "keller" is ``B = b*A + c*A@A; X = a*X + B@X``, "addmm" torch's two addmm calls.
    ``normalize_first``: normalize in fp32, then cast (the generated code's order); the
    references cast to bfloat16 first.
    """
    a, b, c = coefficients
    X = G
    if normalize_first:
        X = _normalize(X, eps, eps_style)
    X = X.bfloat16() if bf16 else X
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    if not normalize_first:
        X = _normalize(X, eps, eps_style)
    for _ in range(steps):
        A = X @ X.mT
        if form == "keller":
            B = b * A + c * A @ A
            X = a * X + B @ X
        else:
            B = torch.addmm(A, A, A, beta=b, alpha=c)
            X = torch.addmm(X, B, X, beta=a)
    return X.mT if tall else X


def _normalize(X, eps, eps_style):
    norm = X.norm(dim=(-2, -1), keepdim=True)
    return X / (norm + eps) if eps_style == "add" else X / norm.clamp(min=eps)


def adamw_torch(p, g, st, lr, betas, eps, weight_decay):
    """torch.optim.AdamW's _single_tensor_adamw (torch 2.13), one tensor."""
    b1, b2 = betas
    t = st["t"]
    p.mul_(1 - lr * weight_decay)
    st["exp_avg"].lerp_(g, 1 - b1)
    st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(eps)
    p.addcdiv_(st["exp_avg"], denom, value=-lr / (1 - b1**t))


class TorchMuonPair:
    """torch.optim.Muon over the 2-D parameters of each group and torch.optim.AdamW over the rest,
    stepped together: the reference for the muon spec's default."""

    def __init__(self, groups, muon: dict | None = None, adamw: dict | None = None):
        muon, adamw = dict(muon or {}), dict(adamw or {})
        shared = {"lr": 1e-3, "weight_decay": 0.1}  # torch.optim.Muon's defaults: AdamW takes the group's
        shared.update({k: v for k, v in muon.items() if k in ("lr", "weight_decay")})
        self.muon = torch.optim.Muon(
            [{**{k: v for k, v in g.items() if k != "params"}, "params": [p for p in g["params"] if p.ndim == 2]}
             for g in groups], **muon)
        self.adamw = torch.optim.AdamW(
            [{**{k: v for k, v in g.items() if k != "params"}, "params": [p for p in g["params"] if p.ndim != 2]}
             for g in groups], **{**shared, **adamw})

    def step(self):
        self.muon.step()
        self.adamw.step()


class TorchMuonRef(Eager):
    """torch.optim.Muon (torch 2.13 torch/optim/_muon.py, _single_tensor_muon) for 2-D tensors and
    torch.optim.AdamW for the others, transcribed; ``bf16``, ``form`` and ``normalize_first``
    choose the Newton-Schulz execution (the reference: True, "addmm", False)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=KELLER,
                 eps=1e-7, ns_steps=5, adjust_lr_fn=None, betas=(0.9, 0.999), adam_eps=1e-8,
                 bf16=True, form="addmm", normalize_first=False):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                         ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                         betas=betas, adam_eps=adam_eps, bf16=bf16, form=form, normalize_first=normalize_first)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq") if p.ndim != 2 else _zeros(p, "momentum_buffer")

    def update(self, p, g, st, group):
        lr, wd = group["lr"], group["weight_decay"]
        if p.ndim != 2:
            adamw_torch(p, g, st, lr, group["betas"], group["adam_eps"], wd)
            return
        mu = group["momentum"]
        buf = st["momentum_buffer"]
        buf.lerp_(g, 1 - mu)
        update = g.lerp(buf, mu) if group["nesterov"] else buf
        update = newton_schulz(update, group["ns_steps"], group["ns_coefficients"], group["eps"], bf16=group["bf16"],
                               eps_style="clamp", form=group["form"], normalize_first=group["normalize_first"])
        A, B = p.shape[:2]
        ratio = math.sqrt(max(1, A / B)) if group["adjust_lr_fn"] in (None, "original") else 0.2 * math.sqrt(max(A, B))
        p.mul_(1 - lr * wd)
        p.add_(update, alpha=-lr * ratio)


class KellerMuonRef(Eager):
    """Keller Jordan's SingleDeviceMuonWithAuxAdam (KellerJordan/Muon muon.py @ 00ba60d3a0d1): muon_update
    (Nesterov by lerping the gradient, conv weights viewed as (out, rest), bfloat16 Newton-Schulz,
    ``X / (|X| + 1e-7)``, ``* max(1, size(-2) / size(-1))**0.5``) for tensors of two or more dimensions,
    adam_update for the others; each tensor's path by its rank instead of a use_muon group flag."""

    def __init__(self, params, lr=0.02, weight_decay=0.0, momentum=0.95, betas=(0.9, 0.95), eps=1e-10, ns_steps=5,
                 bf16=True, form="keller", normalize_first=False):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, eps=eps,
                         ns_steps=ns_steps, bf16=bf16, form=form, normalize_first=normalize_first)

    def init_state(self, p):
        return _zeros(p, "momentum_buffer") if p.ndim >= 2 else _zeros(p, "exp_avg", "exp_avg_sq")

    def update(self, p, g, st, group):
        lr, wd = group["lr"], group["weight_decay"]
        grad = g.clone()  # muon_update lerps the gradient in place
        if p.ndim >= 2:
            beta = group["momentum"]
            st["momentum_buffer"].lerp_(grad, 1 - beta)
            update = grad.lerp_(st["momentum_buffer"], beta)
            if update.ndim == 4:
                update = update.view(len(update), -1)
            update = newton_schulz(update, group["ns_steps"], KELLER, 1e-7, bf16=group["bf16"], eps_style="add",
                                   form=group["form"], normalize_first=group["normalize_first"])
            update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
            p.mul_(1 - lr * wd)
            p.add_(update.reshape(p.shape), alpha=-lr)
            return
        b1, b2 = group["betas"]
        t = st["t"]
        st["exp_avg"].lerp_(grad, 1 - b1)
        st["exp_avg_sq"].lerp_(grad.square(), 1 - b2)
        update = (st["exp_avg"] / (1 - b1**t)) / ((st["exp_avg_sq"] / (1 - b2**t)).sqrt() + group["eps"])
        p.mul_(1 - lr * wd)
        p.add_(update, alpha=-lr)


class AdaMuonRef(Eager):
    """The official AdaMuon (Chongjie-Si/AdaMuon gpt2/models/optimizers/adamuon.py @ 369f0b3bd9d9) for
    tensors of two or more dimensions, single process (rank 0, world size 1): sign before Newton-Schulz,
    v = momentum v + (1 - momentum) O^2 kept in bfloat16 like O, the RMS-aligned 0.2 scale; torch's
    AdamW for the others (which the official code cannot take). ``bf16=False`` runs it all in fp32;
    ``form``/``normalize_first`` choose another valid Newton-Schulz execution."""

    def __init__(self, params, lr=0.02, weight_decay=0.01, momentum=0.95, nesterov=True, ns_steps=5, eps=1e-8,
                 betas=(0.9, 0.999), adam_eps=1e-8, bf16=True, form="keller", normalize_first=False):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                         ns_steps=ns_steps, eps=eps, betas=betas, adam_eps=adam_eps, bf16=bf16, form=form,
                         normalize_first=normalize_first)

    before_ns = staticmethod(torch.sign)  # the official code's sign before Newton-Schulz

    def init_state(self, p):
        return _zeros(p, "momentum_buffer") if p.ndim >= 2 else _zeros(p, "exp_avg", "exp_avg_sq")

    def update(self, p, g, st, group):
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        if p.ndim < 2:
            adamw_torch(p, g, st, lr, group["betas"], group["adam_eps"], wd)
            return
        mu = group["momentum"]
        g = g.clone()
        buf = st["momentum_buffer"]
        buf.lerp_(g, 1 - mu)
        g = g.lerp_(buf, mu) if group["nesterov"] else buf
        if g.ndim == 4:
            g = g.view(len(g), -1)
        g = newton_schulz(self.before_ns(g), group["ns_steps"], KELLER, 1e-7, bf16=group["bf16"], eps_style="add",
                          form=group["form"], normalize_first=group["normalize_first"]).flatten()
        if "v_buffer" not in st:
            st["v_buffer"] = torch.zeros_like(g)
        v = st["v_buffer"]
        v.mul_(mu).addcmul_(g, g, value=1 - mu)
        g = g.div(v.view_as(g).sqrt().add(eps))
        scale = 0.2 * (min(p.shape) * max(p.shape)) ** 0.5 / (g.norm() + eps)
        g.mul_(scale)
        g = g.to(torch.bfloat16 if group["bf16"] else g.dtype)
        p.mul_(1 - lr * wd)
        p.add_(g.view_as(p), alpha=-lr)


class AuONRef(Eager):
    """ryyzn9/AuON auon/optimizer.py @ bba2e8220082: AuON, or HybridAuON with ``hybrid=True`` (Newton-Schulz
    in fp32 for tensors of two or more dimensions, batched over leading dimensions, before the brake).
    ``form`` chooses another valid Newton-Schulz execution."""

    def __init__(self, params, lr=0.24, momentum=0.95, weight_decay=0.0, gamma=1.5, ns_steps=5, hybrid=False,
                 form="keller"):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, gamma=gamma, ns_steps=ns_steps,
                         hybrid=hybrid, form=form)

    def init_state(self, p):
        return _zeros(p, "momentum_buffer")

    def update(self, p, g, st, group):
        lr, wd = group["lr"], group["weight_decay"]
        m = st["momentum_buffer"]
        if wd != 0:
            p.mul_(1 - lr * wd)
        grad = g.clone()
        m.lerp_(grad, 1 - group["momentum"])
        G = grad.lerp_(m, group["momentum"])
        if group["hybrid"] and G.ndim >= 2:
            G = newton_schulz(G, group["ns_steps"], KELLER, 1e-7, bf16=False, eps_style="add", form=group["form"])
        g_norm = G.norm()
        if g_norm == 0:
            return
        r = torch.sqrt(torch.mean(torch.cosh(G / (g_norm + 1e-7) * group["gamma"]) ** 2))
        p.add_(G / (r + 1e-8), alpha=-lr)


class ScaleRef(Eager):
    """OptimAI-Lab/Minimalist_LLM_Pretraining mem_eff_pt/pt_scale/scale_optimizer.py @ f5bd4e754eb9 (SCALE),
    with each parameter's role from its group's "role" ("hidden": main, "output": secondary, "embedding": main
    with col_dim = 0) and 1-D tensors as its oned params. ``max_lr`` is the constructor's lr."""

    def __init__(self, params, lr=1e-4, wd=0.0, momentum=0.9, adam_lr=None, adamw_betas=(0.9, 0.999), adamw_eps=1e-8,
                 role="hidden"):
        super().__init__(params, lr=lr, wd=wd, momentum=momentum, adam_lr=lr if adam_lr is None else adam_lr,
                         adamw_betas=adamw_betas, adamw_eps=adamw_eps, role=role)
        self.max_lr = lr

    def update(self, p, g, st, group):
        lr, wd = group["lr"], group["wd"]
        if p.ndim >= 2:
            if g.ndim > 2:
                g = g.view(g.size(0), -1)
            col_dim = 0 if group["role"] == "embedding" else 1
            if group["role"] == "output":
                if "moment1" not in st:
                    st["moment1"] = torch.zeros_like(g)
                st["moment1"].lerp_(g, 1 - group["momentum"])
                g = st["moment1"]
            s = torch.sqrt(torch.mean(torch.square(g), dim=col_dim, keepdim=True)).clamp_min_(1e-8)
            u = g / s
            p.data.mul_(1 - lr * wd)
            p.data.add_(u.view_as(p), alpha=-lr)
            return
        beta1, beta2 = group["adamw_betas"]
        lr = (group["adam_lr"] / self.max_lr) * lr
        if "moment1" not in st:
            st["moment1"], st["moment2"] = torch.zeros_like(g), torch.zeros_like(g)
        t = st["t"]
        st["moment1"].lerp_(g, 1 - beta1)
        st["moment2"].lerp_(g.square(), 1 - beta2)
        u = st["moment1"] / (group["adamw_eps"] + st["moment2"].sqrt())
        scale = (1 - beta1**t) / (1 - beta2**t) ** 0.5
        p.data.mul_(1 - lr * wd)
        p.data.add_(u, alpha=-lr / scale)


class HFAdafactorRef(Eager):
    """Hugging Face transformers' Adafactor (src/transformers/optimization.py, class Adafactor, as catalogued in
    update_rules 6.11; the fairseq algorithm): factored for two or more dimensions, eps = (eps1, eps2)."""

    def __init__(self, params, lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                 weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False):
        super().__init__(params, lr=lr, eps=eps, clip_threshold=clip_threshold, decay_rate=decay_rate, beta1=beta1,
                         weight_decay=weight_decay, scale_parameter=scale_parameter, relative_step=relative_step,
                         warmup_init=warmup_init)

    @staticmethod
    def _rms(x):
        return x.norm(2) / (x.numel() ** 0.5)

    def update(self, p, g, st, group):
        factored = g.ndim >= 2
        if "RMS" not in st:
            if group["beta1"] is not None:
                st["exp_avg"] = torch.zeros_like(g)
            if factored:
                st["exp_avg_sq_row"] = torch.zeros(g.shape[:-1])
                st["exp_avg_sq_col"] = torch.zeros(g.shape[:-2] + g.shape[-1:])
            else:
                st["exp_avg_sq"] = torch.zeros_like(g)
        t = st["t"]
        st["RMS"] = self._rms(p)
        rel = group["lr"]
        if group["relative_step"]:
            rel = min(1e-6 * t if group["warmup_init"] else 1e-2, 1.0 / math.sqrt(t))
        lr = rel * (max(group["eps"][1], st["RMS"]) if group["scale_parameter"] else 1.0)
        beta2t = 1.0 - math.pow(t, group["decay_rate"])
        update = g**2 + group["eps"][0]
        if factored:
            row, col = st["exp_avg_sq_row"], st["exp_avg_sq_col"]
            row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
            r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r_factor, col.unsqueeze(-2).rsqrt())
            update.mul_(g)
        else:
            st["exp_avg_sq"].mul_(beta2t).add_(update, alpha=1.0 - beta2t)
            update = st["exp_avg_sq"].rsqrt().mul_(g)
        update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if group["beta1"] is not None:
            st["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = st["exp_avg"]
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * lr)
        p.add_(-update)


class Global(Eager):
    """An Eager optimizer whose step first computes a quantity over every parameter of every group."""

    def global_clip(self) -> object:
        return None

    @torch.no_grad()
    def step(self, closure=None):
        self.clip = self.global_clip()
        super().step(closure)


class LambTimmRef(Global):
    """timm's Lamb (huggingface/pytorch-image-models timm/optim/lamb.py @ 1e19b290d661): _get_clip_grad_norm
    (the global norm of every gradient of every group, max_grad_norm from the defaults) and
    _single_tensor_lamb (not in place: leaves p.grad unmodified)."""

    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01,
                 grad_averaging=True, max_grad_norm=1.0, trust_clip=False, always_adapt=False, decoupled_decay=False):
        super().__init__(params, lr=lr, bias_correction=bias_correction, betas=betas, eps=eps,
                         weight_decay=weight_decay, grad_averaging=grad_averaging, max_grad_norm=max_grad_norm,
                         trust_clip=trust_clip, always_adapt=always_adapt, decoupled_decay=decoupled_decay)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq")

    def global_clip(self):
        max_grad_norm = self.defaults["max_grad_norm"]
        if max_grad_norm is None:
            return None
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        global_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return (global_norm / max_grad_norm).clamp_(min=1.0)

    def update(self, p, g, st, group):
        b1, b2 = group["betas"]
        t = st["t"]
        bc1, bc2 = (1 - b1**t, 1 - b2**t) if group["bias_correction"] else (1.0, 1.0)
        beta3 = 1 - b1 if group["grad_averaging"] else 1.0
        lr, wd = group["lr"], group["weight_decay"]
        grad = g / self.clip if self.clip is not None else g
        if beta3 == 1 - b1:
            st["exp_avg"].lerp_(grad, beta3)
        else:
            st["exp_avg"].mul_(b1).add_(grad, alpha=beta3)
        st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (st["exp_avg_sq"].sqrt() / (bc2**0.5)).add_(group["eps"])
        update = (st["exp_avg"] / bc1).div_(denom)
        if wd != 0:
            if group["decoupled_decay"]:
                p.add_(p, alpha=-lr * wd)
            else:
                update.add_(p, alpha=wd)
        if wd != 0 or group["always_adapt"]:
            w_norm, g_norm = p.norm(2.0), update.norm(2.0)
            ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
            if group["trust_clip"]:
                ratio = torch.clamp(ratio, max=1.0)
            update.mul_(ratio)
        p.add_(update, alpha=-lr)


class LambCybertronaiRef(Eager):
    """cybertronai/pytorch-lamb pytorch_lamb/lamb.py @ d3ab8dccf671 (Lamb, adam=False)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq")

    def update(self, p, g, st, group):
        b1, b2 = group["betas"]
        st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        weight_norm = p.data.pow(2).sum().sqrt().clamp(0, 10)
        adam_step = st["exp_avg"] / st["exp_avg_sq"].sqrt().add(group["eps"])
        if group["weight_decay"] != 0:
            adam_step.add_(p.data, alpha=group["weight_decay"])
        adam_norm = adam_step.pow(2).sum().sqrt()
        trust_ratio = 1 if weight_norm == 0 or adam_norm == 0 else weight_norm / adam_norm
        p.data.add_(adam_step, alpha=-group["lr"] * trust_ratio)


class AdanClipRef(Global):
    """sail-sg/Adan adan.py @ 2c65beaf4007 with its global clipping: clip = min(1, max_grad_norm /
    (|all gradients| + eps)) with max_grad_norm from the defaults and the last group's eps, as .item();
    the gradient is scaled in place and the scaled one remembered."""

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, no_prox=False,
                 max_grad_norm=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox,
                         max_grad_norm=max_grad_norm)

    def init_state(self, p):
        return _zeros(p, "exp_avg", "exp_avg_sq", "exp_avg_diff")

    def global_clip(self):
        if self.defaults["max_grad_norm"] <= 0:
            return 1.0
        total = torch.zeros(1)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    total.add_(p.grad.pow(2).sum())
        max_norm = torch.tensor(self.defaults["max_grad_norm"])
        return torch.clamp(max_norm / (torch.sqrt(total) + self.param_groups[-1]["eps"]), max=1.0).item()

    def update(self, p, g, st, group):
        from spec_references import AdanRef

        AdanRef.update(self, p, g.mul(self.clip), st, group)
