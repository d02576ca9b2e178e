#!/usr/bin/env bash
# The bash completion, as a user meets it: bash-completion's loader finds the installed file in
# the prefix (XDG_DATA_DIRS, as README "Installing" says for a prefix outside its search path),
# and then completes: the commands `rumor --help` lists and no others, every flag of every
# `rumor COMMAND --help` and no others, keyring subcommands, fixed values, and key names asked of
# a running agent. The completion reads --help itself, so this guards its reading of CLI11's help
# and its walk over the words typed so far (a flag's value is never taken for a command).
# usage: completion_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
prefix=$3
rumor=$prefix/bin/rumor
bc=/usr/share/bash-completion/bash_completion
[[ -r $bc ]] || skip "bash-completion is not installed (Debian package bash-completion; tools/dev installs it)"
[[ -f $prefix/share/bash-completion/completions/rumor ]] || fail "no completion file installed"
tmp=$(mktemp -d /tmp/rumor-completion-test-XXXXXX)
agent_pid=
cleanup() {
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# complete WORD...: what <TAB> offers after `WORD...` (the last word is the one completed), one
# per line, sorted. A fresh bash each time: bash-completion loads the file on demand.
complete_words() {
  XDG_DATA_DIRS=$prefix/share:/usr/share PATH=$prefix/bin:$PATH \
    bash --norc --noprofile -c '
      . "$0"
      __load_completion rumor || { echo "bash-completion did not load rumor'\''s completion" >&2; exit 3; }
      complete -p rumor | grep -q -- "-F _rumor" || { echo "not registered: $(complete -p rumor)" >&2; exit 3; }
      COMP_WORDS=("$@")
      COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
      COMP_LINE="$*"
      COMP_POINT=${#COMP_LINE}
      _rumor rumor "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
      printf "%s\n" "${COMPREPLY[@]}"' "$bc" "$@" | sed '/^$/d' | sort
}

# same LABEL GOT WANT: two sorted lists agree.
same() {
  [[ $2 == "$3" ]] || fail "$1: completion offers [$(echo $2)], expected [$(echo $3)]"
}

got=$(complete_words rumor "")
same "commands" "$got" "$(cli_subcommands "$rumor" | sort)"
same "commands starting with s" "$(complete_words rumor s)" "$(printf 'set\nsim\nstats')"

checked=0
check_flags() {  # check_flags COMMAND...: `rumor COMMAND... -<TAB>` against its --help
  local want got
  want=$(cli_flags "$rumor" "$@" | grep -vx -- -h | sort)
  got=$(complete_words rumor "$@" - | sort)
  same "flags of rumor $*" "$got" "$want"
  checked=$((checked + 1))
}
check_flags
for cmd in $(cli_subcommands "$rumor"); do
  check_flags "$cmd"
  subs=$(cli_subcommands "$rumor" "$cmd")
  if [[ -n $subs ]]; then
    same "subcommands of rumor $cmd" "$(complete_words rumor "$cmd" "")" "$(sort <<<"$subs")"
    for sub in $subs; do check_flags "$cmd" "$sub"; done
  fi
done

same "rumor agent --preset" "$(complete_words rumor agent --preset "")" "$(printf 'lan\nlocal\nwan')"
same "rumor agent --log-level" "$(complete_words rumor agent --log-level "")" \
  "$(printf 'debug\nerror\ninfo\nwarn')"
same "rumor load --workload" "$(complete_words rumor load --nodes 10 --workload "")" \
  "$(printf 'churn\npartition\nupdate\nwrites')"
same "rumor keys mode" "$(complete_words rumor keys mode "")" \
  "$(printf 'accept\noff\nrequire\nsend')"
# A flag's value is not taken for an argument: after `--admin ADDR`, the flags again.
same "rumor get --admin ADDR --js" "$(complete_words rumor get --admin 127.0.0.1:9 --js)" "--json"
same "rumor keys --prefix mode" "$(complete_words rumor keys --prefix mode "")" \
  "$(cli_subcommands "$rumor" keys | sort)"
same "rumor agent -o k=v --pre" "$(complete_words rumor agent -o node.x=1 --pre)" "--preset"
touch "$tmp/rumor-test.toml"
same "rumor agent --config FILE" "$(cd "$tmp" && complete_words rumor agent --config rumor-)" \
  "rumor-test.toml"

# Key names from a running agent (the installed binary, on ports the kernel picks).
"$rumor" agent --name completion --bind 127.0.0.1:0 --admin 127.0.0.1:0 --preset local \
  --no-pin --ready-file "$tmp/ready" 2>"$tmp/agent.log" &
agent_pid=$!
for _ in $(seq 200); do [[ -s $tmp/ready ]] && break; sleep 0.05; done
[[ -s $tmp/ready ]] || fail "the agent did not start: $(cat "$tmp/agent.log")"
admin=$(sed -E 's/.*"admin":"([^"]*)".*/\1/' "$tmp/ready")
"$rumor" set service_version v1.2.4 --admin "$admin" >/dev/null
"$rumor" set service_owner team-a --admin "$admin" >/dev/null
"$rumor" set other 1 --admin "$admin" >/dev/null
same "rumor get --admin ADDR service_" "$(complete_words rumor get --admin "$admin" service_)" \
  "$(printf 'service_owner\nservice_version')"
same "rumor del --admin ADDR o" "$(complete_words rumor del --admin "$admin" o)" "other"
# No agent there: nothing, quickly, and no error on the terminal.
same "rumor get, no agent" "$(complete_words rumor get --admin 127.0.0.1:9 serv 2>&1)" ""
echo "completion test: ok ($checked flag lists)"
