"""Deploy step timings without VMs: `kiln deploy` of an unchanged system to stand-in servers.

Each host is Debian's sshd (.test-tools/openssh, from scripts/install-test-deps) on loopback,
logged into as root, in its own mount namespace whose /etc, /var and /opt are overlays writing
into a temporary directory (as tests/deploy.rs does). Every host's closure marker is set to the
build's closure first, standing in for an earlier deploy, so the deploy has nothing to change:
what is timed is kiln's own path for a no-op deploy (build or cache, store, ssh connections,
the per-host probe, the plan, the health gate, closing), the issue-14 goal being under 2 s
for five hosts. Needs root (unshare, overlay mounts); otherwise the line says why it was skipped.

    kiln=kiln deploy=loopback hosts=5 unchanged_s=… prepare_s=… read_s=… act_s=…

unchanged_s best wall time of the whole `kiln deploy --yes --json`
read_s      of that run, from the first host contacted until every host was reached and read
            (pinned key, one ssh connection each, the probe)
act_s       the waves (skips, health gates), from their progress events
prepare_s   the rest: process start, compile, store, the plan, closing connections, the
            generation check
"""
import json
import os
import shutil
import socket
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSHD = os.path.join(REPO, ".test-tools/openssh/usr/sbin/sshd")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def keygen(path: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path], check=True)
    with open(path + ".pub") as f:
        return " ".join(f.read().split()[:2])


def start_server(root: str, port: int, client_pub: str) -> tuple:
    for x in ("etc", "var", "opt"):
        os.makedirs(os.path.join(root, x, "u"))
        os.makedirs(os.path.join(root, x, "w"))
    host_pub = keygen(os.path.join(root, "hostkey"))
    config = os.path.join(root, "sshd_config")
    with open(config, "w") as f:
        f.write(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/hostkey\nAuthorizedKeysFile {client_pub}\n"
                f"PidFile {root}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    with open("/etc/passwd") as f:
        users = f.read()
    if not any(line.startswith("sshd:") for line in users.splitlines()):
        users += "sshd:x:65534:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n"
    with open(os.path.join(root, "passwd"), "w") as f:
        f.write(users)
    script = ('set -e; mount -t tmpfs tmpfs /run; mkdir -m 0755 /run/sshd; '
              'for x in etc var opt; do mount -t overlay overlay -o "lowerdir=/$x,upperdir=$2/$x/u,workdir=$2/$x/w" "/$x"; done; '
              'mount --bind "$2/passwd" /etc/passwd; exec "$0" -D -e -f "$1"')
    log = open(os.path.join(root, "sshd.log"), "w")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, SSHD, config, root], stderr=log)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, host_pub
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"sshd did not listen: {open(os.path.join(root, 'sshd.log')).read()}")


def put(proc, path: str, content: str) -> None:
    """Writes a file inside the server's mount namespace."""
    subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "sh", "-c", 'mkdir -p "${1%/*}" && cat >"$1"', "sh", path],
                   input=content.encode(), check=True)


def deploy_line(kiln: str, tmp: str, runs: int, hosts: int = 5) -> str:
    head = f"deploy=loopback hosts={hosts}"
    if os.geteuid() != 0:
        return f"{head} skipped=needs-root"
    if not os.path.exists(SSHD) or not shutil.which("unshare") or not shutil.which("nsenter"):
        return f"{head} skipped=no-sshd-or-unshare (scripts/install-test-deps)"
    d = os.path.join(tmp, "deploy-bench")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "tmp"))
    procs = []
    try:
        keygen(os.path.join(d, "client"))
        order = '["canary", "production"]' if hosts > 1 else '["canary"]'
        system = f"[system]\nname = \"bench\"\n\n[providers.own]\nkind = \"existing\"\n\n[deploy]\norder = {order}\n\n"
        ssh_config = ""
        for i in range(hosts):
            name, port = f"h{i + 1}", free_port()
            proc, key = start_server(os.path.join(d, "servers", name), port, os.path.join(d, "client.pub"))
            procs.append((name, proc))
            group = "canary" if i == 0 else "production"
            system += (f"[hosts.{name}]\nprovider = \"own\"\nimage = \"debian-12\"\npublic = true\n"
                       f"address = \"192.0.2.{i + 1}\"\ngroup = \"{group}\"\nssh_host_key = \"{key}\"\n\n")
            ssh_config += (f"Host 192.0.2.{i + 1}\n  HostName 127.0.0.1\n  Port {port}\n"
                           f"  IdentityFile {d}/client\n  IdentitiesOnly yes\n")
        sysdir = os.path.join(d, "sys")
        os.makedirs(sysdir)
        with open(os.path.join(sysdir, "system.toml"), "w") as f:
            f.write(system)
        with open(os.path.join(d, "ssh_config"), "w") as f:
            f.write(ssh_config)
        store, link = os.path.join(d, "store"), os.path.join(d, "result")
        subprocess.run([kiln, "build", sysdir, "--store", store, "--out-link", link], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(link, "manifest.json")) as f:
            closures = {h: e["closure"] for h, e in json.load(f)["hosts"].items()}
        for name, proc in procs:
            put(proc, "/var/lib/kiln/closure", closures[name] + "\n")
        cmd = [kiln, "deploy", sysdir, "--store", store, "--state", os.path.join(d, "state"), "--ssh-config",
               os.path.join(d, "ssh_config"), "--ssh-user", "root", "--yes", "--json"]
        env = dict(os.environ, TMPDIR=os.path.join(d, "tmp"))
        best = None
        for _ in range(max(runs, 1) + 1):  # the first run records the generation and warms the cache
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if out.returncode != 0:
                return f"{head} failed=exit-{out.returncode} error={out.stderr.strip().splitlines()[-6:]!r}"
            events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            plan_at = next(i for i, e in enumerate(events) if "plan" in e)
            # Each phase's events count seconds from its own start: reading, then the waves.
            read = max(e["elapsed"] for e in events[:plan_at] if e.get("step") == "connect")
            act = max([e["elapsed"] for e in events[plan_at:] if "elapsed" in e] or [0.0])
            summary = next(e["summary"] for e in events if "summary" in e)
            if summary["skipped"] != sorted(closures):
                return f"{head} failed=not-all-skipped"
            figures = (wall, wall - read - act, read, act)
            if best is None or wall < best[0]:
                best = figures
        wall, prepare, read, act = best
        return f"{head} unchanged_s={wall:.3f} prepare_s={max(prepare, 0):.3f} read_s={read:.3f} act_s={max(act, 0):.3f}"
    finally:
        for _, proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    import sys
    k = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target/debug/kiln")
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        print("kiln=kiln " + deploy_line(os.path.abspath(k), t, 3), flush=True)
