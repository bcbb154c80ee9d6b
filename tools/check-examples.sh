#!/usr/bin/env bash
# Install into a temporary DESTDIR, build docs/examples against that copy through
# pkg-config (as a user of the installed library would), run them, and uninstall.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
stage=$(mktemp -d /var/tmp/ringlog-examples-XXXXXX)
trap 'rm -rf "$stage"' EXIT
prefix=/usr/local
cd "$top"
PREFIX=$prefix DESTDIR=$stage tools/install.sh install build >/dev/null
root=$stage$prefix
export PKG_CONFIG_PATH=$root/lib/pkgconfig
flags=$(pkg-config --define-variable=prefix="$root" --cflags --libs ringlog)
echo "pkg-config ringlog: $flags"
for ex in service event_loop replay; do
	cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror docs/examples/$ex.c $flags -pthread \
		-o "$stage/$ex"
done
export LD_LIBRARY_PATH=$root/lib
"$stage/service" "$stage/wal"
"$stage/replay" "$stage/wal"
"$stage/event_loop" "$stage/wal2"
# The installed pages render.
for page in "$root"/share/man/man3/ringlog_open.3 "$root"/share/man/man7/ringlog.7; do
	[ -f "$page" ] || { echo "missing man page $page" >&2; exit 1; }
	MANWIDTH=80 man -l "$page" > /dev/null
done
PREFIX=$prefix DESTDIR=$stage tools/install.sh uninstall build >/dev/null
left=$(find "$root" -type f | wc -l)
if [ "$left" -ne 0 ]; then
	echo "uninstall left $left files:" >&2
	find "$root" -type f >&2
	exit 1
fi
echo "examples: built against the installed copy, ran, uninstalled cleanly"
