"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3) (Lavin & Gray, 2016), for CPUs in fp32.

A 4x4 block of outputs takes 36 multiplications per channel pair instead of 144: each 6x6 input tile and each
filter go to the transformed domain, where the convolution is 36 independent matrix products over the channels,
and the products come back as 4x4 outputs. oneDNN convolves 3x3 directly, so this is the faster way wherever the
layers are wide enough for those products to run near peak (benchmarks/winograd.py times each VGG16 width and
each engine's pass). The result is the same convolution to about 1e-5 relative: fp32 only, since the
transforms' coefficients (up to 8 and 1/24) would cost bf16 its few bits.

Frozen weights only: the layer gives the gradient to its input (Gatys' pixels, a trained network's output
through the loss network), never to its weights.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

from stransfer.device import Runtime

ModuleT = TypeVar("ModuleT", bound=nn.Module)

# F(4x4, 3x3)'s matrices: B^T takes a 6x6 input tile to the transformed domain, G a 3x3 filter, A^T brings 6x6
# products back to a 4x4 output block. The output's 2-D transform A^T m A is kron(A^T, A^T) on the 6x6 flattened.
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=torch.float64)
OUTPUT_TRANSFORM = torch.kron(_AT, _AT).float()  # (16, 36)
INPUT_ROWS = _BT.float()  # B^T, applied once along each side of a tile

# Floats in one transformed copy (36 per tile and channel): the tile rows transformed at once are bounded by it,
# so the copies add a few times 8 MB however large the image: larger chunks run no faster and leave the allocator
# more holes, so a higher peak.
CHUNK_FLOATS = 2 * 2**20


def filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) filters -> (36, C_in, C_out) in the transformed domain, computed in fp64."""
    u = torch.einsum("ij,ocjk,lk->ilco", _G, weight.detach().double().cpu(), _G)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def convolve(x: torch.Tensor, u: torch.Tensor, padding: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The 3x3 convolution of x (N, C, H, W) with transformed filters u, zero-padded by `padding`, plus `bias`:
    (N, C_out, H + 2 * padding - 2, W + 2 * padding - 2), channels-last. The padded input is never built
    whole: each chunk of tile rows copies just its slab."""
    n, c, h_in, w_in = x.shape
    h, w, c_out = h_in + 2 * padding - 2, w_in + 2 * padding - 2, u.shape[2]
    tile_rows, tile_cols = -(-h // 4), -(-w // 4)
    source = x.permute(0, 2, 3, 1)  # N H W C: a view, no copy, when x is channels-last
    # Whole tiles: an output whose sides are not multiples of 4 is cut to size at the end.
    out = x.new_empty(n, 4 * tile_rows, 4 * tile_cols, c_out)
    rows_per_chunk = max(1, CHUNK_FLOATS // (36 * max(c, c_out) * n * tile_cols))
    for r0 in range(0, tile_rows, rows_per_chunk):
        rows = min(rows_per_chunk, tile_rows - r0)
        # The padded image's rows 4 * r0 ... 4 * (r0 + rows) + 1; zeros past the input's edges, and past the
        # output's last whole tile (they only feed outputs that are cut off).
        slab = x.new_zeros(n, 4 * rows + 2, 4 * tile_cols + 2, c)
        top = 4 * r0 - padding
        first, last = max(top, 0), min(top + 4 * rows + 2, h_in)
        slab[:, first - top: last - top, padding: padding + w_in] = source[:, first:last]
        tiles = slab.unfold(1, 6, 4).unfold(2, 6, 4)  # n rows cols c 6 6
        d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(6, -1)
        # B^T d B as B^T along the tile's rows, then along its columns: a third of kron(B^T, B^T)'s work.
        v = torch.matmul(INPUT_ROWS, (INPUT_ROWS @ d).view(6, 6, -1))
        products = torch.bmm(v.view(36, -1, c), u)
        y = (OUTPUT_TRANSFORM @ products.view(36, -1)).view(4, 4, n, rows, tile_cols, c_out)
        # Straight into place, bias included: one pass over the outputs.
        block = out[:, 4 * r0: 4 * (r0 + rows)].view(n, rows, 4, tile_cols, 4, c_out)
        y = y.permute(2, 3, 0, 4, 1, 5)
        if bias is None:
            block.copy_(y)
        else:
            torch.add(y, bias, out=block)
    if (h, w) != tuple(out.shape[1:3]):
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)


class _Convolve(torch.autograd.Function):
    """A valid convolution whose gradient to the input is the full convolution of the gradient with the
    filters turned 180 degrees and transposed: the same fast path, backwards."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: WinogradConv2d) -> torch.Tensor:  # type: ignore[override]
        ctx.layer = layer
        return convolve(x, layer.u, layer.padding, layer.bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        layer = ctx.layer
        return convolve(grad, layer.backward_filters(), 2 - layer.padding), None


class WinogradConv2d(nn.Module):
    """A frozen 3x3, stride-1 nn.Conv2d (zero padding 0 or 1) computed by F(4x4, 3x3)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not eligible(conv, narrowest=1):
            raise ValueError(f"not a frozen 3x3 stride-1 convolution: {conv}")
        self.padding = conv.padding[0]
        self.register_buffer("weight", conv.weight.detach())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach())
        self.register_buffer("u", filter_transform(conv.weight).to(conv.weight.device))
        self._u_back: torch.Tensor | None = None

    def backward_filters(self) -> torch.Tensor:
        """The transformed filters of the input gradient, made on the first backward pass: a feed-forward
        engine never needs their 4x the weights' memory."""
        if self._u_back is None:
            self._u_back = filter_transform(self.weight.flip(2, 3).transpose(0, 1)).to(self.u.device)
        return self._u_back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # fp32 throughout, even inside a bf16 region
            return _Convolve.apply(x.float(), self)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size=(3, 3), padding={self.padding}"


def min_channels() -> int:
    """The narrowest layer worth it on this CPU: with 512-bit vectors, oneDNN's direct kernels keep up at 64
    channels, so converting those layers slows a pass; with narrower ones every VGG width gains
    (benchmarks/winograd.py)."""
    return 128 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 64


def eligible(conv: nn.Module, narrowest: int) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding in ((0, 0), (1, 1))
            and conv.padding_mode == "zeros" and not conv.weight.requires_grad
            and min(conv.in_channels, conv.out_channels) >= narrowest)


def wanted(runtime: Runtime) -> bool:
    """On the CPU in fp32; GPUs' libraries choose Winograd themselves, and bf16 is too coarse for it."""
    return runtime.device.type == "cpu" and runtime.precision == "fp32"


def adopt(module: ModuleT, runtime: Runtime) -> ModuleT:
    """The module, or where the runtime wants it a copy with its frozen 3x3 convolutions of min_channels() and
    more computed by F(4x4, 3x3). A copy, so a network the caller shares with other engines stays as it was."""
    narrowest = min_channels()
    if not wanted(runtime) or not any(eligible(m, narrowest) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if eligible(child, narrowest):
                setattr(parent, name, WinogradConv2d(child))
    return module
