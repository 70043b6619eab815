"""Reference for `flowprior bench generator`: the generators' training step in PyTorch (eager, CPU or CUDA).

`dit`: the same step as src/models/cond.rs (train_generator, cond_flow_loss) with src/models/dit.rs,
written from those files: latent tokens [B, L, C] projected to the width plus learned position embeddings;
conditioning c = MLP(sinusoidal time features, 256 -> W, SiLU, W -> W) + label embedding (classes + 1
rows, the last the null label); blocks of adaLN-Zero (six W -> W projections of SiLU(c): shift, scale
and gate of the attention and the MLP branch), multi-head self-attention (separate q, k, v, out
Linears) and a GELU MLP of 4x the width, LayerNorm without affine parameters (eps 1e-6); a final
adaLN-modulated Linear to C. Loss: flow matching, x_t = (1 - t) x0 + t x1, target x1 - x0, t uniform;
labels dropped to the null label with probability 0.1; Adam; the EMA copy updated after each step.

`mar`: src/models/mar.rs with its flow head (src/flow/net.rs's SimpleMLPAdaLN): the class embedding
repeated BUFFER times in front of the tokens, unknown tokens replaced by a learned mask token, position
embeddings, pre-LN transformer blocks (attention, GELU MLP 4x), a final LayerNorm, head position
embeddings; the flow head v(x, t | z) = SimpleMLPAdaLN(x, c = time_embedding(t) + Linear(z)) with
LayerNorm-affine adaLN residual blocks of HEAD_WIDTH. Training: one mask ratio per batch from N(1, 0.25^2)
truncated to [MASK_MIN, 1], ceil(L r) tokens masked in a random order per sample; the flow-matching loss
averaged over channels, repeated FLOW_MUL times per token with fresh (t, x0), averaged over the masked
tokens; same label drop, Adam and EMA as dit.

MODE `train` times STEPS training steps after WARMUP ones (per_s: steps/s). MODE `sample` draws BATCH
samples twice as the stage does and times the second chunk (per_s: samples/s), with guidance scale CFG
(the conditional and the null-label branch in one batch, v_u + s (v_c - v_u)) and STEPS Euler steps:
`dit` integrates all tokens from t = 0 to 1; `mar` reveals the tokens in a random order per sample over
ITERS steps (the number still unknown after step k: floor(L cos(pi/2 (k+1)/ITERS)), at least 1 and at most
one fewer than before, 0 after the last), each step one transformer pass over every position and an
Euler integration of the flow head for the revealed tokens, with MAR's linear guidance schedule
1 + (CFG - 1) (L - unknown) / L.

Prints one JSON line. DEVICE is `cpu` or `cuda` (timing then waits for the queued kernels; f32
precision as in bench_prior.py's `setup`, stated in the output).
Usage: python bench_generator.py KIND MODE TOKENS CHANNELS WIDTH DEPTH HEADS BATCH EMA_DECAY STEPS WARMUP
       THREADS DEVICE CFG [BUFFER HEAD_WIDTH HEAD_DEPTH FLOW_MUL MASK_MIN ITERS]
       (KIND: dit or mar, the last six for mar; MODE: train or sample)
"""
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prior import setup  # noqa: E402

FREQ_DIM, MAX_PERIOD, EPS, CLASSES = 256, 10_000.0, 1e-6, 10


def timestep_embedding(t):
    half = FREQ_DIM // 2
    freqs = torch.exp(
        -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
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


class MarBlock(nn.Module):
    """Pre-LN: x + attn(LN(x)), then x + MLP(LN(x)) (GELU, 4x wide)."""

    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(w, eps=EPS), nn.LayerNorm(w, eps=EPS)
        self.q, self.k, self.v, self.o = (nn.Linear(w, w) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(w, 4 * w), nn.Linear(4 * w, w)

    def forward(self, x):
        b, n, w = x.shape
        h = self.ln1(x)
        split = lambda t: t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, n, w))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class HeadBlock(nn.Module):
    """SimpleMLPAdaLN's residual block: LayerNorm (affine), adaLN shift/scale/gate, SiLU MLP."""

    def __init__(self, w):
        super().__init__()
        self.ln = nn.LayerNorm(w, eps=EPS)
        self.fc1, self.fc2 = nn.Linear(w, w), nn.Linear(w, w)
        self.ada = nn.ModuleList(nn.Linear(w, w) for _ in range(3))

    def forward(self, x, c_act):
        shift, scale, gate = (a(c_act) for a in self.ada)
        h = self.fc2(F.silu(self.fc1(self.ln(x) * (1 + scale) + shift)))
        return x + gate * h


