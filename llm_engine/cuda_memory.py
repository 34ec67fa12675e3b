"""The few CUDA runtime calls the engine makes on MLX's CUDA backend, through ctypes.

MLX's CUDA backend keeps an array in device memory until the host touches it; from then on
(numpy views included) the array lives in CUDA managed memory, which the host and the GPU
both address and the driver migrates page by page on first touch. The expert banks are such
arrays: experts are read into them on the host, then the GPU computes with them. Left alone,
the GPU's first access to each page of a freshly read expert faults and migrates it; a
prefetch moves the written ranges in bulk instead, before the compute is launched.

libcudart is already loaded by MLX; it is found by its soname (13, then 12).
"""

from __future__ import annotations

import ctypes

_MEM_LOCATION_DEVICE = 1  # cudaMemLocationTypeDevice
_MEM_LOCATION_HOST = 2  # cudaMemLocationTypeHost
_ADVISE_PREFERRED_LOCATION = 3  # cudaMemAdviseSetPreferredLocation
_ADVISE_ACCESSED_BY = 5  # cudaMemAdviseSetAccessedBy
_CPU_DEVICE_ID = -1  # cudaCpuDeviceId (CUDA 12's int form of a location)
_MEMCPY_DEFAULT = 4  # cudaMemcpyDefault: direction from the pointers (unified addressing)


class _MemLocation(ctypes.Structure):  # struct cudaMemLocation (CUDA >= 12.2)
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class CudaRuntime:
    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        version = ctypes.c_int(0)
        self._check(lib.cudaRuntimeGetVersion(ctypes.byref(version)), "cudaRuntimeGetVersion")
        self.version = version.value
        device = ctypes.c_int(0)
        self._check(lib.cudaGetDevice(ctypes.byref(device)), "cudaGetDevice")
        self.device = device.value
        if self.version >= 13000:
            lib.cudaMemPrefetchAsync.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                _MemLocation,
                ctypes.c_uint,
                ctypes.c_void_p,
            ]
        else:
            lib.cudaMemPrefetchAsync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        loc = _MemLocation if self.version >= 13000 else ctypes.c_int
        lib.cudaMemAdvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, loc]
        lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{what} failed: {self.lib.cudaGetErrorString(err).decode()}")

    def prefetch_to_device(self, address: int, nbytes: int) -> None:
        """Queue the migration of [address, address + nbytes) of managed memory to the GPU."""
        if self.version >= 13000:
            err = self.lib.cudaMemPrefetchAsync(
                address, nbytes, _MemLocation(_MEM_LOCATION_DEVICE, self.device), 0, None
            )
        else:
            err = self.lib.cudaMemPrefetchAsync(address, nbytes, self.device, None)
        self._check(err, "cudaMemPrefetchAsync")

    def _location(self, host: bool):
        if self.version >= 13000:
            return _MemLocation(_MEM_LOCATION_HOST, 0) if host else _MemLocation(_MEM_LOCATION_DEVICE, self.device)
        return _CPU_DEVICE_ID if host else self.device

    def keep_on_host(self, address: int, nbytes: int) -> None:
        """Managed memory that stays in host RAM and that the GPU reads in place (over the bus)."""
        self._check(
            self.lib.cudaMemAdvise(address, nbytes, _ADVISE_PREFERRED_LOCATION, self._location(host=True)),
            "cudaMemAdvise",
        )
        self._check(
            self.lib.cudaMemAdvise(address, nbytes, _ADVISE_ACCESSED_BY, self._location(host=False)), "cudaMemAdvise"
        )

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        """Synchronous copy between any two addresses (host, device or managed)."""
        self._check(self.lib.cudaMemcpy(dst, src, nbytes, _MEMCPY_DEFAULT), "cudaMemcpy")

    def synchronize(self) -> None:
        """Wait for the prefetches queued on the default stream."""
        self._check(self.lib.cudaStreamSynchronize(None), "cudaStreamSynchronize")


_runtime: CudaRuntime | None = None


def runtime() -> CudaRuntime:
    global _runtime
    if _runtime is None:
        errors = []
        for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
            try:
                _runtime = CudaRuntime(ctypes.CDLL(name))
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise RuntimeError("the CUDA runtime library is not loadable: " + "; ".join(errors))
    return _runtime
