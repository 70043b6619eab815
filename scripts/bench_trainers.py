"""Reference for `flowprior bench trainers`: the image trainers' steps in PyTorch (eager, CPU or CUDA).

The same work as src/bench/trainers.rs on a pool of 1024 random grey 28x28 images in [0, 1]:
- `vae` / `vq`: src/models/latent_ae.rs's autoencoder (conv 4x4/2 1->32, SiLU, conv 4x4/2 32->64, SiLU,
  conv 1x1 to 2C (vae) or C (vq); decoder conv 1x1 C->64, SiLU, transposed conv 4x4/2 64->32, SiLU,
  transposed conv 4x4/2 32->32, SiLU, conv 3x3 32->1, sigmoid). vae: reparameterised sample (log-variance
  clamped to [-30, 20]), loss MSE + KL_WEIGHT * mean KL; vq: nearest of CODES codes, MSE + codebook loss
  + COMMITMENT * commitment loss, straight-through gradient; codebook initialised from encoder outputs.
- `classifier`: the MLP 784 -> WIDTH -> WIDTH -> 10 (ReLU), cross-entropy.
Adam with Burn's defaults (betas 0.9 / 0.999, epsilon 1e-5), learning rate 1e-3. Timed over STEPS steps
after WARMUP untimed ones. Prints one JSON line: steps_per_s; f32 precision as in bench_prior.py's `setup`.
Usage: python bench_trainers.py NAME BATCH WIDTH CODES KL_WEIGHT COMMITMENT STEPS WARMUP THREADS DEVICE
(WIDTH: latent channels for vae / vq, hidden width for the classifier.)
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prior import setup  # noqa: E402

POOL = 1024


class LatentAe(nn.Module):
    def __init__(self, vq, channels, codes):
        super().__init__()
        self.vq, self.c = vq, channels
        self.enc1 = nn.Conv2d(1, 32, 4, 2, 1)
        self.enc2 = nn.Conv2d(32, 64, 4, 2, 1)
        self.enc_out = nn.Conv2d(64, channels if vq else 2 * channels, 1)
        self.dec_in = nn.Conv2d(channels, 64, 1)
        self.dec1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.dec2 = nn.ConvTranspose2d(32, 32, 4, 2, 1)
        self.dec_out = nn.Conv2d(32, 1, 3, 1, 1)
        self.codebook = nn.Parameter(torch.empty(codes if vq else 1, channels).uniform_(-1 / codes, 1 / codes))

    def encode(self, x):
        h = F.silu(self.enc1(x.reshape(-1, 1, 28, 28)))
        return self.enc_out(F.silu(self.enc2(h)))

    def decode(self, z):
        h = F.silu(self.dec_in(z))
        h = F.silu(self.dec2(F.silu(self.dec1(h))))
        return torch.sigmoid(self.dec_out(h)).reshape(z.shape[0], 784)

    def quantise(self, h):
        b, c, hh, ww = h.shape
        flat = h.permute(0, 3, 2, 1).reshape(-1, c)
        cb = self.codebook
        d = (flat ** 2).sum(1, keepdim=True) + (cb ** 2).sum(1)[None] - 2 * flat @ cb.t()
        idx = d.argmin(1)
        return cb[idx].reshape(b, ww, hh, c).permute(0, 3, 2, 1)

    def loss(self, x, kl_weight, commitment):
        h = self.encode(x)
        if self.vq:
            q = self.quantise(h)
            codebook = ((q - h.detach()) ** 2).mean()
            commit = ((h - q.detach()) ** 2).mean()
            z = h + (q - h).detach()
            return ((self.decode(z) - x) ** 2).mean() + codebook + commit * commitment
        mean, logvar = h[:, : self.c], h[:, self.c:].clamp(-30.0, 20.0)
        z = mean + torch.exp(logvar * 0.5) * torch.randn_like(mean)
        kl = (0.5 * (mean ** 2 + logvar.exp() - logvar - 1.0)).mean()
        return ((self.decode(z) - x) ** 2).mean() + kl * kl_weight


class Classifier(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(784, width), nn.Linear(width, width), nn.Linear(width, 10)

    def loss(self, x, y):
        return F.cross_entropy(self.head(F.relu(self.fc2(F.relu(self.fc1(x))))), y)


def main():
    name = sys.argv[1]
    batch, width, codes = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    kl_weight, commitment = float(sys.argv[5]), float(sys.argv[6])
    steps, warmup, threads = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
    device, sync, info = setup(sys.argv[10], threads)
    torch.manual_seed(0)
    images = torch.rand(POOL, 784, device=device)
    labels = (torch.arange(POOL) % 10).to(device)
    b = max(1, min(batch, POOL))
    if name in ("vae", "vq"):
        model = LatentAe(name == "vq", width, codes).to(device)
        if name == "vq":
            with torch.no_grad():
                tokens = model.encode(images[:b]).permute(0, 3, 2, 1).reshape(-1, width)
                pick = torch.randperm(tokens.shape[0])[torch.arange(codes) % tokens.shape[0]]
                model.codebook.copy_(tokens[pick])

        def loss(x, _y):
            return model.loss(x, kl_weight, commitment)
    elif name == "classifier":
        model = Classifier(width).to(device)
        loss = model.loss
    else:
        raise SystemExit(f"no PyTorch replica of {name!r} (vae, vq, classifier)")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    start = None
    for step in range(warmup + max(1, steps)):
        if step == warmup:
            sync()
            start = time.perf_counter()
        first = (step * b) % (POOL - b + 1)
        value = loss(images[first:first + b], labels[first:first + b])
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    value.item()
    sync()
    secs = time.perf_counter() - start
    print(json.dumps({"steps_per_s": max(1, steps) / secs, "trainer": name, **info}))


if __name__ == "__main__":
    main()