class FlowHead(nn.Module):
    def __init__(self, channels, w, head_w, head_depth):
        super().__init__()
        self.cond = nn.Linear(w, head_w)
        self.t1, self.t2 = nn.Linear(FREQ_DIM, head_w), nn.Linear(head_w, head_w)
        self.inp = nn.Linear(channels, head_w)
        self.blocks = nn.ModuleList(HeadBlock(head_w) for _ in range(head_depth))
        self.final_ada = nn.ModuleList(nn.Linear(head_w, head_w) for _ in range(2))
        self.out = nn.Linear(head_w, channels)

    def forward(self, x, t, z):
        c_act = F.silu(self.t2(F.silu(self.t1(timestep_embedding(t)))) + self.cond(z))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c_act)
        return self.out(norm(h) * (1 + self.final_ada[1](c_act)) + self.final_ada[0](c_act))


class Mar(nn.Module):
    def __init__(self, tokens, channels, w, depth, heads, buffer, head_w, head_depth):
        super().__init__()
        self.buffer = buffer
        self.z_proj = nn.Linear(channels, w)
        self.class_emb = nn.Embedding(CLASSES + 1, w)
        self.mask_token = nn.Parameter(torch.randn(1, w) * 0.02)
        self.pos = nn.Parameter(torch.randn(buffer + tokens, w) * 0.02)
        self.head_pos = nn.Parameter(torch.randn(tokens, w) * 0.02)
        self.z_ln, self.out_ln = nn.LayerNorm(w, eps=EPS), nn.LayerNorm(w, eps=EPS)
        self.blocks = nn.ModuleList(MarBlock(w, heads) for _ in range(depth))
        self.head = FlowHead(channels, w, head_w, head_depth)

    def condition(self, x, mask, y):
        m = mask[:, :, None]
        seq = self.z_proj(x) * (1 - m) + self.mask_token[None] * m
        cls = self.class_emb(y)[:, None].expand(-1, self.buffer, -1)
        h = self.z_ln(torch.cat([cls, seq], 1) + self.pos[None])
        for block in self.blocks:
            h = block(h)
        return self.out_ln(h)[:, self.buffer:] + self.head_pos[None]

    def loss(self, x1, y, mask, flow_mul):
        b, n, c = x1.shape
        z = self.condition(x1, mask, y).reshape(b * n, -1).repeat(flow_mul, 1)
        x1 = x1.reshape(b * n, c).repeat(flow_mul, 1)
        m = mask.reshape(b * n).repeat(flow_mul)
        t = torch.rand(b * n * flow_mul, device=x1.device)
        x0 = torch.randn_like(x1)
        tt = t[:, None]
        per_token = ((self.head((1 - tt) * x0 + tt * x1, t, z) - (x1 - x0)) ** 2).mean(1)
        return (per_token * m).sum() / m.sum()


def train_mask(b, l, mask_min, device):
    """One ratio per batch from N(1, 0.25^2) truncated to [mask_min, 1]; ceil(l r) tokens per sample."""
    while True:
        r = 1.0 + 0.25 * float(torch.randn(()))
        if mask_min <= r <= 1.0:
            break
    masked = min(max(math.ceil(l * r), 1), l)
    order = torch.rand(b, l).argsort(1)
    mask = torch.zeros(b, l)
    mask.scatter_(1, order[:, :masked], 1.0)
    return mask.to(device)


def unknown_after_each_step(l, iters):
    iters = max(1, min(iters, l))
    left, out = l, []
    for step in range(iters):
        if step + 1 == iters:
            left = 0
        else:
            ratio = math.cos(math.pi / 2 * (step + 1) / iters)
            left = min(max(math.floor(l * ratio), 1), left - 1)
        out.append(left)
    return out


