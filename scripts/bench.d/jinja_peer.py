"""The plain-Jinja2 peer of scripts/bench: renders the real-module fleet's per-host files the
way a template-stamping tool would, one set of Jinja2 templates per host shape.

    jinja_peer.py TEMPLATES HOSTS OUT

TEMPLATES holds `<shape>/<path>` templates (`__HOST__` in a path stands for the host's name) (made by scripts/bench from kiln's own output for
one host of each shape, so the peer writes the same files); for each of the HOSTS hosts of
fleet.real(), the peer renders every payload file of its shape into OUT/<host>/, then writes
SHA256SUMS, the bundle (tar.gz, sorted entries, fixed mtime, gzip level 1, as kiln's) and the
stage-0 user-data naming the bundle's hash. It does less than kiln: no checks, no firewall,
start order or connection derivation (those are baked into the templates), no OpenTofu root,
no SYSTEM.md, no manifest.
"""
import hashlib
import io
import os
import sys
import tarfile
import gzip

import jinja2

import fleet


def shape_of(i: int) -> str:
    return f"{int(fleet.has_pgbouncer(i))}-{i % 4}"


def bundle(files: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        dirs = sorted({"kiln"} | {"kiln/" + "/".join(p.split("/")[:k]) for p, _, _ in files for k in range(1, p.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path, data, mode in files:
            info = tarfile.TarInfo("kiln/" + path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def main() -> int:
    templates_dir, hosts, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), autoescape=False,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    shapes = {}
    for shape in sorted(os.listdir(templates_dir)):
        names = []
        for root, _, files in os.walk(os.path.join(templates_dir, shape)):
            for f in files:
                names.append(os.path.relpath(os.path.join(root, f), templates_dir))
        shapes[shape] = sorted(names)
    for i in range(hosts):
        shape = shape_of(i)
        host = fleet.host_name(i)
        values = {"host": host, "address": fleet.address(i)}
        payload = []
        user_data = None
        for name in shapes[shape]:
            path = name[len(shape) + 1:].replace("__HOST__", host)
            if path == "user-data":
                user_data = env.get_template(name)
                continue
            text = env.get_template(name).render(values).encode()
            mode = 0o755 if path.endswith(".sh") else 0o644
            payload.append((path, text, mode))
        sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d, _ in payload).encode()
        payload.append(("SHA256SUMS", sums, 0o644))
        payload.sort()
        tgz = bundle(payload)
        files = payload + [("bundle.tar.gz", tgz, 0o644)]
        files.append(("user-data", user_data.render(values, bundle_sha=hashlib.sha256(tgz).hexdigest()).encode(), 0o644))
        for path, data, mode in files:
            p = os.path.join(out, host, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
            os.chmod(p, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
