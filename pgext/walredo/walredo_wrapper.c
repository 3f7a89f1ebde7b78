/*
 * walredo_wrapper.c — the bundle's bin/postgres.
 *
 *   postgres --wal-redo [--disable-seccomp]
 *                           a walredo process speaking Neon's protocol on its own
 *                           stdin (requests) and stdout (pages), like Neon's
 *                           `postgres --wal-redo`; its redo loop runs under a
 *                           seccomp filter unless --disable-seccomp
 *   postgres ARGS…          exec Debian's real postgres with ARGS
 *
 * For --wal-redo it copies the template cluster into a scratch directory,
 * $PGMESH_WALREDO_SCRATCH_DIR (an existing empty directory, removed at the end)
 * or a fresh one under $PGMESH_WALREDO_SCRATCH_ROOT (else $TMPDIR, else
 * /tmp), then runs the
 * real postgres in single-user mode as its child with the protocol on fds 3/4
 * and `SELECT pgmesh_walredo_main()` on stdin. It stays as the parent to
 * remove the scratch directory when the child ends, and exits the way the
 * child did. The child gets SIGKILL if the wrapper dies; SIGTERM, SIGINT,
 * SIGHUP and SIGQUIT to the wrapper kill the child. A child that dies before
 * its protocol loop removed its System V segment (killed during start-up)
 * leaves it behind: the wrapper removes it.
 *
 * The real postgres is started through the bundle's own dynamic loader and
 * libraries, so nothing from the host is needed.
 *
 * Compile-time paths, relative to the bundle root (the directory above bin/):
 *   PGMESH_PG_BINDIR    Debian's bindir, e.g. usr/lib/postgresql/15/bin
 *   PGMESH_TEMPLATE     the template cluster, e.g. var/lib/pgmesh-walredo/template
 *   PGMESH_INTERP       the dynamic loader, e.g. lib64/ld-linux-x86-64.so.2
 *   PGMESH_LIBDIRS      colon-separated library dirs, e.g. usr/lib/x86_64-linux-gnu
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bundle_exec.h"

#ifndef PGMESH_PG_BINDIR
#error "define PGMESH_PG_BINDIR"
#endif
#ifndef PGMESH_TEMPLATE
#error "define PGMESH_TEMPLATE"
#endif
#ifndef PGMESH_INTERP
#error "define PGMESH_INTERP"
#endif
#ifndef PGMESH_LIBDIRS
#error "define PGMESH_LIBDIRS"
#endif

static const char *progname = "postgres --wal-redo";
static char scratch[PATH_MAX];
static volatile sig_atomic_t child_pid = 0;
static volatile sig_atomic_t received_signal = 0;

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FATAL:  %s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
join(char *out, const char *a, const char *b)
{
	if (snprintf(out, PATH_MAX, "%s/%s", strcmp(a, "/") == 0 ? "" : a, b) >= PATH_MAX)
		fail("path too long: %s/%s", a, b);
}

/* The bundle root: two levels above this program (…/bin/postgres). */
static void
find_root(const char *argv0, char *root)
{
	char self[PATH_MAX];
	char *slash;

	if (strchr(argv0, '/') != NULL)
	{
		if (realpath(argv0, self) == NULL)
			fail("cannot resolve my own path \"%s\": %s", argv0, strerror(errno));
	}
	else
	{
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n < 0)
			fail("cannot find my own path: run me by path, not by name");
		self[n] = '\0';
	}
	for (int i = 0; i < 2; i++)
	{
		slash = strrchr(self, '/');
		if (slash == NULL)
			fail("\"%s\" is not inside a bundle's bin directory", self);
		*slash = '\0';
	}
	strcpy(root, self[0] == '\0' ? "/" : self);
}

/*
 * Runs the real postgres through the bundled loader and libraries; never
 * returns. Under chroot (root "/") the program's own loader path already is
 * the bundle's, so it is executed directly (and shows up as postgres).
 */
