#!/usr/bin/env bash
# README.md's C++ snippets compile as shown. Each ```cpp block is taken from README.md as it is;
# a block without its own main() is the body of one: its #include lines go to the top and the
# rest into `int main() { ... }`, nothing else is added.
#   - A snippet that includes <rumor/...> (the embedding API) is built and linked against the
#     installed prefix twice: with find_package(rumor) and target rumor::rumor, and with the
#     README's own pkg-config command line (the line of README.md that starts with
#     `c++ -std=c++20 app.cc $(pkg-config`), app.cc replaced by the snippet.
#   - A snippet that includes "engine/..." (the internal API, not installed) is compiled
#     against the source tree.
# Then the headers' C++20 check: compiling a public snippet as C++17 fails with its message.
# usage: readme_snippets_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR CXX_COMPILER
set -euo pipefail
. "$(dirname "$0")/lib.sh"
src=$2 prefix=$3 libdir=$4 cxx=$5
tmp=$(mktemp -d /tmp/rumor-readme-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Extract the blocks: snippet-N.cc, as written.
awk -v dir="$tmp" '
  /^```cpp[ \t]*$/ { n++; out = sprintf("%s/block-%d.cc", dir, n); inside = 1; next }
  inside && /^```/ { inside = 0; close(out); next }
  inside { print > out }
' "$src/README.md"
blocks=("$tmp"/block-*.cc)
[[ -e ${blocks[0]} ]] || fail "no \`\`\`cpp block in README.md"

public=() internal=()
for b in "${blocks[@]}"; do
  n=$(basename "$b" .cc)
  n=${n#block-}
  s=$tmp/snippet-$n.cc
  if grep -q 'int main(' "$b"; then
    cp "$b" "$s"
  else
    { grep '^#include' "$b"; echo "int main() {"; grep -v '^#include' "$b"; echo "}"; } >"$s"
  fi
  if grep -q '#include <rumor/' "$b"; then
    public+=("$n")
  elif grep -q '#include "engine/' "$b"; then
    internal+=("$n")
  else
    fail "README.md block $n includes neither <rumor/...> nor \"engine/...\":\n$(cat "$b")"
  fi
done
((${#public[@]} > 0)) || fail "README.md has no embedding snippet (#include <rumor/...>)"
echo "README.md: ${#blocks[@]} C++ blocks, public: ${public[*]}, internal: ${internal[*]:-none}"

echo "== find_package(rumor)"
{
  echo "cmake_minimum_required(VERSION 3.20)"
  echo "project(readme_snippets LANGUAGES CXX)"
  echo "find_package(rumor REQUIRED)"
  for n in "${public[@]}"; do
    echo "add_executable(snippet-$n snippet-$n.cc)"
    echo "target_link_libraries(snippet-$n PRIVATE rumor::rumor)"
  done
} >"$tmp/CMakeLists.txt"
cmake -S "$tmp" -B "$tmp/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$tmp/cmake.log" 2>&1 || fail "configuring against the prefix failed:\n$(cat "$tmp/cmake.log")"
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 ||
  fail "a README snippet does not build with find_package(rumor):\n$(cat "$tmp/build.log")"

echo "== pkg-config, with README's command line"
line=$(grep -E '^c\+\+ -std=c\+\+20 app\.cc \$\(pkg-config' "$src/README.md" | head -1)
[[ -n $line ]] || fail "README.md has no 'c++ -std=c++20 app.cc \$(pkg-config ...' line"
echo "README: $line"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
for n in "${public[@]}"; do
  cmd=${line/#c++ /\"\$cxx\" }
  cmd=${cmd/ app.cc / \"$tmp/snippet-$n.cc\" }
  (cd "$tmp" && eval "$cmd -o snippet-$n-pc") >"$tmp/pc.log" 2>&1 ||
    fail "README snippet $n does not build with: $line\n$(cat "$tmp/pc.log")"
  # Built with an rpath into the prefix: it resolves librumor without LD_LIBRARY_PATH.
  libs=$(env -u LD_LIBRARY_PATH ldd "$tmp/snippet-$n-pc")
  grep -q "librumor.so.* => $prefix/" <<<"$libs" ||
    fail "snippet $n does not find librumor in the prefix:\n$libs"
done

for n in ${internal[@]+"${internal[@]}"}; do
  echo "== internal snippet $n, against the source tree"
  "$cxx" -std=c++20 -fsyntax-only -I"$src" -I"$src/include" "$tmp/snippet-$n.cc" \
    >"$tmp/int.log" 2>&1 || fail "README snippet $n does not compile:\n$(cat "$tmp/int.log")"
done

echo "== as C++17: the headers say what they need"
first=${public[0]}
if "$cxx" -std=c++17 -fsyntax-only $(pkg-config --cflags rumor) "$tmp/snippet-$first.cc" \
     >"$tmp/cxx17.log" 2>&1; then
  fail "snippet $first compiled as C++17: the headers' C++20 check is gone"
fi
grep -q "rumor needs C++20 or later" "$tmp/cxx17.log" ||
  fail "compiling as C++17 did not say why:\n$(head -5 "$tmp/cxx17.log")"
echo "readme snippets test: ok"
