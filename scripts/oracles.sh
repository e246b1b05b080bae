#!/usr/bin/env bash
# The real tools that judge kiln's artifacts ("oracles"), one command each.
# Install them first with scripts/install-test-deps.
#
# Run:     scripts/oracles.sh KIND FILE
# Source:  . scripts/oracles.sh; kiln_oracle KIND FILE   (or oracle_<kind> FILE)
# cloud-init, compose, sh, traefik-static and traefik-dynamic take several files at once
# (KIND FILE...): the JSON-schema judge (and shellcheck) then starts, and checks its schema,
# once for all of them (~0.5 s of each call), and a failure names its file.
#
# KIND:
#   cloud-init  Debian cloud-init 22.4.2 `cloud-init schema --config-file FILE`
#               (unpacked in <repo>/.test-tools, never installed as a service),
#               then the upstream (26.2) cloud-config JSON schema via
#               check-jsonschema, which also rejects unknown keys, YAML 1.1-only
#               booleans (yes/no/on/off) and duplicate keys.
#   sh          shellcheck 0.11 -s sh (all severities), then `dash -n`.
#   caddy       Caddy 2.11.7 `caddy validate --adapter caddyfile` with throw-away
#               XDG dirs (no listeners are bound and no certificates requested),
#               then the same with Debian's Caddy 2.6.2 (caddy-debian, unpacked in
#               .test-tools): the Caddy the caddy module's hosts install.
#   compose     Docker Compose v5 `docker-compose -f FILE config -q` (no engine
#               needed), then the compose-spec JSON schema.
#   promtool-rules  Prometheus 2.42 `promtool check rules FILE` (alerting rules).
#   amtool      Alertmanager 0.25 `amtool check-config FILE` (see oracle_amtool).
#   systemd     `systemd-analyze verify FILE` for a unit file; any output fails.
#   mermaid     every ```mermaid block of a Markdown file parses with mermaid 11.
#   yaml        Parse FILE ('-' for stdin) with PyYAML safe_load (duplicate keys
#               rejected) and print it as JSON on stdout.
#   self-test   Every sample in tests/oracle-samples/good must pass its oracle and
#               every one in tests/oracle-samples/bad must fail it; the oracle is
#               the file-name prefix (cloud-init-*, sh-*, caddy-*, compose-*, yaml-*).
#
# Exit status: 0 on pass; 1 on failure, with the tool's output on stderr; 2 on a
# usage error or a missing tool. Passing checks print nothing (yaml prints JSON).
#
# Warnings count as failures: cloud-init schema deprecations, Compose
# `level=warning` lines and Caddy `"level":"warn"` log lines (except the
# HTTP-only-site notice, which is a deliberate choice, not a defect).
# KILN_ORACLE_ALLOW_WARNINGS=1 lets them pass (still printed on stderr).
#
# Environment:
#   KILN_SHARED         shared dir with schemas/ (default <repo>/../shared)
#   KILN_ORACLES_VENV   the oracle virtualenv (default <repo>/.venv-oracles)
#   KILN_TEST_TOOLS     Debian programs unpacked by install-test-deps: cloud-init,
#                       promtool, fail2ban-regex, php (default <repo>/.test-tools)
#   KILN_ORACLE_ALLOW_WARNINGS=1  see above
#
# caddy and compose run in a fresh network namespace (unshare -n) when the
# machine allows it, so nothing they do can reach the network.

_kiln_oracles_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_oracle_setup() {
  venv=${KILN_ORACLES_VENV:-$_kiln_oracles_repo/.venv-oracles}
  shared=${KILN_SHARED:-$_kiln_oracles_repo/../shared}
  tools=${KILN_TEST_TOOLS:-$_kiln_oracles_repo/.test-tools}
  PATH="$tools/bin:$venv/bin:$PATH"
}

_oracle_schema() {
  schema=$shared/schemas/$1
  if [[ ! -f $schema ]]; then
    echo "oracle: schema not found: $schema (set KILN_SHARED)" >&2
    exit 2
  fi
}

_oracle_need() {
  local t
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      echo "oracle: '$t' not found; run scripts/install-test-deps" >&2
      exit 2
    fi
  done
}

