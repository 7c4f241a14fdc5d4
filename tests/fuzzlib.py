"""Fuzzing the readers: seed files, mutations, hostile headers, and a memory-capped child that reads them.

Shared by ``tests/test_fuzz_readers.py`` (a few seconds, fixed seeds) and
``benchmarks/robustness.py`` (the large campaign). Every case is read in a
child process whose address space is capped with ``resource.setrlimit``
(``RLIMIT_AS``) and whose ``MRI_CSC_MAX_BYTES`` budget is small; the child
reports one JSON line per case:

``ok``          the reader returned a valid result;
``clear``       it raised a user error (:func:`mri_csc.validate.is_user_error`) with a one-line message;
``traceback``   it raised anything else (a bug), or the child died;
``over_budget`` a ``MemoryError``, or the peak RSS grew by more than the budget plus slack;
``hang``        no answer within the per-case timeout.

Run as ``python -m tests.fuzzlib CASES.json`` (the child side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

READERS = ("npy", "npz", "cfl", "h5", "nifti", "toml", "ismrmrd")
OUTCOMES = ("ok", "clear", "traceback", "hang", "over_budget")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- seeds

def _kspace(rng, shape=(2, 16, 16)):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def make_seeds(folder: Path) -> dict[str, list[Path]]:
    """Small valid files of every format, written with the tools that define them where we can."""
    import h5py
    import nibabel as nib

    from mri_csc.io.cfl import write_cfl

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    seeds: dict[str, list[Path]] = {r: [] for r in READERS}
    k = _kspace(rng)
    np.save(folder / "a.npy", k)
    np.save(folder / "stack.npy", _kspace(rng, (3, 2, 8, 8)))
    seeds["npy"] += [folder / "a.npy", folder / "stack.npy"]
    np.savez_compressed(folder / "a.npz", kspace=k, maps=k, mask=np.ones((16, 16), np.float32))
    np.savez(folder / "b.npz", kspace=_kspace(rng, (3, 2, 8, 8)))
    seeds["npz"] += [folder / "a.npz", folder / "b.npz"]
    write_cfl(folder / "a", k.T)  # BART's own layout (x, y, ..., coils)
    seeds["cfl"].append(folder / "a.cfl")
    with h5py.File(folder / "a.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace(rng, (2, 2, 16, 16)), compression="gzip", chunks=(1, 1, 16, 16))
        f["mask"] = np.ones(16, np.float32)
        f.attrs["acquisition"] = "CORPD_FBK"
    with h5py.File(folder / "b.h5", "w") as f:
        f["kspace"] = _kspace(rng, (1, 2, 16, 16))
        f["maps"] = _kspace(rng, (1, 2, 16, 16))
    seeds["h5"] += [folder / "a.h5", folder / "b.h5"]
    vol = rng.random((12, 14, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.2, 1.5, 1])), folder / "a.nii")
    nib.save(nib.Nifti1Image(vol, np.diag([-1.0, 1.0, 1.0, 1])), folder / "b.nii.gz")
    seeds["nifti"] += [folder / "a.nii", folder / "b.nii.gz"]
    (folder / "a.toml").write_text(
        'name = "fuzz"\ndescription = "seed"\n[data]\nphantom = "shepp-logan"\nshape = [32, 32]\n'
        '[coils]\ncount = 4\n[mask]\nkind = "poisson"\naccel = 4.0\n[noise]\nsnr_db = 30.0\n'
        '[[methods]]\nname = "zero-filled"\n[[methods]]\nname = "sense"\nlabel = "S"\nparams = {max_iter = 5}\n')
    seeds["toml"].append(folder / "a.toml")
    seeds["ismrmrd"].append(_ismrmrd_file(folder / "a.mrd", k))
    return seeds


def _ismrmrd_file(path: Path, k) -> Path:
    """An ISMRMRD file made by the ISMRMRD project's own generator, or by our writer (k-space ``k``)
    where ismrmrd-tools is not installed."""
    try:
        subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "16", "-c", "2", "-o", str(path)],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        from mri_csc.io import write_kspace

        write_kspace(path, k)
    return path


# ----------------------------------------------------------------------------- mutations

def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption of ``data``: truncation, bit flips, a block overwrite, a splice, or junk."""
    b = bytearray(data)
    n = len(b)
    kind = rng.integers(7)
    if n == 0 or kind == 0:  # truncate
        return bytes(b[: int(rng.integers(0, max(n, 1)))])
    if kind == 1:  # flip a few bits, biased to the header
        for _ in range(int(rng.integers(1, 17))):
            i = int(rng.integers(0, min(n, 512))) if rng.random() < 0.6 else int(rng.integers(0, n))
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:  # overwrite a block with 0x00 / 0xff / random
        i = int(rng.integers(0, n))
        m = int(rng.integers(1, 65))
        fill = rng.choice([b"\x00", b"\xff", None])
        b[i:i + m] = (fill * m) if fill is not None else rng.bytes(m)
        return bytes(b[:n])
    if kind == 3:  # duplicate a chunk somewhere else
        i, j = sorted(int(x) for x in rng.integers(0, n, 2))
        at = int(rng.integers(0, n))
        return bytes(b[:at] + b[i:j] + b[at:])
    if kind == 4:  # digits in the header replaced by huge or negative numbers
        head = bytes(b[:1024])
        digits = [i for i, c in enumerate(head) if chr(c).isdigit()]
        if digits:
            i = int(rng.choice(digits))
            repl = rng.choice([b"99999999", b"-1", b"4294967295", b"1e30", b"0"])
            b[i:i + 1] = repl
        return bytes(b)
    if kind == 5:  # append junk
        return bytes(b) + rng.bytes(int(rng.integers(1, 4096)))
    return bytes(b[: n // 2]) + bytes(n - n // 2)  # zeroed second half


def _npy_header(shape, descr="<c8", fortran=False) -> bytes:
    d = "{'descr': " + repr(descr) + f", 'fortran_order': {fortran}, 'shape': {shape}, }}"
    d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode("latin1")


def hostile_cases(folder: Path) -> list[tuple[str, str, Path]]:
    """Hand-made hostile files: ``(reader, label, path)``."""
    import gzip

    import h5py
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def add(reader, label, name, data=None):
        p = folder / name
        if data is not None:
            p.write_bytes(data)
        out.append((reader, label, p))

    add("npy", "npy header declaring 100000x100000", "huge.npy", _npy_header((100000, 100000)) + bytes(64))
    add("npy", "npy header that does not parse", "badhead.npy", _npy_header((2, 3)).replace(b"'shape'", b"'sha\"pe'"))
    add("npy", "npy object dtype", "obj.npy", _npy_header((2,), "|O") + bytes(16))
    add("npy", "npy truncated data", "trunc.npy", _npy_header((2, 16, 16)) + bytes(100))
    add("npy", "npy negative shape", "neg.npy", _npy_header((2, -16, 16)) + bytes(64))
    add("npy", "empty file", "empty.npy", b"")
    # zip bomb: a member that inflates to 384 MiB of zeros from about 0.4 MiB
    bomb = folder / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("kspace.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((12, 4096, 1024)))
            zero = bytes(1 << 24)
            for _ in range(24):
                f.write(zero)
    out.append(("npz", "zip bomb (384 MiB member)", bomb))
    good = folder / "good.npz"
    np.savez_compressed(good, kspace=np.ones((2, 16, 16), np.complex64))
    data = good.read_bytes()
    add("npz", "truncated npz", "trunc.npz", data[: len(data) * 2 // 3])
    mid = bytearray(data)
    mid[len(mid) // 2] ^= 0xFF
    add("npz", "corrupt npz member", "corrupt.npz", bytes(mid))
    with zipfile.ZipFile(folder / "lying.npz", "w", zipfile.ZIP_STORED) as z:
        z.writestr("kspace.npy", _npy_header((1000, 1000, 1000)) + bytes(64))
    out.append(("npz", "npz member header larger than the member", folder / "lying.npz"))

    (folder / "c8.cfl").write_bytes(bytes(8 * 256 + 3))
    (folder / "c8.hdr").write_text("# Dimensions\n16 16 1 1 1\n")
    out.append(("cfl", "cfl size not a multiple of 8", folder / "c8.cfl"))
    (folder / "hd.cfl").write_bytes(bytes(8 * 100))
    (folder / "hd.hdr").write_text("# Dimensions\n16 16 1 2 1\n")
    out.append(("cfl", "cfl size disagrees with hdr", folder / "hd.cfl"))
    (folder / "big.cfl").write_bytes(bytes(8))
    (folder / "big.hdr").write_text("# Dimensions\n100000 100000 1 1 1\n")
    out.append(("cfl", "cfl hdr declaring 1e10 samples", folder / "big.cfl"))

    with h5py.File(folder / "group.h5", "w") as f:
        f.create_group("kspace")
    out.append(("h5", "h5 kspace is a group", folder / "group.h5"))
    with h5py.File(folder / "dangling.h5", "w") as f:
        f["kspace"] = h5py.SoftLink("/nowhere")
    out.append(("h5", "h5 kspace is a dangling link", folder / "dangling.h5"))
    with h5py.File(folder / "external.h5", "w") as f:
        f["kspace"] = h5py.ExternalLink("/etc/passwd", "/x")
    out.append(("h5", "h5 kspace is an external link", folder / "external.h5"))
    with h5py.File(folder / "gzbomb.h5", "w") as f:
        f.create_dataset("kspace", shape=(64, 16, 640, 368), dtype=np.complex64, compression="gzip",
                         chunks=(1, 1, 640, 368))
    out.append(("h5", "h5 gzip bomb (declared 1.8 GiB)", folder / "gzbomb.h5"))
    with h5py.File(folder / "strdt.h5", "w") as f:
        f["kspace"] = np.array([b"ab"] * 4, dtype="S2").reshape(1, 1, 2, 2)
    out.append(("h5", "h5 kspace of strings", folder / "strdt.h5"))

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 512))
    hdr.set_data_dtype(np.float32)
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    nib.save(img, folder / "tmp.nii")
    raw = bytearray((folder / "tmp.nii").read_bytes())
    raw[40:56] = np.array([3, 4096, 4096, 512, 1, 1, 1, 1], "<i2").tobytes()
    add("nifti", "NIfTI declaring 32 GiB", "huge.nii", bytes(raw))
    add("nifti", "gz NIfTI declaring 32 GiB", "huge.nii.gz", gzip.compress(bytes(raw)))
    aff = np.eye(4)
    aff[:3, :3] = [[0, 0, -1], [0, -1, 0], [-1, 0, 0]]
    nib.save(nib.Nifti1Image(np.zeros((400, 400, 400), np.uint8), aff), folder / "flipped.nii.gz")
    out.append(("nifti", "flipped-sform gz NIfTI (61 MiB, read whole to reorient)", folder / "flipped.nii.gz"))
    raw2 = bytearray((folder / "flipped.nii.gz").read_bytes())
    hdr2 = bytearray(gzip.decompress(bytes(raw2))[:352])
    hdr2[40:56] = np.array([3, 30000, 30000, 400, 1, 1, 1, 1], "<i2").tobytes()
    add("nifti", "flipped-sform gz NIfTI declaring 335 GiB", "flipbomb.nii.gz",
        gzip.compress(bytes(hdr2) + bytes(1 << 20)))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), folder / "nan.nii")
    nraw = bytearray((folder / "nan.nii").read_bytes())
    nraw[254:256] = np.array([1], "<i2").tobytes()  # sform_code
    nraw[280:296] = np.array([np.nan, 0, 0, 0], "<f4").tobytes()  # srow_x
    add("nifti", "NIfTI with a NaN sform", "nan.nii", bytes(nraw))
    (folder / "tmp.nii").unlink()

    # ISMRMRD: 'dataset/data' a group; acquisition headers missing a nested field (idx.set)
    with h5py.File(folder / "mrdgroup.h5", "w") as f:
        f.create_group("dataset").create_group("data")
    out.append(("ismrmrd", "ISMRMRD dataset/data is a group", folder / "mrdgroup.h5"))
    def with_head(name, seed, head_dtype):
        """An ISMRMRD file (the generator's, see _ismrmrd_file) with its acquisition headers rewritten to
        ``head_dtype(head)``."""
        _ismrmrd_file(folder / name, _kspace(np.random.default_rng(seed)))
        with h5py.File(folder / name, "r+") as f:
            data = f["dataset/data"][:]
            dt = np.dtype([(n, head_dtype(data.dtype["head"]) if n == "head" else data.dtype[n])
                           for n in data.dtype.names])
            new = np.zeros(data.shape, dt)
            for n in data.dtype.names:
                if n != "head":
                    new[n] = data[n]
            del f["dataset/data"]
            f["dataset/data"] = new
        return new

    def no_set(head):
        idx = np.dtype([(n, head["idx"][n]) for n in head["idx"].names if n != "set"])
        return np.dtype([(n, idx if n == "idx" else head[n]) for n in head.names])

    with_head("noset.mrd", 1, no_set)
    out.append(("ismrmrd", "ISMRMRD acquisition headers without idx.set", folder / "noset.mrd"))
    new = with_head("s4.mrd", 2, lambda head: np.dtype([(n, "S4" if n == "number_of_samples" else head[n])
                                                        for n in head.names]))
    out.append(("ismrmrd", "ISMRMRD number_of_samples stored as strings", folder / "s4.mrd"))
    with h5py.File(folder / "twod.mrd", "w") as f:
        f["dataset/data"] = np.stack([new, new])
    out.append(("ismrmrd", "ISMRMRD 'data' of two dimensions", folder / "twod.mrd"))

    add("toml", "TOML data.shape 100000x100000", "huge.toml",
        b'[data]\nshape = [100000, 100000]\n[[methods]]\nname = "zero-filled"\n')
    add("toml", "TOML not UTF-8", "latin.toml", b'name = "\xff\xfe"\n')
    add("toml", "TOML deeply nested", "deep.toml", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n")
    return out


# ----------------------------------------------------------------------------- the child

def read_case(reader: str, path: str) -> str:
    """Read ``path`` as ``reader`` would be used by the CLI; return ``'ok'`` or raise."""
    if reader == "toml":
        from mri_csc.config import load_config

        load_config(path)
        return "ok"
    if reader == "nifti":
        from mri_csc.io import describe
        from mri_csc.sim.phantoms import nifti_slice

        describe(path)
        img = nifti_slice(path, shape=(32, 32))
        assert img.shape == (32, 32)
        return "ok"
    from mri_csc.io import describe, read_kspace

    d = read_kspace(path)
    k = d["kspace"]
    assert isinstance(k, np.ndarray) and k.dtype == np.complex64 and k.ndim - d["stacked"] in (3, 4)
    if d["stacked"]:
        read_kspace(path, slice=d["n_slices"] - 1)
    describe(path)
    return "ok"


def _child(cases_file: str) -> None:
    import resource
    import traceback

    from mri_csc.io.limits import max_bytes
    from mri_csc.validate import is_user_error

    cases = json.loads(Path(cases_file).read_text())
    budget = max_bytes()
    slack = 64 << 20
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for i, (reader, path) in enumerate(cases):
        rec = {"i": i}
        try:
            rec["outcome"] = read_case(reader, path)
        except MemoryError as e:
            rec.update(outcome="over_budget", error=f"MemoryError: {e}")
        except Exception as e:  # noqa: BLE001
            msg = str(e)
            if is_user_error(e) and msg and "\n" not in msg.strip():
                rec.update(outcome="clear", error=f"{type(e).__name__}: {msg}", names_file=Path(path).name in msg
                           or Path(path).stem in msg)
            else:
                rec.update(outcome="traceback", error=f"{type(e).__name__}: {msg}"[:300],
                           where=traceback.format_exc().strip().splitlines()[-3][:200])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if peak - base > budget + slack:
            rec.update(outcome="over_budget", error=f"peak RSS grew by {(peak - base) >> 20} MiB")
            base = peak
        print(json.dumps(rec), flush=True)


def run_cases(cases: list[tuple[str, str]], *, budget: str = "256M", address_space: int = 3 << 30,
              timeout: float = 20.0, workdir: Path) -> list[dict]:
    """Read every ``(reader, path)`` in capped child processes; one result record per case, in order."""
    import resource
    import select

    results: list[dict] = []
    env = {**os.environ, "MRI_CSC_MAX_BYTES": budget, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    start = 0
    while start < len(cases):
        batch = cases[start:]
        cf = workdir / f"cases_{start}.json"
        cf.write_text(json.dumps([[r, str(p)] for r, p in batch]))
        proc = subprocess.Popen([sys.executable, "-m", "tests.fuzzlib", str(cf)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=ROOT, preexec_fn=limit, text=True)
        done = 0
        first = True
        while done < len(batch):
            ready, _, _ = select.select([proc.stdout], [], [], timeout + (30 if first else 0))
            if not ready:
                proc.kill()
                proc.wait()
                results.append({"i": start + done, "outcome": "hang", "error": f"no answer in {timeout} s"})
                done += 1
                break
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                err = proc.stderr.read().strip().splitlines()[-1:] or [""]
                results.append({"i": start + done, "outcome": "traceback",
                                "error": f"child died (rc {proc.returncode}): {err[0][:200]}"})
                done += 1
                break
            first = False
            rec = json.loads(line)
            rec["i"] = start + done
            results.append(rec)
            done += 1
        else:
            proc.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        start += done
    for rec, (reader, path) in zip(results, cases):
        rec["reader"], rec["path"] = reader, str(path)
    return results


def fuzz_cases(seeds: dict[str, list[Path]], per_reader: int, folder: Path, seed: int = 0) -> list[tuple[str, Path]]:
    """``per_reader`` mutated copies of each reader's seeds (fixed ``seed``), written under ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for reader, paths in seeds.items():
        for j in range(per_reader):
            src = paths[j % len(paths)]
            name = src.name
            ext = "".join(Path(name).suffixes)
            dest = folder / f"{reader}_{j:04d}{ext}"
            data = src.read_bytes()
            dest.write_bytes(mutate(data, rng))
            if reader == "cfl":  # mutate the header or the data of the pair
                hdr_src = src.with_suffix(".hdr")
                hb = hdr_src.read_bytes()
                dest.with_suffix(".hdr").write_bytes(mutate(hb, rng) if rng.random() < 0.5 else hb)
                if rng.random() < 0.5:
                    dest.write_bytes(data)
            cases.append((reader, dest))
    return cases


def tally(results: list[dict]) -> dict[str, dict[str, int]]:
    """``{reader: {outcome: count, 'tried': n}}``."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        t = out.setdefault(r["reader"], {"tried": 0, **{o: 0 for o in OUTCOMES}})
        t["tried"] += 1
        t[r["outcome"]] += 1
    return out


if __name__ == "__main__":
    _child(sys.argv[1])
