#!/usr/bin/env bash
# The man pages, as a user meets them: with the prefix's bin/ on PATH, `man rumor` and
# `man rumor-agent` find the installed pages (man-db looks in ../share/man of every PATH entry)
# and render without a warning; and they cover the CLI: every command `rumor --help`
# lists has its page, every keyring subcommand is in rumor-keys(1), and every flag of every
# `--help` appears in its page. A new command or flag fails here until its page says what it is.
# usage: man_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
prefix=$3
rumor=$prefix/bin/rumor
man1=$prefix/share/man/man1
command -v man >/dev/null || skip "man is not installed (Debian package man-db; tools/dev installs it)"
unset MANPATH
export PATH=$prefix/bin:$PATH MANWIDTH=100

found=$(man -w rumor)
[[ $found == "$man1/rumor.1" ]] || fail "man -w rumor found '$found', not $man1/rumor.1"
out=$(man rumor 2>&1)
grep -q "rumor - run a rumor gossip agent, or talk to a running one" <<<"$out" ||
  fail "man rumor did not show the page:\n$out"
out=$(man rumor-agent 2>&1)
grep -q "sd_notify" <<<"$out" || fail "man rumor-agent did not show the page:\n$out"

for page in "$man1"/rumor*.1; do
  warnings=$(man --warnings -l "$page" 2>&1 >/dev/null)
  [[ -z $warnings ]] || fail "$page renders with warnings:\n$warnings"
done

# The page's text with roff escapes for '-' and fonts removed.
page_text() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$1"; }

checked=0
check_flags() {  # check_flags PAGE COMMAND...
  local page=$1 text flag
  shift
  text=$(page_text "$page")
  for flag in $(cli_flags "$rumor" "$@"); do
    # --help is everywhere (rumor(1) says so); the rest must be in the command's page.
    [[ $flag == -h || $flag == --help ]] && continue
    has_word "$text" "$flag" || fail "rumor $* $flag is not in $(basename "$page")"
    checked=$((checked + 1))
  done
}

check_flags "$man1/rumor.1"
for cmd in $(cli_subcommands "$rumor"); do
  page=$man1/rumor-$cmd.1
  [[ -f $page ]] || fail "rumor $cmd has no man page (docs/man/rumor-$cmd.1)"
  has_word "$(page_text "$man1/rumor.1")" "rumor-$cmd" || fail "rumor(1) does not list rumor-$cmd(1)"
  check_flags "$page" "$cmd"
  for sub in $(cli_subcommands "$rumor" "$cmd"); do
    has_word "$(page_text "$page")" "$sub" || fail "rumor $cmd $sub is not in rumor-$cmd.1"
    check_flags "$page" "$cmd" "$sub"
  done
done
((checked > 50)) || fail "only $checked flags checked: is the --help parsing broken?"
echo "man test: ok ($(ls "$man1"/rumor*.1 | wc -l) pages, $checked flags)"
