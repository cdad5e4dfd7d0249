"""Evaluation units: which sample sets of which checkpoints the tables report.

A unit is one checkpoint of a method's final stage sampled at one NFE, with or without noise
correction. Every checkpoint is sampled at the method's own NFE; the final one also over the NFE sweep
and, where the config asks (`evaluation.noise_correction: [false, true]`), with noise correction at
every NFE above 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from unidad.ablations import Ablation

# Noise correction is an evaluation axis, not a training option: its sample sets are tabled as this
# ablation of the method (value "on"; the main grid is the sampler without it).
NOISE_CORRECTION = "noise_correction"


@dataclass
class EvalUnit:
    """One sample set: a checkpoint of a method's final stage sampled at one NFE."""

    method_run: Any  # unidad.plan.MethodRun (the plan imports this module)
    slug: str
    step: int
    nfe: int
    final: bool
    noise_correction: bool = False  # sampled with the first re-noise along the initial noise (Imagine Flash)

    @property
    def sample_key(self) -> str:
        return sample_key(self.nfe, self.noise_correction)

    def ablation_fields(self) -> dict[str, str]:
        if not self.noise_correction:
            return self.method_run.ablation_fields()
        return Ablation(NOISE_CORRECTION, NOISE_CORRECTION, "on", "").fields()


def sample_key(nfe: int, noise_correction: bool = False) -> str:
    """How a sample set is named in a checkpoint's samples file and metric records: "3", or "3_nc"
    for the noise-corrected sampler."""
    return f"{nfe}_nc" if noise_correction else str(nfe)


def expand_eval_units(method_runs: Sequence[Any], runs: Mapping[str, Any], evaluation: Mapping[str, Any],
               method_nfe: Callable[[str], int]) -> list[EvalUnit]:
    """Every (method run, checkpoint, NFE, noise correction) the tables report (method_runs: the plan's
    MethodRuns, runs: its StageRuns by slug); several may share one
    sample set. Noise-corrected units exist for the main grid's runs (not for ablation variants, whose
    ablation columns are taken)."""
    ev = evaluation
    units = []
    for mr in method_runs:
        run = runs[mr.final]
        nfe = method_nfe(mr.final)
        last = run.checkpoint_steps[-1]
        for step in run.checkpoint_steps:
            units.append(EvalUnit(mr, mr.final, step, nfe, step == last))
        if run.sampling["kind"] == "few_step":
            for k in ev["nfe_sweep"]:
                if k != nfe:
                    units.append(EvalUnit(mr, mr.final, last, k, True))
            # at 1 NFE there is no re-noise to correct: those images equal the uncorrected ones
            if True in ev["noise_correction"] and mr.ablation is None:
                for k in sorted({nfe, *ev["nfe_sweep"]} - {1}):
                    units.append(EvalUnit(mr, mr.final, last, k, True, noise_correction=True))
    return units
