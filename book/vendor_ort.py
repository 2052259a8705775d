"""Vendor onnxruntime-web's plain WebAssembly backend into ``book/_static/live/ort/``.

The book's live pages run the lab's nets in the reader's browser, offline and without a build
step, from a web server or from disk (``file://``). From the npm package this takes:

- ``ort.wasm-core.min.js``: the WebAssembly backend alone (no threads, no worker proxy, no
  WebGL/WebGPU), a classic script that defines the global ``ort``; copied as it is;
- ``ort-wasm-simd.wasm``: the SIMD, single-threaded build, which needs no SharedArrayBuffer and
  so no cross-origin-isolation headers (which a page opened from disk cannot have). It is
  written as ``ort-wasm-simd.wasm.js`` (:func:`fcnlib.export.write_files_script`: gzip, then
  base64, in a script), since a page opened from disk may load scripts but not fetch files:
  3.7 MB instead of 10.6 MB, and one file for both ways of opening the page.

onnxruntime-web 1.18.0 is the last release with a single-threaded WebAssembly build and a
classic-script backend; from 1.19 on there is only the threaded build, loaded as an ES module
(which browsers refuse from ``file://``). To update (any 1.18.x)::

    npm pack onnxruntime-web@1.18.0          # in a temporary folder
    python book/vendor_ort.py onnxruntime-web-1.18.0.tgz

then update the version and digests in ``book/_static/live/ort/README.md`` from what this prints,
and run ``tests/test_live.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
from pathlib import Path

from fcnlib.export import write_files_script

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "_static" / "live" / "ort"
SCRIPT, WASM = "ort.wasm-core.min.js", "ort-wasm-simd.wasm"


def _member(package: tarfile.TarFile, name: str) -> bytes:
    try:
        member = package.extractfile(f"package/{name}")
    except KeyError:
        member = None
    if member is None:
        raise SystemExit(
            f"{package.name}: no package/{name} in it; this needs onnxruntime-web 1.18.x, the "
            "last release with the single-threaded WebAssembly build (npm pack "
            "onnxruntime-web@1.18.0)"
        )
    return member.read()


def vendor(tgz: Path, out: Path = OUT) -> dict[str, str]:
    """Write the backend's files into ``out``; return what README.md records of them."""
    with tarfile.open(tgz) as package:
        meta = json.loads(_member(package, "package.json"))
        script, wasm = _member(package, f"dist/{SCRIPT}"), _member(package, f"dist/{WASM}")
    out.mkdir(parents=True, exist_ok=True)
    (out / SCRIPT).write_bytes(script)
    write_files_script(out / f"{WASM}.js", {WASM: wasm})
    return {
        "package": f"{meta['name']}@{meta['version']}",
        f"sha256 {SCRIPT}": hashlib.sha256(script).hexdigest(),
        f"sha256 {WASM}": hashlib.sha256(wasm).hexdigest(),
        f"bytes {WASM}": str(len(wasm)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tgz", type=Path, help="the package from `npm pack onnxruntime-web@1.18.0`")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if not args.tgz.is_file():
        raise SystemExit(f"{args.tgz}: no such file; get it with npm pack onnxruntime-web@1.18.0")
    for key, value in vendor(args.tgz, args.out).items():
        print(f"{key}: {value}")
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"{args.out}: {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
