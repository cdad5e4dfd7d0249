"""Write the rehearsal's stand-in weights and dataset folders (unidad.rehearsal.prepare).

    python ci/rehearsal/make_standins.py [--config config/paper_fsig_rehearsal.yaml]
        [--weights-dir .rehearsal/weights] [--ffhq 1000] [--full 100]

The folders go where the config's datasets point (relative paths: from the current directory); run the
DAG with UNIDAD_WEIGHTS_DIR set to --weights-dir. Every file written here is stamped a stand-in.
"""
import argparse
import time

from unidad.config import load_config_file
from unidad.rehearsal import prepare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/paper_fsig_rehearsal.yaml")
    ap.add_argument("--weights-dir", default=".rehearsal/weights")
    ap.add_argument("--ffhq", type=int, default=1000, help="images in the source (FFHQ) training folder")
    ap.add_argument("--full", type=int, default=100, help="images in each target's full set")
    args = ap.parse_args()
    t0 = time.perf_counter()
    config = load_config_file(args.config)
    source = config["source"]["dataset"]
    out = prepare(config, args.weights_dir, counts={source: args.ffhq, "full": args.full})
    for name, rec in out["weights"].items():
        print(f"stand-in {rec['name']:<16} {args.weights_dir}/{name}  sha256 {rec['sha256'][:16]}...  "
              f"{rec['size'] / 2**20:.1f} MiB")
    for folder, n in out["folders"].items():
        print(f"folder {folder}: {n} images")
    print(f"prepared in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
