#!/usr/bin/env bash
# Runs on a machine with an NVIDIA GPU, from the repository root, with .gpu/ made by scripts/gpu-pack.sh:
# the unit tests on the CUDA backend, every GPU benchmark next to PyTorch on the same GPU (prior,
# tokenizer at lambda = 0 and > 0, dit and MAR training and sampling, the feature networks), and the toy
# smoke sweep with --backend cuda; then writes $OUT/gpu-CARD.md (CARD from nvidia-smi, e.g. h100) with
# every table and the time each step took. Logs and the run store go to $OUT too (default gpu-out/; a
# handful of files, as the lent machines return them). Sized for at most 8 minutes of device time.
#
# Usage: bash scripts/gpu-run.sh [tests] [bench] [smoke] [sweep NAME PRESET]   (default: tests bench smoke)
# SWEEP_ARGS adds flags to `sweep run` (e.g. "--workers 2"); `sweep` needs the data it reads in data/.
# GPU_DRY_RUN=1 runs the same steps here on the CPU (flex, the release binary of target/release-build,
# tiny sizes, no unit tests) so that no device minute is spent on a typo.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
dry="${GPU_DRY_RUN:-0}"
if [ "$dry" = 1 ]; then
    FP="${FP:-target/release-build/release/flowprior}"
    BACKEND=flex
    # Tiny sizes: the dry run checks the commands, not the figures.
    PRIOR_ARGS=(--backends flex --threads 1 --steps 2 --warmup 1 --size small)
    STEP_ARGS=(--steps 1 --warmup 0)
    SAMPLE_STEPS=2
    IMAGES=16
    card=dry-run
    [ -x "$FP" ] || { echo "no $FP: build it first (CARGO_TARGET_DIR=target/release-build cargo build --release)" >&2; exit 2; }
else
    FP=.gpu/flowprior
    BACKEND=cuda
    PRIOR_ARGS=(--backends cuda --threads "$(nproc)" --steps 50 --warmup 5)
    STEP_ARGS=(--steps 20 --warmup 3)
    SAMPLE_STEPS=20
    IMAGES=512
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
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
    echo "$gpu"
    echo "nvrtc: ${nvrtc:-not found}"
    card=$(echo "$gpu" | grep -oiE '(h100|h200|a100|l40s|l4|a10g|v100|t4|rtx ?[0-9]+)' | head -1 | tr 'A-Z ' 'a-z-')
    card=${card:-gpu}
fi
# The PyTorch references run on the same GPU (bench_prior.py's `setup`: TF32 matrix products and
# convolutions, as Burn's CUDA kernels compute f32 on tensor cores; FLOWPRIOR_TORCH_FP32=ieee for full f32).
export FLOWPRIOR_TORCH_FP32="${FLOWPRIOR_TORCH_FP32:-tf32}"
report="$OUT/gpu-$card.md"
sections=$(mktemp)
# section TITLE FILE SECONDS: one part of the report.
section() {
    { echo; echo "## $1 ($3 s)"; echo; echo '```text'; cat "$2"; echo '```'; } >> "$sections"
}
timed() {
    local title=$1 file=$2; shift 2
    local t0; t0=$(date +%s)
    "$@" > "$file" 2>&1
    local rc=$?
    cat "$file"
    section "$title" "$file" "$(( $(date +%s) - t0 ))"
    [ $rc -eq 0 ] || { echo "step failed (exit $rc): $title" | tee -a "$sections"; status=1; }
}
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(tests bench smoke)
status=0
i=0
while [ $i -lt ${#what[@]} ]; do
    case "${what[$i]}" in
    tests)
        if [ "$dry" = 1 ]; then
            echo "== unit tests on cuda: skipped in the dry run (they are the lib tests built with --features gpu-tests)"
        else
            echo "== unit tests on cuda"
            t0=$(date +%s)
            .gpu/flowprior-tests --test-threads 4 > "$OUT/unit-tests.log" 2>&1
            .gpu/flowprior-tests --ignored --exact models::cond::tests::mar_samples_each_class_of_a_known_mixture >> "$OUT/unit-tests.log" 2>&1
            grep -E '^test .*FAILED$|test result|panicked' "$OUT/unit-tests.log" > "$OUT/unit-tests.summary"
            cat "$OUT/unit-tests.summary"
            section "Unit tests on cuda (cargo test --lib --features gpu-tests, then the MAR mixture test)" "$OUT/unit-tests.summary" "$(( $(date +%s) - t0 ))"
            if grep -q 'test result: FAILED' "$OUT/unit-tests.log" || ! grep -q 'test result: ok' "$OUT/unit-tests.log"; then status=1; fi
        fi ;;
    bench)
        echo "== benchmarks on $BACKEND"
        timed "Flow-prior training step" "$OUT/bench-prior.txt" "$FP" bench prior "${PRIOR_ARGS[@]}"
        timed "Tokenizer step and the cost of alignment" "$OUT/bench-align.txt" "$FP" bench align --backend "$BACKEND" "${STEP_ARGS[@]}"
        timed "Generators: training step and guided sampling" "$OUT/bench-generator.txt" "$FP" bench generator --backend "$BACKEND" "${STEP_ARGS[@]}" --sample-steps "$SAMPLE_STEPS"
        timed "Feature networks" "$OUT/bench-features.txt" "$FP" bench features --backend "$BACKEND" --images "$IMAGES"
        timed "Image trainers (vae, vq, classifier)" "$OUT/bench-trainers.txt" "$FP" bench trainers --backend "$BACKEND" "${STEP_ARGS[@]}" ;;
    smoke)
        echo "== toy smoke sweep on $BACKEND"
        rm -f "$OUT/gpu.db"
        timed "Toy smoke sweep (sweeps/smoke.toml, --backend $BACKEND)" "$OUT/smoke-sweep.txt" \
            bash -c "'$FP' --db '$OUT/gpu.db' sweep run sweeps/smoke.toml --backend $BACKEND 2>&1 | tail -5 && '$FP' --db '$OUT/gpu.db' report smoke --out '$OUT/reports' 2>&1 | tail -3" ;;
    sweep)
        name="${what[$((i + 1))]}"; preset="${what[$((i + 2))]}"; i=$((i + 2))
        echo "== sweep $name ($preset) on $BACKEND"
        timed "Sweep $name ($preset)" "$OUT/sweep-$name.txt" \
            bash -c "'$FP' --db '$OUT/gpu.db' sweep run 'sweeps/$name.toml' --preset '$preset' --backend $BACKEND ${SWEEP_ARGS:-} 2>&1 | tail -20 && '$FP' --db '$OUT/gpu.db' report '$name' --out '$OUT/reports' 2>&1 | tail -3" ;;
    *) echo "unknown step ${what[$i]}" >&2; status=2 ;;
    esac
    i=$((i + 1))
done
{
    echo "# flowprior on ${gpu:-the CPU (dry run of scripts/gpu-run.sh)}"
    echo
    echo "What \`scripts/gpu-run.sh ${what[*]}\` printed on $(date -u +%Y-%m-%d), backend $BACKEND, revision $("$FP" --version 2>/dev/null | head -1)."
    if [ "$dry" = 1 ]; then
        echo "PyTorch beside it on the CPU (dry run: tiny sizes, the figures mean nothing)."
    else
        echo "PyTorch beside it on the same GPU, f32 precision: $FLOWPRIOR_TORCH_FP32 (matrix products and convolutions)."
    fi
    cat "$sections"
} > "$report"
rm -f "$sections"
echo "report: $report"
exit $status
