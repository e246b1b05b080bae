"""The test cloud: a STAND-IN for Hetzner Cloud that boots real lab VMs (qemu, TCG).

Used by kiln_tf_provider.py for the hcloud provider when KILN_TEST_CLOUD=DIR is set; without
it the provider stays the pure offline judge. The schemas served are the same real ones, so
Terraform's checks stay real; only ApplyResourceChange does more:

  hcloud_network            records its ip_range (DIR/networks/<id>.json): the prefix length
                            of the servers' private addresses
  hcloud_server  create     boots a detached qemu (it outlives the provider; pidfile, QMP
                            socket, console log and disk in DIR/servers/<id>/) from the lab's
                            base image named by `image` (~/.cache/kiln/images/<image>, built by
                            scripts/build-test-image), with the server's `user_data` as its
                            NoCloud user-data (a vfat `CIDATA` disk, with meta-data and a
                            network-config). A server with public IPv4 gets a loopback address
                            of its own, 127.0.0.N, as `ipv4_address`, with its ports 22, 80 and
                            443 forwarded there from qemu's user network (NAT, the guest sees
                            the machine as 10.0.2.2): the address the provider reports is the
                            one the test reaches. A server without public IPv4 gets
                            `ipv4_address = ""` (as hcloud reports it) and no uplink at all.
                            Each `network` block is a NIC on that network's segment (a qemu
                            multicast socket on loopback, as `kiln boot --all` does) with the
                            block's `ip`, configured statically by the network-config.
                            The qemu runs under a small supervisor (`test_cloud.py supervise
                            VMDIR`, detached too): if qemu dies of a crash signal (SIGABRT,
                            SIGSEGV, SIGBUS, SIGILL, SIGFPE: TCG has aborted on assertions of
                            its own under load) before cloud-init's final message reached the
                            console, it is started again from a fresh root overlay, with the
                            volumes attached so far, at most twice; each crash is a line in
                            DIR/crashes.log. A crash after cloud-init finished is left dead
                            (a real server would need its operator then).
  hcloud_server  destroy    stops the supervisor, powers the VM off over QMP (killed after
                            60 s), removes its directory and frees its address
  hcloud_volume             a sparse qcow2 of `size` GB in DIR/volumes/<id>.qcow2; destroy
                            removes it
  hcloud_volume_attachment  hot-plugs the volume into the running server (QMP blockdev-add +
                            device_add virtio-blk-pci, serial `kiln-data`, a name kiln's
                            provisioner accepts for a data volume); destroy unplugs it

What it proves: that what kiln hands to OpenTofu boots. The user_data of the root, exactly as
Terraform passes it to the provider, is what cloud-init runs; the addresses Terraform records
are the ones the machines answer on; a volume attached after creation reaches the running
server; destroy leaves no machine behind. What it does not prove: anything of Hetzner's API
(ids, quotas, validation, placement), hcloud's firewalls (hcloud_firewall is state only: the
host's own ufw is what filters), the network's router (hcloud_network_route is state only,
so a private host's egress through its gateway is not reproduced), IPv6, or a reboot
(qemu -no-reboot is not used, but a restarted provider does not re-attach volumes).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENV = "KILN_TEST_CLOUD"
# The loopback addresses handed out as public IPv4: 127.0.0.10 .. 127.0.0.249.
ADDR_FIRST, ADDR_LAST = 10, 249
MCAST_GROUP = "230.0.0.1"
DATA_SERIAL = "kiln-data"  # crate::boot::DATA_DISK_SERIAL
# How often the supervisor starts a crashed qemu again (crate::boot::crash::RESTARTS).
RESTARTS = 2
CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)

_lock = threading.Lock()


class CloudError(Exception):
    pass


def cloud_dir() -> Path | None:
    d = os.environ.get(ENV)
    return Path(d) if d else None


def image_root() -> Path:
    return Path(os.environ.get("KILN_TEST_CLOUD_IMAGES", Path.home() / ".cache/kiln/images"))


class _DirLock:
    """Serialises allocation across threads and provider processes."""

    def __init__(self, d: Path):
        self.path = d / "lock"

    def __enter__(self):
        _lock.acquire()
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
        _lock.release()


def _write_json(path: Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _servers(d: Path) -> list[dict]:
    out = []
    for f in sorted((d / "servers").glob("*/server.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    return out


def _mac(seed: str, i: int) -> str:
    h = hashlib.sha256(f"{seed}/{i}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


def _mcast_port(network_id: str) -> int:
    return 20000 + int(hashlib.sha256(str(network_id).encode()).hexdigest()[:8], 16) % 20000


def _prefix(d: Path, network_id: str) -> int:
    f = d / "networks" / f"{network_id}.json"
    try:
        return ipaddress.ip_network(json.loads(f.read_text())["ip_range"], strict=False).prefixlen
    except (OSError, ValueError, KeyError):
        return 24


def _qmp(sock: Path, commands: list[dict], timeout: float = 10.0) -> list[dict]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    f = s.makefile("rwb")
    f.readline()  # greeting
    out = []
    for cmd in [{"execute": "qmp_capabilities"}] + commands:
        f.write(json.dumps(cmd).encode() + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise CloudError(f"QMP {cmd['execute']}: connection closed")
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                raise CloudError(f"QMP {cmd['execute']}: {r['error'].get('desc', r['error'])}")
            out.append(r)
            break
    s.close()
    return out[1:]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _seed_disk(path: Path, files: dict[str, bytes]) -> None:
    """A vfat disk labelled CIDATA holding the NoCloud files (mkfs.vfat + mcopy)."""
    subprocess.run(["mkfs.vfat", "-n", "CIDATA", "-C", str(path), "4096"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as t:
        for name, data in files.items():
            p = Path(t) / name
            p.write_bytes(data)
            subprocess.run(["mcopy", "-i", str(path), str(p), f"::{name}"], check=True, capture_output=True)


def _public_ipv4(value: dict) -> bool:
    pn = value.get("public_net")
    if not pn:
        return True  # hcloud's default: public IPv4 and IPv6
    return bool(pn[0].get("ipv4_enabled", True))


def create_server(d: Path, new: dict) -> dict:
    sid = str(new["id"])
    name = new.get("name") or sid
    image = image_root() / str(new.get("image") or "")
    for f in ("base.raw", "vmlinuz", "initrd.img"):
        if not (image / f).is_file():
            raise CloudError(
                f"test cloud: no lab image for `image = {new.get('image')!r}` ({image / f} missing): "
                f"run scripts/build-test-image {new.get('image')}"
            )
    vm = d / "servers" / sid
    with _DirLock(d):
        if vm.exists():
            raise CloudError(f"test cloud: a server with id {sid} exists already ({vm})")
        used = {s.get("ipv4") for s in _servers(d)}
        ipv4 = ""
        if _public_ipv4(new):
            free = [f"127.0.0.{n}" for n in range(ADDR_FIRST, ADDR_LAST + 1) if f"127.0.0.{n}" not in used]
            if not free:
                raise CloudError("test cloud: no loopback address left")
            ipv4 = free[0]
        vm.mkdir(parents=True, mode=0o700)
        _write_json(vm / "server.json", {"id": sid, "name": name, "ipv4": ipv4, "pid": None})
    try:
        return _boot(d, vm, sid, name, ipv4, image, new)
    except Exception:
        _remove(vm)
        raise


def _boot(d: Path, vm: Path, sid: str, name: str, ipv4: str, image: Path, new: dict) -> dict:
    nics, ethernets, args = [], {}, []
    if ipv4:
        mac = _mac(sid, 0)
        fwd = "".join(f",hostfwd=tcp:{ipv4}:{p}-:{p}" for p in (22, 80, 443))
        args += ["-nic", f"user,model=virtio-net-pci,mac={mac},net=10.0.2.0/24{fwd}"]
        ethernets["wan0"] = {"match": {"macaddress": mac}, "set-name": "wan0", "dhcp4": True}
        nics.append({"name": "wan0", "mac": mac})
    networks = []
    for i, n in enumerate(new.get("network") or [], start=1):
        mac = _mac(sid, i)
        port = _mcast_port(n["network_id"])
        args += ["-netdev", f"socket,id=lan{i},mcast={MCAST_GROUP}:{port},localaddr=127.0.0.1",
                 "-device", f"virtio-net-pci,netdev=lan{i},mac={mac}"]
        e = {"match": {"macaddress": mac}, "set-name": f"lan{i}", "dhcp4": False}
        if n.get("ip"):
            e["addresses"] = [f"{n['ip']}/{_prefix(d, n['network_id'])}"]
        if not ipv4:
            e["nameservers"] = {"addresses": ["10.0.2.3"]}
        ethernets[f"lan{i}"] = e
        nics.append({"name": f"lan{i}", "mac": mac, "network_id": n["network_id"], "ip": n.get("ip")})
        networks.append(mac)
    netcfg = json.dumps({"version": 2, "ethernets": ethernets}).encode()
    meta = f"instance-id: {sid}\nlocal-hostname: {name}\n".encode()
    user_data = (new.get("user_data") or "").encode()
    seed = vm / "seed.img"
    _seed_disk(seed, {"user-data": user_data, "meta-data": meta, "network-config": netcfg})
    # user_data is the provider's to keep (as hcloud's metadata service does); nothing else
    # of it stays in DIR.
    overlay = vm / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "base.raw"), str(overlay)],
                   check=True, capture_output=True)
    memory = os.environ.get("KILN_TEST_CLOUD_MEMORY", "1024")
    cmdline = "root=LABEL=kiln-root ro console=ttyS0 no_timer_check network-config=" + base64.b64encode(netcfg).decode()
    qemu = ["qemu-system-x86_64", "-name", f"kiln-test-cloud-{name}", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", "2", "-m", memory, "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", cmdline,
            "-drive", f"file={overlay},format=qcow2,if=virtio",
            "-drive", f"file={seed},format=raw,if=virtio,readonly=on",
            "-smbios", "type=1,serial=ds=nocloud",
            "-device", "virtio-rng-pci", *args,
            "-serial", f"file:{vm / 'console.log'}",
            "-qmp", f"unix:{vm / 'qmp.sock'},server=on,wait=off",
            "-pidfile", str(vm / "qemu.pid")]
    _write_json(vm / "qemu.json", {"argv": qemu, "name": name, "base": str(image / "base.raw")})
    with open(vm / "supervisor.log", "ab") as log:
        sup = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "supervise", str(vm)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (vm / "supervisor.pid").write_text(f"{sup.pid}\n")
    _wait_started(vm, name, sup)
    pid = int((vm / "qemu.pid").read_text().strip())
    _write_json(vm / "server.json", {"id": sid, "name": name, "ipv4": ipv4, "pid": pid, "nics": nics})
    out = dict(new)
    out["ipv4_address"] = ipv4
    out["ipv6_address"] = ""
    out["ipv6_network"] = ""
    out["status"] = "running"
    if isinstance(out.get("network"), list):
        out["network"] = [dict(n, mac_address=networks[i]) for i, n in enumerate(out["network"])]
    return out


def _wait_started(vm: Path, name: str, sup: subprocess.Popen) -> None:
    """Returns once the server's qemu answers on QMP (what `-daemonize` waited for); raises
    with qemu's last words if the supervisor gave up first."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if sup.poll() is not None:
            err = (vm / "qemu.err").read_text(errors="replace") if (vm / "qemu.err").exists() else ""
            raise CloudError(f"test cloud: qemu for server `{name}` did not start: {err.strip()[-800:]}")
        if (vm / "qemu.pid").exists() and (vm / "qmp.sock").exists():
            try:
                _qmp(vm / "qmp.sock", [{"execute": "query-status"}], timeout=5)
                return
            except (OSError, CloudError):
                pass
        time.sleep(0.2)
    raise CloudError(f"test cloud: qemu for server `{name}` did not answer on QMP within 120 s")


