/*-------------------------------------------------------------------------
 *
 * pgmesh_walredo.c
 *	  A walredo mode for vanilla PostgreSQL 15, speaking Neon's protocol.
 *
 * The process is a single-user backend (postgres --single) on a throwaway
 * scratch cluster. One SQL line, SELECT pgmesh_walredo_main(), enters the
 * loop below, which never returns: it reads frames from fd 3 and writes
 * pages to fd 4 (stdin and stdout stay with single-user mode's own chatter).
 *
 * Frames: tag byte, big-endian int32 length counting itself, payload.
 *	 B tag				begin redo for the block
 *	 P tag page			base image of the block
 *	 A lsn record		apply one record (lsn = end of the record)
 *	 G tag				reply with the page
 *	 H					reply with a zero page (ping)
 * A tag is 17 bytes big-endian: fork (u8), spcNode, dbNode, relNode, blkno.
 *
 * Records are applied with Postgres's own rmgr redo routines, with InRecovery
 * set. Every block reference of a record is moved into one of two scratch
 * tablespaces before redo: the request's block into the target relation
 * (target tablespace), every other block into a throwaway relation
 * (throwaway tablespace; one per distinct relation of the record, same fork
 * and block number, which redo writes into the target page), whose buffers
 * are dropped after each record. So a tenant's relation numbers never touch
 * the scratch cluster's own catalogs, and no page other than the target
 * carries state from one record to the next. After G the target's buffers
 * are dropped too, and every file the request used is cut back to zero
 * blocks: nothing carries from one request to the next. The scratch
 * relations themselves stay, so no request pays for creating and unlinking
 * files (on ext4 that alone costs more than the redo).
 *
 * Anything malformed ends the process with a reason on stderr: exit 1 for a
 * protocol or validation error, 2 for an error raised by redo, 3 for a PANIC,
 * 4 for a system call the seccomp filter does not allow. Once started up,
 * the loop runs under a seccomp filter (libseccomp) that allows only file,
 * memory and signal calls: no sockets, no exec, no fork. The setting
 * pgmesh_walredo.seccomp=off (postgres --wal-redo --disable-seccomp) turns
 * it off.
 * EOF on fd 3 is exit 0. The process never shuts the scratch cluster down
 * cleanly (that would checkpoint pages from the future): it _exit()s.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/heapam_xlog.h"
#include "access/rmgr.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "catalog/pg_control.h"
#include "common/relpath.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/buf_internals.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/md.h"
#include "storage/pg_shmem.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgmesh_walredo_main);

#define REQUEST_FD 3
#define REPLY_FD 4

#define TAG_SIZE 17
#define FRAME_HEADER_SIZE 5
/* The largest record accepted (bounds the A frame). */
#define MAX_RECORD_BYTES (64 * 1024 * 1024)

/* Tablespace OIDs of the scratch tablespaces (symlinks in pg_tblspc). */
#define TARGET_SPC_OID 2000000001
#define THROWAWAY_SPC_OID 2000000002
#define SCRATCH_DIR "pgmesh_walredo"

/* The scratch relations: db and relation numbers in their tablespaces. */
#define SCRATCH_DB_OID 1
#define TARGET_REL 1
#define MAX_THROWAWAY_RELS (XLR_MAX_BLOCK_ID + 1)

#define EXIT_PROTOCOL 1
#define EXIT_REDO_ERROR 2
#define EXIT_PANIC 3
#define EXIT_SECCOMP 4

static const PGAlignedBlock zero_page;

/* Buffered reader on the request fd. */
static char in_buf[64 * 1024];
static size_t in_len = 0;
static size_t in_pos = 0;

static XLogReaderState *reader;
static MemoryContext frame_context;

static char *payload;			/* MAXALIGNed; the record starts 8 bytes in */
static size_t payload_capacity;
static DecodedXLogRecord *decoded;
static size_t decoded_capacity;

static bool request_active = false;
static BufferTag redo_target;		/* the block as the client names it */
static const RelFileNode target_node = {TARGET_SPC_OID, SCRATCH_DB_OID, TARGET_REL};
static int	throwaway_rels_used = 0;	/* by the current request: rels 1..n */

