"""`unidad timing`: the rules' Snakemake benchmark files (seconds, peak memory), summarised per rule."""
import os

from unidad.job_requests import read_benchmarks
from unidad.planning import summarise_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(root, rule, job, seconds, max_rss, cpu_time, end):
    """A benchmark file as Snakemake writes it when a job ends (its modification time: the job's end)."""
    path = root / "benchmarks" / rule / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:{int(seconds):02d}\t{max_rss}\t1\t1\t1\t0\t0\t50\t{cpu_time}\n")
    os.utime(path, (end, end))
    return path


def test_timing_reads_the_benchmark_files(tmp_path, capsys):
    root = tmp_path / "demo"
    write_benchmark(root, "train_stage", "a", 60.0, 812.5, 55.0, end=160.0)
    write_benchmark(root, "train_stage", "b", 30.0, 400.0, 28.0, end=230.0)
    write_benchmark(root, "checkpoint_metrics", "a_step00000100", 10.0, "-", 9.0, end=240.0)
    assert summarise_benchmarks(root) == 0
    out = capsys.readouterr().out
    assert "3 jobs" in out
    train = next(line for line in out.splitlines() if line.startswith("train_stage")).split()
    assert train[1:] == ["2", "90", "45.0", "812"]  # jobs, seconds, mean, max of max_rss
    metrics = next(line for line in out.splitlines() if line.startswith("checkpoint_metrics")).split()
    assert metrics[1:] == ["1", "10", "10.0", "-"]  # psutil could not measure: no peak
    # the first job started at 160 - 60 = 100, the last ended at 240
    assert "wall time, first job start to last job end: 140 s" in out
    assert "CPU seconds of all jobs: 92" in out


def test_a_rerun_replaces_the_job_s_record(tmp_path):
    root = tmp_path / "demo"
    write_benchmark(root, "train_stage", "a", 60.0, 800, 55.0, end=160.0)
    write_benchmark(root, "train_stage", "a", 30.0, 700, 28.0, end=230.0)
    assert [(r.rule, r.job, r.seconds, r.max_rss_mb) for r in read_benchmarks(root)] == [("train_stage", "a", 30.0, 700.0)]


def test_timing_without_benchmark_files_says_so(tmp_path, capsys):
    assert summarise_benchmarks(tmp_path / "demo") == 1
    assert "run the DAG first" in capsys.readouterr().out
