"""What a server the tests start listens on: every address must be loopback (127.0.0.0/8 or ::1)."""

from __future__ import annotations

import ipaddress

import psutil


def listening(processes: list[psutil.Process]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of `processes` and their children."""
    seen: dict[int, psutil.Process] = {}
    for proc in processes:
        for p in [proc, *_children(proc)]:
            seen.setdefault(p.pid, p)
    out = []
    for proc in seen.values():
        try:
            connections = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out += [(c.laddr.ip, c.laddr.port, name) for c in connections if c.status == psutil.CONN_LISTEN]
    return out


def beyond_loopback(sockets: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [s for s in sockets if not is_loopback(s[0])]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped                 # ::ffff:127.0.0.1, an IPv6 socket bound to loopback
    return address.is_loopback


def processes_naming(text: str) -> list[psutil.Process]:
    """Processes whose command line contains `text` (a cluster's temporary folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if text in " ".join(proc.info.get("cmdline") or []):
            found.append(proc)
    return found


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
