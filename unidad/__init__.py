"""unidad-bench: reproducible benchmark and ablation harness for few-step, few-shot diffusion."""
__version__ = "0.1.0"
