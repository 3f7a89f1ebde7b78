/*
 * pgmesh_compute_hook.c
 *		Extensions on demand for a pgmesh compute on vanilla PostgreSQL.
 *
 * A compute does not carry every extension it may use: compute-ctl lays down
 * their control files at start-up and fetches the rest from the
 * ExtensionStore. This ProcessUtility hook runs before CREATE EXTENSION,
 * ALTER EXTENSION ... UPDATE and LOAD and, when the files are not there yet,
 * asks compute-ctl (POST /extension_server/<name>) to make them present and
 * waits for it; a name the compute may not use fails with compute-ctl's
 * message.
 *
 * "Present" is decided locally, without a round trip: for an extension, its
 * control file exists and compute-ctl's marker <name>.pgmesh-pending (written
 * next to a control file whose bundle is not installed yet, removed once it
 * is) does not; for a library given as 'name' or '$libdir/name', the file
 * exists in pkglibdir. Libraries given by any other path are left alone.
 *
 * GUCs: pgmesh.compute_ctl_addr (host:port of compute-ctl's HTTP port; empty
 * turns the hook off; superuser-only, so no user can point the backend at
 * another host) and pgmesh.extension_timeout_ms (default 30 s).
 * Load it through shared_preload_libraries (first) or
 * session_preload_libraries.
 */
#include "postgres.h"

#include <limits.h>
#include <sys/stat.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "extension_request.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

#define LIBDIR_PREFIX "$libdir/"
#define PENDING_SUFFIX ".pgmesh-pending"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static char *compute_ctl_addr = NULL;
static int	extension_timeout_ms = 30000;

static bool
regular_file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A name Postgres would accept as an extension name and that is safe in a path. */
static bool
plausible_name(const char *name)
{
	return name != NULL && name[0] != '\0' && name[0] != '.' &&
		strchr(name, '/') == NULL && strlen(name) < NAMEDATALEN;
}

static bool
extension_files_present(const char *name)
{
	char		sharepath[MAXPGPATH];
	char		path[MAXPGPATH];

	get_share_path(my_exec_path, sharepath);
	snprintf(path, sizeof(path), "%s/extension/%s.control", sharepath, name);
	if (!regular_file_exists(path))
		return false;
	snprintf(path, sizeof(path), "%s/extension/%s%s", sharepath, name, PENDING_SUFFIX);
	return !regular_file_exists(path);
}

static bool
library_file_present(const char *name)
{
	char		path[MAXPGPATH];

	snprintf(path, sizeof(path), "%s/%s", pkglib_path, name);
	if (regular_file_exists(path))
		return true;
	snprintf(path, sizeof(path), "%s/%s%s", pkglib_path, name, DLSUFFIX);
	return regular_file_exists(path);
}

/* Asks compute-ctl for the files of name and turns any answer but 200 into an ERROR. */
static void
request_files(const char *name, bool is_library)
{
	const char *kind = is_library ? "library" : "extension";
	ExtensionResponse response;

	elog(DEBUG1, "pgmesh_compute_hook: asking compute-ctl at %s for %s \"%s\"",
		 compute_ctl_addr, kind, name);
	response = pgmesh_request_extension(compute_ctl_addr, name, is_library, extension_timeout_ms);
	if (response.status == 200)
		return;
	if (response.body[0] == '\0')
		response.body = psprintf("compute-ctl answered HTTP %d for %s \"%s\"",
								 response.status, kind, name);
	ereport(ERROR,
			(errcode(response.status == 403 ? ERRCODE_INSUFFICIENT_PRIVILEGE :
					 response.status == 404 ? ERRCODE_UNDEFINED_OBJECT :
					 response.status == 400 ? ERRCODE_INVALID_PARAMETER_VALUE :
					 ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("%s", response.body),
			 errdetail("compute-ctl at %s answered HTTP %d for %s \"%s\".",
					   compute_ctl_addr, response.status, kind, name)));
}

static void
ensure_extension(const char *name)
{
	if (!plausible_name(name) || extension_files_present(name))
		return;
	request_files(name, false);
}

static void
ensure_library(const char *filename)
{
	const char *name = filename;

	if (filename == NULL)
		return;
	if (strncmp(name, LIBDIR_PREFIX, strlen(LIBDIR_PREFIX)) == 0)
		name += strlen(LIBDIR_PREFIX);
	if (!plausible_name(name) || library_file_present(name))
		return;
	request_files(name, true);
}

static void
pgmesh_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (compute_ctl_addr != NULL && compute_ctl_addr[0] != '\0')
	{
		switch (nodeTag(parsetree))
		{
			case T_CreateExtensionStmt:
				ensure_extension(((CreateExtensionStmt *) parsetree)->extname);
				break;
			case T_AlterExtensionStmt:
				ensure_extension(((AlterExtensionStmt *) parsetree)->extname);
				break;
			case T_LoadStmt:
				ensure_library(((LoadStmt *) parsetree)->filename);
				break;
			default:
				break;
		}
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

static bool
check_compute_ctl_addr(char **newval, void **extra, GucSource source)
{
	char		host[256];
	char		port[8];

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (pgmesh_split_addr(*newval, host, sizeof(host), port, sizeof(port)))
		return true;
	GUC_check_errdetail("Use host:port or [ipv6]:port, e.g. 127.0.0.1:7103, or empty to turn the hook off.");
	return false;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("pgmesh.compute_ctl_addr",
							   "host:port of compute-ctl's HTTP port, which makes extension files present on demand.",
							   "Empty turns the hook off.",
							   &compute_ctl_addr,
							   "",
							   PGC_SUSET,
							   0,
							   check_compute_ctl_addr, NULL, NULL);
	DefineCustomIntVariable("pgmesh.extension_timeout_ms",
							"How long CREATE EXTENSION, ALTER EXTENSION and LOAD wait for compute-ctl.",
							NULL,
							&extension_timeout_ms,
							30000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pgmesh_ProcessUtility;
}
