"""Reference for `flowprior bench features`: a feature network's forward pass in PyTorch (eager, CPU or CUDA).

The same work as src/stage/feature_nets.rs (`LoadedNet::features_and_logits`) on IMAGES grey 28x28
images in [0, 1], in chunks of 16 (500 for the classifier), as flowprior runs them:
- `efficientnet`: EfficientNet-Lite0 (scripts/efficientnet_reference.py's network on the real weights
  WEIGHTS): values mapped to [0, 255], resized to 224x224 (bilinear), grey repeated over RGB; pooled
  features and logits.
- `inception`: the FID Inception-v3 (scripts/inception_reference.py's network on its formula weights;
  WEIGHTS is ignored): resized to 299x299 (bilinear), mapped to [-1, 1], grey repeated over RGB; pool3
  features and logits.
- `classifier`: the project's MLP classifier (784-256-256 ReLU features, then 10 logits; WEIGHTS is
  ignored, untrained weights cost the same).
One untimed chunk first, then REPEATS timed passes (default 1), the median taken. Prints one JSON
line, per_s in images/s; f32 precision as in bench_prior.py's `setup`.
Usage: python bench_features.py NET WEIGHTS IMAGES THREADS DEVICE [REPEATS]
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prior import setup  # noqa: E402


def main():
    net, weights = sys.argv[1], sys.argv[2]
    images, threads = int(sys.argv[3]), int(sys.argv[4])
    device, sync, info = setup(sys.argv[5], threads)
    repeats = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    if net == "efficientnet":
        import efficientnet_reference as eff

        sd = eff.load(weights, device)
        chunk = 16

        def run(x):
            x = F.interpolate(x.reshape(-1, 1, 28, 28) * 255.0, size=(224, 224), mode="bilinear")
            return eff.forward(sd, x.repeat(1, 3, 1, 1))
    elif net == "inception":
        # The FID Inception-v3 of scripts/inception_reference.py (pytorch-fid's network, BatchNorms
        # unfolded as pytorch-fid runs them) on its formula weights: the cost does not depend on them.
        if device.type != "cpu":
            raise SystemExit("the inception replica holds its weights on the CPU only")
        import inception_reference as inc

        chunk = 16

        def run(x):
            x = F.interpolate(x.reshape(-1, 1, 28, 28), size=(299, 299), mode="bilinear",
                              align_corners=False) * 2 - 1
            return inc.forward(x.repeat(1, 3, 1, 1))
    elif net == "classifier":
        fc1 = torch.nn.Linear(784, 256).to(device)
        fc2 = torch.nn.Linear(256, 256).to(device)
        head = torch.nn.Linear(256, 10).to(device)
        chunk = 500

        def run(x):
            f = F.relu(fc2(F.relu(fc1(x))))
            return f, head(f)
    else:
        raise SystemExit(f"no PyTorch replica of {net!r} (efficientnet, inception, classifier)")
    x = torch.rand(images, 784)

    def passes(x):
        with torch.no_grad():
            for part in x.split(chunk):
                f, logits = run(part.to(device))
                f.cpu(), logits.cpu()

    passes(x[:chunk])
    sync()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        passes(x)
        sync()
        times.append(time.perf_counter() - start)
    secs = sorted(times)[len(times) // 2]
    print(json.dumps({"per_s": images / secs, "unit": "images/s", "net": net, **info}))


if __name__ == "__main__":
    main()