static void die(int code, const char *fmt,...) pg_attribute_printf(2, 3) pg_attribute_noreturn();

static void
die(int code, const char *fmt,...)
{
	char		msg[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FATAL:  walredo: %s\n", msg);
	fflush(stderr);
	_exit(code);
}

/* A FATAL (proc_exit) must not run the shutdown checkpoint: leave at once. */
static void
exit_without_shutdown(int code, Datum arg)
{
	fflush(stderr);
	_exit(code == 0 ? 0 : EXIT_REDO_ERROR);
}

/* A PANIC would abort() and dump core: report it and leave instead. */
static void
panic_hook(ErrorData *edata)
{
	if (edata->elevel < PANIC)
		return;
	fprintf(stderr, "PANIC:  walredo: %s\n", edata->message ? edata->message : "(no message)");
	if (edata->context)
		fprintf(stderr, "CONTEXT:  %s\n", edata->context);
	fflush(stderr);
	_exit(EXIT_PANIC);
}

/* ----------------------------------------------------------------
 * I/O
 * ----------------------------------------------------------------
 */

/* Fills buf completely; returns the bytes read (less only at EOF). */
static size_t
read_fully(char *buf, size_t count)
{
	size_t		done = 0;

	while (done < count)
	{
		size_t		n;

		if (in_pos == in_len)
		{
			ssize_t		r = read(REQUEST_FD, in_buf, sizeof(in_buf));

			if (r < 0)
			{
				if (errno == EINTR)
					continue;
				die(EXIT_PROTOCOL, "cannot read requests from fd %d: %m", REQUEST_FD);
			}
			if (r == 0)
				break;
			in_len = (size_t) r;
			in_pos = 0;
		}
		n = Min(in_len - in_pos, count - done);
		memcpy(buf + done, in_buf + in_pos, n);
		in_pos += n;
		done += n;
	}
	return done;
}

static void
write_page(const char *page)
{
	size_t		done = 0;

	while (done < BLCKSZ)
	{
		ssize_t		w = write(REPLY_FD, page + done, BLCKSZ - done);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			die(EXIT_PROTOCOL, "cannot write a page to fd %d: %m", REPLY_FD);
		}
		done += (size_t) w;
	}
}

static uint32
get_be32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh32(v);
}

static uint64
get_be64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh64(v);
}

static void
ensure_payload_capacity(size_t len)
{
	if (len + 1 <= payload_capacity)
		return;
	if (payload)
		pfree(payload);
	payload_capacity = Max(len + 1, 2 * payload_capacity);
	payload = MemoryContextAllocHuge(TopMemoryContext, payload_capacity);
}

/*
 * Reads one frame into payload. Returns its tag, or 0 at a clean EOF
 * (between frames).
 */
static char
read_frame(uint32 *len)
{
	char		header[FRAME_HEADER_SIZE];
	size_t		got = read_fully(header, FRAME_HEADER_SIZE);
	uint32		framelen;
	uint32		max_payload;
	uint32		min_payload;

	if (got == 0)
		return 0;
	if (got < FRAME_HEADER_SIZE)
		die(EXIT_PROTOCOL, "input ended inside a frame header (%zu of %d bytes)", got, FRAME_HEADER_SIZE);

	framelen = get_be32(header + 1);
	if (framelen < 4)
		die(EXIT_PROTOCOL, "frame '%c' has length %u; the length counts itself, so it is at least 4",
			header[0], framelen);
	*len = framelen - 4;

	switch (header[0])
	{
		case 'B':
		case 'G':
			min_payload = max_payload = TAG_SIZE;
			break;
		case 'P':
			min_payload = max_payload = TAG_SIZE + BLCKSZ;
			break;
		case 'H':
			min_payload = max_payload = 0;
			break;
		case 'A':
			min_payload = 8 + SizeOfXLogRecord;
			max_payload = 8 + MAX_RECORD_BYTES;
			break;
		default:
			die(EXIT_PROTOCOL, "unknown frame type 0x%02x; expected B, P, A, G or H", (unsigned char) header[0]);
	}
	if (*len < min_payload || *len > max_payload)
	{
		if (min_payload == max_payload)
			die(EXIT_PROTOCOL, "frame '%c' carries %u payload bytes; it must carry %u", header[0], *len, min_payload);
		die(EXIT_PROTOCOL, "frame '%c' carries %u payload bytes; it must carry %u..%u",
			header[0], *len, min_payload, max_payload);
	}

	ensure_payload_capacity(*len);
	got = read_fully(payload, *len);
	if (got < *len)
		die(EXIT_PROTOCOL, "input ended inside frame '%c' (%zu of %u payload bytes)", header[0], got, *len);
	return header[0];
}

