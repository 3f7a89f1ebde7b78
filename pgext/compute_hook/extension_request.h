/*
 * extension_request.h
 *		A tiny HTTP/1.1 client: asks compute-ctl to make an extension's files
 *		present and waits for its answer.
 */
#ifndef PGMESH_EXTENSION_REQUEST_H
#define PGMESH_EXTENSION_REQUEST_H

/* compute-ctl's answer: the HTTP status and its text body (palloc'd, sanitised). */
typedef struct ExtensionResponse
{
	int			status;
	char	   *body;
} ExtensionResponse;

/*
 * Checks that addr is "host:port" or "[v6addr]:port"; on success copies the
 * parts (host without brackets) into host and port and returns true.
 */
extern bool pgmesh_split_addr(const char *addr, char *host, size_t host_size,
							  char *port, size_t port_size);

/*
 * POST http://<addr>/extension_server/<name>[?is_library=true] and waits for
 * the answer for at most timeout_ms, honouring query cancel, statement_timeout
 * and postmaster death while it waits. Raises an ERROR when compute-ctl
 * cannot be reached, does not answer in time, or answers something that is not
 * HTTP; any HTTP status is returned to the caller.
 */
extern ExtensionResponse pgmesh_request_extension(const char *addr, const char *name,
												  bool is_library, int timeout_ms);

#endif
