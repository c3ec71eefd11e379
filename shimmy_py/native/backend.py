"""ggml backend devices at the pointer level: enumeration, RPC registration,
and the device list and buffer-type override array of llama_model_params.

Device pointers stay here; the rest of the package sees `Device` records and
names. An RPC server is checked with a real handshake from Python before
llama.cpp connects, because llama.cpp aborts the process when one is down.
ggml keeps registered backends for the life of the process (there is no
unregistering), so `add_rpc_servers` remembers what it registered.
"""
from __future__ import annotations

import ctypes
import re
import socket
import struct
from dataclasses import dataclass

from ..errors import PlacementError
from . import install
from .binding import DEV_TYPE_NAMES, llama_model_tensor_buft_override
from .runtime import lib

RPC_CMD_HELLO = 14
RPC_CONN_CAPS_SIZE = 24


@dataclass(frozen=True)
class Device:
    """A ggml backend device as llama.cpp sees it."""
    name: str          # e.g. "CPU", "CUDA0", "RPC0"
    description: str
    kind: str          # "cpu" or "accelerator"
    ggml_type: str     # cpu, gpu, igpu, accel
    buffer_type: str   # name of its buffer type, as -ot accepts it
    free_bytes: int
    total_bytes: int
    reachable: bool = True   # False: an RPC server registered earlier that no longer answers


def _answers(endpoint: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at HOST:PORT. llama.cpp aborts
    the process when it asks a server that is down, even for its memory."""
    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _devices_raw() -> list[tuple[Device, int]]:
    L = lib()
    out = []
    for i in range(L.ggml_backend_dev_count()):
        dev = L.ggml_backend_dev_get(i)
        name = L.ggml_backend_dev_name(dev).decode()
        description = (L.ggml_backend_dev_description(dev) or b"").decode(errors="replace")
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        reachable = not name.startswith("RPC") or _answers(description)
        if reachable:
            L.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        gtype = DEV_TYPE_NAMES.get(L.ggml_backend_dev_type(dev), "unknown")
        buft = L.ggml_backend_dev_buffer_type(dev)
        out.append((Device(
            name=name, description=description, kind="cpu" if gtype == "cpu" else "accelerator", ggml_type=gtype,
            buffer_type=L.ggml_backend_buft_name(buft).decode() if buft else "",
            free_bytes=free.value, total_bytes=total.value, reachable=reachable), dev))
    return out


def list_devices() -> list[Device]:
    return [d for d, _ in _devices_raw()]


def _rpc_major_version() -> int:
    header = install.find_install() / "include" / "ggml-rpc.h"
    m = re.search(r"#define\s+RPC_PROTO_MAJOR_VERSION\s+(\d+)", header.read_text())
    if not m:
        raise PlacementError(f"{header}: no RPC_PROTO_MAJOR_VERSION")
    return int(m.group(1))


def check_rpc_server(endpoint: str, timeout: float = 5.0) -> None:
    """Connects to an RPC server and performs its HELLO handshake, or raises."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PlacementError(f"RPC server {endpoint!r}: expected HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack("<BQ", RPC_CMD_HELLO, RPC_CONN_CAPS_SIZE) + bytes(RPC_CONN_CAPS_SIZE))
            reply = b""
            want = 8 + 4 + RPC_CONN_CAPS_SIZE
            while len(reply) < want:
                chunk = s.recv(want - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError as e:
        raise PlacementError(f"RPC server {endpoint} is unreachable: {e}") from None
    if len(reply) < 12 or struct.unpack_from("<Q", reply)[0] != 4 + RPC_CONN_CAPS_SIZE:
        raise PlacementError(f"{endpoint} did not answer the ggml RPC handshake (is it ggml-rpc-server?)")
    major, ours = reply[8], _rpc_major_version()
    if major != ours:
        raise PlacementError(f"RPC server {endpoint} speaks protocol {major}.{reply[9]}.{reply[10]}, "
                             f"this build speaks {ours}.x: rebuild one of them")


_registered: set[str] = set()


def add_rpc_servers(endpoints) -> None:
    """Registers llama.cpp RPC servers so that their devices appear (once each);
    each is checked to answer every time, registered or not: a server that
    went away is an error naming it, never a plan that silently leaves it out."""
    for endpoint in endpoints:
        check_rpc_server(endpoint)
        if endpoint in _registered:
            continue
        reg = lib().ggml_backend_rpc_add_server(endpoint.encode())
        if not reg:
            raise PlacementError(f"RPC server {endpoint} reported no devices")
        lib().ggml_backend_register(reg)
        _registered.add(endpoint)


class _OverrideArray:
    """The NULL-terminated llama_model_tensor_buft_override array, with the
    pattern strings it points into kept alive as long as this object."""

    def __init__(self, overrides: list[tuple[str, str]]):
        by_name = {}
        for dev, ptr in _devices_raw():
            buft = lib().ggml_backend_dev_buffer_type(ptr)
            by_name[dev.name] = by_name[dev.buffer_type] = buft
        by_name["CPU"] = lib().ggml_backend_cpu_buffer_type()
        self._patterns = [p.encode() for p, _ in overrides]
        self.array = (llama_model_tensor_buft_override * (len(overrides) + 1))()
        for i, (_, target) in enumerate(overrides):
            if target not in by_name:
                raise PlacementError(f"unknown buffer type {target!r}; valid: {', '.join(sorted(by_name))}")
            self.array[i].pattern = self._patterns[i]
            self.array[i].buft = by_name[target]
        self.array[len(overrides)].pattern = None
        self.array[len(overrides)].buft = None


class _DeviceList:
    """A NULL-terminated ggml_backend_dev_t array naming the devices to offload to."""

    def __init__(self, names: list[str]):
        found = {d.name: ptr for d, ptr in _devices_raw()} if names else {}
        missing = [n for n in names if n not in found]
        if missing:
            raise PlacementError(f"no device named {', '.join(missing)}; present: {', '.join(found)}")
        self.array = (ctypes.c_void_p * (len(names) + 1))(*[found[n] for n in names], None)


def fill_placement(params, devices, overrides: list[tuple[str, str]], tensor_split: list[float] = ()) -> tuple:
    """Sets the devices, layer split and tensor overrides of llama_model_params;
    returns the arrays llama.cpp points into, to be kept alive as long as the model."""
    keep = []
    if tensor_split:
        n = lib().llama_max_devices()
        if len(tensor_split) > n:
            raise PlacementError(f"a split over {len(tensor_split)} devices; this llama.cpp takes at most {n}")
        split = (ctypes.c_float * n)(*tensor_split)
        params.tensor_split = split
        keep.append(split)
    if devices is not None:
        # always explicit: left to itself llama.cpp asks every registered device
        # for its memory, and aborts on an RPC server that has gone away
        dev = _DeviceList(list(devices))
        params.devices = ctypes.cast(dev.array, ctypes.c_void_p)
        keep.append(dev)
    if overrides:
        table = _OverrideArray(overrides)
        params.tensor_buft_overrides = table.array
        keep.append(table)
    return tuple(keep)
