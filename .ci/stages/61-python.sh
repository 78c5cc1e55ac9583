#!/usr/bin/env bash
# The Python package (python/: PyO3 + maturin, abi3 wheel for CPython >= 3.9) and the
# Dask example: in a fresh venv, install maturin, numpy, scipy, pytest and
# dask[distributed]; build the wheel with maturin (release), check that it is abi3,
# check that `pip install ./python` works from the repository root, then run the
# pytest tests (SAELens fixtures, CSR vs scipy, bad input, threads and the GIL, and
# the Dask example on a local cluster of 2 worker processes against single-process
# output). fmt and clippy for the crate too.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
(cd python && cargo fmt --check && cargo clippy --all-targets -- -D warnings)
venv=python/target/ci-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin numpy scipy pytest "dask[distributed]"
"$venv/bin/maturin" build --release -m python/Cargo.toml -o python/target/wheels-ci 2>&1 | tail -1
ls python/target/wheels-ci/sae_kernels-*-cp39-abi3-*.whl >/dev/null
# README's install command (the same crate build, so cargo has nothing left to compile).
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./python
"$venv/bin/python" -c "import sae_kernels; print('import sae_kernels', sae_kernels.__version__, 'ok')"
"$venv/bin/python" -m pytest -q python/tests -p no:cacheprovider
echo "python: wheel built and tested in $((SECONDS - t0)) s"
