/* safetensors.c - the weights file reader.  A safetensors file is an 8-byte
 * little-endian header length N, N bytes of JSON (an object mapping tensor names to
 * {dtype, shape, data_offsets}, plus an optional "__metadata__" object, ignored), then
 * the data section.  Everything is validated before any tensor is used:
 *   1. the header length fits the file and a sane bound (ST_MAX_HEADER);
 *   2. the header is one JSON object followed only by whitespace, with no byte-order
 *      mark, no raw control byte (cJSON would skip a NUL as whitespace) and no
 *      \u0000 escape (it would cut a name short: "a.weight\u0000x" is not "a.weight");
 *   3. every entry has a known dtype, a shape of at most IR_MAX_RANK non-negative
 *      integers and two integer data_offsets with begin <= end <= data size;
 *   4. end - begin == numel * dtype size (no overflow), names are unique;
 *   5. no two tensors' byte ranges overlap;
 *   6. the tensors cover the data section, without holes and with nothing after them.
 * Errors are one-line messages in the caller's buffer; bad input never crashes.  A
 * file is read through a mapping; one that another program truncates while it is
 * mapped would fault (SIGBUS) on the pages past its new end, so every read of the
 * mapping runs under a guard: a SIGBUS handler, installed once, jumps back to the
 * read (a thread-local sigjmp_buf) and the read fails with a message; a SIGBUS
 * outside a guarded read goes to the handler installed before, or kills as usual. */
#include "ir/ir.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>

#define ST_MAX_HEADER (100u << 20) /* same bound as the reference implementation */
#define ST_MAX_FILE ((uint64_t)256 << 30) /* 256 GiB: more than any machine here loads */

static bool
fail(char *err, size_t nerr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && nerr)
		vsnprintf(err, nerr, fmt, ap);
	va_end(ap);
	return false;
}

/* ---- the SIGBUS guard of reads from a mapping ---- */

static _Thread_local sigjmp_buf *st_guard_jmp; /* set while this thread reads a mapping */
static struct sigaction st_prev_bus;           /* the disposition before ours */
static pthread_once_t st_bus_once = PTHREAD_ONCE_INIT;

void (*st_test_after_map)(const char *path); /* tests: runs between mmap and parsing */

static void
st_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	if (st_guard_jmp)
		siglongjmp(*st_guard_jmp, 1);
	/* not a guarded read: what was there before decides */
	if (st_prev_bus.sa_flags & SA_SIGINFO) {
		st_prev_bus.sa_sigaction(sig, si, uc);
	} else if (st_prev_bus.sa_handler != SIG_DFL && st_prev_bus.sa_handler != SIG_IGN) {
		st_prev_bus.sa_handler(sig);
	} else { /* the default: the faulting access runs again and kills */
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigemptyset(&dfl.sa_mask);
		sigaction(SIGBUS, &dfl, NULL);
	}
}

static void
st_install_sigbus(void)
{
	struct sigaction sa = { .sa_sigaction = st_on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &st_prev_bus);
}

/* Runs read(arg) on f's bytes; false when it faulted (the file shrank under its
 * mapping).  Only what read() writes through arg survives a fault. */
static bool
st_guard(const StFile *f, void (*read)(void *arg), void *arg)
{
	if (!f->mapped) {
		read(arg);
		return true;
	}
	pthread_once(&st_bus_once, st_install_sigbus);
	sigjmp_buf jb;
	if (sigsetjmp(jb, 1)) {
		st_guard_jmp = NULL;
		return false;
	}
	st_guard_jmp = &jb;
	read(arg);
	st_guard_jmp = NULL;
	return true;
}

/* The message of a read that faulted, with the file's size now. */
static bool
fail_shrank(const StFile *f, char *err, size_t nerr, const char *what)
{
	struct stat sb;
	char now[64];
	if (stat(f->path, &sb) == 0)
		snprintf(now, sizeof now, "%llu bytes", (unsigned long long)sb.st_size);
	else
		snprintf(now, sizeof now, "nothing (%s)", strerror(errno));
	return fail(err, nerr, "%s: '%s' shrank from %zu bytes to %s while it was read (truncated by another "
	            "program?)", what, f->path, f->size, now);
}

