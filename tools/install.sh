#!/usr/bin/env bash
# Install or uninstall ringlog from a build directory.  Run through ninja:
#   ninja install                       # into /usr/local
#   PREFIX=/usr DESTDIR=/tmp/stage ninja install
#   ninja uninstall                     # removes what the manifest lists
# Environment: PREFIX (default /usr/local), DESTDIR (default empty), LIBDIR (default
# $PREFIX/lib), MANDIR (default $PREFIX/share/man).
set -euo pipefail
action=${1:?usage: install.sh install|uninstall BUILD_DIR}
build=${2:-build}
prefix=${PREFIX:-/usr/local}
libdir=${LIBDIR:-$prefix/lib}
includedir=$prefix/include
bindir=$prefix/bin
mandir=${MANDIR:-$prefix/share/man}
dest=${DESTDIR:-}
manifest="$dest$prefix/share/ringlog/install-manifest.txt"
top=$(cd "$(dirname "$0")/.." && pwd)

if [ "$action" = uninstall ]; then
	if [ ! -f "$manifest" ]; then
		echo "uninstall: no manifest at $manifest (nothing installed with this PREFIX/DESTDIR?)" >&2
		exit 1
	fi
	while IFS= read -r f; do
		rm -f "$dest$f"
	done < "$manifest"
	rm -f "$manifest"
	rmdir "$dest$prefix/share/ringlog" 2>/dev/null || true
	echo "uninstalled ringlog from $dest$prefix"
	exit 0
fi
[ "$action" = install ] || { echo "install.sh: unknown action $action" >&2; exit 2; }

version=$(sed -n 's/^#define RINGLOG_VERSION_MAJOR \([0-9]*\)$/\1/p' "$top/include/ringlog.h").$(
	sed -n 's/^#define RINGLOG_VERSION_MINOR \([0-9]*\)$/\1/p' "$top/include/ringlog.h")
major=${version%%.*}
installed=()
put() { # put MODE SRC DIR [NAME]
	local mode=$1 src=$2 dir=$3 name=${4:-$(basename "$2")}
	install -D -m "$mode" "$src" "$dest$dir/$name"
	installed+=("$dir/$name")
}
link() { # link TARGET DIR NAME
	mkdir -p "$dest$2"
	ln -sf "$1" "$dest$2/$3"
	installed+=("$2/$3")
}

put 644 "$top/include/ringlog.h" "$includedir"
put 644 "$top/include/ringlog_nats.h" "$includedir"
for lib in libringlog libringlog-nats; do
	put 644 "$build/$lib.a" "$libdir"
	put 755 "$build/$lib.so.$version" "$libdir"
	link "$lib.so.$version" "$libdir" "$lib.so.$major"
	link "$lib.so.$major" "$libdir" "$lib.so"
done
for t in ringlog-bench naive-append ringlog-demo ringlog-dump ringlog-ship ringlog-restore; do
	put 755 "$build/$t" "$bindir"
done
pc=$(mktemp)
cat > "$pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=${libdir/#$prefix/\${prefix\}}

Name: ringlog
Description: Durable segmented append-only log through io_uring
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lringlog
Libs.private: -lm -pthread
Requires.private: liburing libisal
PC
put 644 "$pc" "$libdir/pkgconfig" ringlog.pc
cat > "$pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=${libdir/#$prefix/\${prefix\}}

Name: ringlog-nats
Description: Ship a ringlog log into NATS JetStream exactly once, and restore it
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lringlog-nats
Requires: ringlog libnats
PC
put 644 "$pc" "$libdir/pkgconfig" ringlog-nats.pc
rm -f "$pc"
for page in "$top"/docs/man/*.[137]; do
	[ -e "$page" ] || continue
	sec=${page##*.}
	put 644 "$page" "$mandir/man$sec"
done
mkdir -p "$(dirname "$manifest")"
printf '%s\n' "${installed[@]}" > "$manifest"
echo "installed ringlog $version into $dest$prefix (${#installed[@]} files; manifest: $prefix/share/ringlog/install-manifest.txt)"
