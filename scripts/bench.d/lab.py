"""scripts/bench --lab: the runtime lab's time per host (docs/lab.md), out of the default run.

Runs the named tests of tests/lab.rs one after the other (each boots a seed host under qemu:
TCG on these machines, minutes each) and prints one line per host:

    lab host=box test=lab_traefik_edge_box_… ok=1 test_s=… boot_s=… kiln_boot_s=…
        kernel_to_docker_s=… images_load_s=… provision_s=… before_provision_s=…

test_s         the whole test: building the lab copy, the stand-in images, the boot, the checks
boot_s         `kiln boot`'s own figure: from qemu's start until cloud-init finished
kiln_boot_s    the `kiln boot` command, as the test timed it
kernel_to_docker_s  the guest's monotonic clock when Docker started (with the stand-in images
               loaded: kiln-lab-load-images runs in Docker's start), from the test's journal lines
images_load_s  Docker's start to started: almost all of it `docker load` of the stand-ins
before_provision_s  the guest's clock at the provisioner's first line
provision_s    the provisioner's first line to its last (packages, firewall, compose up --wait)
step_NAME_s    each provisioner step (`kiln: step: NAME`) until the next (firewall holds Docker's
               start, so the stand-ins' load; services is every `compose up --wait`)

A figure the test's output does not hold is left out; ok=0 says the test failed (its output
then follows on stderr).
"""
import os
import re
import subprocess
import sys
import time

# Without the reboot since 2026-12-07 (lab_traefik_edge_box_comes_back_from_a_reboot_with_its_data):
# its test_s before then included one.
DEFAULT = "lab_traefik_edge_box_comes_up_with_stand_in_images"
BOOTED = re.compile(r"^lab: (\S+): cloud-init finished after ([0-9.]+) s \(kiln boot took ([0-9.]+) s\)")
SECTION = re.compile(r"^=== (\S+): (.*)")
# journalctl -o short-monotonic: "[  123.456789] host unit[pid]: message"
STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s+\S+\s+([^:]+):\s?(.*)")


def phases(journal: list[str]) -> dict:
    """The phase figures from one host's journal lines (see the module docs)."""
    out = {}
    kiln = [float(m.group(1)) for m in map(STAMP.match, journal) if m and m.group(3).startswith("kiln: ")]
    load = [float(m.group(1)) for m in map(STAMP.match, journal) if m and m.group(3).startswith("kiln lab: loading")]
    started = [float(m.group(1)) for m in map(STAMP.match, journal)
               if m and re.match(r"Started docker\.service", m.group(3))]
    if started:
        out["kernel_to_docker_s"] = started[0]
        if load:
            out["images_load_s"] = started[0] - load[0]
    if kiln:
        out["before_provision_s"] = kiln[0]
        out["provision_s"] = kiln[-1] - kiln[0]
    # each provisioner step until the next one (the last until the provisioner's last line)
    steps = [(float(m.group(1)), m.group(3)[len("kiln: step: "):].replace(" ", "_"))
             for m in map(STAMP.match, journal) if m and m.group(3).startswith("kiln: step: ")]
    for (t, name), nxt in zip(steps, [t for t, _ in steps[1:]] + [kiln[-1] if kiln else None]):
        if nxt is not None:
            out[f"step_{name}_s"] = nxt - t
    return out


def run_test(repo: str, name: str) -> list[str]:
    t0 = time.perf_counter()
    p = subprocess.run(["cargo", "test", "--quiet", "--test", "lab", "--", "--include-ignored", "--exact", name,
                        "--nocapture"], cwd=repo, capture_output=True, text=True)
    test_s = time.perf_counter() - t0
    text = p.stdout + p.stderr
    hosts: dict = {}
    section = None
    for line in text.splitlines():
        if m := BOOTED.match(line):
            hosts.setdefault(m.group(1), {}).update(boot_s=float(m.group(2)), kiln_boot_s=float(m.group(3)))
        elif m := SECTION.match(line):
            section = (m.group(1), []) if m.group(2).startswith("journal") else None
            if section:
                hosts.setdefault(section[0], {})["journal"] = section[1]
        elif section:
            section[1].append(line)
    if p.returncode != 0:
        print(text, file=sys.stderr)
    lines = []
    for host, figures in sorted(hosts.items()):
        figures.update(phases(figures.pop("journal", [])))
        rest = " ".join(f"{k}={v:.0f}" for k, v in figures.items())
        lines.append(f"lab host={host} test={name} ok={int(p.returncode == 0)} test_s={test_s:.0f} {rest}".rstrip())
    return lines or [f"lab test={name} ok=0 test_s={test_s:.0f} (no host booted)"]


def main(repo: str, tests: str) -> int:
    ok = True
    for name in [t for t in (tests or DEFAULT).split(",") if t]:
        for line in run_test(repo, name):
            print(line, flush=True)
            ok = ok and " ok=1 " in line
    return 0 if ok else 1