typedef struct StCopy {
	uint8_t *dst;
	const uint8_t *src;
	size_t n;
} StCopy;

static void
st_copy(void *arg)
{
	StCopy *c = arg;
	memcpy(c->dst, c->src, c->n);
}

/* File dtype names; ORDER: none (looked up by name). */
static const struct {
	const char *name;
	int dtype; /* DType, or -1: known to the format but not supported here */
} st_dtypes[] = {
	{ "F32", DT_F32 }, { "F16", DT_F16 }, { "BF16", DT_BF16 }, { "I32", DT_I32 },
	{ "I8", DT_I8 }, { "F64", -1 }, { "I64", -1 }, { "U64", -1 }, { "U32", -1 },
	{ "I16", -1 }, { "U16", -1 }, { "U8", -1 }, { "BOOL", -1 }, { "F8_E4M3", -1 },
	{ "F8_E5M2", -1 },
};

/* A JSON number that is an integer in [0, 2^53]. */
static bool
get_uint(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return false;
	double v = j->valuedouble;
	if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
		return false;
	*out = (uint64_t)v;
	return true;
}

/* Step 2's byte checks on the raw header text (n bytes): no BOM, no control byte
 * other than tab, newline and carriage return, no \u0000 escape in a string. */
static bool
check_header_bytes(const char *h, size_t n, char *err, size_t nerr)
{
	if (n >= 3 && memcmp(h, "\xef\xbb\xbf", 3) == 0)
		return fail(err, nerr, "header starts with a byte-order mark; the format allows none");
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return fail(err, nerr, "header holds the control byte 0x%02x at byte %zu", c, i);
		if (c == '"') {
			in_str = !in_str;
		} else if (in_str && c == '\\' && i + 1 < n) {
			if (h[i + 1] == 'u' && i + 5 < n && memcmp(h + i + 2, "0000", 4) == 0)
				return fail(err, nerr, "header holds a \\u0000 (NUL) in a string at byte %zu", i);
			i++; /* the escaped character */
		}
	}
	return true;
}