@torch.no_grad()
def sample_dit(net, n, tokens, channels, steps, scale, device):
    y = torch.arange(n, device=device) % CLASSES
    yy = torch.cat([y, torch.full_like(y, CLASSES)])
    x = torch.randn(n, tokens, channels, device=device)
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((2 * n,), i * h, device=device)
        v = net(torch.cat([x, x]), t, yy)
        vc, vu = v[:n], v[n:]
        x = x + (vu + scale * (vc - vu)) * h
    return x


@torch.no_grad()
def sample_mar(net, n, tokens, channels, steps, scale, iters, device):
    y = torch.arange(n, device=device) % CLASSES
    yy = torch.cat([y, torch.full_like(y, CLASSES)])
    values = torch.zeros(n, tokens, channels, device=device)
    unknown = torch.ones(n, tokens, device=device)
    order = torch.rand(n, tokens, device=device).argsort(1)
    h, revealed = 1.0 / steps, 0
    for after in unknown_after_each_step(tokens, iters):
        s = 1.0 + (scale - 1.0) * (tokens - after) / tokens
        pos = order[:, revealed : tokens - after]
        k = pos.shape[1]
        z = net.condition(torch.cat([values, values]), torch.cat([unknown, unknown]), yy)
        idx = pos[:, :, None].expand(-1, -1, z.shape[2])
        z = torch.cat([z[:n].gather(1, idx), z[n:].gather(1, idx)]).reshape(2 * n * k, -1)
        x = torch.randn(n * k, channels, device=device)
        for i in range(steps):
            t = torch.full((2 * n * k,), i * h, device=device)
            v = net.head(torch.cat([x, x]), t, z)
            vc, vu = v[: n * k], v[n * k :]
            x = x + (vu + s * (vc - vu)) * h
        values.scatter_(1, pos[:, :, None].expand(-1, -1, channels), x.reshape(n, k, channels))
        unknown.scatter_(1, pos, 0.0)
        revealed = tokens - after
    return values


def main():
    kind, mode = sys.argv[1], sys.argv[2]
    tokens, channels, width, depth, heads, batch = map(int, sys.argv[3:9])
    ema_decay = float(sys.argv[9])
    steps, warmup, threads = map(int, sys.argv[10:13])
    device, sync, info = setup(sys.argv[13], threads)
    scale = float(sys.argv[14])
    if kind == "dit":
        net = Dit(tokens, channels, width, depth, heads).to(device)
    elif kind == "mar":
        buffer, head_w, head_depth, flow_mul = map(int, sys.argv[15:19])
        mask_min, iters = float(sys.argv[19]), int(sys.argv[20])
        net = Mar(tokens, channels, width, depth, heads, buffer, head_w, head_depth).to(device)
    else:
        raise SystemExit(f"unknown generator {kind!r}: dit or mar")
    if mode == "sample":
        net.eval()

        def chunk():
            if kind == "dit":
                sample_dit(net, batch, tokens, channels, steps, scale, device).cpu()
            else:
                sample_mar(net, batch, tokens, channels, steps, scale, iters, device).cpu()

        chunk()
        sync()
        start = time.perf_counter()
        chunk()
        sync()
        secs = time.perf_counter() - start
        print(json.dumps({"per_s": batch / secs, "unit": "samples/s", **info}))
        return
    if mode != "train":
        raise SystemExit(f"unknown mode {mode!r}: train or sample")
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    n = 2048
    latents = torch.randn(n, tokens, channels, device=device)
    labels = (torch.arange(n) % CLASSES).to(device)

    def step():
        idx = torch.randint(0, n, (batch,), device=device)
        x1, y = latents[idx], labels[idx].clone()
        y[torch.rand(batch, device=device) < 0.1] = CLASSES
        if kind == "dit":
            t = torch.rand(batch, device=device)
            x0 = torch.randn_like(x1)
            tt = t[:, None, None]
            xt = (1 - tt) * x0 + tt * x1
            loss = ((net(xt, t, y) - (x1 - x0)) ** 2).mean()
        else:
            loss = net.loss(x1, y, train_mask(batch, tokens, mask_min, device), flow_mul)
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.mul_(ema_decay).add_(p, alpha=1 - ema_decay)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - start
    print(json.dumps({"per_s": steps / secs, "unit": "steps/s", **info}))


if __name__ == "__main__":
    main()