/* ----------------------------------------------------------------
 * Relations of a request
 * ----------------------------------------------------------------
 */

static BufferTag
parse_tag(const char *p)
{
	BufferTag	tag;
	uint8		fork = (uint8) p[0];

	if (fork > MAX_FORKNUM)
		die(EXIT_PROTOCOL, "buffer tag has fork number %u; forks are 0..%d", fork, MAX_FORKNUM);
	tag.forkNum = (ForkNumber) fork;
	tag.rnode.spcNode = get_be32(p + 1);
	tag.rnode.dbNode = get_be32(p + 5);
	tag.rnode.relNode = get_be32(p + 9);
	tag.blockNum = get_be32(p + 13);
	if (tag.blockNum >= MaxBlockNumber)
		die(EXIT_PROTOCOL, "buffer tag has block number %u; the largest accepted is %u",
			tag.blockNum, MaxBlockNumber - 1);
	return tag;
}

static RelFileNode
throwaway_rel(int n)
{
	RelFileNode node = {THROWAWAY_SPC_OID, SCRATCH_DB_OID, n + 1};

	return node;
}

/*
 * Opens a scratch relation with all its forks (created empty on first use:
 * redo reads the visibility map and free space map forks of the relations it
 * touches), and makes the smgr trust that every block exists (smgrnblocks
 * returns the cached size while InRecovery), so redo never extends a file
 * block by block; a block that was never written reads as zeroes.
 */
static SMgrRelation
open_scratch_rel(RelFileNode node)
{
	SMgrRelation reln = smgropen(node, InvalidBackendId);

	for (int fork = 0; fork <= MAX_FORKNUM; fork++)
	{
		smgrcreate(reln, fork, true);
		reln->smgr_cached_nblocks[fork] = MaxBlockNumber;
	}
	return reln;
}

/*
 * Puts the block in the buffer pool (zeroed unless already there), so redo
 * finds it without reading a file.
 */
static void
preload_block(RelFileNode node, ForkNumber fork, BlockNumber blkno)
{
	Buffer		buf;

	open_scratch_rel(node);
	buf = ReadBufferWithoutRelcache(node, fork, blkno, RBM_ZERO_AND_LOCK, NULL, true);
	UnlockReleaseBuffer(buf);
}

/*
 * Forgets the request: drops the target's buffers, and cuts every file the
 * request used back to zero blocks (redo never writes files while the
 * buffer pool has room, so this is one lseek per fork; it is there so that a
 * page written out by some unforeseen path cannot leak into the next
 * request).
 */
static void
end_request(void)
{
	SMgrRelation rels[MAX_THROWAWAY_RELS + 1];
	int			n = 0;

	rels[n++] = smgropen(target_node, InvalidBackendId);
	for (int i = 0; i < throwaway_rels_used; i++)
		rels[n++] = smgropen(throwaway_rel(i), InvalidBackendId);
	DropRelFileNodesAllBuffers(rels, 1);
	for (int i = 0; i < n; i++)
		for (int fork = 0; fork <= MAX_FORKNUM; fork++)
			if (rels[i]->md_num_open_segs[fork] > 0 && mdnblocks(rels[i], fork) > 0)
			{
				ForkNumber	forknum = fork;
				BlockNumber zero = 0;

				smgrtruncate(rels[i], &forknum, 1, &zero);
				rels[i]->smgr_cached_nblocks[fork] = MaxBlockNumber;
			}
	throwaway_rels_used = 0;
	request_active = false;
}

/* ----------------------------------------------------------------
 * Frames
 * ----------------------------------------------------------------
 */

static void
begin_redo(void)
{
	if (request_active)
		end_request();
	redo_target = parse_tag(payload);
	request_active = true;
	preload_block(target_node, redo_target.forkNum, redo_target.blockNum);
}

