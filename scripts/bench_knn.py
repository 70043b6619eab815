"""Reference for `flowprior bench knn`: exact k-NN with faiss-cpu IndexFlatL2 on the same arrays.

Usage: python bench_knn.py QUERIES.npy TARGETS.npy K THREADS
Prints one JSON line: {"secs": search seconds (index build included), "mean_kth_sq": mean squared
distance to the k-th neighbour, "faiss": version, "threads": n}.
"""
import json
import sys
import time

import faiss
import numpy as np

q = np.ascontiguousarray(np.load(sys.argv[1]), dtype=np.float32)
t = np.ascontiguousarray(np.load(sys.argv[2]), dtype=np.float32)
k, threads = int(sys.argv[3]), int(sys.argv[4])
faiss.omp_set_num_threads(threads)
start = time.perf_counter()
index = faiss.IndexFlatL2(t.shape[1])
index.add(t)
dist, _ = index.search(q, k)
secs = time.perf_counter() - start
print(json.dumps({"secs": secs, "mean_kth_sq": float(dist[:, -1].mean()), "faiss": faiss.__version__, "threads": threads}))
