#!/usr/bin/env bash
# Runs on a machine with an NVIDIA GPU, from the repository root, with .gpu/ made by scripts/gpu-pack.sh:
# the unit tests on the CUDA backend, the GPU benchmarks next to PyTorch on the same GPU, and the toy
# smoke sweep with --backend cuda. Logs, the run store and the reports' text go to $OUT (default gpu-out/;
# at most a handful of files, as the lent machines return them).
# Usage: bash scripts/gpu-run.sh [tests] [bench] [smoke] [sweep NAME PRESET]   (default: tests bench smoke)
# SWEEP_ARGS adds flags to `sweep run` (e.g. "--workers 2"); `sweep` needs the data it reads in data/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
for f in .gpu/*.xz; do
    [ -e "${f%.xz}" ] || xz -d -k "$f" || python3 -c 'import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"
    chmod +x "${f%.xz}"
done
# The binaries name fixtures and weights by the checkout they were built in; point it here.
built_in=$(cat .gpu/built-in.txt 2>/dev/null || echo /work/main)
if [ ! -e "$built_in" ] && [ "$PWD" != "$built_in" ]; then mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"; fi
# cudarc loads libcuda and NVRTC at run time.
nvrtc=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libnvrtc.so.1[0-9]*' -print 2>/dev/null | head -1)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "nvrtc: ${nvrtc:-not found}"
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(tests bench smoke)
status=0
i=0
while [ $i -lt ${#what[@]} ]; do
    case "${what[$i]}" in
    tests)
        echo "== unit tests on cuda"
        .gpu/flowprior-tests --test-threads 4 2>&1 | tee "$OUT/unit-tests.log" | grep -E '^test .*(FAILED|ok)$|test result|panicked' | grep -v ' ok$'
        .gpu/flowprior-tests --ignored --exact models::cond::tests::mar_samples_each_class_of_a_known_mixture 2>&1 | tee -a "$OUT/unit-tests.log" | grep 'test result'
        if grep -q 'test result: FAILED' "$OUT/unit-tests.log" || ! grep -q 'test result: ok' "$OUT/unit-tests.log"; then status=1; fi ;;
    bench)
        echo "== benchmarks on cuda"
        .gpu/flowprior bench prior --backends cuda,flex --threads "$(nproc)" --steps 50 --warmup 5 2>&1 | tee "$OUT/bench-prior.txt"
        .gpu/flowprior bench align --backend cuda --steps 20 --warmup 3 2>&1 | tee "$OUT/bench-align.txt" ;;
    smoke)
        echo "== toy smoke sweep on cuda"
        .gpu/flowprior --db "$OUT/gpu.db" sweep run sweeps/smoke.toml --backend cuda 2>&1 | tail -5
        .gpu/flowprior --db "$OUT/gpu.db" report smoke --out /tmp/gpu-reports 2>&1 | tail -3
        cp /tmp/gpu-reports/smoke.md "$OUT/" ;;
    sweep)
        name="${what[$((i + 1))]}"; preset="${what[$((i + 2))]}"; i=$((i + 2))
        echo "== sweep $name ($preset) on cuda"
        .gpu/flowprior --db "$OUT/gpu.db" sweep run "sweeps/$name.toml" --preset "$preset" --backend cuda ${SWEEP_ARGS:-} 2>&1 | tail -20
        .gpu/flowprior --db "$OUT/gpu.db" report "$name" --out /tmp/gpu-reports 2>&1 | tail -3
        cp "/tmp/gpu-reports/$name.md" "$OUT/" ;;
    *) echo "unknown step ${what[$i]}" >&2; status=2 ;;
    esac
    i=$((i + 1))
done
exit $status
