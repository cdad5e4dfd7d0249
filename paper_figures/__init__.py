"""Paper figures drawn from the tidy results table (see paper_figures.figures)."""
from paper_figures.figures import (
    fid_vs_a,
    fid_vs_nfe,
    method_styles,
    metric_vs_iteration,
    qualitative_grid,
    quality_diversity_scatter,
    write_all_figures,
)

__all__ = [
    "fid_vs_a",
    "fid_vs_nfe",
    "method_styles",
    "metric_vs_iteration",
    "qualitative_grid",
    "quality_diversity_scatter",
    "write_all_figures",
]
