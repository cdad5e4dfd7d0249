"""Remove the stand-in exports a rehearsal wrote into weights/ (unidad.rehearsal_sdp.clear_exports).

    python ci/rehearsal/clear_exports.py --config config/paper_sdp_rehearsal.yaml

Run before the rehearsal (an earlier rehearsal's export would be reused) and after it (the working tree
keeps no stand-in where a real run reads its weights). A real export there stops it with an error.
"""
import argparse

from unidad.config import load_config_file
from unidad.rehearsal_sdp import clear_exports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/paper_sdp_rehearsal.yaml")
    args = ap.parse_args()
    for path in clear_exports(load_config_file(args.config)):
        print(f"removed the stand-in export {path}")


if __name__ == "__main__":
    main()