def _attached(vm: Path) -> list[str]:
    try:
        return json.loads((vm / "attached.json").read_text())
    except (OSError, ValueError):
        return []


def _volume_names(volume_id) -> tuple[str, str]:
    """A volume's qemu block node name and the id of the device that shows it to the guest: the
    command line of a (re)started qemu, the hot-plug and the unplug all use these."""
    return f"vol{volume_id}", f"devvol{volume_id}"


def _volume_args(d: Path, volume_id: str) -> list[str]:
    node, dev = _volume_names(volume_id)
    vol = d / "volumes" / f"{volume_id}.qcow2"
    return ["-blockdev", f"driver=qcow2,node-name={node},file.driver=file,file.filename={vol}",
            "-device", f"virtio-blk-pci,drive={node},id={dev},serial={DATA_SERIAL}"]


def _cloud_init_finished(vm: Path) -> bool:
    log = (vm / "console.log").read_text(errors="replace") if (vm / "console.log").exists() else ""
    return any("Cloud-init v." in line and " finished at " in line for line in log.splitlines())


def supervise(vm: Path) -> int:
    """Runs the server's qemu and starts it again from a fresh overlay when it crashed before
    cloud-init finished (at most RESTARTS times). Returns qemu's last exit status."""
    spec = json.loads((vm / "qemu.json").read_text())
    d = vm.parent.parent
    restarts = 0
    while True:
        argv = list(spec["argv"])
        with _DirLock(d):
            for volume_id in _attached(vm):
                argv += _volume_args(d, volume_id)
        started = time.time()
        with open(vm / "qemu.err", "wb") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        code = p.wait()
        if code >= 0 or -code not in CRASH_SIGNALS or restarts >= RESTARTS or _cloud_init_finished(vm):
            return code
        restarts += 1
        words = [ln.strip() for ln in (vm / "qemu.err").read_text(errors="replace").splitlines() if ln.strip()]
        said = f": {words[-1]}" if words else ""
        line = (f"server `{spec['name']}`: qemu crashed ({signal.Signals(-code).name}) "
                f"{time.time() - started:.1f} s after it started{said}; started again from a fresh disk\n")
        with _DirLock(d):
            with open(d / "crashes.log", "a") as f:
                f.write(line)
        overlay = vm / "disk.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", spec["base"], str(overlay)],
                       check=True, capture_output=True)


