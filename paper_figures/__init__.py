"""Paper figures drawn from the tidy results table (see paper_figures.figures)."""
from paper_figures.figures import (
    fid_vs_a,
    fid_vs_nfe,
    method_styles,
    metric_vs_iteration,
    quality_diversity_scatter,
    write_all_figures,
)
from paper_figures.qualitative import qualitative_grid

__all__ = [
    "fid_vs_a",
    "fid_vs_nfe",
    "method_styles",
    "metric_vs_iteration",
    "qualitative_grid",
    "quality_diversity_scatter",
    "write_all_figures",
]