static void
check_target(char frame, const char *tagbytes)
{
	BufferTag	tag;

	if (!request_active)
		die(EXIT_PROTOCOL, "frame '%c' before any B frame", frame);
	tag = parse_tag(tagbytes);
	if (!BUFFERTAGS_EQUAL(tag, redo_target))
		die(EXIT_PROTOCOL, "frame '%c' names %u/%u/%u fork %d block %u, but the request is for %u/%u/%u fork %d block %u",
			frame, tag.rnode.spcNode, tag.rnode.dbNode, tag.rnode.relNode, tag.forkNum, tag.blockNum,
			redo_target.rnode.spcNode, redo_target.rnode.dbNode, redo_target.rnode.relNode, redo_target.forkNum, redo_target.blockNum);
}

static void
push_page(void)
{
	Buffer		buf;

	check_target('P', payload);
	buf = ReadBufferWithoutRelcache(target_node, redo_target.forkNum, redo_target.blockNum, RBM_ZERO_AND_LOCK, NULL, true);
	memcpy(BufferGetPage(buf), payload + TAG_SIZE, BLCKSZ);
	MarkBufferDirty(buf);
	UnlockReleaseBuffer(buf);
}

static void
get_page(void)
{
	PGAlignedBlock page;
	Buffer		buf;

	check_target('G', payload);
	buf = ReadBufferWithoutRelcache(target_node, redo_target.forkNum, redo_target.blockNum, RBM_NORMAL, NULL, true);
	memcpy(page.data, BufferGetPage(buf), BLCKSZ);
	ReleaseBuffer(buf);
	end_request();
	write_page(page.data);
}

/* Records of these rmgrs change relation pages through their block references. */
static bool
rmgr_allowed(RmgrId rmid, uint8 info)
{
	switch (rmid)
	{
		case RM_XLOG_ID:
			info &= ~XLR_INFO_MASK;
			return info == XLOG_FPI || info == XLOG_FPI_FOR_HINT;
		case RM_HEAP2_ID:
			info &= XLOG_HEAP_OPMASK;
			return info != XLOG_HEAP2_REWRITE && info != XLOG_HEAP2_NEW_CID;
		case RM_HEAP_ID:
		case RM_BTREE_ID:
		case RM_HASH_ID:
		case RM_GIN_ID:
		case RM_GIST_ID:
		case RM_SEQ_ID:
		case RM_SPGIST_ID:
		case RM_BRIN_ID:
		case RM_GENERIC_ID:
			return true;
		default:
			return false;
	}
}

static void
check_record_header(XLogRecord *record, uint32 reclen, XLogRecPtr lsn)
{
	pg_crc32c	crc;

	if (record->xl_tot_len != reclen)
		die(EXIT_PROTOCOL, "record ending at %X/%X says xl_tot_len %u, but its frame carries %u bytes",
			LSN_FORMAT_ARGS(lsn), record->xl_tot_len, reclen);
	if (!RmgrIdExists(record->xl_rmid))
		die(EXIT_PROTOCOL, "record ending at %X/%X has unknown resource manager id %u",
			LSN_FORMAT_ARGS(lsn), record->xl_rmid);
	if (!rmgr_allowed(record->xl_rmid, record->xl_info))
		die(EXIT_PROTOCOL, "record ending at %X/%X is a %s record (info 0x%02X), which does not change relation pages",
			LSN_FORMAT_ARGS(lsn), GetRmgr(record->xl_rmid).rm_name, record->xl_info);

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, ((char *) record) + SizeOfXLogRecord, reclen - SizeOfXLogRecord);
	COMP_CRC32C(crc, (char *) record, offsetof(XLogRecord, xl_crc));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, record->xl_crc))
		die(EXIT_PROTOCOL, "record ending at %X/%X fails its CRC check (stored %08X, computed %08X)",
			LSN_FORMAT_ARGS(lsn), record->xl_crc, crc);
}

/*
 * Validates the decoded block references and moves them into the scratch
 * relations: the target block into the target relation, any other into the
 * throwaway relation of its relation (same fork and block number). Returns
 * how many throwaway relations the record uses.
 */
