//! The language's error codes (`E0001`…): what each means and how to fix it, for `kiln explain
//! CODE`. Every code a diagnostic uses must be here (a test reads `src/` to make sure).

use super::Explanation;

const fn code(id: &'static str, summary: &'static str, explanation: &'static str) -> Explanation {
    Explanation { id, summary, explanation, allowable: false }
}

pub const CODES: &[Explanation] = &[
    code(
        "E0001",
        "a file is not valid TOML",
        "System files, module files and image definitions are TOML 1.0 in UTF-8. A syntax error \
(an unclosed `[table`, an unquoted string, a missing comma, bytes that are not UTF-8) stops the \
build after loading: what the other files would report could be its consequence, so it is \
reported alone. Fix it first, then run `kiln check` again.",
    ),
    code(
        "E0002",
        "a value of the wrong type",
        "Each key takes one TOML type: a string, an integer, a boolean, an array or a table. The \
error says what was expected and what was found, for example `expected a string, found an \
integer` for `port = \"80\"` written as `port = 80` where a string is wanted. Module options \
are typed by the module (`type = \"port\"`, `\"list\"` …): the label points at that declaration.",
    ),
    code(
        "E0003",
        "a value that is not valid for its type",
        "The value has the right TOML type but not a valid form: an address or CIDR that does not \
parse, a port outside 1–65535, a size or duration without a unit, a name with characters its \
output cannot hold, a calendar expression systemd would refuse, a choice that is not one of an \
option's values. Values are checked where they are read, so nothing invalid reaches an \
artifact; the help line shows the expected form.",
    ),
    code(
        "E0004",
        "something required is missing",
        "A table lacks a required key (`provider` on a host, `module` on a service), or a table that \
only makes sense with content is empty: a `[backup]` that keeps no snapshots, an \
`[allow.RULE]` that names no host, service or route. The help line shows what to add.",
    ),
    code(
        "E0005",
        "an unknown key",
        "The key is not part of the language at this place, usually a typo (`hots` for `host`) or a \
key that belongs one level up or down. kiln refuses unknown keys rather than ignoring them, \
since an ignored key is a setting that silently does not apply. The help line suggests the \
closest known key.",
    ),
    code(
        "E0006",
        "an import that cannot be read",
        "`imports` name files relative to the importing file, inside the system directory. A build \
reads only its declared inputs: an import that leaves the directory (by `..`, an absolute path \
or a symbolic link pointing out), that is missing, that is not a regular file (a directory, a \
FIFO, a device) or that is larger than 4 MiB is refused without reading it, so nothing of it \
is shown. Keep imported files next to `system.toml`.",
    ),
    code(
        "E0007",
        "a module whose name differs from its directory",
        "A module lives in a directory of its own name: `modules/NAME/module.toml` declares \
`name = \"NAME\"`. Services name modules by that name, so a mismatch would make the module \
unreachable or shadow another. Rename the module or its directory.",
    ),
    code(
        "E0008",
        "a module template that is not in its directory",
        "Each `[files.NAME]` of a module renders a template from the module's own directory. The \
named template file is not there. Templates are read only from the module directory, so a \
module is self-contained and can be copied as a whole.",
    ),
    code(
        "E0010",
        "a reference to something never declared",
        "A name refers to a host, provider, network, zone, module, base image, template, bridge, \
rule or variable that no table declares. Names are bound at build time so that a typo fails \
the build instead of producing a host without a service. The help line suggests the closest \
declared name, or lists them.",
    ),
    code(
        "E0011",
        "a name declared twice",
        "Hosts, services, providers, networks, secrets, templates and tables like `[system]` or \
`[backup]` are declared once across all files of a system. A second declaration (a table \
header written twice, or the same name in two imported files) would make one silently win or \
merge; kiln points at both. Merge them, or rename one.",
    ),
    code(
        "E0012",
        "no `[system]` table",
        "Every system declares `[system]` with its `name` (and usually `domains`) in the file kiln \
is given or one it imports. The name prefixes every store entry and names the OpenTofu \
resources.",
    ),
    code(
        "E0015",
        "a host that cannot run where it is placed",
        "A host's provider must be one that runs servers (`hetzner`, `digitalocean`, `scaleway` or \
`existing`; `cloudflare` manages DNS and tunnels only), and its base image must name an image \
on that provider in `images/`. Otherwise the server could not be created.",
    ),
    code(
        "E0016",
        "DNS at a provider that cannot serve it",
        "A `[dns.ZONE]` is managed by a provider that hosts DNS zones (`cloudflare`, `hetzner`, \
`digitalocean`), and only Cloudflare can proxy records (`proxied = true`). Point the zone at \
such a provider.",
    ),
    code(
        "E0017",
        "a managed resource the provider does not offer",
        "Buckets and managed databases are created through their provider's API; the named \
provider offers no such resource kiln can create. The help line lists the provider kinds \
that do.",
    ),
    code(
        "E0020",
        "an endpoint port that does not render to a port",
        "A module may compute an endpoint's port from its options with a template. For this \
service the template rendered to something that is not a port number (1–65535). Check the \
option it reads.",
    ),
    code(
        "E0021",
        "an option the module does not have",
        "`options.NAME` on a service must be one of the options its module declares \
(`kiln modules show MODULE` lists them). An unknown option would silently not apply. The help \
line suggests the closest declared option.",
    ),
    code(
        "E0022",
        "a required module option is not set",
        "The module declares this option without a default: the service must set it, because no \
value would be a safe guess (a domain, a database name). The help line shows an example.",
    ),
    code(
        "E0023",
        "a secret slot the module does not take",
        "`secrets.SLOT` on a service must name one of the secret slots its module declares. An \
unknown slot would deliver a secret nothing reads.",
    ),
    code(
        "E0024",
        "a service environment the module does not take",
        "`environment` and `env_secrets` on a service add variables of the user's own to its \
container, for a module that runs the user's own image and declares `[container] \
user_environment = true` (the `app` module). An upstream module's variables are its options: \
they are checked against the image's documentation and wired to connections and secrets, so a \
variable set beside them could contradict them unseen. Even where a module takes them, a name \
the module sets itself, or one set twice, is refused: set the option instead, or name another \
variable.",
    ),
    code(
        "E0025",
        "a required module secret is not given",
        "The module needs this secret (a database password, an API key) to start: set \
`secrets.SLOT = \"NAME\"` on the service, naming a secret from `[secrets]`. A slot the module \
marks `required_when = \"OPTION\"` is needed only once that option turns its feature on (an \
SMTP user name, an OIDC client id, an S3 repository): bind it, or leave the option unset. A \
slot the module shares with the service it connects to (`same_secrets`: an API key both ends \
hold, a role's password) is taken from that service when left unbound; bound to another secret, \
or bound while the other end holds none, the two ends would disagree: leave it out.",
    ),
    code(
        "E0026",
        "a container module without `[container]`",
        "A module of kind `container` describes its image, command and mounts in a `[container]` \
table. Without it there is nothing to run.",
    ),
    code(
        "E0027",
        "a metrics endpoint that is not an endpoint",
        "A module's `[metrics] endpoint` names one of its own endpoints, the one a collector \
scrapes. The named endpoint is not declared in the module.",
    ),
    code(
        "E0028",
        "an endpoint or volume the module does not have",
        "A service refers to an endpoint (in `connects` or a route) or a volume that its module \
does not declare. The help line suggests the closest one.",
    ),
    code(
        "E0029",
        "a service's `version` or `image` that cannot apply",
        "`version` replaces the tag of a container module's image and `image` replaces the whole \
reference, so one service (a canary) can run another release than its module pins. A native \
module runs its distribution's package and has no image to replace; and a service sets one of \
the two, never both (`image` carries its own tag).",
    ),
    code(
        "E0030",
        "a service that connects to itself",
        "A connection orders start-up and opens the firewall between two services; a connection \
from a service to itself means neither. Remove it.",
    ),
    code(
        "E0031",
        "a connection whose endpoint is ambiguous",
        "The target service exposes several endpoints (or none) and the connection does not say \
which one it uses. Write `connects = [\"SERVICE.ENDPOINT\"]`.",
    ),
    code(
        "E0032",
        "a connection between hosts that share no network",
        "A service on one host reaches a service on another over a private network both hosts \
are on; a container reaches a native service on its own host through the host's private \
address. Here there is no such network, so the connection could never be made. Put both \
hosts on a common `[networks.NAME]`.",
    ),
    code(
        "E0033",
        "a required connection is not made",
        "The module requires a connection to a service of a certain kind (a database, a cache): \
nothing in the service's `connects` fills that slot. The help line names the modules that \
would.",
    ),
    code(
        "E0034",
        "containers on one host that share no bridge",
        "Containers on one host reach each other over a Docker bridge network they both join. \
These two (a connection, or an edge and its upstream) have no bridge in common, so the \
traffic could not flow. Add one of the target's bridges to the other's `bridges`.",
    ),
    code(
        "E0035",
        "an `[allow.RULE]` that cannot be accepted",
        "Only policy rules may be waived, and only with a reason of at least a sentence a reviewer \
can check. Correctness rules (those whose output could not work) cannot be allowed: fix the \
input instead. `kiln explain RULE` says which kind a rule is.",
    ),
    code(
        "E0036",
        "a connection that fills the wrong slot, or a list that cannot say which",
        "A module names what it connects to in requirement slots (`[requires.SLOT]`, each taking \
services of certain modules). In the list form, `connects = [\"db\", \"cache\"]`, each entry fills \
the one slot its module matches; when a module has two slots of one kind (sessions and a cache, \
both Valkey), or two entries could fill one slot, the list cannot say which is which, so kiln \
does not guess. Name the slots: `connects = { sessions = \"valkey-a\", cache = \"valkey-b\" }` \
(one service may fill several named slots), or mix both forms: `[\"editor\", { cache = \"valkey\" \
}]`. A named slot must take the module of the service written for it.",
    ),
    code(
        "E0037",
        "a socket proxy on another host in place of the Docker socket",
        "A module that reads Docker (`docker_socket = true`) can reach it through a socket proxy \
instead (`instead_of_docker_socket`). The proxy speaks for the Docker of its own host: one on \
another host would hand this service that host's containers as if they were its own. Connect \
the proxy on the same host, or none (the service then mounts its host's socket).",
    ),
    code(
        "E0040",
        "a route to an endpoint that is not HTTP",
        "Routes are terminated by the edge proxy, which speaks HTTP to the upstream. The named \
endpoint speaks another protocol; raw TCP needs its own DNS record and firewall rule instead.",
    ),
    code(
        "E0041",
        "a route that does not say which HTTP endpoint it reaches",
        "A route sends a hostname's requests to one HTTP endpoint of its service. This service has \
several HTTP endpoints (or none), so kiln cannot guess which one the route means: name it with \
`service = \"SERVICE.ENDPOINT\"`.",
    ),
    code(
        "E0042",
        "a route terminated by a service that is not an edge",
        "A route's `edge` names the service that terminates TLS for it: a service of an edge \
module (`caddy`, `traefik`). The named service is not one.",
    ),
    code(
        "E0043",
        "a route without exactly one edge",
        "A route is terminated by an edge proxy. With no edge in the system, add a service of \
module `caddy` or `traefik` on a public host; with several, say which with `edge = \"NAME\"`.",
    ),
    code(
        "E0044",
        "forward auth through a service that offers none",
        "A route's `auth` names the service that authenticates its requests (forward auth); that \
service's module must declare `[forward_auth]`. The help line names modules that do.",
    ),
    code(
        "E0045",
        "an edge feature the chosen edge cannot provide",
        "Some route features need a particular edge: rate limits, CrowdSec bouncers and DNS-01 \
certificates need Traefik (the distributions' Caddy has no such modules), and \
`fail2ban_http` needs a native Caddy or a Traefik edge on the host whose access log it can \
watch; a stream (`[streams.NAME]`, TCP or UDP forwarded as it is) needs Traefik, Caddy proxies \
HTTP only. Terminate the route or stream on a Traefik edge, or drop the feature.",
    ),
    code(
        "E0046",
        "a stream's public port an edge host cannot give it",
        "A stream (`[streams.NAME]`) listens on its `port` on the edge host, as a Traefik entry point \
published on every address. One port and protocol of a host forwards to one endpoint: two \
streams on it, or a port the edge host already uses — 80/tcp and 443/tcp and udp (the edge's \
HTTP, HTTPS and HTTP/3 entry points), 8082/tcp (Traefik's ping and metrics), 22/tcp (sshd, on \
every host) — would fail when the edge starts, or take SSH from the admins. Give the stream \
another port (Git over SSH on 2222, say). A stream's `hostname` is likewise one name for one \
address: a name a route or stream on another host already has is refused.",
    ),
    code(
        "E0047",
        "a stream whose protocol is not its endpoint's",
        "A stream forwards TCP connections or UDP datagrams as they are; the service's endpoint \
(`[endpoints.NAME] protocol` in its module) receives one or the other. A UDP stream to a TCP \
endpoint, or the reverse, would forward packets nothing listens for. Write the endpoint's \
protocol, leave `protocol` out (the stream takes the endpoint's), or name another endpoint.",
    ),
    code(
        "E0048",
        "a route and the certificate it names do not fit",
        "A `[certificates.NAME]` holds the names in its `names` (a wildcard `*.example.org` covers \
one label under `example.org`, not `example.org` itself nor `a.b.example.org`) and is requested \
and served by one edge. A route's `certificate` must cover the route's hostname and be held by \
the route's edge: add the hostname (or a wildcard over it) to the certificate's `names`, set \
the route's or the certificate's `edge` so that they agree, or leave `certificate` out. A \
certificate decides how its names are validated (`dns01`), so a route using one sets no `tls`.",
    ),
    code(
        "E0049",
        "an allow-list names an admin without sources",
        "An entry of an allow-list (`allow` on a route, in `[route_defaults]` or on a stream) that \
is a name stands for that admin's `sources` (`[admins.NAME] sources`), so the administrators' \
networks are written once. An admin without `sources` stands for no network: the entry would \
narrow nothing, and an allow-list left with no source admits everyone. Give the admin the \
networks they connect from, or write the addresses in the allow-list.",
    ),
    code(
        "E0050",
        "a module template failed to render",
        "A module's template raised an error for this service: an undefined variable (templates \
are strict), a failed filter, a value the template's output language cannot hold, or a loop \
that ran out of its budget. The label points at the service; the message at the template line.",
    ),
    code(
        "E0060",
        "a login or forward auth kiln cannot wire to its identity provider",
        "`login = \"IDP\"` on a service registers it as an OpenID Connect client of the identity \
provider service IDP, and `auth = \"IDP\"` on a route puts the route behind IDP's forward auth; \
for an authentik service kiln writes the provider's objects into a blueprint that authentik's \
worker applies at start. That needs: a module that declares `[oidc]` (which options take the \
issuer URL and client id, which secret slot the client secret) and whose options `login` sets \
are not also given by hand; an IDP of module `authentik` (other providers are configured through \
the module's options by hand); a route to IDP, whose hostname makes the issuer URL \
`https://HOST/application/o/SERVICE/`; a route to the service itself, where the provider \
redirects users back; and an `authentik-worker` service connected to the same database as IDP, \
which applies the blueprint and receives each client secret as a file.",
    ),
    code(
        "E0070",
        "a service placed on every host when there is none",
        "`host = \"*\"` copies a service onto every host of the system. There are no hosts, so \
the service would run nowhere. Declare a host, or place the service on one.",
    ),
];
