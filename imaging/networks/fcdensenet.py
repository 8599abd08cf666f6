"""FC-DenseNet ("Tiramisu", Jégou et al., CVPR-W 2017) as used by the myopari cardiac weights.

Written from the published ONNX graphs of ``myopari==0.1.6`` (``tiramisu_acdc_fp32.onnx`` and
``tiramisu_emidec_fp32.onnx``, opset 12): a 3x3 first convolution to 48 channels, five dense blocks of
four layers (growth rate 12) going down, each followed by a transition down (BN, SiLU, 1x1 conv, 2x2 max
pool), a four-layer bottleneck, five transposed-convolution transitions up (3x3, stride 2, centre-cropped
to the skip connection) each followed by a four-layer dense block, a 1x1 classifier and a softmax over
the class axis. Every dense layer is BatchNorm -> SiLU -> 3x3 conv (with bias). 1,374,580 trainable
parameters for four classes (1,395,748 numbers with the BatchNorm running statistics, the "1.40 M" of the
ONNX files); about 22 GFLOP per 256x256 slice.

Sub-module names follow the original checkpoint (``firstconv``, ``denseBlocksDown.N.layers.M.norm``...)
so that the ONNX initialiser names map one-to-one onto :meth:`FCDenseNet.state_dict` keys; the
conversion in :mod:`zeroclick.weights.store` therefore needs no renaming table and refuses any missing or
unexpected key.

Examples
--------
>>> import torch
>>> net = FCDenseNet(n_classes=4).eval()
>>> sum(p.numel() for p in net.parameters())
1374580
>>> with torch.no_grad():
...     net(torch.zeros(1, 1, 64, 64)).shape
torch.Size([1, 4, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FCDenseNet", "fcdensenet_myopari"]


class DenseLayer(nn.Module):
    """BatchNorm -> SiLU -> 3x3 convolution producing ``growth_rate`` new feature maps."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.silu = nn.SiLU()
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.silu(self.norm(x)))


class DenseBlock(nn.Module):
    """``n_layers`` dense layers, each seeing the concatenation of the input and all previous outputs.

    With ``upsample=True`` (bottleneck and up path except the last block) only the new feature maps are
    returned, which keeps the up path from growing quadratically (as in the paper).
    """

    def __init__(self, in_channels: int, growth_rate: int, n_layers: int, *, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth_rate, growth_rate) for i in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_features = []
        for layer in self.layers:
            out = layer(x)
            new_features.append(out)
            if self.upsample and len(new_features) == len(self.layers):
                break  # the last concatenation is never used in upsample mode
            x = torch.cat([x, out], dim=1)
        if self.upsample:
            return torch.cat(new_features, dim=1)
        return x


class TransitionDown(nn.Module):
    """BatchNorm -> SiLU -> 1x1 convolution -> 2x2 max pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.SiLU = nn.SiLU()  # noqa: N815 - name of the original checkpoint's module
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
        self.maxpool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv(self.SiLU(self.norm(x))))


class TransitionUp(nn.Module):
    """3x3 transposed convolution (stride 2, no padding), centre crop to the skip size, concatenation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convTrans = nn.ConvTranspose2d(channels, channels, kernel_size=3, stride=2, padding=0, bias=True)  # noqa: N815

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.convTrans(x)
        height, width = skip.shape[2], skip.shape[3]
        top = (out.shape[2] - height) // 2
        left = (out.shape[3] - width) // 2
        out = out[:, :, top : top + height, left : left + width]
        return torch.cat([out, skip], dim=1)


class Bottleneck(nn.Module):
    """The dense block between the two paths (upsample mode: only new feature maps go up)."""

    def __init__(self, in_channels: int, growth_rate: int, n_layers: int) -> None:
        super().__init__()
        self.bottleneck = DenseBlock(in_channels, growth_rate, n_layers, upsample=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(x)


class FCDenseNet(nn.Module):
    """FC-DenseNet for 2-D segmentation; returns softmax probabilities ``[B, n_classes, H, W]``.

    Parameters
    ----------
    in_channels
        Image channels (1 for MR magnitude).
    n_classes
        Output classes (4 for the ACDC weights, 5 for EMIDEC).
    down_blocks, up_blocks
        Dense layers per block on each path.
    bottleneck_layers
        Dense layers in the bottleneck.
    growth_rate
        New feature maps per dense layer.
    first_conv_channels
        Output channels of the first 3x3 convolution.

    Notes
    -----
    The input height and width must be divisible by ``2 ** len(down_blocks)`` (32 by default); the
    myopari weights expect 256x256 slices scaled to [0, 1].
    """

    #: :class:`zeroclick.imaging.engine.Engine` (``runtime="auto"``) runs this network through ONNX Runtime on the CPU:
    #: 0.73 vs 0.91 s/slice in PyTorch eager on the quiet 2-core machine, 1.7 vs 3.3 s/slice under load.
    zeroclick_onnx_export = True

    def __init__(
        self,
        *,
        in_channels: int = 1,
        n_classes: int = 4,
        down_blocks: Sequence[int] = (4, 4, 4, 4, 4),
        up_blocks: Sequence[int] = (4, 4, 4, 4, 4),
        bottleneck_layers: int = 4,
        growth_rate: int = 12,
        first_conv_channels: int = 48,
    ) -> None:
        super().__init__()
        if len(down_blocks) != len(up_blocks):
            raise ValueError("down_blocks and up_blocks must have the same length")
        self.n_classes = int(n_classes)
        self.firstconv = nn.Conv2d(in_channels, first_conv_channels, kernel_size=3, padding=1, bias=True)
        channels = first_conv_channels
        skip_channels: list[int] = []
        self.denseBlocksDown = nn.ModuleList()  # noqa: N815
        self.transDownBlocks = nn.ModuleList()  # noqa: N815
        for n_layers in down_blocks:
            self.denseBlocksDown.append(DenseBlock(channels, growth_rate, n_layers))
            channels += growth_rate * n_layers
            skip_channels.insert(0, channels)
            self.transDownBlocks.append(TransitionDown(channels))

        self.bottleneck = Bottleneck(channels, growth_rate, bottleneck_layers)
        prev_new = growth_rate * bottleneck_layers

        self.transUpBlocks = nn.ModuleList()  # noqa: N815
        self.denseBlocksUp = nn.ModuleList()  # noqa: N815
        for i, n_layers in enumerate(up_blocks):
            last = i == len(up_blocks) - 1
            self.transUpBlocks.append(TransitionUp(prev_new))
            channels = prev_new + skip_channels[i]
            self.denseBlocksUp.append(DenseBlock(channels, growth_rate, n_layers, upsample=not last))
            prev_new = growth_rate * n_layers
        channels += growth_rate * up_blocks[-1]
        self.finalConv = nn.Conv2d(channels, n_classes, kernel_size=1, bias=True)  # noqa: N815
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.firstconv(x)
        skips = []
        for dense, down in zip(self.denseBlocksDown, self.transDownBlocks):
            out = dense(out)
            skips.append(out)
            out = down(out)
        out = self.bottleneck(out)
        for up, dense in zip(self.transUpBlocks, self.denseBlocksUp):
            out = dense(up(out, skips.pop()))
        return self.softmax(self.finalConv(out))


def fcdensenet_myopari(n_classes: int) -> FCDenseNet:
    """The architecture of the myopari 0.1.6 ACDC (``n_classes=4``) and EMIDEC (``n_classes=5``) weights."""
    return FCDenseNet(in_channels=1, n_classes=n_classes)
