"""The DAG's own timing log: one line per finished job, summarised by `unidad timing`."""
from unidad.planning import summarise_job_times
from unidad.runtime import record_job_time


def test_timing_counts_the_latest_run_of_each_job(tmp_path, capsys):
    times = tmp_path / "demo" / "logs" / "job_times.jsonl"
    record_job_time(times, "train_stage", "logs/train/a.log", 100.0, 160.0, 1)
    record_job_time(times, "train_stage", "logs/train/a.log", 200.0, 230.0, 1)  # a rerun replaces it
    record_job_time(times, "checkpoint_metrics", "logs/metrics/a.log", 230.0, 240.0, 2)
    assert len(times.read_text().splitlines()) == 3
    assert summarise_job_times(times) == 0
    out = capsys.readouterr().out
    assert "2 jobs" in out
    assert "wall time, first job start to last job end: 40 s" in out
    assert "thread-seconds of all jobs: 50" in out
    train_line = next(line for line in out.splitlines() if line.startswith("train_stage"))
    assert train_line.split()[1:3] == ["1", "30"]


def test_timing_without_a_log_says_so(tmp_path, capsys):
    assert summarise_job_times(tmp_path / "demo" / "logs" / "job_times.jsonl") == 1
    assert "run the DAG first" in capsys.readouterr().out
