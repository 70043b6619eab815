"""Independent reference for flowprior's FID Inception-v3 (src/models/inception.rs): the network of
pytorch-fid (torchvision's Inception-v3 with FIDInceptionA / C / E_1 / E_2: average pools that do not
count padding, a max pool in the last block's pool branch, BN eps 1e-3, 1008 classes) written here with
torch.nn.functional, on deterministic weights given by a formula of each parameter's path (the same
formula the Rust test uses; no checkpoint needed), and a deterministic grey 28x28 image resized as
pytorch-fid does (bilinear, align_corners=False) and mapped to [-1, 1]. Prints JSON: the pool3 features
and the logits, which tests/fixtures stores.

Usage: python inception_reference.py [SIDE]   (default 139; 299 is the standard, slower)
Imported (scripts/bench_features.py), it builds the network and runs nothing: `forward(x)`.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)


def values(path, shape):
    """The formula: f64 per flat index i (row-major, Burn's layout), cast to f32."""
    n = math.prod(shape)
    L = len(path)
    i = torch.arange(n, dtype=torch.float64)
    if path.endswith("conv.weight"):
        fan_in = shape[1] * shape[2] * shape[3]
        v = math.sqrt(4.0 / fan_in) * torch.sin(0.37 * i + L)
    elif path.endswith("bn.gamma"):
        v = 1.0 + 0.1 * torch.sin(0.5 * i + L)
    elif path.endswith("bn.beta"):
        v = 0.1 * torch.cos(0.3 * i + L)
    elif path.endswith("bn.running_mean"):
        v = 0.05 * torch.sin(0.2 * i + L)
    elif path.endswith("bn.running_var"):
        v = 1.0 + 0.5 * torch.sin(0.1 * i + L) ** 2
    elif path == "fc.weight":
        v = 0.02 * torch.sin(0.01 * i + L)
    elif path == "fc.bias":
        v = 0.01 * torch.cos(0.5 * i)
    else:
        raise KeyError(path)
    return v.to(torch.float32).reshape(shape)


def basic(name, cin, cout, k, stride=1, pad=(0, 0)):
    kh, kw = k if isinstance(k, tuple) else (k, k)
    w = values(name + ".conv.weight", [cout, cin, kh, kw])
    bn = {p: values(f"{name}.bn.{p}", [cout]) for p in ("gamma", "beta", "running_mean", "running_var")}

    def f(x):
        y = F.conv2d(x, w, stride=stride, padding=pad)
        y = F.batch_norm(y, bn["running_mean"], bn["running_var"], bn["gamma"], bn["beta"],
                         training=False, eps=1e-3)
        return F.relu(y)
    return f


def avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def block_a(n, cin, pool):
    b1 = basic(n + ".branch1x1", cin, 64, 1)
    b5_1 = basic(n + ".branch5x5_1", cin, 48, 1)
    b5_2 = basic(n + ".branch5x5_2", 48, 64, 5, pad=(2, 2))
    d1 = basic(n + ".branch3x3dbl_1", cin, 64, 1)
    d2 = basic(n + ".branch3x3dbl_2", 64, 96, 3, pad=(1, 1))
    d3 = basic(n + ".branch3x3dbl_3", 96, 96, 3, pad=(1, 1))
    bp = basic(n + ".branch_pool", cin, pool, 1)
    return lambda x: torch.cat([b1(x), b5_2(b5_1(x)), d3(d2(d1(x))), bp(avg3(x))], 1)


def block_b(n, cin):
    b3 = basic(n + ".branch3x3", cin, 384, 3, stride=2)
    d1 = basic(n + ".branch3x3dbl_1", cin, 64, 1)
    d2 = basic(n + ".branch3x3dbl_2", 64, 96, 3, pad=(1, 1))
    d3 = basic(n + ".branch3x3dbl_3", 96, 96, 3, stride=2)
    return lambda x: torch.cat([b3(x), d3(d2(d1(x))), F.max_pool2d(x, 3, stride=2)], 1)


def block_c(n, cin, c7):
    b1 = basic(n + ".branch1x1", cin, 192, 1)
    s = [basic(n + ".branch7x7_1", cin, c7, 1),
         basic(n + ".branch7x7_2", c7, c7, (1, 7), pad=(0, 3)),
         basic(n + ".branch7x7_3", c7, 192, (7, 1), pad=(3, 0))]
    d = [basic(n + ".branch7x7dbl_1", cin, c7, 1),
         basic(n + ".branch7x7dbl_2", c7, c7, (7, 1), pad=(3, 0)),
         basic(n + ".branch7x7dbl_3", c7, c7, (1, 7), pad=(0, 3)),
         basic(n + ".branch7x7dbl_4", c7, c7, (7, 1), pad=(3, 0)),
         basic(n + ".branch7x7dbl_5", c7, 192, (1, 7), pad=(0, 3))]
    bp = basic(n + ".branch_pool", cin, 192, 1)

    def seq(fs, x):
        for f in fs:
            x = f(x)
        return x
    return lambda x: torch.cat([b1(x), seq(s, x), seq(d, x), bp(avg3(x))], 1)


def block_d(n, cin):
    a1 = basic(n + ".branch3x3_1", cin, 192, 1)
    a2 = basic(n + ".branch3x3_2", 192, 320, 3, stride=2)
    s = [basic(n + ".branch7x7x3_1", cin, 192, 1),
         basic(n + ".branch7x7x3_2", 192, 192, (1, 7), pad=(0, 3)),
         basic(n + ".branch7x7x3_3", 192, 192, (7, 1), pad=(3, 0)),
         basic(n + ".branch7x7x3_4", 192, 192, 3, stride=2)]

    def f(x):
        y = x
        for g in s:
            y = g(y)
        return torch.cat([a2(a1(x)), y, F.max_pool2d(x, 3, stride=2)], 1)
    return f


def block_e(n, cin, max_pool):
    b1 = basic(n + ".branch1x1", cin, 320, 1)
    a1 = basic(n + ".branch3x3_1", cin, 384, 1)
    a2a = basic(n + ".branch3x3_2a", 384, 384, (1, 3), pad=(0, 1))
    a2b = basic(n + ".branch3x3_2b", 384, 384, (3, 1), pad=(1, 0))
    d1 = basic(n + ".branch3x3dbl_1", cin, 448, 1)
    d2 = basic(n + ".branch3x3dbl_2", 448, 384, 3, pad=(1, 1))
    d3a = basic(n + ".branch3x3dbl_3a", 384, 384, (1, 3), pad=(0, 1))
    d3b = basic(n + ".branch3x3dbl_3b", 384, 384, (3, 1), pad=(1, 0))
    bp = basic(n + ".branch_pool", cin, 192, 1)

    def f(x):
        a = a1(x)
        d = d2(d1(x))
        p = F.max_pool2d(x, 3, stride=1, padding=1) if max_pool else avg3(x)
        return torch.cat([b1(x), a2a(a), a2b(a), d3a(d), d3b(d), bp(p)], 1)
    return f


layers = [
    basic("conv2d_1a_3x3", 3, 32, 3, stride=2),
    basic("conv2d_2a_3x3", 32, 32, 3),
    basic("conv2d_2b_3x3", 32, 64, 3, pad=(1, 1)),
    lambda x: F.max_pool2d(x, 3, stride=2),
    basic("conv2d_3b_1x1", 64, 80, 1),
    basic("conv2d_4a_3x3", 80, 192, 3),
    lambda x: F.max_pool2d(x, 3, stride=2),
    block_a("mixed_5b", 192, 32), block_a("mixed_5c", 256, 64), block_a("mixed_5d", 288, 64),
    block_b("mixed_6a", 288),
    block_c("mixed_6b", 768, 128), block_c("mixed_6c", 768, 160), block_c("mixed_6d", 768, 160),
    block_c("mixed_6e", 768, 192),
    block_d("mixed_7a", 768),
    block_e("mixed_7b", 1280, False), block_e("mixed_7c", 2048, True),
]
fc_w = values("fc.weight", [2048, 1008])  # Burn's [in, out] layout
fc_b = values("fc.bias", [1008])


def forward(x):
    """pool3 features and logits of a [N, 3, H, W] batch in [-1, 1]."""
    for f in layers:
        x = f(x)
    pool = x.mean(dim=(2, 3))
    return pool, pool @ fc_w + fc_b


def main():
    SIDE = int(sys.argv[1]) if len(sys.argv) > 1 else 139
    p = torch.arange(784, dtype=torch.float64)
    img = (0.5 + 0.5 * torch.sin(0.11 * p) * torch.cos(0.07 * p)).to(torch.float32).reshape(1, 1, 28, 28)
    x = F.interpolate(img, size=(SIDE, SIDE), mode="bilinear", align_corners=False) * 2 - 1
    x = x.repeat(1, 3, 1, 1)
    pool, logits = forward(x)
    print(json.dumps({
        "side": SIDE,
        "torch": torch.__version__,
        "pool3": [round(v, 7) for v in pool[0].tolist()],
        "logits": [round(v, 7) for v in logits[0].tolist()],
    }))

    if len(sys.argv) > 2:
        # A few tensors under pytorch-fid's key names (torch.save, zip format): the key-mapping check of
        # the Rust loader (tests/fixtures/inception_keys.pth).
        def burn_path(key):
            k = key.replace("Conv2d_", "conv2d_").replace("Mixed_", "mixed_")
            return k.replace("bn.weight", "bn.gamma").replace("bn.bias", "bn.beta")
        shapes = {"Conv2d_1a_3x3": [32, 3, 3, 3], "Mixed_5b.branch1x1": [64, 192, 1, 1]}
        sd = {}
        for name, shape in shapes.items():
            sd[name + ".conv.weight"] = values(burn_path(name + ".conv.weight"), shape)
            for p in ("weight", "bias", "running_mean", "running_var"):
                key = f"{name}.bn.{p}"
                sd[key] = values(burn_path(key), [shape[0]])
            sd[name + ".bn.num_batches_tracked"] = torch.tensor(0)
        torch.save(sd, sys.argv[2])


if __name__ == "__main__":
    main()