static int
redirect_blocks(XLogRecPtr lsn)
{
	bool		found_target = false;
	RelFileNode originals[MAX_THROWAWAY_RELS];
	int			n_originals = 0;

	for (int i = 0; i <= decoded->max_block_id; i++)
	{
		DecodedBkpBlock *blk = &decoded->blocks[i];

		if (!blk->in_use)
			continue;
		if (blk->forknum > MAX_FORKNUM)
			die(EXIT_PROTOCOL, "record ending at %X/%X: block reference %d has fork number %d",
				LSN_FORMAT_ARGS(lsn), i, blk->forknum);
		if (blk->blkno >= MaxBlockNumber)
			die(EXIT_PROTOCOL, "record ending at %X/%X: block reference %d has block number %u",
				LSN_FORMAT_ARGS(lsn), i, blk->blkno);
		if (blk->has_image &&
			(blk->bimg_len > BLCKSZ || blk->hole_length > BLCKSZ ||
			 (uint32) blk->hole_offset + blk->hole_length > BLCKSZ))
			die(EXIT_PROTOCOL, "record ending at %X/%X: block reference %d has an image of %u bytes with a hole of %u bytes at %u",
				LSN_FORMAT_ARGS(lsn), i, blk->bimg_len, blk->hole_length, blk->hole_offset);

		if (RelFileNodeEquals(blk->rnode, redo_target.rnode) &&
			blk->forknum == redo_target.forkNum && blk->blkno == redo_target.blockNum)
		{
			if (found_target)
				die(EXIT_PROTOCOL, "record ending at %X/%X references the target block twice", LSN_FORMAT_ARGS(lsn));
			found_target = true;
			blk->rnode = target_node;
		}
		else
		{
			int			k = 0;

			while (k < n_originals && !RelFileNodeEquals(originals[k], blk->rnode))
				k++;
			if (k == n_originals)
				originals[n_originals++] = blk->rnode;
			blk->rnode = throwaway_rel(k);
			throwaway_rels_used = Max(throwaway_rels_used, k + 1);
		}

		/* Two references to one buffer would self-deadlock on its lock. */
		for (int j = 0; j < i; j++)
		{
			DecodedBkpBlock *other = &decoded->blocks[j];

			if (other->in_use && RelFileNodeEquals(other->rnode, blk->rnode) &&
				other->forknum == blk->forknum && other->blkno == blk->blkno)
				die(EXIT_PROTOCOL, "record ending at %X/%X references block %u (fork %d) of one relation twice",
					LSN_FORMAT_ARGS(lsn), blk->blkno, blk->forknum);
		}
	}
	if (!found_target)
		die(EXIT_PROTOCOL, "record ending at %X/%X does not touch the requested block %u/%u/%u fork %d block %u",
			LSN_FORMAT_ARGS(lsn), redo_target.rnode.spcNode, redo_target.rnode.dbNode, redo_target.rnode.relNode,
			redo_target.forkNum, redo_target.blockNum);
	return n_originals;
}

static void
redo_error_context(void *arg)
{
	StringInfoData buf;

	initStringInfo(&buf);
	xlog_outdesc(&buf, reader);
	errcontext("WAL redo of the record ending at %X/%X for %s", LSN_FORMAT_ARGS(reader->EndRecPtr), buf.data);
	pfree(buf.data);
}

