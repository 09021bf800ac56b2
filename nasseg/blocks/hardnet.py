"""Harmonic dense block (HarDNet, Chao et al. ICCV 2019), as FC-HarDNet and FASSD-Net use it.

A HarDBlock keeps DenseNet's reuse of earlier layers but links layer k only to layers k - 2^j (for
every 2^j dividing k), so most intermediate outputs can be dropped from memory early; layers with
many links are made wider (growth multiplier per extra link) to balance input/output channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct


def even_width(value: float) -> int:
    """HarDNet's rounding of a fractional width to an even channel count: int(int(x + 1) / 2) * 2."""
    return int(int(value + 1) / 2) * 2


def harmonic_links(layer: int) -> list[int]:
    """Layers that layer ``layer`` (1-based; 0 is the block input) reads, nearest first."""
    links, step = [], 1
    while step <= layer:
        if layer % step == 0:
            links.append(layer - step)
        step *= 2
    return links


@dataclass(frozen=True)
class HarmonicLayer:
    """One layer of a HarDBlock: the layers it concatenates (nearest first) and its widths."""

    links: tuple[int, ...]
    in_ch: int
    out_ch: int


def harmonic_layout(in_ch: int, growth: int, n_layers: int, grmul: float = 1.7) -> list[HarmonicLayer]:
    """Widths and links of every layer: out_k = even(growth * grmul^(links - 1))."""
    widths = [in_ch]
    layout = []
    for k in range(1, n_layers + 1):
        links = harmonic_links(k)
        out_ch = even_width(growth * grmul ** (len(links) - 1))
        layout.append(HarmonicLayer(tuple(links), sum(widths[j] for j in links), out_ch))
        widths.append(out_ch)
    return layout


def output_layers(n_layers: int) -> list[int]:
    """Layers concatenated into the block output: the odd ones and the last (the input is not kept)."""
    return [k for k in range(1, n_layers + 1) if k % 2 == 1 or k == n_layers]


class HarDBlock(nn.Module):
    """Harmonic dense block of 3x3 conv-BN-ReLU layers; ``out_channels`` tells the output width."""

    def __init__(self, in_ch: int, growth: int, n_layers: int, grmul: float = 1.7, act: str = "relu") -> None:
        super().__init__()
        if in_ch < 1 or growth < 1 or n_layers < 1 or grmul <= 0:
            raise ValueError(f"HarDBlock needs positive widths and depth, got in={in_ch} gr={growth} L={n_layers}")
        self.layout = harmonic_layout(in_ch, growth, n_layers, grmul)
        self.layers = nn.ModuleList(ConvBNAct(layer.in_ch, layer.out_ch, 3, act=act) for layer in self.layout)
        self.keep = output_layers(n_layers)
        self.out_channels = sum(self.layout[k - 1].out_ch for k in self.keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for spec, layer in zip(self.layout, self.layers, strict=False):
            inputs = [outputs[j] for j in spec.links]
            outputs.append(layer(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)))
        return torch.cat([outputs[k] for k in self.keep], dim=1)
