/*
 * launcher.c — the bundle's top-level `launcher`, a static program:
 *
 *   launcher VERSION BINARY [ARGS…]
 *
 * runs DIR/vVERSION/bin/BINARY (DIR = the directory holding the launcher)
 * through that version's own dynamic loader and libraries, and puts those
 * libraries on LD_LIBRARY_PATH for the programs it starts in turn. Static, so
 * it needs nothing from the host either (no shell, no loader).
 *
 * Compile-time paths, relative to DIR/vVERSION:
 *   PGMESH_INTERP   the dynamic loader, e.g. lib64/ld-linux-x86-64.so.2
 *   PGMESH_LIBDIRS  colon-separated library dirs, e.g. usr/lib/x86_64-linux-gnu
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle_exec.h"

static void
fail(int code, const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "launcher: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(code);
}

static int
plain_name(const char *s, int digits_only)
{
	if (*s == '\0' || *s == '.')
		return 0;
	for (; *s; s++)
	{
		if (digits_only ? !(*s >= '0' && *s <= '9')
			: !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return 0;
	}
	return 1;
}

int
main(int argc, char **argv)
{
	char self[PATH_MAX];
	char vdir[PATH_MAX];
	char bin[PATH_MAX];
	char interp[PATH_MAX];
	char libpath[PATH_MAX * 2];
	char *slash;
	struct stat st;
	ssize_t n;

	if (argc < 3)
		fail(2, "usage: launcher VERSION BINARY [ARGS...]   e.g. launcher 15 initdb -D /data%s%s", "", "");
	if (!plain_name(argv[1], 1))
		fail(2, "VERSION \"%s\" is not a major version number such as 15%s", argv[1], "");
	if (!plain_name(argv[2], 0))
		fail(2, "BINARY \"%s\" is not a plain program name such as initdb%s", argv[2], "");

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n >= 0)
		self[n] = '\0';
	else if (realpath(argv[0], self) == NULL)
		fail(1, "cannot find my own path from \"%s\"%s", argv[0], "");
	slash = strrchr(self, '/');
	*slash = '\0';

	if (snprintf(vdir, sizeof(vdir), "%s/v%s", self, argv[1]) >= (int) sizeof(vdir))
		fail(1, "path too long: %s/v%s", self, argv[1]);
	if (stat(vdir, &st) != 0 || !S_ISDIR(st.st_mode))
		fail(1, "this bundle has no PostgreSQL %s (no directory %s)", argv[1], vdir);
	if (snprintf(bin, sizeof(bin), "%s/bin/%s", vdir, argv[2]) >= (int) sizeof(bin))
		fail(1, "path too long: %s/bin/%s", vdir, argv[2]);
	if (access(bin, X_OK) != 0)
		fail(1, "no program %s in this bundle (%s)", argv[2], bin);
	if (snprintf(interp, sizeof(interp), "%s/%s", vdir, PGMESH_INTERP) >= (int) sizeof(interp))
		fail(1, "path too long: %s/%s", vdir, PGMESH_INTERP);

	if (bundle_library_path(vdir, libpath, sizeof(libpath)) != 0)
		fail(1, "library path too long under %s%s", vdir, "");
	setenv("LD_LIBRARY_PATH", libpath, 1);
	bundle_exec(interp, libpath, bin, argc, argv, 3);
	fail(1, "cannot execute %s: %s", interp, strerror(errno));
	return 1;
}
