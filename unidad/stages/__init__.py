"""Training stages. Importing this package registers the core stages; `baselines` adds the rest."""
from unidad.stages.base import STAGES, Stage, StageContext, TrainConfig, Update, register_stage  # noqa: F401
from unidad.stages import denoise, unidad  # noqa: F401  (registers "pretrain", "unidad")
