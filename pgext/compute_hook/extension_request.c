/*
 * extension_request.c
 *		POST /extension_server/<name> to compute-ctl over a plain TCP socket.
 *
 * Plain sockets rather than libcurl keep the module free of dependencies, so
 * the self-contained Postgres bundle needs nothing more. Every wait goes
 * through WaitLatchOrSocket, so query cancel, statement_timeout and
 * postmaster death interrupt it, and the socket is closed on every exit path.
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "extension_request.h"

/* compute-ctl answers with a short text; anything longer is cut. */
#define RESPONSE_MAX_BYTES 16384
#define BODY_MAX_CHARS 1000

typedef struct Exchange
{
	const char *addr;
	const char *name;
	const char *kind;			/* "extension" or "library" */
	int			timeout_ms;
	TimestampTz deadline;
} Exchange;

bool
pgmesh_split_addr(const char *addr, char *host, size_t host_size,
				  char *port, size_t port_size)
{
	const char *host_start = addr;
	const char *host_end;
	const char *port_start;
	const char *p;

	if (addr == NULL || addr[0] == '\0')
		return false;
	if (addr[0] == '[')
	{
		host_start = addr + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return false;
		port_start = host_end + 2;
	}
	else
	{
		host_end = strrchr(addr, ':');
		if (host_end == NULL)
			return false;
		port_start = host_end + 1;
	}
	if (host_end == host_start || (size_t) (host_end - host_start) >= host_size)
		return false;
	if (port_start[0] == '\0' || strlen(port_start) >= port_size || strlen(port_start) > 5)
		return false;
	for (p = port_start; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	if (atoi(port_start) < 1 || atoi(port_start) > 65535)
		return false;
	memcpy(host, host_start, host_end - host_start);
	host[host_end - host_start] = '\0';
	strcpy(port, port_start);
	return true;
}

static void
report_timeout(const Exchange *ex)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("compute-ctl at %s did not make %s \"%s\" available within %d ms",
					ex->addr, ex->kind, ex->name, ex->timeout_ms),
			 errhint("The download may still be running: try again, or raise pgmesh.extension_timeout_ms.")));
}

static void
report_unreachable(const Exchange *ex, const char *what, int err)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("could not reach compute-ctl at %s to make %s \"%s\" available: %s: %s",
					ex->addr, ex->kind, ex->name, what, strerror(err)),
			 errhint("compute-ctl serves extension files on demand; check that it is running and that pgmesh.compute_ctl_addr names its HTTP port.")));
}

/* Waits until the socket has one of events, or errors out on timeout; interrupts are served. */
static void
wait_socket(const Exchange *ex, pgsocket sock, int events)
{
	for (;;)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), ex->deadline);
		int			rc;

		if (remaining <= 0)
			report_timeout(ex);
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
							   sock, remaining, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & events)
			return;
	}
}

