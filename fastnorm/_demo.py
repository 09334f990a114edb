"""A style-transfer network of the Johnson et al. (2016) kind, for demos and
benchmarks: conv + instance norm + ReLU, residual blocks, upsampling.
Random weights; imports torch when called."""
from __future__ import annotations


def style_network(channels=(32, 64, 128), res_blocks=5):
    import torch
    from torch import nn

    c1, c2, c3 = channels

    def conv(ci, co, k, s=1):
        return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(ci, co, k, s))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(conv(c, c, 3), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
                                      conv(c, c, 3), nn.InstanceNorm2d(c, affine=True))

        def forward(self, x):
            return x + self.body(x)

    class Up(nn.Module):
        def __init__(self, ci, co):
            super().__init__()
            self.conv = conv(ci, co, 3)

        def forward(self, x):
            return self.conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))

    layers = [conv(3, c1, 9), nn.InstanceNorm2d(c1, affine=True), nn.ReLU(),
              conv(c1, c2, 3, 2), nn.InstanceNorm2d(c2, affine=True), nn.ReLU(),
              conv(c2, c3, 3, 2), nn.InstanceNorm2d(c3, affine=True), nn.ReLU()]
    layers += [Res(c3) for _ in range(res_blocks)]
    layers += [Up(c3, c2), nn.InstanceNorm2d(c2, affine=True), nn.ReLU(),
               Up(c2, c1), nn.InstanceNorm2d(c1, affine=True), nn.ReLU(),
               conv(c1, 3, 9)]
    net = nn.Sequential(*layers)
    with torch.no_grad():  # random affine so the norm layers matter
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net
