"""Test hosts as Linux network namespaces on one LAN, so processes talk over a network.

Each host is a namespace with one veth link, ``eth0``, to a bridge that sits in a
namespace of its own (the switch): nothing is attached to the machine's own network, and
a host reaches another only by its address on the LAN. Names carry the test run's pid,
so parallel runs never collide and a later run can remove what a killed one left.
Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

PREFIX = "yq"
SWITCH = "switch"


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def can_create_namespaces() -> str | None:
    """None when this process can make hosts here, else why not."""
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
    except (OSError, RuntimeError) as error:
        return f"cannot create network namespaces here: {error}"
    ip("netns", "del", probe)
    return None


def kill_processes_in(namespace: str) -> None:
    with contextlib.suppress(RuntimeError):
        for pid in ip("netns", "pids", namespace).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def remove_leftovers() -> None:
    """The namespaces of earlier runs whose process is gone (killed, or Ctrl-C'd twice)."""
    for namespace in namespaces():
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", namespace)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            kill_processes_in(namespace)
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", namespace)
        except PermissionError:
            pass  # alive, someone else's


@dataclass(frozen=True)
class Host:
    role: str
    namespace: str
    address: str

    def argv(self, *argv: str) -> list[str]:
        """A command run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def link(self, up: bool) -> None:
        """Plug or unplug this host's only network link."""
        ip("-n", self.namespace, "link", "set", "eth0", "up" if up else "down")

    def drop_packets(self, probability: float) -> None:
        """Drop this share of the packets this host sends and receives (0 to stop)."""
        for chain in ("INPUT", "OUTPUT"):
            subprocess.run([*self.argv("iptables", "-F", chain)], capture_output=True, check=True)
            if probability > 0:
                rule = ["-m", "statistic", "--mode", "random", "--probability", str(probability)]
                subprocess.run(
                    [*self.argv("iptables", "-A", chain, *rule, "-j", "DROP")],
                    capture_output=True,
                    check=True,
                )

    def kill_everything(self) -> None:
        """Every process on the host, at once: the host vanishes."""
        kill_processes_in(self.namespace)


class Cluster:
    """Hosts by role, on a /24 of their own (10.x.y.0, picked at random per run)."""

    def __init__(self, roles: list[str]) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        subnet = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.switch = f"{tag}-{SWITCH}"
        self.hosts: dict[str, Host] = {
            role: Host(role, f"{tag}-{role}", f"{subnet}.{number}")
            for number, role in enumerate(roles, start=10)
        }
        self.created: list[str] = []

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def create(self) -> None:
        remove_leftovers()
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for number, host in enumerate(self.hosts.values()):
            self._add_namespace(host.namespace)
            port = f"port{number}"
            ip(
                "link", "add", "eth0", "netns", host.namespace, "type", "veth",
                "peer", "name", port, "netns", self.switch,
            )  # fmt: skip
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.created.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")

    def destroy(self) -> None:
        """Every process left in the hosts, then the hosts (their links go with them)."""
        for namespace in reversed(self.created):
            kill_processes_in(namespace)
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", namespace)
        self.created.clear()


@contextlib.contextmanager
def cluster(roles: list[str]) -> Iterator[Cluster]:
    made = Cluster(roles)
    try:
        made.create()
        yield made
    finally:
        made.destroy()
