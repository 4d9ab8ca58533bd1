"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021), rewritten for current PyTorch.

Six operations: colour (brightness, saturation, contrast), crop (translation with zero padding),
cutout, flip, scale and rotate. Every sample belongs to a *group*; each group gets one
operation and one parameter draw. In Siamese mode a group is a class, shared by the real and the
synthetic batch of that class, so both see exactly the same transformation (the gradient then
flows to the synthetic images through a transform that also applied to the real ones). In
independent mode (evaluation training) every sample is its own group. All randomness comes from
the caller's `torch.Generator`, never from the clock; no operation writes in place.
A 1 x 1 input is a vector of features (tabular data held as D x 1 x 1): no image augmentation
applies to it, so it passes unchanged (the draws are still made, so a run's random stream does
not depend on the input's shape).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    """The DSA paper's magnitudes."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


class DSA:
    """Draws and applies one operation and one parameter draw per group of samples."""

    def __init__(self, ops: Sequence[str] = OPS, params: DSAParams = DSAParams()):
        unknown = set(ops) - set(OPS)
        if unknown or not ops:
            raise ValueError(f"unknown DSA operations {sorted(unknown)}; choose from {OPS}")
        self.ops = tuple(ops)
        self.p = params

    def draw(self, n_groups: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One operation index and three uniform numbers per group."""
        dev = generator.device
        op = torch.randint(len(self.ops), (n_groups,), generator=generator, device=dev)
        u = torch.rand(n_groups, 3, generator=generator, device=dev)
        return op, u

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Independent mode: every sample draws its own operation and parameters."""
        op, u = self.draw(len(x), generator)
        return self.apply(x, op, u)

    def apply(self, x: torch.Tensor, op: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Apply operation `op[i]` with uniforms `u[i]` to sample i.

        Two ways, one result (a test checks them equal): on a CPU each operation runs on its own
        samples only (`_grouped`: the cheapest, but it reads how many samples each operation got);
        on a GPU every operation runs on every sample and each sample keeps its own (`_selected`:
        a few times the arithmetic of tiny kernels, but fixed shapes and no read from the device,
        so an iteration never waits for the GPU and can be captured as a CUDA graph)."""
        if x.shape[-2:].numel() == 1:  # a vector of features: nothing to augment
            return x
        op, u = op.to(x.device), u.to(device=x.device, dtype=x.dtype)
        return self._selected(x, op, u) if x.is_cuda else self._grouped(x, op, u)

    def _selected(self, x: torch.Tensor, op: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        out = x
        for k, name in enumerate(self.ops):
            out = torch.where((op == k).view(-1, 1, 1, 1), getattr(self, "_" + name)(x, u), out)
        return out

    def _grouped(self, x: torch.Tensor, op: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(op, stable=True)
        counts = torch.bincount(op, minlength=len(self.ops)).tolist()
        pieces, start = [], 0
        for k, n in enumerate(counts):
            if n:
                idx = order[start:start + n]
                pieces.append(getattr(self, "_" + self.ops[k])(x[idx], u[idx]))
                start += n
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return torch.cat(pieces)[inverse]

    # --- the operations: x is N x C x H x W, u is N x 3 uniforms in [0, 1) ---
    def _color(self, x, u):
        x = x + ((u[:, 0] - 0.5) * self.p.brightness).view(-1, 1, 1, 1)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (u[:, 1] * self.p.saturation).view(-1, 1, 1, 1) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (u[:, 2] + self.p.contrast).view(-1, 1, 1, 1) + m

    def _crop(self, x, u):
        h, w = x.shape[2:]
        sh, sw = int(h * self.p.ratio_crop_pad + 0.5), int(w * self.p.ratio_crop_pad + 0.5)
        ty = torch.floor(u[:, 0] * (2 * sh + 1)) - sh
        tx = torch.floor(u[:, 1] * (2 * sw + 1)) - sw
        one, zero = torch.ones_like(tx), torch.zeros_like(tx)
        theta = torch.stack([torch.stack([one, zero, -2 * tx / w], 1),
                             torch.stack([zero, one, -2 * ty / h], 1)], 1)
        return _warp(x, theta, align_corners=False)

    def _cutout(self, x, u):
        h, w = x.shape[2:]
        ch, cw = int(h * self.p.ratio_cutout + 0.5), int(w * self.p.ratio_cutout + 0.5)
        cy = torch.floor(u[:, 0] * (h + (1 - ch % 2))) - ch // 2
        cx = torch.floor(u[:, 1] * (w + (1 - cw % 2))) - cw // 2
        rows = torch.arange(h, device=x.device, dtype=x.dtype)
        cols = torch.arange(w, device=x.device, dtype=x.dtype)
        in_y = (rows[None] >= cy[:, None]) & (rows[None] < cy[:, None] + ch)
        in_x = (cols[None] >= cx[:, None]) & (cols[None] < cx[:, None] + cw)
        keep = ~(in_y[:, :, None] & in_x[:, None, :])
        return x * keep[:, None].to(x.dtype)

    def _flip(self, x, u):
        return torch.where((u[:, 0] < self.p.prob_flip).view(-1, 1, 1, 1), x.flip(3), x)

    def _scale(self, x, u):
        r = self.p.ratio_scale
        sx, sy = u[:, 0] * (r - 1 / r) + 1 / r, u[:, 1] * (r - 1 / r) + 1 / r
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
        return _warp(x, theta, align_corners=True)

    def _rotate(self, x, u):
        a = (u[:, 0] - 0.5) * 2 * self.p.ratio_rotate / 180 * math.pi
        c, s, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
        theta = torch.stack([torch.stack([c, s, zero], 1), torch.stack([-s, c, zero], 1)], 1)
        return _warp(x, theta, align_corners=True)


def _warp(x: torch.Tensor, theta: torch.Tensor, align_corners: bool) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)
    return _BilinearSample.apply(x, grid, align_corners)


class _BilinearSample(torch.autograd.Function):
    """`F.grid_sample` (bilinear, zero padding) whose gradient for the image is a `scatter_add_`
    of the four corner weights: PyTorch's CUDA backward of grid_sample adds with atomics, in an
    order that changes from run to run (the README measures the difference), while under
    deterministic algorithms (`runtime.reproducible`) scatter_add_ sums in a fixed order. The
    grid carries no gradient (the transformation is drawn, not learnt)."""

    @staticmethod
    def forward(ctx, x, grid, align_corners):
        ctx.save_for_backward(grid)
        ctx.shape, ctx.align_corners = x.shape, align_corners
        return F.grid_sample(x, grid, align_corners=align_corners)

    @staticmethod
    def backward(ctx, grad_out):
        grid, = ctx.saved_tensors
        n, c, h, w = ctx.shape
        grid = grid.to(torch.promote_types(grid.dtype, torch.float32))  # exact pixel indices
        gx, gy = grid[..., 0].reshape(n, -1), grid[..., 1].reshape(n, -1)
        if ctx.align_corners:  # the same pixel coordinates as grid_sample
            ix, iy = (gx + 1) / 2 * (w - 1), (gy + 1) / 2 * (h - 1)
        else:
            ix, iy = ((gx + 1) * w - 1) / 2, ((gy + 1) * h - 1) / 2
        x0, y0 = ix.floor(), iy.floor()
        fx, fy = ix - x0, iy - y0
        x0, y0 = x0.long(), y0.long()
        go = grad_out.reshape(n, c, -1)
        grad = torch.zeros(n, c, h * w, dtype=go.dtype, device=go.device)
        for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
                index = yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)
                weight = (wx * wy * inside).to(go.dtype)
                grad.scatter_add_(2, index[:, None].expand(n, c, -1), go * weight[:, None])
        return grad.view(n, c, h, w), None, None