# One or more FILEs, each an existing file.
_oracle_files() {
  local f
  if [[ $# -lt 1 ]]; then
    echo "oracle: expected FILE arguments" >&2
    exit 2
  fi
  for f in "$@"; do
    if [[ ! -f $f ]]; then
      echo "oracle: no such file: $f" >&2
      exit 2
    fi
  done
}

# Exactly one FILE, an existing file.
_oracle_file() {
  if [[ $# -ne 1 ]]; then
    echo "oracle: expected one FILE argument" >&2
    exit 2
  fi
  _oracle_files "$1"
}

# Run "$@" without network access when a network namespace can be made.
_oracle_offline() {
  if [[ -z ${_kiln_oracle_unshare+x} ]]; then
    _kiln_oracle_unshare=
    if unshare -n true 2>/dev/null; then
      _kiln_oracle_unshare="unshare -n --"
    elif unshare -rn true 2>/dev/null; then
      _kiln_oracle_unshare="unshare -rn --"
    fi
  fi
  $_kiln_oracle_unshare "$@"
}

# _oracle_run LABEL CMD...: run CMD capturing stdout+stderr in $out; on a
# non-zero exit print LABEL, the command and its output to stderr and exit 1.
_oracle_run() {
  local label=$1 rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then
    _oracle_fail "$label" "exit $rc: $*" "$out"
  fi
}

_oracle_fail() {
  {
    echo "oracle $1 FAILED ($2)"
    printf '%s\n' "$3"
  } >&2
  exit 1
}

# _oracle_warnings LABEL WHAT LINES: fail on non-empty LINES unless allowed.
_oracle_warnings() {
  [[ -n $3 ]] || return 0
  if [[ ${KILN_ORACLE_ALLOW_WARNINGS:-0} == 1 ]]; then
    printf 'oracle %s: %s (allowed by KILN_ORACLE_ALLOW_WARNINGS)\n%s\n' "$1" "$2" "$3" >&2
    return 0
  fi
  _oracle_fail "$1" "$2; KILN_ORACLE_ALLOW_WARNINGS=1 lets them pass" "$3"
}

oracle_cloud_init() (
  set -euo pipefail
  _oracle_setup
  _oracle_files "$@"
  local f ci=$tools/bin/cloud-init out deprecations schema
  _oracle_need "$ci" check-jsonschema
  for f in "$@"; do
    # 22.4.2: exit 0 = valid (deprecations only printed), 1 = errors, a missing
    # "#cloud-config" first line, or a YAML syntax error. Unknown keys pass.
    # Root is not needed with --config-file.
    _oracle_run "cloud-init ($f)" "$ci" schema --config-file "$f"
    # On errors it prints an empty "Cloud config schema deprecations: " line;
    # on success a non-empty one lists the deprecated keys.
    deprecations=$(grep -A1000 '^Cloud config schema deprecations: .' <<<"$out" |
      grep -v '^Valid cloud-config:' || true)
    _oracle_warnings "cloud-init ($f)" "cloud-init schema reported deprecations" "$deprecations"
  done
  # --force-filetype: user-data files often have no .yaml suffix, and
  # check-jsonschema otherwise guesses JSON from the name.
  _oracle_schema cloud-init-schema-cloud-config-v1.upstream.json
  _oracle_run cloud-init-upstream-schema check-jsonschema --force-filetype yaml \
    --schemafile "$schema" "$@"
)

oracle_sh() (
  set -euo pipefail
  _oracle_setup
  _oracle_files "$@"
  local f out
  _oracle_need shellcheck dash
  # --norc and no SHELLCHECK_OPTS: no .shellcheckrc can relax the check.
  _oracle_run shellcheck env -u SHELLCHECK_OPTS shellcheck --norc --color=never -s sh "$@"
  for f in "$@"; do
    _oracle_run "dash-n ($f)" dash -n "$f"
  done
)

# Every Caddyfile of a caddy module at Debian's 2.6.2 (the built-in one) is judged by both
# Caddys; one for Caddy 2.7 or later (a module at that version) by the recent one alone.
oracle_caddy() { CADDY_JUDGES="caddy caddy-debian" _oracle_caddy "$@"; }
oracle_caddy_recent() { CADDY_JUDGES="caddy" _oracle_caddy "$@"; }

_oracle_caddy() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out tmp warnings
  # shellcheck disable=SC2086 # a list of program names
  _oracle_need $CADDY_JUDGES
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # validate provisions every module (TLS, reverse proxy, ...) but starts no
  # server and asks no CA; storage goes under the XDG dirs, so point them at a
  # throw-away dir. An active health check may start a request that validate
  # cancels before it dials; the network namespace makes sure of it.
  export XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" HOME="$tmp"
  local caddy
  for caddy in $CADDY_JUDGES; do
    _oracle_run "$caddy" _oracle_offline "$caddy" validate --config "$f" --adapter caddyfile
    warnings=$(grep -E '"level":"(warn|error)"' <<<"$out" |
      grep -v 'server is listening only on the HTTP port' || true)
    _oracle_warnings "$caddy" "caddy validate logged warnings" "$warnings"
  done
)

oracle_compose() (
  set -euo pipefail
  _oracle_setup
  _oracle_files "$@"
  local f out warnings schema
  _oracle_need docker-compose check-jsonschema
  _oracle_schema compose-spec.json
  for f in "$@"; do
    # Needs no engine. Without a top-level `name:` the project name comes from
    # the file's directory and must not normalise to empty.
    # --no-env-resolution: an `env_file` names a root-only file the provisioner writes on the
    # host from delivered secrets (/etc/kiln/env); it does not exist where the judge runs.
    # tests/env_secrets.rs has Compose read such a file for real.
    _oracle_run "compose ($f)" _oracle_offline docker-compose -f "$f" config -q --no-env-resolution
    warnings=$(grep -E 'level=(warning|error)' <<<"$out" || true)
    _oracle_warnings "compose ($f)" "docker-compose config printed warnings" "$warnings"
  done
  _oracle_run compose-spec-schema check-jsonschema --force-filetype yaml \
    --schemafile "$schema" "$@"
)

# Traefik files: the SchemaStore Traefik v3 schemas (static and file-provider dynamic).
oracle_traefik_static() (
  set -euo pipefail
  _oracle_setup
  _oracle_files "$@"
  local out schema
  _oracle_need check-jsonschema
  _oracle_schema traefik-v3.json
  _oracle_run traefik-static-schema check-jsonschema --force-filetype yaml --schemafile "$schema" "$@"
)

oracle_traefik_dynamic() (
  set -euo pipefail
  _oracle_setup
  _oracle_files "$@"
  local out schema
  _oracle_need check-jsonschema
  _oracle_schema traefik-v3-file-provider.json
  _oracle_run traefik-dynamic-schema check-jsonschema --force-filetype yaml --schemafile "$schema" "$@"
)

oracle_promtool() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out
  _oracle_need "$tools/bin/promtool"
  _oracle_run promtool "$tools/bin/promtool" check config "$f"
)

# Prometheus rule files (kiln's derived alerts): `promtool check rules`.
oracle_promtool_rules() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out
  _oracle_need "$tools/bin/promtool"
  _oracle_run promtool-rules "$tools/bin/promtool" check rules "$f"
)

# Alertmanager configuration: Debian 12's `amtool check-config` (0.25). That amtool predates
# webhook_configs' `url_file` (Alertmanager 0.26; kiln's module pins a newer image): a copy
# where `url_file:` reads `url:` with an http URL is checked instead, everything else verbatim.
oracle_amtool() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out copy
  _oracle_need "$tools/bin/amtool"
  copy=$(mktemp --suffix=.yml)
  trap 'rm -f "$copy"' EXIT
  sed -E 's|^( *)(- )?url_file: .*$|\1\2url: "http://kiln.invalid/webhook"|' "$f" >"$copy"
  _oracle_run amtool "$tools/bin/amtool" check-config "$copy"
)

