"""Train chapter 8's quick-mode GSA-Nets and write ``gsa_tutorial/assets/pretrained/``.

Every record of :data:`gsa_tutorial.pretrained.PRETRAINED_SPECS` is trained from scratch on
the CPU with one thread (the `small` preset, the shipped MNIST digits), its best-validation
weights are written to ``<name>.pt`` (a plain state dict, loads with ``weights_only=True``)
and its entry (sha256, full model and training configs, accuracies, the hash of the weights
after epoch 1) to ``manifest.json``.

    python tools/build_pretrained.py                    # every record (~8 min of CPU)
    python tools/build_pretrained.py --jobs 2           # two processes, one thread each
    python tools/build_pretrained.py --only rotated-r4-seed0 upright-r4-seed0
    python tools/build_pretrained.py --check            # retrain and compare with the manifest, write nothing
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from gsa_tutorial.pretrained import MANIFEST, PRETRAINED_SPECS, build_record  # noqa: E402

OUT = REPO / "gsa_tutorial" / "assets" / "pretrained"


def _train(name: str) -> tuple[str, dict, bytes, float]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    model, entry = build_record(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return name, entry, buffer.getvalue(), time.perf_counter() - start


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"records to build: {', '.join(PRETRAINED_SPECS)}")
    p.add_argument("--jobs", type=int, default=1, help="processes (each one thread)")
    p.add_argument("--check", action="store_true", help="retrain and compare the weights with the manifest; write nothing")
    args = p.parse_args(argv)
    names = args.only or list(PRETRAINED_SPECS)
    unknown = [n for n in names if n not in PRETRAINED_SPECS]
    if unknown:
        raise SystemExit(f"unknown records {unknown}: expected some of {', '.join(PRETRAINED_SPECS)}")
    manifest_path = OUT / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"records": {}}
    failures = 0
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, entry, raw, seconds in pool.map(_train, names):
            summary = (f"{name}: {entry['num_parameters']} parameters, best epoch {entry['best']['epoch']} "
                       f"valid {entry['best']['valid_acc']:.4f}, test {entry['test']['acc']:.4f} ({seconds:.0f} s)")
            if args.check:
                old = manifest["records"].get(name, {})
                same = old.get("weights_sha256") == entry["weights_sha256"]
                failures += not same
                print(("same weights as the manifest: " if same else "DIFFERENT weights from the manifest: ") + summary, flush=True)
                continue
            import hashlib

            OUT.mkdir(parents=True, exist_ok=True)
            _write_atomic(OUT / f"{name}.pt", raw)
            manifest["records"][name] = {"file": f"{name}.pt", "sha256": hashlib.sha256(raw).hexdigest(), **entry}
            manifest["records"] = dict(sorted(manifest["records"].items()))
            manifest["built_by"] = "python tools/build_pretrained.py"
            _write_atomic(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
            print(summary, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
