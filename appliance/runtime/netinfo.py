"""The addresses people on the LAN can use to reach this box."""

from __future__ import annotations

import ipaddress
import socket

import psutil


def lan_addresses() -> list[str]:
    """IPv4 addresses of up interfaces, loopback and link-local excluded, private networks first."""
    found = []
    stats = psutil.net_if_stats()
    for name, addrs in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for addr in addrs:
            if addr.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(addr.address)
            if ip.is_loopback or ip.is_link_local:
                continue
            found.append(ip)
    return [str(ip) for ip in sorted(set(found), key=lambda ip: (not ip.is_private, ip))]


def urls(host: str, port: int) -> list[str]:
    """Every URL of the portal: the LAN addresses when bound to all interfaces, else the bound address."""
    if host in ("0.0.0.0", "::", ""):
        hosts = lan_addresses() or ["127.0.0.1"]
        name = socket.gethostname()
        local = name if name.endswith(".local") else f"{name}.local"
        out = [f"http://{h}:{port}/" for h in hosts]
        out.append(f"http://{local}:{port}/")  # mDNS name: works from Macs, iPhones and most Linux desktops
        return out
    shown = f"[{host}]" if ":" in host else host
    return [f"http://{shown}:{port}/"]
