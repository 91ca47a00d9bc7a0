"""Environment variable names codex_ml reads, in one place."""

from __future__ import annotations

#: W&B's own variables, honoured as W&B documents them.
WANDB_MODE = "WANDB_MODE"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_DIR = "WANDB_DIR"
WANDB_SILENT = "WANDB_SILENT"

#: MLflow's own variables.
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"

#: Where runs go when neither --output-root nor the API says otherwise.
CODEX_OUTPUT_ROOT = "CODEX_ML_OUTPUT_ROOT"

#: torchrun's variables (every process it starts has them): global rank, rank on its node, process count, and the
#: node's rank in the job (its "group rank"; a node is one torchrun agent).
TORCHRUN_RANK = "RANK"
TORCHRUN_LOCAL_RANK = "LOCAL_RANK"
TORCHRUN_WORLD_SIZE = "WORLD_SIZE"
TORCHRUN_GROUP_RANK = "GROUP_RANK"
