"""The benchmark fleets, as system TOML text.

`real(n)`: n hosts stamped out from one template with kiln's built-in modules, the shape the
seeds' Ansible users render today. Per host: a Caddy edge, an application, PostgreSQL, Valkey,
authentik (server, worker and its own PostgreSQL), node-exporter and cAdvisor; PgBouncer in
front of PostgreSQL on every third host; 5 to 8 routes through the host's own edge.

`tiny(n)`: n hosts of eight services from the small test modules (tests/fixtures/modules).
"""

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@bench"

# The routes every host has, and the extra ones (feature r6, r7, r8) a host adds in turn.
BASE_ROUTES = ["app", "www", "api", "auth", "admin"]
EXTRA_ROUTES = ["status", "docs", "files"]


def host_name(i: int) -> str:
    return f"n{i:05d}"


def address(i: int) -> str:
    return f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 2}"


def routes_of(i: int) -> list[str]:
    return BASE_ROUTES + EXTRA_ROUTES[: i % 4]


def has_pgbouncer(i: int) -> bool:
    return i % 3 == 0


TEMPLATE = '''
[templates.node.hosts."{instance}"]
provider = "hetzner"
type = "cx32"
location = "fsn1"
image = "ubuntu-24.04"
public = true
networks = { private = "{address}" }

[templates.node.services."edge-{instance}"]
module = "caddy"
host = "{instance}"

[templates.node.services."app-{instance}"]
module = "app"
host = "{instance}"
connects = ["{database}", "cache-{instance}", "authentik-{instance}.http"]
secrets = { database_password = "app_db_password", cache_password = "valkey_password" }
options = { image = "ghcr.io/example/platform-api:1.4.2", port = 3000, health_path = "/healthz", database_name = "app-{instance}", database_user = "app" }

[templates.node.services."db-{instance}"]
module = "postgres"
host = "{instance}"
secrets = { password = "app_db_password" }
options = { database = "app-{instance}", user = "app", max_connections = 200 }

[templates.node.services."pgbouncer-{instance}"]
feature = "pgbouncer"
module = "pgbouncer"
host = "{instance}"
connects = ["db-{instance}"]
secrets = { password = "app_db_password" }
options = { database = "app-{instance}", user = "app", pool_mode = "transaction", default_pool_size = 40 }

[templates.node.services."cache-{instance}"]
module = "valkey"
host = "{instance}"
secrets = { password = "valkey_password" }
options = { maxmemory = "{cache_memory}" }

[templates.node.services."authentik-db-{instance}"]
module = "postgres"
host = "{instance}"
secrets = { password = "authentik_db_password" }
options = { database = "authentik", user = "authentik" }

[templates.node.services."authentik-{instance}"]
module = "authentik"
host = "{instance}"
connects = ["authentik-db-{instance}"]
secrets = { database_password = "authentik_db_password", secret_key = "authentik_secret_key" }

[templates.node.services."authentik-worker-{instance}"]
module = "authentik-worker"
host = "{instance}"
connects = ["authentik-db-{instance}"]
secrets = { database_password = "authentik_db_password", secret_key = "authentik_secret_key", bootstrap_password = "authentik_bootstrap_password" }

[templates.node.services."node-exporter-{instance}"]
module = "node-exporter"
host = "{instance}"

[templates.node.services."cadvisor-{instance}"]
module = "cadvisor"
host = "{instance}"
'''

ROUTE = '''
[templates.node.routes."{name}.{{instance}}.example.com"]
{feature}service = "{service}"
edge = "edge-{{instance}}"
{auth}'''


def route_target(name: str) -> tuple[str, str]:
    """(service, extra line) of a route: authentik's own UI, or the app (admin behind forward auth)."""
    if name == "auth":
        return "authentik-{instance}", 'endpoint = "http"\n'
    if name == "admin":
        return "app-{instance}", 'auth = "authentik-{instance}"\n'
    return "app-{instance}", ""


def real(hosts: int, changed: int | None = None) -> str:
    """The fleet; `changed`: the host whose Valkey gets 320 MiB instead of 256 MiB (one option)."""
    out = [
        '[system]\nname = "fleet"\ndomains = ["example.com"]\nstore = "https://artifacts.example.com/fleet"\n',
        '[providers.hetzner]\nkind = "hetzner"\n',
        '[networks.private]\ncidr = "10.0.0.0/8"\n',
        f'[admins.ops]\nkeys = ["{KEY}"]\nsources = ["198.51.100.0/24"]\n',
    ]
    for s in ["app_db_password", "valkey_password", "authentik_db_password",
              "authentik_secret_key", "authentik_bootstrap_password"]:
        out.append(f'[secrets.{s}]\nfile = "secrets.sops.yaml"\n')
    out.append(TEMPLATE)
    for k, name in enumerate(BASE_ROUTES + EXTRA_ROUTES):
        service, extra = route_target(name)
        feature = f'feature = "r{k + 1}"\n' if k >= len(BASE_ROUTES) else ""
        out.append(ROUTE.format(name=name, feature=feature, service=service, auth=extra))
    for i in range(hosts):
        h = host_name(i)
        features = ['"pgbouncer"'] if has_pgbouncer(i) else []
        features += [f'"r{len(BASE_ROUTES) + k + 1}"' for k in range(i % 4)]
        database = f"pgbouncer-{h}" if has_pgbouncer(i) else f"db-{h}"
        out.append(
            f'[instances.{h}]\ntemplate = "node"\nfeatures = [{", ".join(features)}]\n'
            f'vars = {{ address = "{address(i)}", database = "{database}", cache_memory = "{"320MiB" if i == changed else "256MiB"}" }}\n'
        )
    return "\n".join(out)


def tiny(hosts: int) -> str:
    out = [
        '[system]\nname = "bench"\ndomains = ["example.com"]\nstore = "https://artifacts.example.com/bench"\n',
        '[providers.hetzner]\nkind = "hetzner"\n',
        '[networks.private]\ncidr = "10.0.0.0/16"\n',
        f'[admins.ops]\nkeys = ["{KEY}"]\nsources = ["198.51.100.0/24"]\n',
        '[secrets.db_password]\nfile = "secrets.sops.yaml"\n',
        '[hosts.edge]\nprovider = "hetzner"\nimage = "ubuntu-24.04"\npublic = true\nbastion = true\n'
        'networks = { private = "10.0.255.254" }\n',
        '[services.proxy]\nmodule = "proxy"\nhost = "edge"\n',
    ]
    for i in range(hosts):
        h = f"h{i:04d}"
        addr = f"10.0.{i // 250}.{i % 250 + 2}"
        out.append(f'[hosts.{h}]\nprovider = "hetzner"\nimage = "debian-12"\nnetworks = {{ private = "{addr}" }}\n')
        out.append(f'[services.{h}-db]\nmodule = "db"\nhost = "{h}"\nsecrets = {{ password = "db_password" }}\n')
        for j in range(7):
            out.append(
                f'[services.{h}-web{j}]\nmodule = "web"\nhost = "{h}"\nconnects = ["{h}-db"]\n'
                f'options = {{ message = "host {i} web {j}", workers = {j + 1} }}\n'
            )
        out.append(f'[routes."www{i}.example.com"]\nservice = "{h}-web0"\n')
    return "\n".join(out)