static void
apply_record(uint32 len)
{
	XLogRecPtr	lsn = get_be64(payload);
	XLogRecord *record = (XLogRecord *) (payload + 8);
	uint32		reclen = len - 8;
	size_t		need;
	char	   *errormsg = NULL;
	SMgrRelation throwaway[MAX_THROWAWAY_RELS];
	int			n_throwaway;
	ErrorContextCallback errcallback;

	if (!request_active)
		die(EXIT_PROTOCOL, "frame 'A' before any B frame");
	if (lsn == InvalidXLogRecPtr || lsn >= GetFlushRecPtr(NULL))
		die(EXIT_PROTOCOL, "record end LSN %X/%X is not below the scratch cluster's WAL position %X/%X",
			LSN_FORMAT_ARGS(lsn), LSN_FORMAT_ARGS(GetFlushRecPtr(NULL)));
	check_record_header(record, reclen, lsn);

	need = DecodeXLogRecordRequiredSpace(reclen);
	if (need > decoded_capacity)
	{
		if (decoded)
			pfree(decoded);
		decoded_capacity = Max(need, 2 * decoded_capacity);
		decoded = MemoryContextAllocHuge(TopMemoryContext, decoded_capacity);
	}
	decoded->oversized = false;
	reader->ReadRecPtr = lsn;
	reader->EndRecPtr = lsn;
	if (!DecodeXLogRecord(reader, decoded, record, lsn, &errormsg))
		die(EXIT_PROTOCOL, "record ending at %X/%X cannot be decoded: %s",
			LSN_FORMAT_ARGS(lsn), errormsg ? errormsg : "no reason given");
	n_throwaway = redirect_blocks(lsn);
	for (int i = 0; i < n_throwaway; i++)
		throwaway[i] = smgropen(throwaway_rel(i), InvalidBackendId);
	for (int i = 0; i <= decoded->max_block_id; i++)
		if (decoded->blocks[i].in_use)
			preload_block(decoded->blocks[i].rnode, decoded->blocks[i].forknum, decoded->blocks[i].blkno);

	reader->record = decoded;
	reader->decode_queue_head = decoded;
	reader->decode_queue_tail = decoded;

	errcallback.callback = redo_error_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	GetRmgr(record->xl_rmid).rm_redo(reader);

	error_context_stack = errcallback.previous;

	/* Forget blocks redo found missing, and every page but the redo_target. */
	for (int i = 0; i <= decoded->max_block_id; i++)
		if (decoded->blocks[i].in_use)
			XLogDropRelation(decoded->blocks[i].rnode, decoded->blocks[i].forknum);
	if (n_throwaway > 0)
		DropRelFileNodesAllBuffers(throwaway, n_throwaway);

	reader->record = NULL;
	reader->decode_queue_head = NULL;
	reader->decode_queue_tail = NULL;
}

/* ----------------------------------------------------------------
 * Start-up
 * ----------------------------------------------------------------
 */

static void
seccomp_violation(int sig, siginfo_t *info, void *context)
{
	char		msg[160];
	int			len = snprintf(msg, sizeof(msg),
							   "FATAL:  walredo: system call %d is not allowed in the redo loop (seccomp)\n",
							   info->si_syscall);

	if (write(STDERR_FILENO, msg, len) < 0)
		_exit(EXIT_SECCOMP);
	_exit(EXIT_SECCOMP);
}

/* What the redo loop needs: pipes and stderr, scratch files, memory, signals to itself, exit. */
static void
enter_seccomp(void)
{
	static const int allowed[] = {
		SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
		SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(lseek),
		SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(close), SCMP_SYS(fcntl),
		SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx),
		SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(ftruncate), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
		SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
		SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn),
		SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(futex),
		SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(getrusage),
		SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(select), SCMP_SYS(pselect6),
		SCMP_SYS(exit), SCMP_SYS(exit_group),
	};
	struct sigaction sa;
	scmp_filter_ctx ctx;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = seccomp_violation;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) != 0)
		die(EXIT_PROTOCOL, "cannot install the SIGSYS handler: %m");

	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (ctx == NULL)
		die(EXIT_PROTOCOL, "cannot set up the seccomp filter");
	for (int i = 0; i < lengthof(allowed); i++)
	{
		if (allowed[i] < 0)
			continue;			/* not a system call on this architecture */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0) != 0)
			die(EXIT_PROTOCOL, "cannot allow system call %d in the seccomp filter", allowed[i]);
	}
	if (seccomp_load(ctx) != 0)
		die(EXIT_PROTOCOL, "cannot load the seccomp filter (run with --disable-seccomp where seccomp is unavailable)");
	seccomp_release(ctx);
}

static bool
seccomp_wanted(void)
{
	const char *setting = GetConfigOption("pgmesh_walredo.seccomp", true, false);
	bool		on = true;

	if (setting != NULL && !parse_bool(setting, &on))
		die(EXIT_PROTOCOL, "pgmesh_walredo.seccomp is \"%s\"; use on or off", setting);
	return on;
}

static void
make_dir(const char *path)
{
	if (mkdir(path, S_IRWXU) != 0 && errno != EEXIST)
		die(EXIT_PROTOCOL, "cannot create directory \"%s\" in the scratch cluster: %m", path);
}

