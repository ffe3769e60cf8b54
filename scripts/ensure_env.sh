#!/usr/bin/env bash
# Make sure the project virtualenv exists and matches pyproject.toml; print its path.
#
# Why outside the clone: lerobot==0.4.4 pulls torch 2.10 (several GB). CI runs in a
# fresh clone every time, so the environment lives in a per-machine cache keyed by the
# Python version, and a stamp holding a hash of the dependency spec decides whether pip
# has to run again. The clone itself is installed editable (cheap) so `pirl-console`
# and `python -m pirl_core.*` resolve to the checkout that called us.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python_bin="${PIRL_PYTHON:-python3}"
pyver="$("$python_bin" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
venv="${PIRL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pirl/venv-py${pyver}}"

# Extras installed with the dependencies: dev tools and LIBERO (the `libero` extra; the core and
# the toy profile run without it). Part of the stamp, so changing the list re-installs.
extras="${PIRL_EXTRAS:-dev,libero}"

# One line with the spec hash, then the requirement lines (dependencies + the chosen extras).
spec="$("$python_bin" - "$root/pyproject.toml" "$extras" <<'PY'
import hashlib, json, sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
optional = project.get("optional-dependencies", {})
extras = [e for e in sys.argv[2].split(",") if e]
unknown = [e for e in extras if e not in optional]
if unknown:
    sys.exit(f"[ensure_env] PIRL_EXTRAS names unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
spec = {"deps": project["dependencies"], "extras": optional, "installed": extras}
print(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16])
for dep in project["dependencies"] + [d for e in extras for d in optional[e]]:
    print(dep)
PY
)"
spec_hash="$(head -n 1 <<<"$spec")"
requirements="$(tail -n +2 <<<"$spec")"
if [ "${1:-}" = "--print-spec" ]; then  # what would be installed, and its stamp; touches nothing
  printf '%s\n' "$spec"
  exit 0
fi

log() { echo "[ensure_env] $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv at $venv (once per machine)"
  mkdir -p "$(dirname "$venv")"
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=71,<81" wheel
fi

stamp="$venv/.pirl-spec-$spec_hash"
if [ ! -f "$stamp" ]; then
  log "installing dependencies into $venv (spec $spec_hash; first time takes several minutes)"
  # Dependencies only; the project itself is installed editable below.
  printf '%s\n' "$requirements" > "$venv/.pirl-requirements.txt"
  "$venv/bin/python" -m pip install --progress-bar off -r "$venv/.pirl-requirements.txt" >&2
  rm -f "$venv"/.pirl-spec-*
  touch "$stamp"
fi

installed_root="$(cd / && "$venv/bin/python" -I -c 'import pathlib, pirl_core; print(pathlib.Path(pirl_core.__file__).resolve().parents[1])' 2>/dev/null || true)"
if [ "$installed_root" != "$root" ]; then
  log "installing pirl (editable) from $root"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root" >&2
fi

echo "$venv"
