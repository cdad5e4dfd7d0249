"""Running a docs/ guide as a test: its code blocks, and a copy of the workflow to apply them to."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "unidad", "baselines", "paper_figures")


def code_blocks(guide: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", guide.read_text(), flags=re.S)


def copy_workflow(dst: Path) -> Path:
    """The workflow and its library, copied to `dst` (what a user's clone holds)."""
    for name in WORKFLOW_PARTS:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def snakemake(cwd: Path, configfile: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--configfile", configfile, "-c2", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900)
