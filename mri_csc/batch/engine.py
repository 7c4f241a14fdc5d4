"""The Dask cluster a batch runs on.

- Default: a :class:`distributed.LocalCluster` sized to the machine, one
  process per core with one thread each; every worker sets its
  ``scipy.fft`` thread count to 1 (:class:`SingleThreadedFFT`) and its BLAS/OpenMP
  pools to 1, so that ``n`` workers use ``n`` cores and do not oversubscribe.
- ``scheduler="tcp://host:8786"``: connect to an existing cluster (started with
  ``dask scheduler`` / ``dask worker``, or dask-jobqueue). The connection gives
  up after ``timeout`` seconds with a :class:`ConnectionError`.
- ``device="gpu"``: one worker per GPU through dask-cuda's ``LocalCUDACluster``,
  imported only then.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["SingleThreadedFFT", "ClusterInfo", "open_client", "default_workers"]

log = logging.getLogger(__name__)

_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class SingleThreadedFFT(WorkerPlugin):
    """Worker plugin: one ``scipy.fft`` thread per worker (``mri_csc.backend.set_fft_workers(1)``).

    Also applies to workers that join or restart later (the scheduler keeps
    registered plugins).
    """

    name = "mri-csc-single-threaded-fft"

    def setup(self, worker):
        from mri_csc.backend import set_fft_workers  # noqa: PLC0415

        set_fft_workers(1)


@dataclass
class ClusterInfo:
    """What :func:`open_client` connected to."""

    dashboard: str | None
    n_workers: int
    local: bool
    scheduler: str


def default_workers() -> int:
    """The number of cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_workers(n_workers) -> None:
    if n_workers is None:
        return
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer or None; got {n_workers!r}")


def _local_gpu_cluster(n_workers, dashboard_address):
    try:
        from dask_cuda import LocalCUDACluster  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "device='gpu' (--device gpu) runs one worker per GPU through dask-cuda, which is not installed; "
            "install it with `pip install dask-cuda` (and mri_csc[gpu] for CuPy), or pass a scheduler "
            "address of a GPU cluster"
        ) from exc
    from mri_csc.backend import gpu_available  # noqa: PLC0415

    if not gpu_available():
        raise ValueError("device='gpu' asked for a GPU cluster but no usable GPU is visible here "
                         "(CuPy missing or no CUDA device); use device='cpu'")
    kw = {"threads_per_worker": 1, "dashboard_address": dashboard_address}
    if n_workers is not None:
        kw["n_workers"] = n_workers
    return LocalCUDACluster(**kw)


def _probe(address: str, timeout: float) -> None:
    """Fail fast on a TCP scheduler address that accepts no connection."""
    import socket  # noqa: PLC0415

    from distributed.comm import parse_address  # noqa: PLC0415
    from distributed.comm.addressing import parse_host_port  # noqa: PLC0415

    proto, loc = parse_address(address)
    if proto != "tcp":
        return
    host, port = parse_host_port(loc)
    with socket.create_connection((host, port), timeout=timeout):
        pass


@contextlib.contextmanager
def open_client(scheduler: str | None = None, n_workers: int | None = None, device: str = "cpu",
                timeout: float = 10.0, dashboard_address: str | None = ":0"):
    """Start (or connect to) a Dask cluster and yield ``(client, info)``.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``"tcp://host:8786"``). ``None``
        starts a local cluster that is shut down on exit.
    n_workers : int, optional
        Local workers (default: one per core, or one per GPU). Ignored with
        ``scheduler``.
    device : {"cpu", "gpu"}
    timeout : float
        Seconds to wait for the scheduler before giving up.
    dashboard_address : str or None
        Where a local cluster serves its dashboard (``":0"``: a free port;
        ``None``: no dashboard).

    Raises
    ------
    ConnectionError
        When ``scheduler`` cannot be reached within ``timeout`` seconds.
    ImportError
        ``device="gpu"`` without dask-cuda.
    """
    import dask  # noqa: PLC0415
    from distributed import Client, LocalCluster  # noqa: PLC0415

    _check_workers(n_workers)
    kind = str(device).split(":")[0].lower()
    if kind not in ("cpu", "gpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'gpu'; got {device!r}")
    cluster = None
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(f"scheduler must be an address such as 'tcp://host:8786'; got {scheduler!r}")
        try:
            _probe(scheduler, timeout)
            client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
        except Exception as exc:
            raise ConnectionError(
                f"could not connect to the Dask scheduler at {scheduler!r} (timeout {timeout:g} s; "
                f"{type(exc).__name__}: {exc}); check the address and that `dask scheduler` is running"
            ) from None
    else:
        if kind in ("gpu", "cuda"):
            cluster = _local_gpu_cluster(n_workers, dashboard_address)
        else:
            n = n_workers or default_workers()
            # The statistical profiler samples every worker's stack every 10 ms, which costs a
            # visible share of a core per worker on small machines: off for our own clusters.
            # Dask's nanny also sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which makes
            # glibc unmap and re-fault every large temporary: a CSC slice took 16.2 s instead of
            # 12.4 s with it (256², 8 coils). Our workers keep glibc's default.
            with dask.config.set({"distributed.worker.profile.enabled": False,
                                  "distributed.nanny.pre-spawn-environ": dict(_THREAD_ENV)}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=dashboard_address, env=dict(_THREAD_ENV))
        client = Client(cluster, set_as_default=False)
    try:
        client.register_plugin(SingleThreadedFFT())
        if scheduler is not None:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (TimeoutError, OSError):
                raise ConnectionError(f"the Dask scheduler at {scheduler!r} has no worker "
                                      f"(waited {timeout:g} s); start some with `dask worker {scheduler}`"
                                      ) from None
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        dash = None
        with contextlib.suppress(Exception):
            dash = client.dashboard_link if dashboard_address is not None or scheduler else None
        addr = client.scheduler.address
        log.info("Dask scheduler %s, %d worker(s), dashboard %s", addr, n, dash or "(none)")
        yield client, ClusterInfo(dashboard=dash, n_workers=n, local=cluster is not None, scheduler=addr)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
