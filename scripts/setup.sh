#!/usr/bin/env bash
# One-shot set-up for a fresh Debian machine: system packages, a virtual environment in .venv,
# and anchor with its training, microphone, benchmark-plot and test extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  espeak-ng sox            # offline TTS for `anchor serve` text input and test fixtures
  festival festvox-us-slt-hts  # the default offline TTS voice (HTS, far better than espeak-ng)
  libportaudio2            # sounddevice (--mic)
  pulseaudio libasound2-plugins  # a virtual input device for the --mic tests
  chromium chromium-driver # the real-browser end-to-end test
  iproute2 util-linux      # `unshare --net` + `ip link` for the loopback-only browser test
  janus                    # the SFU `anchor serve --publish` feeds (its streaming plugin)
)
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU wheel every machine here carries; unpinned it pulls GBs of CUDA.
.venv/bin/python -m pip install -q -e '.[train,mic,bench,dev]'
echo "set-up done: run '.venv/bin/anchor serve' and open http://127.0.0.1:8080/"