def _remove(vm: Path) -> None:
    shutil.rmtree(vm, ignore_errors=True)


def destroy_server(d: Path, prior: dict) -> None:
    vm = d / "servers" / str(prior.get("id"))
    if not vm.exists():
        return
    try:  # no restart of a machine being destroyed
        sup = int((vm / "supervisor.pid").read_text().strip())
        if _alive(sup):
            os.kill(sup, signal.SIGKILL)
    except (OSError, ValueError):
        pass
    try:
        pid = int((vm / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid and _alive(pid):
        try:
            _qmp(vm / "qmp.sock", [{"execute": "system_powerdown"}])
        except (OSError, CloudError):
            pass
        deadline = time.time() + float(os.environ.get("KILN_TEST_CLOUD_POWEROFF_SECONDS", "60"))
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.5)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
    with _DirLock(d):
        _remove(vm)


def create_volume(d: Path, new: dict) -> None:
    p = d / "volumes" / f"{new['id']}.qcow2"
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(p), f"{int(new.get('size') or 10)}G"],
                       check=True, capture_output=True)


def destroy_volume(d: Path, prior: dict) -> None:
    (d / "volumes" / f"{prior.get('id')}.qcow2").unlink(missing_ok=True)


def attach(d: Path, new: dict) -> None:
    vm = d / "servers" / str(new["server_id"])
    vol = d / "volumes" / f"{new['volume_id']}.qcow2"
    if not (vm / "qmp.sock").exists():
        raise CloudError(f"test cloud: server {new['server_id']} is not running")
    if not vol.exists():
        raise CloudError(f"test cloud: volume {new['volume_id']} does not exist")
    node, dev = _volume_names(new["volume_id"])
    with _DirLock(d):  # a qemu the supervisor starts again gets it on its command line
        _write_json(vm / "attached.json", sorted(set(_attached(vm)) | {str(new["volume_id"])}))
    deadline = time.time() + 120
    while True:
        try:
            _qmp(vm / "qmp.sock", [
                {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": node,
                                                           "file": {"driver": "file", "filename": str(vol)}}},
                {"execute": "device_add", "arguments": {"driver": "virtio-blk-pci", "drive": node,
                                                         "id": dev, "serial": DATA_SERIAL}},
            ])
            return
        except CloudError as e:
            if "Duplicate" in str(e) or "already" in str(e):
                return  # a qemu started again after a crash has it from its command line
            if time.time() > deadline or "connection closed" not in str(e):
                raise
        except OSError:  # between a crash and the restart: no one listens yet
            if time.time() > deadline:
                raise
        time.sleep(0.5)


