# shellcheck shell=bash
# Private copies of Debian programs for the tests, sourced by scripts/install-test-deps and
# scripts/install-push-test-deps.
#
# Some judges come only in Debian packages that also ship a service (cloud-init, nginx,
# prometheus for promtool, prometheus-alertmanager for amtool, fail2ban for fail2ban-regex, php-common's session-cleaning timer
# under php-cli). Installing those would enable, and on a systemd machine start, services on
# the machine that runs the tests. Instead their .debs are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` under <repo>/.test-tools/NAME: no maintainer script runs, dpkg's
# database and /etc are untouched, and nothing is enabled or started. Wrappers in
# <repo>/.test-tools/bin run them from there. The libraries they link or import (Debian
# packages named lib* or python3-*, which ship no service) are apt-installed as usual.
#
# The caller defines log MESSAGE and as_root COMMAND...
#
# Environment:
#   KILN_TEST_TOOLS  where the private copies go (default <repo>/.test-tools)

test_tools=${KILN_TEST_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.test-tools}

# unpack_debs NAME VERSION_GLOB PKG...: the candidate .debs of PKG... (from the machine's apt
# sources) unpacked into $test_tools/NAME, once: a stamp naming the packages and the glob makes
# a second call a no-op. The first package's version must match VERSION_GLOB (a shell glob),
# so that a judge never changes version unnoticed.
unpack_debs() {
  local name=$1 glob=$2
  shift 2
  local dir=$test_tools/$name want
  want="$* $glob"
  if [[ -f $dir/.kiln-stamp && $(head -n1 "$dir/.kiln-stamp") == "$want" ]]; then
    return 0
  fi
  mkdir -p "$test_tools"
  (
    flock 8
    [[ -f $dir/.kiln-stamp && $(head -n1 "$dir/.kiln-stamp") == "$want" ]] && exit 0
    local work deb version sandbox=()
    work=$(mktemp -d "$test_tools/.unpack-$name.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # As root, apt hands downloads to the _apt user, who cannot write into $work.
    [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    log "apt-get download $* (unpacked into $dir, not installed)"
    if ! (cd "$work" && apt-get download -qq "${sandbox[@]}" "$@" >/dev/null 2>"$work/apt.err"); then
      # No package lists yet, or stale ones pointing at .debs the mirror no longer has.
      log "apt-get update and retry"
      as_root apt-get update -qq
      (cd "$work" && apt-get download -qq "${sandbox[@]}" "$@" >/dev/null) ||
        { log "apt-get download $* failed"; exit 1; }
    fi
    mkdir "$work/root"
    printf '%s\n' "$want" >"$work/root/.kiln-stamp"
    for pkg in "$@"; do
      deb=$(compgen -G "$work/${pkg}_*.deb" | head -n1) || true
      [[ -n $deb ]] || { log "apt-get download left no .deb for $pkg"; exit 1; }
      version=$(dpkg-deb -f "$deb" Version)
      # shellcheck disable=SC2053 # $glob is a pattern
      if [[ $pkg == "$1" && $version != $glob ]]; then
        log "$pkg $version from the apt sources is not the pinned $glob"
        exit 1
      fi
      dpkg-deb -x "$deb" "$work/root"
      printf '%s %s\n' "$pkg" "$version" >>"$work/root/.kiln-stamp"
      # Library dependencies: lib* and python3-* packages (not libjs-*, a web UI's assets).
      dpkg-deb -f "$deb" Depends Pre-Depends | sed 's/^[A-Za-z-]*: //' | tr ',' '\n' |
        sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' |
        grep -E '^(lib|python3-|zlib1g$)' | grep -v '^libjs-' >>"$work/root/.kiln-libs" || true
    done
    sort -u -o "$work/root/.kiln-libs" "$work/root/.kiln-libs"
    rm -rf "$dir"
    mv "$work/root" "$dir"
  ) 8>"$test_tools/.lock"
}

# unpacked_libs NAME...: the library packages the unpacked programs need.
unpacked_libs() {
  local name
  for name in "$@"; do cat "$test_tools/$name/.kiln-libs"; done | sort -u
}

# unpacked_versions NAME: "pkg version" lines of what is unpacked.
unpacked_versions() {
  tail -n +2 "$test_tools/$1/.kiln-stamp"
}

# install_missing_apt PKG...: apt-get install those of PKG... that are not installed. Only for
# packages that ship no service (libraries and plain tools).
install_missing_apt() {
  local missing=() pkg cand need_update=0
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  # Only refresh the package lists when apt does not know a candidate for every missing
  # package (fresh images often ship without lists).
  for pkg in "${missing[@]}"; do
    cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then need_update=1; fi
  done
  if ((need_update)); then
    log "apt-get update"
    as_root apt-get update -qq
  fi
  log "apt-get install ${missing[*]}"
  if ! _apt_install "${missing[@]}"; then
    # Stale lists point at .debs the mirror no longer has: refresh and retry.
    log "install failed; apt-get update and retry"
    as_root apt-get update -qq
    _apt_install "${missing[@]}"
  fi
}

_apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends -o Dpkg::Use-Pty=0 "$@" >/dev/null
}

# write_tool NAME < TEXT: $test_tools/bin/NAME holds TEXT, executable; untouched when it
# already does (a second run changes no file).
write_tool() {
  local f=$test_tools/bin/$1 text
  text=$(cat)
  mkdir -p "$test_tools/bin"
  if [[ ! -f $f || -L $f || $(cat "$f") != "$text" ]]; then
    rm -f "$f"
    printf '%s\n' "$text" >"$f"
    chmod 0755 "$f"
  fi
}

# link_tool NAME TARGET: $test_tools/bin/NAME is a symbolic link to TARGET (relative to bin/).
link_tool() {
  local f=$test_tools/bin/$1
  mkdir -p "$test_tools/bin"
  [[ -L $f && $(readlink "$f") == "$2" ]] || ln -sfn "$2" "$f"
}

# ensure_valkey_source: apt must know valkey-server. Debian has it in main from trixie on (8.1);
# on bookworm it is in bookworm-backports (8.0), added here as an apt source when apt knows no
# candidate (the same file scripts/build-test-image writes). The valkey.conf directives the
# tests use (rename-command, requirepass, bind, port, dir) read the same in 8.0, 8.1 and 9.x.
ensure_valkey_source() {
  local cand
  cand=$(apt-cache policy valkey-server 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $cand && $cand != "(none)" ]] && return 0
  if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    log "adding the bookworm-backports apt source (valkey-server)"
    as_root tee /etc/apt/sources.list.d/kiln-bookworm-backports.sources >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  as_root apt-get update -qq
}