static int
cmp_begin(const void *a, const void *b)
{
	const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
	return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static bool
parse_entry(const cJSON *e, StTensor *t, uint64_t datasize, char *err, size_t nerr)
{
	const char *name = e->string;
	if (!cJSON_IsObject(e))
		return fail(err, nerr, "tensor '%s': expected an object, saw another JSON value", name);
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	if (!cJSON_IsString(dt))
		return fail(err, nerr, "tensor '%s': missing or non-string 'dtype'", name);
	int dtype = -2;
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
		if (strcmp(dt->valuestring, st_dtypes[i].name) == 0)
			dtype = st_dtypes[i].dtype;
	if (dtype == -2)
		return fail(err, nerr, "tensor '%s': unknown dtype '%.40s'", name, dt->valuestring);
	if (dtype == -1)
		return fail(err, nerr, "tensor '%s': unsupported dtype '%s' (expected F32, F16, BF16, I32 or I8)",
		            name, dt->valuestring);
	t->dtype = (DType)dtype;
	if (!cJSON_IsArray(sh))
		return fail(err, nerr, "tensor '%s': missing or non-array 'shape'", name);
	int rank = cJSON_GetArraySize(sh);
	if (rank > IR_MAX_RANK)
		return fail(err, nerr, "tensor '%s': rank %d exceeds the maximum of %d", name, rank, IR_MAX_RANK);
	t->rank = rank;
	uint64_t numel = 1;
	bool overflow = false;
	int k = 0;
	for (const cJSON *d = sh->child; d; d = d->next, k++) {
		uint64_t v;
		if (!get_uint(d, &v))
			return fail(err, nerr, "tensor '%s': shape entry %d is not a non-negative integer", name, k);
		t->shape[k] = (int64_t)v;
		if (__builtin_mul_overflow(numel, v, &numel))
			overflow = true;
	}
	if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
		return fail(err, nerr, "tensor '%s': 'data_offsets' must be an array of two integers", name);
	if (!get_uint(off->child, &t->begin) || !get_uint(off->child->next, &t->end))
		return fail(err, nerr, "tensor '%s': 'data_offsets' must be non-negative integers", name);
	if (t->begin > t->end)
		return fail(err, nerr, "tensor '%s': data_offsets [%llu, %llu] are reversed", name,
		            (unsigned long long)t->begin, (unsigned long long)t->end);
	if (t->end > datasize)
		return fail(err, nerr, "tensor '%s': data_offsets [%llu, %llu] out of range of the %llu-byte data section (truncated file?)",
		            name, (unsigned long long)t->begin, (unsigned long long)t->end,
		            (unsigned long long)datasize);
	uint64_t bytes;
	if (overflow || __builtin_mul_overflow(numel, (uint64_t)ir_dtype_size(t->dtype), &bytes) ||
	    bytes != t->end - t->begin)
		return fail(err, nerr, "tensor '%s': data_offsets span %llu bytes, but the shape and dtype need %s%llu",
		            name, (unsigned long long)(t->end - t->begin), overflow ? "more than " : "",
		            overflow ? (unsigned long long)UINT64_MAX : (unsigned long long)bytes);
	return true;
}

/* Validates the file of f->size bytes whose first bytes, the header length and the
 * header as far as the file holds it, are `head`, and fills the tensor table. */
static bool
st_parse(StFile *f, const uint8_t *head, char *err, size_t nerr)
{
	if (f->size < 8)
		return fail(err, nerr, "file too short (%zu bytes) to hold the 8-byte header length", f->size);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)head[i] << (8 * i);
	if (hl > ST_MAX_HEADER)
		return fail(err, nerr, "header too large (%llu bytes, the limit is %u)", (unsigned long long)hl,
		            ST_MAX_HEADER);
	if (hl > f->size - 8)
		return fail(err, nerr, "header length %llu exceeds the %zu bytes after it (truncated file?)",
		            (unsigned long long)hl, f->size - 8);
	if (hl < 2)
		return fail(err, nerr, "header of %llu bytes cannot hold a JSON object", (unsigned long long)hl);
	const char *h = (const char *)head + 8, *end = NULL;
	if (!check_header_bytes(h, (size_t)hl, err, nerr))
		return false;
	cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hl, &end, false);
	if (!root) {
		const char *at = cJSON_GetErrorPtr();
		size_t pos = at && at >= h && at <= h + hl ? (size_t)(at - h) : 0;
		return fail(err, nerr, "header is not valid JSON (near byte %zu of the header)", pos);
	}
	bool ok = true;
	if (end)
		for (const char *p = end; p < h + hl; p++)
			if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
				ok = fail(err, nerr, "header has trailing bytes after the JSON object");
				break;
			}
	if (ok && !cJSON_IsObject(root))
		ok = fail(err, nerr, "header is not a JSON object");
	f->data_off = 8 + (size_t)hl;
	uint64_t datasize = f->size - f->data_off;
	uint32_t n = 0;
	for (const cJSON *e = ok ? root->child : NULL; e; e = e->next)
		n++;
	f->tensors = xcalloc(n + 1, sizeof *f->tensors);
	for (const cJSON *e = ok ? root->child : NULL; e && ok; e = e->next) {
		if (!e->string)
			continue;
		if (strcmp(e->string, "__metadata__") == 0)
			continue;
		StTensor *t = &f->tensors[f->ntensors];
		t->name = e->string; /* replaced by a copy below */
		if (!parse_entry(e, t, datasize, err, nerr)) {
			ok = false;
			break;
		}
		t->name = xstrdup(e->string);
		f->ntensors++;
	}
	cJSON_Delete(root);
	if (!ok)
		return false;
	/* 4b. unique names: sorted by name, duplicates are neighbours */
	const StTensor **by = xcalloc(f->ntensors + 1, sizeof *by);
	for (uint32_t i = 0; i < f->ntensors; i++)
		by[i] = &f->tensors[i];
	qsort(by, f->ntensors, sizeof *by, cmp_name);
	for (uint32_t i = 1; i < f->ntensors && ok; i++)
		if (strcmp(by[i - 1]->name, by[i]->name) == 0)
			ok = fail(err, nerr, "tensor '%s' is declared twice", by[i]->name);
	/* 5. overlap check on the ranges sorted by start; empty tensors overlap nothing */
	qsort(by, f->ntensors, sizeof *by, cmp_begin);
	const StTensor *prev = NULL;
	for (uint32_t i = 0; i < f->ntensors && ok; i++) {
		if (by[i]->begin == by[i]->end)
			continue;
		if (prev && by[i]->begin < prev->end)
			ok = fail(err, nerr, "tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", prev->name,
			          (unsigned long long)prev->begin, (unsigned long long)prev->end, by[i]->name,
			          (unsigned long long)by[i]->begin, (unsigned long long)by[i]->end);
		prev = by[i];
	}
	/* 6. no holes: the tensors cover the data section from 0 to its end (the format
	 * requires it; a header length a few bytes short, for one, shifts every tensor
	 * by those bytes and leaves them after the last one) */
	uint64_t covered = 0;
	for (uint32_t i = 0; i < f->ntensors && ok; i++) {
		if (by[i]->begin == by[i]->end)
			continue;
		if (by[i]->begin != covered)
			ok = fail(err, nerr, "bytes [%llu, %llu] of the data section belong to no tensor (before '%s')",
			          (unsigned long long)covered, (unsigned long long)by[i]->begin, by[i]->name);
		covered = by[i]->end;
	}
	if (ok && covered != datasize)
		ok = fail(err, nerr, "the data section has %llu bytes after the last tensor; the tensors must cover it",
		          (unsigned long long)(datasize - covered));
	free(by);
	return ok;
}

