"""Reference for `flowprior bench align`: the tokenizer stage's training step in PyTorch (eager, CPU or CUDA).

The same step as src/stage/tokenizer/losses.rs with src/models/tokenizer.rs, written from those files:
a ViT encoder over the 49 patches (4x4) of a 28x28 image and L learnable latent tokens (pre-norm
transformer layers, GELU MLP of 4x the width, no dropout; LayerNorm; Linear to C dims), a ViT decoder
over 49 mask tokens and the latent tokens projected back (sigmoid pixels); losses: l2_weight * MSE +
l1_weight * L1 + perceptual_weight * MSE of a frozen MLP classifier's features (784-256-256, ReLU) +
adv_weight * hinge generator loss of a patch discriminator (conv 4x4/2 1->32, LeakyReLU 0.2, conv 4x4/2
32->64, LeakyReLU 0.2, conv 3x3 64->1) + lambda * L_align under a frozen flow prior (bench_prior.py's
SimpleMLPAdaLN, parameters not tracked) on flow_mul draws per latent token; Adam (lr 1e-4) on the
tokenizer, then the discriminator's hinge step with its own Adam. Prints one JSON line. DEVICE is `cpu`
(default) or `cuda` (timing then waits for the queued kernels; f32 precision as in bench_prior.py's `setup`).
REGULARISER (default `none`, the AE) is `kl` (the encoder gives 2C values per token: mean and
log-variance clamped to [-30, 20], a reparameterised sample, REG_WEIGHT * the KL to N(0, I) per element)
or `softvq` (tokens and a learnable codebook of CODEBOOK rows, both L2-normalised, weights softmax(<z,
c> / TAU), quantised tokens w @ codebook, REG_WEIGHT * (mean token entropy - entropy of the mean
weights)), as src/models/tokenizer.rs and src/models/posterior.rs write them.
Usage: python bench_tokenizer.py TOKENS CHANNELS WIDTH DEPTH HEADS BATCH PRIOR_WIDTH PRIOR_DEPTH LAMBDA
       FLOW_MUL L1_WEIGHT PERCEPTUAL_WEIGHT ADV_WEIGHT STEPS WARMUP THREADS [DEVICE [REGULARISER REG_WEIGHT
       CODEBOOK TAU]]
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prior import Net as PriorNet, setup  # noqa: E402

PATCH, PATCHES, SIDE = 4, 49, 28


def patchify(x):
    b = x.shape[0]
    g = SIDE // PATCH
    return x.reshape(b, g, PATCH, g, PATCH).transpose(2, 3).reshape(b, PATCHES, PATCH * PATCH)


def unpatchify(p):
    b = p.shape[0]
    g = SIDE // PATCH
    return p.reshape(b, g, g, PATCH, PATCH).transpose(2, 3).reshape(b, SIDE * SIDE)


def transformer(width, depth, heads):
    layer = nn.TransformerEncoderLayer(
        width, heads, dim_feedforward=4 * width, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


class Tokenizer(nn.Module):
    def __init__(self, tokens, channels, width, depth, heads, regulariser="none", codebook=1, tau=1.0):
        super().__init__()
        self.regulariser, self.channels, self.tau = regulariser, channels, tau
        self.codebook = nn.Parameter(torch.rand(max(codebook, 1), channels) * 2 - 1)
        learned = lambda r: nn.Parameter(torch.randn(r, width) * 0.02)  # noqa: E731
        self.tokens = tokens
        self.patch_in = nn.Linear(PATCH * PATCH, width)
        self.latent_tokens = learned(tokens)
        self.enc_pos = learned(PATCHES + tokens)
        self.encoder = transformer(width, depth, heads)
        self.enc_norm = nn.LayerNorm(width)
        self.to_latent = nn.Linear(width, 2 * channels if regulariser == "kl" else channels)
        self.from_latent = nn.Linear(channels, width)
        self.mask_tokens = learned(PATCHES)
        self.dec_pos = learned(PATCHES + tokens)
        self.decoder = transformer(width, depth, heads)
        self.dec_norm = nn.LayerNorm(width)
        self.to_pixels = nn.Linear(width, PATCH * PATCH)

    def forward(self, x):
        b = x.shape[0]
        lat = self.latent_tokens[None].expand(b, -1, -1)
        h = torch.cat([self.patch_in(patchify(x)), lat], 1) + self.enc_pos[None]
        h = self.enc_norm(self.encoder(h)[:, PATCHES:])
        z, reg = self.regularise(self.to_latent(h))
        mask = self.mask_tokens[None].expand(b, -1, -1)
        h = torch.cat([mask, self.from_latent(z)], 1) + self.dec_pos[None]
        h = self.dec_norm(self.decoder(h)[:, :PATCHES])
        return unpatchify(torch.sigmoid(self.to_pixels(h))), z, reg

    def regularise(self, h):
        if self.regulariser == "kl":
            mean, logvar = h[..., :self.channels], h[..., self.channels:].clamp(-30, 20)
            z = mean + (logvar * 0.5).exp() * torch.randn_like(mean)
            return z, (0.5 * (mean ** 2 + logvar.exp() - logvar - 1)).mean()
        if self.regulariser == "softvq":
            b, n, c = h.shape
            zn = F.normalize(h.reshape(b * n, c), dim=1, eps=1e-12)
            cn = F.normalize(self.codebook, dim=1, eps=1e-12)
            w = torch.softmax(zn @ cn.T / self.tau, 1)
            reg = entropy(w).mean() - entropy(w.mean(0))
            return (w @ cn).reshape(b, n, c), reg
        return h, None


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 256), nn.Linear(256, 256)

    def features(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 4, stride=2, padding=1)
        self.c2 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
        self.out = nn.Conv2d(64, 1, 3, padding=1)

    def forward(self, x):
        b = x.shape[0]
        h = F.leaky_relu(self.c1((x * 2 - 1).reshape(b, 1, SIDE, SIDE)), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2)
        return self.out(h).reshape(b, PATCHES)


def align_loss(prior, z, flow_mul):
    y = z.reshape(-1, z.shape[-1]).repeat(flow_mul, 1)
    t = torch.rand(y.shape[0], device=y.device)
    x0 = torch.randn_like(y)
    xt = (1 - t[:, None]) * x0 + t[:, None] * y
    return ((prior(xt, t) - (y - x0)) ** 2).mean()


def main():
    a = sys.argv[1:]
    tokens, channels, width, depth, heads, batch, pw, pd = map(int, a[:8])
    lam, flow_mul = float(a[8]), int(a[9])
    l1_w, perc_w, adv_w = map(float, a[10:13])
    steps, warmup, threads = map(int, a[13:16])
    device, sync, info = setup(a[16] if len(a) > 16 else "cpu", threads)
    regulariser = a[17] if len(a) > 17 else "none"
    reg_w = float(a[18]) if len(a) > 18 else 0.0
    codebook, tau = (int(a[19]), float(a[20])) if len(a) > 20 else (1, 1.0)
    model = Tokenizer(tokens, channels, width, depth, heads, regulariser, codebook, tau).to(device)
    classifier = Classifier().to(device).requires_grad_(False)
    disc = Discriminator().to(device)
    prior = PriorNet(channels, pw, pd).to(device).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4)
    x = torch.rand(batch, 784, device=device)

    def step():
        recon, z, reg = model(x)
        diff = recon - x
        loss = (diff ** 2).mean() + l1_w * diff.abs().mean()
        loss = loss + perc_w * ((classifier.features(recon) - classifier.features(x)) ** 2).mean()
        if adv_w > 0:
            loss = loss + adv_w * -disc(recon).mean()
        if reg is not None:
            loss = loss + reg_w * reg
        if lam > 0:
            loss = loss + lam * align_loss(prior, z, flow_mul)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        r = recon.detach()
        d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(r)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - start
    print(json.dumps({"steps_per_s": steps / secs, "regulariser": regulariser, **info}))


if __name__ == "__main__":
    main()