/* A tablespace of the scratch cluster: pg_tblspc/<oid> -> ../pgmesh_walredo/<name> */
static void
make_scratch_tablespace(Oid spcoid, const char *name)
{
	char		dir[MAXPGPATH];
	char		link[MAXPGPATH];
	char		target_path[MAXPGPATH];

	snprintf(dir, sizeof(dir), "%s/%s", SCRATCH_DIR, name);
	make_dir(dir);
	snprintf(dir, sizeof(dir), "%s/%s/%s", SCRATCH_DIR, name, TABLESPACE_VERSION_DIRECTORY);
	make_dir(dir);
	snprintf(link, sizeof(link), "pg_tblspc/%u", spcoid);
	snprintf(target_path, sizeof(target_path), "../%s/%s", SCRATCH_DIR, name);
	if (symlink(target_path, link) != 0 && errno != EEXIST)
		die(EXIT_PROTOCOL, "cannot create tablespace link \"%s\": %m", link);
}

static void
check_fd(int fd, const char *role)
{
	if (fcntl(fd, F_GETFD) < 0)
		die(EXIT_PROTOCOL, "fd %d (%s) is not open; start this through the walredo wrapper (postgres --wal-redo)", fd, role);
}

/*
 * Leaves no System V segment behind, however the process ends: marked for
 * removal now, the kernel drops it when this process detaches (exits).
 * UsedShmemSegID holds the segment's key, not its id (sysv_shmem.c).
 */
static void
remove_own_segment(void)
{
	int			shmid;
	struct shmid_ds ds;

	if (UsedShmemSegID == 0)
		return;
	shmid = shmget((key_t) UsedShmemSegID, 0, 0);
	if (shmid >= 0 && shmctl(shmid, IPC_STAT, &ds) == 0 && ds.shm_cpid == getpid())
		shmctl(shmid, IPC_RMID, NULL);
}

static void
start_up(void)
{
	MemoryContextSwitchTo(TopMemoryContext);

	remove_own_segment();
	before_shmem_exit(exit_without_shutdown, 0);
	emit_log_hook = panic_hook;

	pqsignal(SIGTERM, SIG_DFL);
	pqsignal(SIGINT, SIG_DFL);
	pqsignal(SIGQUIT, SIG_DFL);
	pqsignal(SIGHUP, SIG_DFL);

	check_fd(REQUEST_FD, "requests");
	check_fd(REPLY_FD, "replies");

	make_dir(SCRATCH_DIR);
	make_scratch_tablespace(TARGET_SPC_OID, "target");
	make_scratch_tablespace(THROWAWAY_SPC_OID, "throwaway");

	InRecovery = true;
	reachedConsistency = false;
	for (int rmid = 0; rmid <= RM_MAX_ID; rmid++)
		if (RmgrIdExists(rmid) && GetRmgr(rmid).rm_startup != NULL)
			GetRmgr(rmid).rm_startup();

	reader = XLogReaderAllocate(wal_segment_size, NULL, XL_ROUTINE(), NULL);
	if (reader == NULL)
		die(EXIT_PROTOCOL, "out of memory allocating the WAL reader");

	frame_context = AllocSetContextCreate(TopMemoryContext, "walredo frame", ALLOCSET_DEFAULT_SIZES);

	if (seccomp_wanted())
		enter_seccomp();
}

static void
serve(void)
{
	for (;;)
	{
		uint32		len = 0;
		char		frame = read_frame(&len);

		MemoryContextReset(frame_context);
		MemoryContextSwitchTo(frame_context);
		switch (frame)
		{
			case 0:
				fflush(stderr);
				_exit(0);
			case 'B':
				begin_redo();
				break;
			case 'P':
				push_page();
				break;
			case 'A':
				apply_record(len);
				break;
			case 'G':
				get_page();
				break;
			case 'H':
				write_page(zero_page.data);
				break;
		}
	}
}

Datum
pgmesh_walredo_main(PG_FUNCTION_ARGS)
{
	start_up();
	PG_TRY();
	{
		serve();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		fflush(stderr);
		_exit(EXIT_REDO_ERROR);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}
