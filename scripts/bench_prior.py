"""Reference for `flowprior bench prior`: the same flow-prior training step in PyTorch (eager, CPU or CUDA).

SimpleMLPAdaLN written from the paper's description (see src/flow/net.rs), rectified flow-matching loss
(mean squared error), Adam. Prints one JSON line: {"steps_per_s": ..., "torch": ..., "threads": ...}.
Usage: python bench_prior.py DIM WIDTH DEPTH BATCH STEPS WARMUP THREADS [DEVICE]
DEVICE is `cpu` (default) or `cuda`; on CUDA the timing waits for the queued kernels (synchronize).
`setup` (shared by the other bench_*.py references) fixes the device, the thread count and, on CUDA, the
precision of f32 matrix products and convolutions: TF32, as Burn's CUDA backend computes them on
tensor-core GPUs (its matmul kernels take f32 operands as TF32), unless FLOWPRIOR_TORCH_FP32=ieee asks
for full f32. The JSON line states the setting.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn


def timestep_embedding(t, dim=256, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.ln = nn.LayerNorm(w, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(w, w), nn.Linear(w, w)
        self.ada = nn.Linear(w, 3 * w)

    def forward(self, x, c):
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        h = self.fc2(nn.functional.silu(self.fc1(modulate(self.ln(x), shift, scale))))
        return x + gate * h


class Net(nn.Module):
    def __init__(self, d, w, depth):
        super().__init__()
        self.t1, self.t2 = nn.Linear(256, w), nn.Linear(w, w)
        self.inp = nn.Linear(d, w)
        self.blocks = nn.ModuleList([Block(w) for _ in range(depth)])
        self.ln = nn.LayerNorm(w, eps=1e-6, elementwise_affine=False)
        self.ada = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, d)

    def forward(self, x, t):
        c = nn.functional.silu(self.t2(nn.functional.silu(self.t1(timestep_embedding(t)))))
        h = self.inp(x)
        for b in self.blocks:
            h = b(h, c)
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.ln(h), shift, scale))


def setup(device_name, threads):
    """The device, a function that waits for its queued work, and what the JSON line states of both."""
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    info = {"torch": torch.__version__, "threads": threads, "device": str(device)}
    if device.type == "cuda":
        precision = os.environ.get("FLOWPRIOR_TORCH_FP32", "tf32")
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
        info["fp32_precision"] = precision
        info["gpu"] = torch.cuda.get_device_name(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return device, sync, info


def main():
    d, w, depth, batch, steps, warmup, threads = map(int, sys.argv[1:8])
    device, sync, info = setup(sys.argv[8] if len(sys.argv) > 8 else "cpu", threads)
    net = Net(d, w, depth).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    data = torch.randn(batch, d, device=device)

    def step():
        t = torch.rand(batch, device=device)
        x0 = torch.randn(batch, d, device=device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * data
        loss = ((net(xt, t) - (data - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - start
    print(json.dumps({"steps_per_s": steps / secs, **info}))


if __name__ == "__main__":
    main()