oracle_yaml() (
  set -euo pipefail
  _oracle_setup
  [[ $# -eq 1 && $1 == - ]] || _oracle_file "$@"
  _oracle_need python
  local prog
  # The program is passed with -c so that stdin stays free for FILE '-'.
  prog=$(cat <<'PY'
import base64, datetime, json, sys
import yaml

class Loader(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            dup = key in seen
        except TypeError:
            dup = False
        if dup:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        try:
            seen.add(key)
        except TypeError:
            pass
    return loader.construct_mapping(node, deep=deep)

Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)

def default(o):
    if isinstance(o, (datetime.date, datetime.datetime)):
        return o.isoformat()
    if isinstance(o, bytes):
        return base64.b64encode(o).decode()
    if isinstance(o, set):
        return sorted(o, key=str)
    raise TypeError(f"cannot represent {type(o).__name__} as JSON")

path = sys.argv[1]
try:
    if path == "-":
        data = yaml.load(sys.stdin, Loader=Loader)
    else:
        with open(path, "rb") as fh:
            data = yaml.load(fh, Loader=Loader)
    text = json.dumps(data, ensure_ascii=False, default=default)
except Exception as e:
    print(f"oracle yaml FAILED: {path}: {e}", file=sys.stderr)
    sys.exit(1)
print(text)
PY
)
  python -c "$prog" "$1"
)

oracle_self_test() (
  set -euo pipefail
  local dir=$_kiln_oracles_repo/tests/oracle-samples expect f kind name rc err n=0 bad=0
  err=$(mktemp)
  trap 'rm -f "$err"' EXIT
  for expect in good bad; do
    for f in "$dir/$expect"/*; do
      [[ -f $f ]] || continue
      name=${f##*/}
      case $name in
        cloud-init-*) kind=cloud-init ;;
        sh-*) kind='sh' ;;
        caddy-*) kind=caddy ;;
        compose-*) kind=compose ;;
        yaml-*) kind=yaml ;;
        promtool-rules-*) kind=promtool-rules ;;
        promtool-*) kind=promtool ;;
        amtool-*) kind=amtool ;;
        systemd-*) kind=systemd ;;
        mermaid-*) kind=mermaid ;;
        traefik-static-*) kind=traefik-static ;;
        traefik-dynamic-*) kind=traefik-dynamic ;;
        *) echo "self-test: no oracle for $expect/$name" >&2; exit 2 ;;
      esac
      n=$((n + 1))
      if kiln_oracle "$kind" "$f" >/dev/null 2>"$err"; then
        if [[ $expect == bad ]]; then
          echo "self-test: $expect/$name PASSED oracle $kind but must fail" >&2
          bad=$((bad + 1))
        fi
      else
        rc=$?
        if [[ $expect == good || $rc -ne 1 ]]; then
          echo "self-test: $expect/$name: oracle $kind exit $rc" >&2
          cat "$err" >&2
          bad=$((bad + 1))
        fi
      fi
    done
  done
  echo "self-test: $((n - bad)) passed, $bad failed"
  [[ $bad -eq 0 ]]
)

