#!/usr/bin/env bash
# Generates the test fixtures into test/fixtures/generated with the local Python torch, unless
# they are already there for this torch version and these scripts. Where that Python also has
# transformers, the model-family fixtures too (test/fixtures/generated/hf, by the exporter).
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(node scripts/libtorch.js --python)
out=test/fixtures/generated
version=$("$python" -c 'import torch; print(torch.__version__)')
if "$python" -c 'import transformers' 2>/dev/null; then
  version="$version transformers $("$python" -c 'import transformers; print(transformers.__version__)')"
fi
fresh=1
for script in scripts/make_fixtures.py scripts/reference_models.py scripts/make_hf_fixtures.py python/easyroutine_export.py; do
  [ "$out/STAMP" -nt "$script" ] || fresh=0
done
if [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$version" ] && [ "$fresh" = 1 ]; then
  exit 0
fi
echo "easyroutine: generating test fixtures with torch $version ($python)"
rm -rf "$out"
"$python" scripts/make_fixtures.py "$out"
case "$version" in
  *transformers*) "$python" scripts/make_hf_fixtures.py "$out/hf" ;;
esac
echo "$version" > "$out/STAMP"
