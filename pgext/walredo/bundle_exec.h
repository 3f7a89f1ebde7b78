/*
 * bundle_exec.h — running a program of a bundle version through that
 * version's own dynamic loader and libraries (used by launcher.c and
 * walredo_wrapper.c).
 *
 * PGMESH_LIBDIRS: colon-separated library directories relative to the
 * version root, e.g. usr/lib/x86_64-linux-gnu.
 */
#ifndef BUNDLE_EXEC_H
#define BUNDLE_EXEC_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BUNDLE_MAX_ARGS 4096

/* root/dir for each dir of PGMESH_LIBDIRS, colon-separated; -1 if it does not fit. */
static int
bundle_library_path(const char *root, char *out, size_t size)
{
	const char *dirs = PGMESH_LIBDIRS;
	size_t		used = 0;

	out[0] = '\0';
	while (*dirs != '\0')
	{
		size_t		len = strcspn(dirs, ":");
		int			n = snprintf(out + used, size - used, "%s%s/%.*s", used ? ":" : "", root, (int) len, dirs);

		if (n < 0 || (size_t) n >= size - used)
			return -1;
		used += (size_t) n;
		dirs += len;
		if (*dirs == ':')
			dirs++;
	}
	return 0;
}

/*
 * execv()s `program` with argv[first..argc-1], through `interp` with the
 * library path when interp is given. Returns only on failure (errno set).
 */
static void
bundle_exec(const char *interp, const char *libpath, const char *program, int argc, char **argv, int first)
{
	char	   *args[BUNDLE_MAX_ARGS + 5];
	int			n = 0;

	if (argc - first > BUNDLE_MAX_ARGS)
	{
		errno = E2BIG;
		return;
	}
	if (interp != NULL)
	{
		args[n++] = (char *) interp;
		args[n++] = "--library-path";
		args[n++] = (char *) libpath;
	}
	args[n++] = (char *) program;
	for (int i = first; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execv(args[0], args);
}

#endif							/* BUNDLE_EXEC_H */