static void
exec_postgres(const char *root, int argc, char **argv)
{
	char interp[PATH_MAX];
	char bindir[PATH_MAX];
	char real[PATH_MAX];
	char libpath[PATH_MAX * 2];

	join(interp, root, PGMESH_INTERP);
	join(bindir, root, PGMESH_PG_BINDIR);
	join(real, bindir, "postgres");
	if (bundle_library_path(root, libpath, sizeof(libpath)) != 0)
		fail("library path too long under %s", root);
	bundle_exec(strcmp(root, "/") != 0 && access(interp, X_OK) == 0 ? interp : NULL, libpath, real, argc, argv, 1);
	fail("cannot execute %s: %s", real, strerror(errno));
}

/* ---- scratch cluster ---- */

static void
copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out;
	char buf[65536];
	ssize_t r;

	if (in < 0)
		fail("cannot open template file \"%s\": %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
	if (out < 0)
		fail("cannot create \"%s\": %s", to, strerror(errno));
	for (;;)
	{
		ssize_t c = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (c > 0)
			continue;
		if (c == 0)
			break;
		/* copy_file_range unsupported here: fall back to read/write */
		while ((r = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t) r) != r)
				fail("cannot write \"%s\": %s", to, strerror(errno));
		if (r < 0)
			fail("cannot read \"%s\": %s", from, strerror(errno));
		break;
	}
	close(in);
	if (close(out) != 0)
		fail("cannot write \"%s\": %s", to, strerror(errno));
}

static void
copy_tree(const char *from, const char *to)
{
	DIR *dir = opendir(from);
	struct dirent *e;

	if (dir == NULL)
		fail("cannot read template directory \"%s\": %s", from, strerror(errno));
	if (mkdir(to, S_IRWXU) != 0)
		fail("cannot create \"%s\": %s", to, strerror(errno));
	while ((e = readdir(dir)) != NULL)
	{
		char src[PATH_MAX];
		char dst[PATH_MAX];
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		join(src, from, e->d_name);
		join(dst, to, e->d_name);
		if (lstat(src, &st) != 0)
			fail("cannot stat \"%s\": %s", src, strerror(errno));
		if (S_ISDIR(st.st_mode))
			copy_tree(src, dst);
		else if (S_ISREG(st.st_mode))
			copy_file(src, dst);
		else
			fail("template holds \"%s\", which is neither a file nor a directory", src);
	}
	closedir(dir);
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void) st;
	(void) flag;
	(void) ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void
remove_scratch(void)
{
	if (scratch[0] != '\0')
		nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Removes the System V segment named in line 7 of the scratch cluster's
 * postmaster.pid ("key shmid") if the dead child `pid` created it and nobody
 * is attached; gone already (the protocol loop removes it) is the usual case.
 */
static void
remove_orphaned_segment(const char *data, pid_t pid)
{
	char path[PATH_MAX];
	char line[256];
	unsigned long key;
	int id;
	int n;
	struct shmid_ds ds;
	FILE *f;

	join(path, data, "postmaster.pid");
	f = fopen(path, "re");
	if (f == NULL)
		return;
	for (n = 0; n < 7 && fgets(line, sizeof(line), f) != NULL; n++)
		;
	fclose(f);
	if (n != 7 || sscanf(line, "%lu %d", &key, &id) != 2)
		return;
	if (shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == (key_t) key &&
		ds.shm_cpid == pid && ds.shm_nattch == 0)
		shmctl(id, IPC_RMID, NULL);
}

static void
write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, S_IRUSR | S_IWUSR);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t) len || close(fd) != 0)
		fail("cannot write \"%s\": %s", path, strerror(errno));
}

static void
kill_child(int sig)
{
	received_signal = sig;
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
}

