/* safetensors.c - the weights file reader.  A safetensors file is an 8-byte
 * little-endian header length N, N bytes of JSON (an object mapping tensor names to
 * {dtype, shape, data_offsets}, plus an optional "__metadata__" object, ignored), then
 * the data section.  Everything is validated before any tensor is used:
 *   1. the header length fits the file and a sane bound (ST_MAX_HEADER);
 *   2. the header is one JSON object followed only by whitespace;
 *   3. every entry has a known dtype, a shape of at most IR_MAX_RANK non-negative
 *      integers and two integer data_offsets with begin <= end <= data size;
 *   4. end - begin == numel * dtype size (no overflow), names are unique;
 *   5. no two tensors' byte ranges overlap.
 * Errors are one-line messages in the caller's buffer; bad input never crashes. */
#include "ir/ir.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20) /* same bound as the reference implementation */

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

/* Validates f->bytes/f->size and fills the tensor table. */
static bool
st_parse(StFile *f, char *err, size_t nerr)
{
	if (f->size < 8)
		return fail(err, nerr, "file too short (%zu bytes) to hold the 8-byte header length", f->size);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)f->bytes[i] << (8 * i);
	if (hl > ST_MAX_HEADER)
		return fail(err, nerr, "header too large (%llu bytes, the limit is %u)", (unsigned long long)hl,
		            ST_MAX_HEADER);
	if (hl > f->size - 8)
		return fail(err, nerr, "header length %llu exceeds the %zu bytes after it (truncated file?)",
		            (unsigned long long)hl, f->size - 8);
	if (hl < 2)
		return fail(err, nerr, "header of %llu bytes cannot hold a JSON object", (unsigned long long)hl);
	const char *h = (const char *)f->bytes + 8, *end = NULL;
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
	free(by);
	return ok;
}

StFile *
st_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr)
{
	StFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup("<memory>");
	f->bytes = xmalloc(size ? size : 1);
	if (size)
		memcpy(f->bytes, bytes, size);
	f->size = size;
	if (!st_parse(f, err, nerr)) {
		st_close(f);
		return NULL;
	}
	return f;
}

StFile *
st_open(const char *path, char *err, size_t nerr)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		fail(err, nerr, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1 << 16;
			buf = xrealloc(buf, cap);
		}
		size_t k = fread(buf + n, 1, cap - n, fp);
		n += k;
		if (k == 0)
			break;
	}
	bool rerr = ferror(fp);
	fclose(fp);
	if (rerr) {
		free(buf);
		fail(err, nerr, "cannot read '%s'", path);
		return NULL;
	}
	StFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup(path);
	f->bytes = buf;
	f->size = n;
	if (!st_parse(f, err, nerr)) {
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

static float
f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
	if (exp == 0x1f)
		u = sign | 0x7f800000u | (mant << 13);
	else if (exp != 0)
		u = sign | ((exp + 112) << 23) | (mant << 13);
	else { /* zero or subnormal: mant * 2^-24, exact in f32 */
		float v = (float)mant * (1.0f / 16777216.0f);
		return sign ? -v : v;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

bool
st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t nerr)
{
	size_t es = ir_dtype_size(t->dtype);
	if (!es)
		return fail(err, nerr, "tensor '%s': cannot convert dtype to f32", t->name);
	size_t n = (size_t)(t->end - t->begin) / es;
	const uint8_t *p = f->bytes + f->data_off + t->begin;
	for (size_t i = 0; i < n; i++, p += es) {
		uint32_t u = 0;
		for (size_t b = 0; b < es; b++)
			u |= (uint32_t)p[b] << (8 * b);
		switch (t->dtype) {
		case DT_F32: memcpy(&dst[i], &u, 4); break;
		case DT_I32: dst[i] = (float)(int32_t)u; break;
		case DT_BF16: u <<= 16; memcpy(&dst[i], &u, 4); break;
		case DT_F16: dst[i] = f16_to_f32((uint16_t)u); break;
		case DT_I8: dst[i] = (float)(int8_t)u; break;
		default: return fail(err, nerr, "tensor '%s': cannot convert dtype to f32", t->name);
		}
	}
	return true;
}

static char *
shape_str(const StTensor *t, char *buf, size_t n)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < t->rank && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

bool
ir_load_params(Module *m, const char *path, Diag *d)
{
	if (!path)
		path = m->weights_path;
	if (!path) {
		diag_error(d, (Loc){ 0 }, "no weights file given for model '%s' (use -w FILE.safetensors)", m->name);
		return false;
	}
	char err[512];
	StFile *f = st_open(path, err, sizeof err);
	if (!f) {
		diag_error(d, (Loc){ .file = path }, "%s", err);
		return false;
	}
	bool ok = true;
	for (uint32_t i = 0; i < m->nparams; i++) {
		Param *p = &m->params[i];
		char want[96], have[96];
		if (!p->source) {
			diag_error(d, p->loc, "param '%s' has no tensor name to load from", p->name);
			ok = false;
			continue;
		}
		const StTensor *t = st_find(f, p->source);
		if (!t) {
			diag_error(d, p->loc, "tensor '%s' not found in '%s'", p->source, path);
			ok = false;
			continue;
		}
		if (p->type.dtype != DT_F32 && p->type.dtype != DT_F16 && p->type.dtype != DT_BF16) {
			diag_error(d, p->loc, "param '%s' is declared %s; only floating-point params can be loaded",
			           p->name, ir_dtype_name(p->type.dtype));
			ok = false;
			continue;
		}
		if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16) {
			diag_error(d, p->loc, "tensor '%s' in '%s' has dtype %s, expected F32, F16 or BF16",
			           p->source, path, ir_dtype_name(t->dtype));
			ok = false;
			continue;
		}
		bool same = t->rank == p->type.rank && !p->type.dyn0;
		for (int k = 0; same && k < t->rank; k++)
			same = t->shape[k] == p->type.dims[k];
		if (!same) {
			diag_error(d, p->loc, "tensor '%s' in '%s' has shape %s, but '%s' is declared %s", p->source,
			           path, shape_str(t, have, sizeof have), p->name,
			           ir_type_str(p->type, want, sizeof want));
			ok = false;
			continue;
		}
		size_t n = (size_t)ir_type_numel(p->type);
		float *data = xmalloc((n ? n : 1) * sizeof *data);
		if (!st_read_f32(f, t, data, err, sizeof err)) {
			diag_error(d, p->loc, "%s", err);
			free(data);
			ok = false;
			continue;
		}
		free(p->data);
		p->data = data;
		p->hash = hash_bytes(data, n * sizeof *data, 0);
		/* a param declared quantised (textual IR) is quantised as it is loaded */
		QFormat qf = p->format;
		free(p->qdata);
		p->qdata = NULL;
		p->format = QF_F32;
		if (qf != QF_F32 && !ir_quantize_param(p, qf, p->group, err, sizeof err)) {
			diag_error(d, p->loc, "%s", err);
			ok = false;
		}
	}
	st_close(f);
	return ok;
}