/* Non-blocking connect to one address, bounded by the deadline; returns the errno, 0 on success. */
static int
connect_one(const Exchange *ex, pgsocket sock, const struct addrinfo *ai)
{
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (connect(sock, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return errno;
	wait_socket(ex, sock, WL_SOCKET_CONNECTED);
	if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

static pgsocket
open_connection(const Exchange *ex, const struct addrinfo *addrs)
{
	const struct addrinfo *ai;
	int			last_err = ECONNREFUSED;

	for (ai = addrs; ai != NULL; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		int			err;

		if (sock == PGINVALID_SOCKET)
		{
			last_err = errno;
			continue;
		}
		if (fcntl(sock, F_SETFL, O_NONBLOCK) < 0)
		{
			last_err = errno;
			close(sock);
			continue;
		}
		PG_TRY();
		{
			err = connect_one(ex, sock, ai);
		}
		PG_CATCH();
		{
			close(sock);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (err == 0)
			return sock;
		last_err = err;
		close(sock);
	}
	report_unreachable(ex, "connect", last_err);
	return PGINVALID_SOCKET;	/* not reached */
}

static void
send_all(const Exchange *ex, pgsocket sock, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(sock, data, len, MSG_NOSIGNAL);

		if (n > 0)
		{
			data += n;
			len -= n;
		}
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			wait_socket(ex, sock, WL_SOCKET_WRITEABLE);
		else
			report_unreachable(ex, "send", n < 0 ? errno : EPIPE);
	}
}

/* Case-insensitive search for a header line start, e.g. "\r\ncontent-length:". */
static const char *
find_header(const char *headers, const char *name)
{
	size_t		name_len = strlen(name);
	const char *p;

	for (p = strstr(headers, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
		if (pg_strncasecmp(p + 2, name, name_len) == 0 && p[2 + name_len] == ':')
			return p + 2 + name_len + 1;
	return NULL;
}

/* Reads until the server closes or the Content-Length is complete; returns the bytes read. */
static size_t
receive_response(const Exchange *ex, pgsocket sock, char *buf, size_t cap)
{
	size_t		len = 0;

	while (len < cap - 1)
	{
		ssize_t		n = recv(sock, buf + len, cap - 1 - len, 0);

		if (n > 0)
		{
			char	   *end_of_headers;
			const char *cl;

			len += n;
			buf[len] = '\0';
			end_of_headers = strstr(buf, "\r\n\r\n");
			if (end_of_headers == NULL)
				continue;
			*end_of_headers = '\0';
			cl = find_header(buf, "content-length");
			*end_of_headers = '\r';
			if (cl != NULL && (size_t) (end_of_headers + 4 - buf) + strtoul(cl, NULL, 10) <= len)
				break;
		}
		else if (n == 0)
			break;
		else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			wait_socket(ex, sock, WL_SOCKET_READABLE);
		else
			report_unreachable(ex, "receive", errno);
	}
	buf[len] = '\0';
	return len;
}

/* Decodes a chunked body in place (a server may send one without Content-Length). */
static void
dechunk(char *body)
{
	char	   *in = body;
	char	   *out = body;

	for (;;)
	{
		unsigned long size = strtoul(in, NULL, 16);
		char	   *line_end = strstr(in, "\r\n");
		if (size == 0 || line_end == NULL)
			break;
		in = line_end + 2;
		if (strlen(in) < size)
			size = strlen(in);
		memmove(out, in, size);
		out += size;
		in += size;
		if (strncmp(in, "\r\n", 2) == 0)
			in += 2;
	}
	*out = '\0';
}

/* Keeps printable text only, collapses it to one line, trims and caps it. */
static char *
sanitise_body(const char *body)
{
	char	   *text = pnstrdup(body, BODY_MAX_CHARS);
	char	   *p;
	size_t		len;

	for (p = text; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = ' ';
	len = strlen(text);
	while (len > 0 && text[len - 1] == ' ')
		text[--len] = '\0';
	return text;
}

static ExtensionResponse
parse_response(const Exchange *ex, char *buf)
{
	ExtensionResponse response;
	char	   *end_of_headers = strstr(buf, "\r\n\r\n");
	char	   *body;
	const char *cl;
	const char *te;

	if (strncmp(buf, "HTTP/1.", 7) != 0 || strlen(buf) < 12 || buf[8] != ' ' || end_of_headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("compute-ctl at %s sent no valid HTTP response while making %s \"%s\" available",
						ex->addr, ex->kind, ex->name),
				 errhint("Check that pgmesh.compute_ctl_addr names compute-ctl's HTTP port.")));
	response.status = atoi(buf + 9);
	*end_of_headers = '\0';
	body = end_of_headers + 4;
	cl = find_header(buf, "content-length");
	te = find_header(buf, "transfer-encoding");
	if (te != NULL && strstr(te, "chunked") != NULL)
		dechunk(body);
	else if (cl != NULL && strtoul(cl, NULL, 10) < strlen(body))
		body[strtoul(cl, NULL, 10)] = '\0';
	response.body = sanitise_body(body);
	return response;
}

/* Percent-encodes everything but unreserved characters. */
static char *
url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *out = palloc(strlen(s) * 3 + 1);
	char	   *o = out;

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~')
			*o++ = c;
		else
		{
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

ExtensionResponse
pgmesh_request_extension(const char *addr, const char *name, bool is_library, int timeout_ms)
{
	Exchange	ex;
	char		host[256];
	char		port[8];
	struct addrinfo hints;
	struct addrinfo *addrs = NULL;
	volatile pgsocket sock = PGINVALID_SOCKET;
	char	   *request;
	char	   *buf = palloc(RESPONSE_MAX_BYTES);
	int			rc;

	ex.addr = addr;
	ex.name = name;
	ex.kind = is_library ? "library" : "extension";
	ex.timeout_ms = timeout_ms;
	ex.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	if (!pgmesh_split_addr(addr, host, sizeof(host), port, sizeof(port)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgmesh.compute_ctl_addr \"%s\" is not host:port", addr)));

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &addrs);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not resolve compute-ctl's address %s to make %s \"%s\" available: %s",
						addr, ex.kind, name, gai_strerror(rc))));

	request = psprintf("POST /extension_server/%s%s HTTP/1.1\r\n"
					   "Host: %s\r\n"
					   "User-Agent: pgmesh_compute_hook\r\n"
					   "Content-Length: 0\r\n"
					   "Connection: close\r\n\r\n",
					   url_encode(name), is_library ? "?is_library=true" : "", addr);
	PG_TRY();
	{
		sock = open_connection(&ex, addrs);
		send_all(&ex, sock, request, strlen(request));
		receive_response(&ex, sock, buf, RESPONSE_MAX_BYTES);
	}
	PG_FINALLY();
	{
		if (sock != PGINVALID_SOCKET)
			close(sock);
		freeaddrinfo(addrs);
	}
	PG_END_TRY();
	return parse_response(&ex, buf);
}
