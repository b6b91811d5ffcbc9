#!/usr/bin/env bash
# `stack/setup.sh run` (`make run`, `make up`): installs what the local stack needs to convert a video on a fresh
# Debian machine. `stack/setup.sh` or `stack/setup.sh all` (`make setup`, and `make test`, `make bench`, `make lint`...):
# that and what the tests and benchmarks need besides (Chromium, Jaeger, skaffold and the manifests' modules, the test
# packages). Nothing that is already there is installed again (a second run takes seconds). Tools built here go to
# .local/, which git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL="$PWD/.local"
mkdir -p "$LOCAL/bin"
MODE="${1:-all}"
case "$MODE" in run|all) ;; *) printf 'usage: stack/setup.sh [run|all]\n' >&2; exit 2 ;; esac
all() { [ "$MODE" = all ]; }

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# --- Debian packages: the servers, ffmpeg and (for the tests) Chromium ----------------------------------------------
missing=()
[ -x /usr/sbin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
{ command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1 || missing+=(ffmpeg)
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`'s own download).
all && { [ -x /usr/bin/chromium ] || missing+=(chromium); }
# npm installs the web page's tus-js-client, and the packages the tests read (stack/node/package.json, pinned by its
# lock file).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "install ${missing[*]} with your package manager (this script knows apt-get)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  # The packages' own services are not wanted: the stack runs project-local servers on ports of its own.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- What converting a video needs, built and installed at once -------------------------------------------------
# FerretDB's build, the broker data plane's, npm's install and pip's do not depend on one another and each spends
# part of its time waiting on downloads, the Go builds in long single-threaded links too: run together, one's
# waiting overlaps another's compiling (README's first run has the figures). Each logs to .local/setup-logs/<step>.log;
# a step that fails shows the end of its log.
command -v go >/dev/null 2>&1 || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || fail "Go 1.24 or newer is needed to build FerretDB and the broker data plane"
command -v npm >/dev/null 2>&1 || fail "Node.js with npm is needed (Debian: apt-get install nodejs npm)"
export GOBIN="$LOCAL/bin"
# No symbol table or DWARF in the local tools: the links take a fifth less CPU and the binaries a third less disk;
# a panic still names its functions and lines.
GO_LDFLAGS="-s -w"
SETUP_LOGS="$LOCAL/setup-logs"
mkdir -p "$SETUP_LOGS"
step_names=()
step_pids=()
in_background() {  # in_background NAME WHAT COMMAND...: COMMAND in a subshell, its output in .local/setup-logs/NAME.log
  local name=$1 what=$2
  shift 2
  say "$what (log: .local/setup-logs/$name.log)"
  ( started=$SECONDS; "$@" >"$SETUP_LOGS/$name.log" 2>&1; say "$name: done in $((SECONDS - started)) s" ) &
  step_names+=("$name")
  step_pids+=("$!")
}
wait_for_steps() {
  local failed=() i
  for i in "${!step_pids[@]}"; do
    wait "${step_pids[$i]}" && continue
    failed+=("${step_names[$i]}")
    printf 'setup: %s failed; the end of its log:\n' "${step_names[$i]}" >&2
    tail -n 30 "$SETUP_LOGS/${step_names[$i]}.log" >&2
  done
  [ ${#failed[@]} -eq 0 ] || fail "failed: ${failed[*]} (logs in $SETUP_LOGS)"
}

# stack/ferretdb wraps FerretDB v1.24.2's embeddable package (main.go says why) and pins it with go.sum; it is
# rebuilt whenever a file of it is newer than the binary.
build_ferretdb() {
  cd stack/ferretdb
  GOFLAGS=-mod=readonly go install -ldflags="$GO_LDFLAGS" .
  touch "$GOBIN/ferretdb"
}
if [ ! -x "$GOBIN/ferretdb" ] || [ -n "$(find stack/ferretdb -newer "$GOBIN/ferretdb" -print -quit)" ]; then
  in_background ferretdb "building FerretDB v1.24.2 (go install)" build_ferretdb
fi
# stack/broker/go.mod pins eventing-rabbitmq and, through go.sum, every module it builds from. The sum database
# has no entries for the knative.dev modules this proxy serves, so their hashes come from go.sum alone.
# The module's ingress and dispatcher as released, and stack/broker/cmd/source-adapter, which runs the same module's
# pkg/adapter without the Kubernetes API that cmd/receive_adapter insists on (its main.go says why). The three share
# nearly all of their ~1,100 packages (client-go among them: pkg/rabbit, which both data-plane mains need, imports
# it), so they are built by one `go install`, which compiles each package once. All three are rebuilt when a file
# of stack/broker is newer than any of them; `go install` itself relinks only the ones whose inputs changed.
broker_programs=(ingress dispatcher source-adapter)
broker_stale() {
  local program
  for program in "${broker_programs[@]}"; do
    [ -x "$GOBIN/$program" ] && [ -z "$(find stack/broker -newer "$GOBIN/$program" -print -quit)" ] || return 0
  done
  return 1
}
build_broker() {
  cd stack/broker
  GONOSUMDB=knative.dev GOFLAGS=-mod=readonly go install -ldflags="$GO_LDFLAGS" \
    knative.dev/eventing-rabbitmq/cmd/ingress knative.dev/eventing-rabbitmq/cmd/dispatcher ./cmd/source-adapter
  touch "${broker_programs[@]/#/$GOBIN/}"
}
if broker_stale; then
  in_background broker "building the eventing-rabbitmq ingress, dispatcher and source adapter (go install)" build_broker
fi

# npm packages the web page and the tests read (stack/node/package.json, pinned with its package-lock.json),
# installed into .local/node: the web page's alone (`run`), or the tests' devDependencies too; reinstalled only when
# the lock file changes or the tests' packages are wanted and missing.
installed_lock="$LOCAL/node/.installed-lock"
install_npm_packages() {
  mkdir -p "$LOCAL/node"
  rm -f "$installed_lock" "$installed_lock.dev"
  cp stack/node/package.json stack/node/package-lock.json "$LOCAL/node/"
  (cd "$LOCAL/node" && npm ci $(all || echo --omit=dev) --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp stack/node/package-lock.json "$installed_lock"
  if all; then touch "$installed_lock.dev"; fi
}
if ! cmp -s stack/node/package-lock.json "$installed_lock" || { all && [ ! -f "$installed_lock.dev" ]; }; then
  in_background npm "installing npm packages into .local/node$(all || echo ' (the web page'"'"'s alone)')" \
    install_npm_packages
fi

# Python: a virtual environment with the project (and, but for `run`, its test dependencies), and the `vid2mp3`
# command (client/, a distribution of its own). The stamp of an install with the tests' packages (.installed-test)
# vouches for one without (.installed) too.
PYTHON="${PYTHON:-python3}"
if all; then stamps=("$LOCAL/venv/.installed-test"); else stamps=("$LOCAL/venv/.installed" "$LOCAL/venv/.installed-test"); fi
current=""
for stamp in "${stamps[@]}"; do
  if [ -x "$LOCAL/venv/bin/python" ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] \
     && [ ! client/pyproject.toml -nt "$stamp" ]; then
    current="$stamp"
  fi
done
install_python_packages() {
  [ -x "$LOCAL/venv/bin/python" ] || "$PYTHON" -m venv "$LOCAL/venv"
  if all; then
    "$LOCAL/venv/bin/pip" install -q --disable-pip-version-check -e '.[test]' -e ./client
    touch "$LOCAL/venv/.installed-test" "$LOCAL/venv/.installed"
  else
    "$LOCAL/venv/bin/pip" install -q --disable-pip-version-check -e . -e ./client
    touch "$LOCAL/venv/.installed"
  fi
}
if [ -z "$current" ]; then
  in_background python \
    "installing vid2mp3$(all && echo ', its test dependencies') and the vid2mp3 command into .local/venv" \
    install_python_packages
fi
wait_for_steps

# --- For the tests alone: Jaeger, skaffold and the modules the manifest checks read (one after another: each
# --- build wants the machine to itself) ----------------------------------------------------------------------------
# stack/validation/skaffold pins skaffold v2.16.1 and everything it builds from: its go.mod repeats skaffold's replace
# directives (which `go install pkg@version` refuses), go.sum the hashes. tests/manifests/test_skaffold.py runs the binary.
# The first build takes minutes (docs/DEPLOY.md), so it is redone only when those pins change (go.mod without its
# comments, go.sum), not when a checkout merely touches the files; another clone on the same machine relinks from
# Go's build cache in seconds.
skaffold_pins="$({ grep -v '^//' stack/validation/skaffold/go.mod; cat stack/validation/skaffold/go.sum; } | sha256sum)"
if all && { [ ! -x "$GOBIN/skaffold" ] || [ "$(cat "$LOCAL/skaffold-pins" 2>/dev/null)" != "$skaffold_pins" ]; }; then
  say "building skaffold v2.16.1 (go install; once per machine: minutes on a fresh one, see docs/DEPLOY.md)"
  # `skaffold version` prints what -X sets, as in skaffold's own release build (its Makefile), which also strips.
  (cd stack/validation/skaffold && export GOFLAGS=-mod=readonly \
     && skaffold_module=github.com/GoogleContainerTools/skaffold/v2 \
     && version="$(go list -m -f '{{.Version}}' "$skaffold_module")" \
     && go install -ldflags="-s -w -X $skaffold_module/pkg/skaffold/version.version=$version" "$skaffold_module/cmd/skaffold")
  echo "$skaffold_pins" >"$LOCAL/skaffold-pins"
fi
# stack/jaeger pins Jaeger v1.76.0 (whose cmd/jaeger is Jaeger v2, an OpenTelemetry Collector build: `make up` runs it,
# once it is built, as the stack's trace store and metrics receiver, with stack/jaeger/config.yaml; without it the
# functions make no traces). Like skaffold's, its go.mod repeats Jaeger's replace directive, which
# `go install pkg@version` refuses; it is rebuilt only when those pins change.
jaeger_pins="$({ grep -v '^//' stack/jaeger/go.mod; cat stack/jaeger/go.sum; } | sha256sum)"
if all && { [ ! -x "$GOBIN/jaeger" ] || [ "$(cat "$LOCAL/jaeger-pins" 2>/dev/null)" != "$jaeger_pins" ]; }; then
  say "building Jaeger v1.76.0's cmd/jaeger (go install; once per machine: minutes on a fresh one)"
  (cd stack/jaeger && GOFLAGS=-mod=readonly go install github.com/jaegertracing/jaeger/cmd/jaeger)
  echo "$jaeger_pins" >"$LOCAL/jaeger-pins"
fi
# stack/validation/go.mod pins the Knative, eventing-rabbitmq and RabbitMQ operator modules: the Go admission test
# builds on them and tests/manifests/test_manifests.py reads their released CRDs from the module cache, and skaffold's JSON
# schema from the skaffold module its skaffold/ folder pins. Nothing is fetched once they are cached.
# (A module cache emptied later is refilled by the tests themselves: `go mod download` again.)
stamp="$LOCAL/validation-modules"
if all && { [ ! -f "$stamp" ] || [ -n "$(find stack/validation -name go.sum -newer "$stamp")" ]; }; then
  say "downloading the modules the manifest checks read (go mod download)"
  (cd stack/validation && GONOSUMDB=knative.dev GOFLAGS=-mod=readonly go mod download)
  (cd stack/validation/skaffold && GOFLAGS=-mod=readonly go mod download github.com/GoogleContainerTools/skaffold/v2)
  touch "$stamp"
fi

say "ready"
