#!/usr/bin/env bash
# The full test suite (what `npm test` and CI run):
#   1. setup (system packages, npm dependencies, builds, fixtures)
#   2. the TypeScript typecheck (lib and tests), then vitest against the cmake-js build
#   3. the tensor tests against a build without external buffers (Electron's memory cage)
#   4. the package loaded from its prebuild alone (npm run build:prebuild)
#   5. with CI=true or EASYROUTINE_TEST_GYP=1: the node-gyp build (binding.gyp) loads and runs
# EASYROUTINE_TEST_BUILD_VARIANTS=0 skips 3 and 5: build-system variants that do not depend on the
# libtorch version, so CI runs them once (its libtorch 2.x leg sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
bash scripts/setup.sh

# With CI=true the plot pages are checked in a real browser: Debian's chromium is installed (about
# 12 s) and the page tests must run; elsewhere they run when a chromium is on PATH.
if [ "${CI:-}" = true ]; then
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "easyroutine: installing chromium for the plot page tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
  fi
  export EASYROUTINE_EXPECT_CHROMIUM=1
fi

echo "== typecheck"
npx tsc -p tsconfig.json --noEmit

echo "== API docs (typedoc; a warning, e.g. an undocumented export, fails)"
npx typedoc --logLevel Error

echo "== vitest (libtorch $(node -p "require('./dist').runtimeInfo().libtorchVersion"))"
npx vitest run

variants=${EASYROUTINE_TEST_BUILD_VARIANTS:-1}

if [ "${CI:-}" = true ] && [ "$variants" != 0 ]; then
  # alone, once (not in the libtorch roots: the file's size does not depend on the libtorch): a cache
  # file above 4 GiB saved and loaded, 4.3 GB of disk and ~9 GB of memory for half a minute, which
  # beside the rest of the suite starved its child processes
  echo "== a cache file above 4 GiB"
  EASYROUTINE_TEST_LARGE_FILES=1 npx vitest run test/activation-store.test.ts -t "above 4 GiB"
fi

if [ "$variants" != 0 ]; then
  echo "== tensor tests with NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED (copy fallback)"
  if [ ! -f build-copy/Release/easyroutine.node ] || [ -n "$(find cpp CMakeLists.txt -newer build-copy/Release/easyroutine.node -print -quit)" ]; then
    npm run build:native:copy --silent
  fi
  EASYROUTINE_ADDON=build-copy/Release/easyroutine.node EASYROUTINE_EXPECT_COPY_DATA=1 npx vitest run test/tensor.test.ts
fi

echo "== prebuild"
bash scripts/check-prebuild.sh

if [ "$variants" != 0 ] && { [ "${CI:-}" = true ] || [ "${EASYROUTINE_TEST_GYP:-}" = 1 ]; }; then
  echo "== node-gyp build (binding.gyp)"
  bash scripts/check-gyp.sh
fi
