"""Reference for `flowprior bench generator`: the `dit` generator's training step in PyTorch (eager, CPU).

The same step as src/models/cond.rs (train_generator, cond_flow_loss) with src/models/dit.rs, written
from those files: latent tokens [B, L, C] projected to the width plus learned position embeddings;
conditioning c = MLP(sinusoidal time features, 256 -> W, SiLU, W -> W) + label embedding (classes + 1
rows, the last the null label); blocks of adaLN-Zero (six W -> W projections of SiLU(c): shift, scale
and gate of the attention and the MLP branch), multi-head self-attention (separate q, k, v, out
Linears) and a GELU MLP of 4x the width, LayerNorm without affine parameters (eps 1e-6); a final
adaLN-modulated Linear to C. Loss: flow matching, x_t = (1 - t) x0 + t x1, target x1 - x0, t uniform;
labels dropped to the null label with probability 0.1; Adam; the EMA copy updated after each step.
Prints one JSON line.
Usage: python bench_generator.py TOKENS CHANNELS WIDTH DEPTH HEADS BATCH EMA_DECAY STEPS WARMUP THREADS
"""
import copy
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FREQ_DIM, MAX_PERIOD, EPS, CLASSES = 256, 10_000.0, 1e-6, 10


def timestep_embedding(t):
    half = FREQ_DIM // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


class Block(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(w, w) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(w, 4 * w), nn.Linear(4 * w, w)
        self.ada = nn.ModuleList(nn.Linear(w, w) for _ in range(6))

    def attn(self, h):
        b, n, w = h.shape
        split = lambda t: t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), -1) @ v
        return self.o(a.transpose(1, 2).reshape(b, n, w))

    def forward(self, x, c_act):
        m = [layer(c_act) for layer in self.ada]
        x = x + m[2][:, None] * self.attn(modulate(norm(x), m[0], m[1]))
        h = self.fc2(F.gelu(self.fc1(modulate(norm(x), m[3], m[4]))))
        return x + m[5][:, None] * h


class Dit(nn.Module):
    def __init__(self, tokens, channels, w, depth, heads):
        super().__init__()
        self.input = nn.Linear(channels, w)
        self.pos = nn.Parameter(torch.randn(tokens, w) * 0.02)
        self.t1, self.t2 = nn.Linear(FREQ_DIM, w), nn.Linear(w, w)
        self.label = nn.Embedding(CLASSES + 1, w)
        self.blocks = nn.ModuleList(Block(w, heads) for _ in range(depth))
        self.final_ada = nn.ModuleList(nn.Linear(w, w) for _ in range(2))
        self.output = nn.Linear(w, channels)

    def forward(self, x, t, y):
        c = self.t2(F.silu(self.t1(timestep_embedding(t)))) + self.label(y)
        c_act = F.silu(c)
        h = self.input(x) + self.pos[None]
        for block in self.blocks:
            h = block(h, c_act)
        return self.output(modulate(norm(h), self.final_ada[0](c_act), self.final_ada[1](c_act)))


def main():
    tokens, channels, width, depth, heads, batch = map(int, sys.argv[1:7])
    ema_decay = float(sys.argv[7])
    steps, warmup, threads = map(int, sys.argv[8:11])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Dit(tokens, channels, width, depth, heads)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    n = 2048
    latents = torch.randn(n, tokens, channels)
    labels = torch.arange(n) % CLASSES

    def step():
        idx = torch.randint(0, n, (batch,))
        x1, y = latents[idx], labels[idx].clone()
        y[torch.rand(batch) < 0.1] = CLASSES
        t = torch.rand(batch)
        x0 = torch.randn_like(x1)
        tt = t[:, None, None]
        xt = (1 - tt) * x0 + tt * x1
        loss = ((net(xt, t, y) - (x1 - x0)) ** 2).mean()
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.mul_(ema_decay).add_(p, alpha=1 - ema_decay)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    secs = time.perf_counter() - start
    print(json.dumps({"steps_per_s": steps / secs, "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