def detach(d: Path, prior: dict) -> None:
    vm = d / "servers" / str(prior.get("server_id"))
    if not (vm / "qmp.sock").exists():
        return
    node, dev = _volume_names(prior.get("volume_id"))
    with _DirLock(d):
        _write_json(vm / "attached.json", [v for v in _attached(vm) if v != str(prior.get("volume_id"))])
    try:
        _qmp(vm / "qmp.sock", [{"execute": "device_del", "arguments": {"id": dev}}])
        time.sleep(2)
        _qmp(vm / "qmp.sock", [{"execute": "blockdev-del", "arguments": {"node-name": node}}])
    except (OSError, CloudError):
        pass  # the guest may not have released it yet; the server's destroy ends it anyway


def apply(type_name: str, prior, new):
    """Called by ApplyResourceChange for the hcloud provider. Returns the new state (possibly
    amended with what the machine really got); raises CloudError."""
    d = cloud_dir()
    if d is None:
        return new
    d.mkdir(parents=True, exist_ok=True)
    try:
        if type_name == "hcloud_network":
            (d / "networks").mkdir(exist_ok=True)
            if new is not None:
                _write_json(d / "networks" / f"{new['id']}.json", {"ip_range": new.get("ip_range")})
            elif prior is not None:
                (d / "networks" / f"{prior.get('id')}.json").unlink(missing_ok=True)
        elif type_name == "hcloud_server":
            if prior is not None and (new is None or str(prior.get("id")) != str(new.get("id"))):
                destroy_server(d, prior)
            if new is not None and (prior is None or str(prior.get("id")) != str(new.get("id"))):
                return create_server(d, new)
        elif type_name == "hcloud_volume":
            if new is None and prior is not None:
                destroy_volume(d, prior)
            elif new is not None:
                create_volume(d, new)
        elif type_name == "hcloud_volume_attachment":
            if prior is not None and new is None:
                detach(d, prior)
            elif new is not None and prior is None:
                attach(d, new)
    except subprocess.CalledProcessError as e:
        raise CloudError(f"test cloud: {' '.join(map(str, e.cmd))[:200]} failed: {(e.stderr or b'').decode()[-400:]}")
    except OSError as e:
        raise CloudError(f"test cloud: {e}")
    return new


def down(d: Path) -> int:
    """Powers off and removes every server of DIR (a test's cleanup). Prints what it stopped."""
    n = 0
    for s in _servers(d):
        destroy_server(d, {"id": s["id"]})
        print(f"stopped {s['name']} ({s['id']})")
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "down":
        down(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "supervise":
        supervise(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: test_cloud.py down DIR | supervise VMDIR")
