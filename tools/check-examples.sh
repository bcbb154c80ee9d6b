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
nflags=$(pkg-config --define-variable=prefix="$root" --cflags --libs ringlog-nats)
echo "pkg-config ringlog-nats: $nflags"
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror docs/examples/ship.c $nflags -pthread -o "$stage/ship"
export LD_LIBRARY_PATH=$root/lib
"$stage/service" "$stage/wal"
"$stage/replay" "$stage/wal"
"$stage/event_loop" "$stage/wal2"
# The shipping example against a one-node JetStream server of its own.
port=$((20000 + RANDOM % 10000))
mkdir "$stage/js"
nats-server -js -a 127.0.0.1 -p "$port" -sd "$stage/js" > "$stage/nats.log" 2>&1 &
nats=$!
# (Each step may fail, the server being gone already; errexit holds in traps too.)
trap 'kill $nats 2>/dev/null || true; wait $nats 2>/dev/null || true; rm -rf "$stage"' EXIT
for _ in $(seq 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done
"$stage/ship" "$stage/wal3" "$stage/standby" "nats://127.0.0.1:$port"
kill $nats
wait $nats 2>/dev/null || true
# The installed pages render.
for page in "$root"/share/man/man3/ringlog_open.3 "$root"/share/man/man7/ringlog.7 \
	"$root"/share/man/man1/ringlog-ship.1 "$root"/share/man/man1/ringlog-restore.1 \
	"$root"/share/man/man3/ringlog_nats_shipper_start.3; do
	[ -f "$page" ] || { echo "missing man page $page" >&2; exit 1; }
	MANWIDTH=80 man -l "$page" > /dev/null
done
# A one-line ".so" page resolves to the page it names, as installed.
(cd "$root/share/man" && MANWIDTH=80 man -l man3/ringlog_slot_lsn.3) | grep -q ringlog_slot_open ||
	{ echo "man3/ringlog_slot_lsn.3 does not render ringlog_slot_open(3)" >&2; exit 1; }
PREFIX=$prefix DESTDIR=$stage tools/install.sh uninstall build >/dev/null
left=$(find "$root" -type f | wc -l)
if [ "$left" -ne 0 ]; then
	echo "uninstall left $left files:" >&2
	find "$root" -type f >&2
	exit 1
fi
echo "examples: built against the installed copy, ran, uninstalled cleanly"
