"""The paths of every output of the DAG, relative to results/<benchmark>/ (one table for rules and plan)."""

# Every file and folder the DAG writes, relative to results/<benchmark>/: the rules' output templates
# and the Plan's path methods both read this table, so a path is written in one place. Evaluation is
# keyed by the run, not the method: methods that end in the same run share its samples.
PATHS = {
    "demo_split": "data/{dataset}/{split}",
    "staged_check": "data/{dataset}/{split}.verified",
    "demo_vae": "source_teacher/vae",  # backbone.vae_fit: the miniature SD's VAE, fitted before the teacher
    "source_weights": "source_teacher/weights.safetensors",
    "teacher_report": "source_teacher/report.json",
    "teacher_grid": "source_teacher/samples.png",
    "student_report": "source_teacher/students/{slug}.json",  # a source-distilled student, beside its teacher
    "student_grid": "source_teacher/students/{slug}.png",
    "run_dir": "runs/{slug}",
    "summary": "runs/{slug}/summary.json",
    "segment_marker": "runs/{slug}/segments/until{end}.done",
    "demo_extractor": "extractors/demo-cnn.safetensors",
    "demo_sdp_embedding": "extractors/demo-sdp-embed.safetensors",  # the SDP demo's DINO/CLIP stand-in
    "reference": "reference/{dataset}/{split}_{extractor}.npz",
    "samples": "eval/{slug}/step{step}/samples.npz",
    "samples_grid": "eval/{slug}/step{step}/samples.png",
    "metric": "eval/{slug}/step{step}/metrics/{metric}.json",
    "tidy_csv": "tables/results_tidy.csv",
    "tidy_parquet": "tables/results_tidy.parquet",
    "runs_table": "tables/runs.csv",
    "controls": "tables/controls.csv",
    "controls_md": "tables/controls.md",
    "mlflow_import": "tables/mlflow_import.json",
    "pruned_snapshots": "tables/pruned_snapshots.json",
    "tables": "tables/compiled",
    "figures": "figures/paper",
    "domains_figure": "figures/domains.png",
    "qualitative": "figures/qualitative_{dataset}.png",
    "benchmark": "benchmarks/{rule}/{job}.tsv",
}
