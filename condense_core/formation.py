"""Multi-formation (IDC/IDM's partition and expansion): one stored image holds factor x factor
sub-images at 1/factor resolution, and training sees each of them enlarged to full size.

A memory budget counts stored images, so at the same budget a factor-2 set trains on four times
as many (coarser) images. `decode` is the one place that turns stored images into training
images: the condensation engine backpropagates through it, and `ReducedSet.for_data` applies
it for every consumer (evaluation, replay memories, NAS proxies). `encode` is its inverse on
real images (each tile a downscaled image), used to start a condensation from real pictures.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _bounds(size: int, factor: int) -> list[tuple[int, int]]:
    """Tile rows (or columns) `[a, b)`: `factor` near-equal parts of `size`."""
    edges = [round(i * size / factor) for i in range(factor + 1)]
    return list(zip(edges[:-1], edges[1:]))


def decode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """N x C x H x W stored images -> N * factor^2 x C x H x W training images: each stored image's
    tiles, row by row, enlarged bilinearly to H x W (stored image i gives rows i*f^2 ... (i+1)*f^2-1).
    Factor 1 returns `images` itself."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    tiles = [images[:, :, a:b, p:q] for a, b in _bounds(h, factor) for p, q in _bounds(w, factor)]
    big = [F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in tiles]
    return torch.stack(big, dim=1).reshape(n * factor * factor, c, h, w)


def decoded_labels(labels: torch.Tensor, factor: int) -> torch.Tensor:
    """The label of each training image `decode` makes."""
    return labels.repeat_interleave(factor * factor)


def encode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """N * factor^2 x C x H x W full-size images -> N stored images whose tiles are those images
    shrunk (area average), in `decode`'s order."""
    if factor == 1:
        return images
    m, c, h, w = images.shape
    n = m // (factor * factor)
    out = images.new_zeros(n, c, h, w)
    groups = images.view(n, factor * factor, c, h, w)
    tiles = [(a, b, p, q) for a, b in _bounds(h, factor) for p, q in _bounds(w, factor)]
    for t, (a, b, p, q) in enumerate(tiles):
        out[:, :, a:b, p:q] = F.interpolate(groups[:, t], size=(b - a, q - p), mode="area")
    return out
