# Shared by the install tests (sourced). They take: BUILD_DIR SOURCE_DIR PREFIX LIBDIR [...].

fail() {
  printf "FAIL: %b\n" "$*" >&2  # %b: messages carry \n
  exit 1
}

# Exit 77, which CTest reports as skipped, with the reason.
skip() {
  echo "SKIP: $*"
  exit 77
}

# cli_subcommands RUMOR [COMMAND...]: the subcommands `RUMOR COMMAND... --help` lists.
cli_subcommands() {
  "$@" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }'
}

# cli_flags RUMOR [COMMAND...]: every flag `RUMOR COMMAND... --help` lists (-h and --help too).
cli_flags() {
  "$@" --help | sed -n '/^Options:/,/^$/p' |
    grep -oE '^ +(-[a-zA-Z],)?--[a-zA-Z0-9-]+' | tr ',' '\n' | tr -d ' '
}

# has_word TEXT WORD: WORD appears in TEXT as a whole flag or word (not inside a longer one).
has_word() {
  grep -qE -- "(^|[^a-zA-Z0-9_-])$2([^a-zA-Z0-9_-]|\$)" <<<"$1"
}