StFile *
st_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr)
{
	StFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup("<memory>");
	f->bytes = xmemdup(bytes, size);
	f->size = size;
	if (!st_parse(f, f->bytes, err, nerr)) {
		st_close(f);
		return NULL;
	}
	return f;
}

/* The first bytes of a mapped file, its header length and the header (as far as the
 * length is sane and the file holds it), copied out of the mapping under the guard
 * into *out (the caller frees it, also on failure). */
static bool
st_read_head(const StFile *f, uint8_t **out, char *err, size_t nerr)
{
	uint8_t len[8] = { 0 };
	StCopy c = { len, f->bytes, f->size < 8 ? f->size : 8 };
	if (!st_guard(f, st_copy, &c))
		return fail_shrank(f, err, nerr, "cannot read the header");
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)len[i] << (8 * i);
	size_t n = c.n;
	if (n == 8 && hl <= ST_MAX_HEADER && hl <= f->size - 8)
		n = 8 + (size_t)hl;
	*out = xmalloc(n ? n : 1);
	c = (StCopy){ *out, f->bytes, n };
	if (!st_guard(f, st_copy, &c))
		return fail_shrank(f, err, nerr, "cannot read the header");
	return true;
}

/* The file is mapped read-only, not read: loading converts one tensor at a time
 * from the mapping and releases its pages (st_read_f32), so the peak memory of a
 * load is the params plus one tensor, not the params plus the file. */
StFile *
st_open(const char *path, char *err, size_t nerr)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
	if (fd < 0) {
		fail(err, nerr, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	/* a regular file of bounded size, mapped at its size at open: a device
	 * (/dev/zero), a FIFO or a file that grows is never read forever */
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		fail(err, nerr, "cannot read '%s': not a regular file", path);
		close(fd);
		return NULL;
	}
	if ((uint64_t)sb.st_size > ST_MAX_FILE || (uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		fail(err, nerr, "cannot read '%s': %llu bytes, more than the limit of %llu", path,
		     (unsigned long long)sb.st_size, (unsigned long long)ST_MAX_FILE);
		return NULL;
	}
	size_t n = (size_t)sb.st_size;
	void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (n && map == MAP_FAILED) {
		fail(err, nerr, "cannot read '%s': %s", path, strerror(errno));
		return NULL;
	}
	StFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup(path);
	f->bytes = n ? map : xmalloc(1);
	f->mapped = n != 0;
	f->size = n;
	if (st_test_after_map)
		st_test_after_map(path);
	uint8_t *head = NULL;
	bool ok = n ? st_read_head(f, &head, err, nerr) && st_parse(f, head, err, nerr)
	            : st_parse(f, f->bytes, err, nerr);
	free(head);
	if (!ok) {
		st_close(f);
		return NULL;
	}
	return f;
}

void
st_close(StFile *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->ntensors; i++)
		free((void *)f->tensors[i].name);
	free(f->tensors);
	if (f->mapped)
		munmap(f->bytes, f->size);
	else
		free(f->bytes);
	free((void *)f->path);
	free(f);
}

