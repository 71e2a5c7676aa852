"""A real integration: this machine's network interfaces, IP addresses and mounted filesystems.

Everything is read locally (``/sys/class/net``, ``/proc/net/if_inet6``, an ``SIOCGIFADDR`` ioctl,
``/proc/self/mounts``, ``statvfs``): no packet leaves the machine. Each run yields one
``device`` entity for the host, then one ``interface``, ``ip_address`` or ``filesystem`` entity
per thing found, in the nested shape orb/Diode integrations use.

Policy config keys (all optional):
  ``include_virtual_filesystems``  also report proc, sysfs, tmpfs, cgroup, … (default false)
  ``interfaces``                   only these interface names (default: all)
Scope: ``site`` (default "headrace-lab"), ``role`` (default "server").
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import platform
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headrace import Backend, Metadata, Policy

SYS_NET = Path("/sys/class/net")
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
VIRTUAL_FS = {
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "ramfs",
    "rpc_pipefs",
    "overlay",
    "squashfs",
    "efivarfs",
    "selinuxfs",
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ipv4(name: str) -> str | None:
    """The interface's IPv4 address with prefix, via ioctl (no traffic is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = struct.pack("256s", name.encode()[:15])
        try:
            address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, packed)[20:24])
            netmask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, packed)[20:24])
        except OSError:
            return None
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    return f"{address}/{prefix}"


def _ipv6() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    text = _read(Path("/proc/net/if_inet6")) or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue
        raw, _, prefix, _, _, name = parts
        address = ipaddress.IPv6Address(int(raw, 16))
        found.setdefault(name, []).append(f"{address}/{int(prefix, 16)}")
    return found


def _interface_type(name: str, path: Path) -> str:
    if name == "lo":
        return "virtual"
    if (path / "wireless").exists():
        return "ieee802.11"
    if not (path / "device").exists():
        return "virtual"
    speed = _read(path / "speed")
    return {"1000": "1000base-t", "10000": "10gbase-x-sfpp", "25000": "25gbase-x-sfp28"}.get(speed or "", "other")


def interfaces(only: set[str] | None) -> Iterator[dict[str, Any]]:
    ipv6 = _ipv6()
    for path in sorted(SYS_NET.iterdir()) if SYS_NET.exists() else []:
        name = path.name
        if only and name not in only:
            continue
        mtu = _read(path / "mtu")
        speed = _read(path / "speed")
        yield {
            "name": name,
            "type": _interface_type(name, path),
            "enabled": _read(path / "operstate") in {"up", "unknown"},
            "mtu": int(mtu) if mtu and mtu.isdigit() else None,
            "mac_address": _read(path / "address"),
            "speed_mbps": int(speed) if speed and speed.lstrip("-").isdigit() and int(speed) > 0 else None,
            "ipv4": _ipv4(name),
            "ipv6": ipv6.get(name, []),
        }


def filesystems(include_virtual: bool) -> Iterator[dict[str, Any]]:
    text = _read(Path("/proc/self/mounts")) or ""
    seen: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        source, mountpoint, fstype, options = parts[:4]
        mountpoint = mountpoint.replace("\\040", " ")
        if mountpoint in seen or (fstype in VIRTUAL_FS and not include_virtual):
            continue
        seen.add(mountpoint)
        entry: dict[str, Any] = {
            "mountpoint": mountpoint,
            "source": source,
            "fstype": fstype,
            "read_only": "ro" in options.split(","),
        }
        try:
            st = os.statvfs(mountpoint)
            entry["size_bytes"] = st.f_blocks * st.f_frsize
            entry["free_bytes"] = st.f_bavail * st.f_frsize
        except OSError:
            pass
        yield entry


class HostInventory(Backend):
    """Reports the host it runs on."""

    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(
            name="host_inventory",
            app_name="headrace-example-host-inventory",
            app_version="1.0.0",
            description="Network interfaces, IP addresses and filesystems of this machine",
        )

    def run(self, policy_name: str, policy: Policy, **kwargs: Any) -> Iterator[dict[str, Any]]:
        scope = policy.scope or {}
        site = {"name": scope.get("site", "headrace-lab")}
        hostname = socket.gethostname()
        device = {"name": hostname, "site": site}
        uname = platform.uname()
        yield {
            "device": {
                **device,
                "role": {"name": scope.get("role", "server")},
                "platform": {"name": f"{uname.system.lower()}-{uname.machine}"},
                "custom_fields": {"kernel": uname.release, "cpus": os.cpu_count()},
            }
        }
        only = set(policy.config.get("interfaces") or []) or None
        for iface in interfaces(only):
            addresses = ([iface["ipv4"]] if iface["ipv4"] else []) + iface["ipv6"]
            yield {
                "interface": {
                    "device": device,
                    "name": iface["name"],
                    "type": iface["type"],
                    "enabled": iface["enabled"],
                    "mtu": iface["mtu"],
                    "mac_address": iface["mac_address"],
                    "speed": iface["speed_mbps"],
                }
            }
            for address in addresses:
                yield {
                    "ip_address": {
                        "address": address,
                        "assigned_object": {"interface": {"name": iface["name"], "device": device}},
                    }
                }
        include_virtual = bool(policy.config.get("include_virtual_filesystems", False))
        for fs in filesystems(include_virtual):
            yield {"filesystem": {"device": device, **fs}}
