/* status.c - messages and names of the runtime's status codes, and the runtime's
 * ABI version.  The tables are static constants (no mutable state). */
#include "runtime/elide_rt.h"

/* ORDER: enum elide_status in elide_rt.h */
static const char *const status_strs[] = {
	"ok",
	"invalid argument",
	"file cannot be opened or read",
	"out of memory",
	"not a weight blob (bad magic)",
	"unsupported weight blob version",
	"weight blob of another model",
	"weight blob truncated or sizes inconsistent",
	"weight blob checksum mismatch",
	"no weights loaded",
	"token id outside the vocabulary",
	"position negative or past the context",
	"sequence empty or longer than its bound",
	"ABI version mismatch",
	"memory not 64-byte aligned",
	"context in use by another call",
};

/* ORDER: enum elide_status in elide_rt.h */
static const char *const status_names[] = {
	"ELIDE_OK",
	"ELIDE_ERR_ARG",
	"ELIDE_ERR_IO",
	"ELIDE_ERR_NOMEM",
	"ELIDE_ERR_BLOB_MAGIC",
	"ELIDE_ERR_BLOB_VERSION",
	"ELIDE_ERR_BLOB_MODEL",
	"ELIDE_ERR_BLOB_SIZE",
	"ELIDE_ERR_BLOB_CHECKSUM",
	"ELIDE_ERR_NO_WEIGHTS",
	"ELIDE_ERR_TOKEN",
	"ELIDE_ERR_POS",
	"ELIDE_ERR_SEQ_LEN",
	"ELIDE_ERR_ABI",
	"ELIDE_ERR_ALIGN",
	"ELIDE_ERR_BUSY",
};

_Static_assert(sizeof status_strs / sizeof status_strs[0] == ELIDE_STATUS_COUNT,
               "status_strs out of step with elide_status");
_Static_assert(sizeof status_names / sizeof status_names[0] == ELIDE_STATUS_COUNT,
               "status_names out of step with elide_status");
/* The values are ABI: pin a few so a reordering cannot go unnoticed. */
_Static_assert(ELIDE_ERR_BLOB_CHECKSUM == 8 && ELIDE_ERR_ABI == 13 && ELIDE_ERR_ALIGN == 14 && ELIDE_ERR_BUSY == 15,
               "elide_status values changed");

const char *
elide_status_str(elide_status s)
{
	if ((unsigned)s >= ELIDE_STATUS_COUNT)
		return "unknown status";
	return status_strs[s];
}

const char *
elide_status_name(elide_status s)
{
	if ((unsigned)s >= ELIDE_STATUS_COUNT)
		return "ELIDE_UNKNOWN";
	return status_names[s];
}

uint32_t
elide_rt_abi_version(void)
{
	return ELIDE_RT_ABI_VERSION;
}