# systemd units: `systemd-analyze verify` exits 0 on unknown keys and ignored settings, so any
# line it prints is a failure too.
oracle_systemd() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out
  _oracle_need systemd-analyze
  _oracle_run systemd-analyze systemd-analyze verify "$f"
  if [[ -n $out ]]; then
    _oracle_fail systemd-analyze "verify printed diagnostics" "$out"
  fi
)

# Markdown with Mermaid diagrams (SYSTEM.md): every ```mermaid block must parse with mermaid
# 11's own parser (scripts/mermaid, installed by install-test-deps with `npm ci`).
oracle_mermaid() (
  set -euo pipefail
  _oracle_setup
  _oracle_file "$@"
  local f=$1 out
  _oracle_need node
  [[ -d $_kiln_oracles_repo/scripts/mermaid/node_modules/mermaid ]] || { echo "oracles.sh: mermaid is not installed (scripts/install-test-deps)" >&2; exit 2; }
  _oracle_run mermaid node "$_kiln_oracles_repo/scripts/mermaid/check.mjs" "$f"
)

kiln_oracle() {
  local kind=${1:-}
  shift || true
  case $kind in
    cloud-init) oracle_cloud_init "$@" ;;
    sh) oracle_sh "$@" ;;
    caddy) oracle_caddy "$@" ;;
    caddy-recent) oracle_caddy_recent "$@" ;;
    compose) oracle_compose "$@" ;;
    yaml) oracle_yaml "$@" ;;
    promtool) oracle_promtool "$@" ;;
    promtool-rules) oracle_promtool_rules "$@" ;;
    amtool) oracle_amtool "$@" ;;
    systemd) oracle_systemd "$@" ;;
    mermaid) oracle_mermaid "$@" ;;
    traefik-static) oracle_traefik_static "$@" ;;
    traefik-dynamic) oracle_traefik_dynamic "$@" ;;
    self-test) oracle_self_test ;;
    *)
      echo "usage: oracles.sh {cloud-init|sh|caddy|caddy-recent|compose|yaml|promtool|promtool-rules|amtool|systemd|mermaid|traefik-static|traefik-dynamic} FILE | oracles.sh {cloud-init|compose|sh|traefik-static|traefik-dynamic} FILE... | oracles.sh self-test" >&2
      return 2
      ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  kiln_oracle "$@"
fi
