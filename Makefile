# The two commands README.md opens with. Each sets up .venv (when needed) and runs.
PY := .venv/bin/python
PYTEST_ARGS ?= -q -m "not slow and not gpu"

.PHONY: demo test bench clean

demo:  ## set up, then train the demo model on the bundled text with TensorBoard, MLflow and W&B (offline)
	@scripts/bootstrap.sh all
	$(PY) tools/monitoring_integrate.py --run-name demo --enable-tensorboard --mlflow-enable --enable-wandb

test:  ## set up (Python packages, the Prometheus server the tests scrape with, and Chromium for the browser tests), then run the test suite
	@scripts/bootstrap.sh dev
	@scripts/install_system_deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench:  ## set up, then run the tracking benchmark (prints a side-by-side table)
	@scripts/bootstrap.sh dev
	$(PY) benchmarks/bench_tracking.py

clean:
	rm -rf .venv runs .pytest_cache
