"""Pack MLX's CUDA backend, mlx and mlx-lm into one archive for a GPU machine with no network.

The mlx-cuda wheel is ~90 MB because libmlx.so carries GPU code for six architectures
(sm_75 ... sm_121). A machine of one kind needs one of them: this script blanks the others
(their bytes become zeros, their entries stay, so the CUDA runtime still reads the table
and picks the kept one) and the archive compresses to ~22 MB.

    python bench/pack_mlx_cuda.py --sm 90 --out .gpu/site.tar.xz     # H100 / H200

On the GPU machine: `mkdir -p /tmp/site && tar xJf .gpu/site.tar.xz -C /tmp/site &&
export PYTHONPATH=/tmp/site` (bench/gpu_call.sh does it).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KIND_ELF = 2


def _section(data: bytes | bytearray, wanted: str) -> tuple[int, int]:
    """(file offset, size) of an ELF64 little-endian section."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
    strtab = headers[names][4]
    for name, _type, _flags, _addr, offset, size in headers:
        end = data.index(b"\0", strtab + name)
        if data[strtab + name : end].decode() == wanted:
            return offset, size
    raise SystemExit(f"no {wanted} section")


def keep_one_arch(path: Path, sm: int) -> tuple[int, int]:
    """Zero every fatbin entry of `path` but the sm_`sm` machine code; (kept, blanked) bytes."""
    data = bytearray(path.read_bytes())
    start, size = _section(data, ".nv_fatbin")
    kept = blanked = 0
    p = start
    while p < start + size:
        magic, _version, header, fat = struct.unpack_from("<IHHQ", data, p)
        if magic != FATBIN_MAGIC:
            p += 8  # containers are 8-byte aligned
            continue
        q = p + header
        while q < p + header + fat:
            kind, _v, entry_header, payload = struct.unpack_from("<HHIQ", data, q)
            arch = struct.unpack_from("<I", data, q + 28)[0]
            body = q + entry_header
            if kind == KIND_ELF and arch == sm:
                kept += payload
            else:
                data[body : body + payload] = bytes(payload)
                blanked += payload
            q = body + payload
        p += header + fat
    if not kept:
        raise SystemExit(f"{path} has no sm_{sm} code")
    path.write_bytes(data)
    return kept, blanked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sm", type=int, default=90, help="compute capability x10 (90: Hopper)")
    ap.add_argument("--cuda", default="13", choices=("12", "13"))
    ap.add_argument("--mlx", default="0.32.4")
    ap.add_argument("--mlx-lm", default="0.32.2")
    ap.add_argument("--python", default="3.12", help="the GPU machine's Python")
    ap.add_argument("--out", type=Path, default=Path(".gpu/site.tar.xz"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheels, site = Path(tmp) / "wheels", Path(tmp) / "site"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                args.python,
                "--implementation",
                "cp",
                "--platform",
                "manylinux_2_35_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "-d",
                str(wheels),
                f"mlx=={args.mlx}",
                f"mlx-cuda-{args.cuda}=={args.mlx}",
                f"mlx-lm=={args.mlx_lm}",
            ],
            check=True,
        )
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
        kept, blanked = keep_one_arch(site / "mlx" / "lib" / "libmlx.so", args.sm)
        print(f"libmlx.so: kept {kept / 1e6:.0f} MB of sm_{args.sm} code, blanked {blanked / 1e6:.0f} MB")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.out, "w:xz") as tar:
            tar.add(site, arcname=".")
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