const StTensor *
st_find(const StFile *f, const char *name)
{
	for (uint32_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}

static bool
convert(const StTensor *t, const uint8_t *p, size_t n, size_t es, float *dst, char *err, size_t nerr)
{
	for (size_t i = 0; i < n; i++, p += es) {
		uint32_t u = 0;
		for (size_t b = 0; b < es; b++)
			u |= (uint32_t)p[b] << (8 * b);
		switch (t->dtype) {
		case DT_F32: memcpy(&dst[i], &u, 4); break;
		case DT_I32: dst[i] = (float)(int32_t)u; break;
		case DT_BF16: u <<= 16; memcpy(&dst[i], &u, 4); break;
		case DT_F16: dst[i] = ir_f16_to_f32((uint16_t)u); break;
		case DT_I8: dst[i] = (float)(int8_t)u; break;
		default: return fail(err, nerr, "tensor '%s': cannot convert dtype to f32", t->name);
		}
	}
	return true;
}

/* The conversion of one tensor, run under the guard. */
typedef struct StConvert {
	const StTensor *t;
	const uint8_t *p; /* its bytes in the file */
	size_t n, es;     /* elements, bytes each */
	float *dst;
	char *err;
	size_t nerr;
	bool ok;
} StConvert;

static void
st_convert(void *arg)
{
	StConvert *c = arg;
	if (c->t->dtype == DT_F32 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
		memcpy(c->dst, c->p, c->n * 4);
	else if (c->t->dtype == DT_BF16 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
		for (size_t i = 0; i < c->n; i++) {
			uint16_t h;
			memcpy(&h, c->p + 2 * i, 2);
			uint32_t u = (uint32_t)h << 16;
			memcpy(&c->dst[i], &u, 4);
		}
	else
		c->ok = convert(c->t, c->p, c->n, c->es, c->dst, c->err, c->nerr);
}

bool
st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t nerr)
{
	size_t es = ir_dtype_size(t->dtype);
	if (!es)
		return fail(err, nerr, "tensor '%s': cannot convert dtype to f32", t->name);
	size_t n = (size_t)(t->end - t->begin) / es;
	const uint8_t *p = f->bytes + f->data_off + t->begin;
	StConvert c = { t, p, n, es, dst, err, nerr, true };
	if (!st_guard(f, st_convert, &c)) {
		char what[300];
		snprintf(what, sizeof what, "tensor '%s'", t->name);
		return fail_shrank(f, err, nerr, what);
	}
	bool ok = c.ok;
	if (f->mapped) { /* give the tensor's whole pages back: they are read once */
		uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n * es) & ~(pg - 1);
		if (b > a)
			madvise((void *)a, b - a, MADV_DONTNEED);
	}
	return ok;
}

/* One file (or index, or directory): ir_load_weights (weights.c) does the work. */
bool
ir_load_params(Module *m, const char *path, Diag *d)
{
	return ir_load_params_progress(m, path, d, NULL, NULL);
}

bool
ir_load_params_progress(Module *m, const char *path, Diag *d,
                        void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	if (!path)
		path = m->weights_path;
	return ir_load_weights_progress(m, &path, path ? 1 : 0, d, progress, arg);
}

/* Several files (a checkpoint in shards): each tensor must be in exactly one. */
bool
ir_load_params_files(Module *m, const char *const *paths, uint32_t nfiles, Diag *d,
                     void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	return ir_load_weights_progress(m, paths, nfiles, d, progress, arg);
}