static void
child_main(const char *root, pid_t parent, const char *data, const char *boot, const char *out, int seccomp)
{
	char datadir_arg[PATH_MAX];
	char *args[] = {
		"postgres", "--single", "-D", datadir_arg, "-F",
		"-c", "shared_buffers=2MB",
		"-c", "max_connections=5",
		"-c", "dynamic_shared_memory_type=mmap",
		"-c", "wal_level=minimal",
		"-c", "max_wal_senders=0",
		"-c", "jit=off",
		"-c", "shared_preload_libraries=",
		"-c", "session_preload_libraries=",
		"-c", "local_preload_libraries=",
		"-c", "log_min_messages=warning",
		"-c", "log_line_prefix=",
		"-c", "restart_after_crash=off",
		"-c", seccomp ? "pgmesh_walredo.seccomp=on" : "pgmesh_walredo.seccomp=off",
		"template1",
		NULL
	};
	int fd;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	strcpy(datadir_arg, data);

	/* The protocol moves to fds 3 and 4; stdin carries the one SQL line. */
	if (dup2(STDIN_FILENO, 3) < 0 || dup2(STDOUT_FILENO, 4) < 0)
		fail("cannot move the protocol to fds 3/4: %s", strerror(errno));
	fd = open(boot, O_RDONLY);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
		fail("cannot open \"%s\": %s", boot, strerror(errno));
	close(fd);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, S_IRUSR | S_IWUSR);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
		fail("cannot open \"%s\": %s", out, strerror(errno));
	close(fd);
	for (int i = 5; i < 1024; i++)
		close(i);
	signal(SIGPIPE, SIG_DFL);
	exec_postgres(root, (int) (sizeof(args) / sizeof(args[0])) - 1, args);
}

static int
wal_redo(const char *root, int argc, char **argv)
{
	const char *given = getenv("PGMESH_WALREDO_SCRATCH_DIR");
	const char *base = getenv("PGMESH_WALREDO_SCRATCH_ROOT");
	char template[PATH_MAX];
	char data[PATH_MAX];
	char boot[PATH_MAX];
	char out[PATH_MAX];
	struct rlimit no_core = {0, 0};
	struct sigaction sa;
	pid_t parent = getpid();
	pid_t pid;
	int status;
	int seccomp = 1;

	/* Neon's pageserver may pass more options; only this one means something here. */
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--disable-seccomp") == 0)
			seccomp = 0;
	if (base == NULL || base[0] == '\0')
		base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (getuid() == 0 || geteuid() == 0)
		fail("refusing to run as root; run as the unprivileged postgres user");
	setrlimit(RLIMIT_CORE, &no_core);

	join(template, root, PGMESH_TEMPLATE);
	if (given != NULL && given[0] != '\0')
	{
		/* The caller's own directory: used as is, removed with everything in it at the end. */
		if (snprintf(scratch, sizeof(scratch), "%s", given) >= (int) sizeof(scratch))
			fail("PGMESH_WALREDO_SCRATCH_DIR too long: %s", given);
	}
	else if (snprintf(scratch, sizeof(scratch), "%s/pgmesh-walredo-XXXXXX", base) >= (int) sizeof(scratch))
		fail("scratch root path too long: %s", base);
	else if (mkdtemp(scratch) == NULL)
	{
		int err = errno;

		scratch[0] = '\0';
		fail("cannot create a scratch directory under \"%s\" (PGMESH_WALREDO_SCRATCH_ROOT): %s", base, strerror(err));
	}
	atexit(remove_scratch);
	join(data, scratch, "data");
	join(boot, scratch, "boot.sql");
	join(out, scratch, "single-user.out");
	copy_tree(template, data);
	write_text(boot, "SELECT pgmesh_walredo_main()\n");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kill_child;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pid = fork();
	if (pid < 0)
		fail("cannot fork: %s", strerror(errno));
	if (pid == 0)
		child_main(root, parent, data, boot, out, seccomp);
	child_pid = pid;

	/* Only the child holds the protocol pipes. */
	close(STDIN_FILENO);
	close(STDOUT_FILENO);

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail("cannot wait for the walredo process %d: %s", (int) pid, strerror(errno));
	remove_orphaned_segment(data, pid);
	remove_scratch();
	scratch[0] = '\0';
	/* Killed on request: end the way the request asked. */
	if (received_signal != 0)
	{
		signal(received_signal, SIG_DFL);
		raise(received_signal);
	}
	if (WIFSIGNALED(status))
	{
		signal(WTERMSIG(status), SIG_DFL);
		raise(WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
	return WEXITSTATUS(status);
}

int
main(int argc, char **argv)
{
	char root[PATH_MAX];

	find_root(argv[0], root);
	if (argc >= 2 && strcmp(argv[1], "--wal-redo") == 0)
		return wal_redo(root, argc, argv);
	exec_postgres(root, argc, argv);
	return 1;
}
