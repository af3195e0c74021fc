/* gguf.c - the GGUF weights reader (the file format of llama.cpp, versions 2 and 3).
 * A GGUF file is, all little-endian: the magic "GGUF", a u32 version, a u64 tensor
 * count and a u64 metadata count; the metadata (key string, u32 value type, value);
 * the tensor infos (name string, u32 rank, rank u64 extents innermost first, u32
 * ggml type, u64 offset into the data section); padding to the alignment (the
 * metadata's general.alignment, default 32); the data section.  A string is a u64
 * length and that many bytes.  Everything is validated before any tensor is used:
 *   1. the header fits the file; counts are bounded by the bytes left;
 *   2. every key and tensor name is non-empty, at most GGUF_MAX_NAME bytes, without
 *      NUL, and unique; values have a known type; arrays are flat and fit the file;
 *   3. general.alignment, when present, is a u32 power of two;
 *   4. every tensor has rank 1..IR_MAX_RANK, positive extents whose product fits in
 *      2^53, a known ggml type whose block divides the inner extent, an aligned
 *      offset, and bytes inside the data section; no two tensors overlap.
 * F32, F16, BF16, Q8_0 and Q4_0 tensors convert to f32 (gguf_read_f32).  Errors are
 * one-line messages in the caller's buffer naming the item; bad input never crashes. */
#include "ir/ir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GGUF_MAX_NAME 4096u           /* bytes of a key or tensor name */
#define GGUF_MAX_STRING (64u << 20)   /* bytes of a string value */
#define GGUF_DEFAULT_ALIGN 32u

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

/* ggml tensor types: block size in elements and bytes; ORDER: indexed by the ggml
 * type number, gaps (removed types) have no name. */
static const struct {
	const char *name;
	uint32_t block, bytes;
} ggml_types[] = {
	[GGML_F32] = { "F32", 1, 4 },     [GGML_F16] = { "F16", 1, 2 },
	[GGML_Q4_0] = { "Q4_0", 32, 18 }, [3] = { "Q4_1", 32, 20 },
	[6] = { "Q5_0", 32, 22 },         [7] = { "Q5_1", 32, 24 },
	[GGML_Q8_0] = { "Q8_0", 32, 34 }, [9] = { "Q8_1", 32, 36 },
	[10] = { "Q2_K", 256, 84 },       [11] = { "Q3_K", 256, 110 },
	[12] = { "Q4_K", 256, 144 },      [13] = { "Q5_K", 256, 176 },
	[14] = { "Q6_K", 256, 210 },      [15] = { "Q8_K", 256, 292 },
	[24] = { "I8", 1, 1 },            [25] = { "I16", 1, 2 },
	[26] = { "I32", 1, 4 },           [27] = { "I64", 1, 8 },
	[28] = { "F64", 1, 8 },           [GGML_BF16] = { "BF16", 1, 2 },
};
#define NGGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *
gguf_type_name(uint32_t type)
{
	return type < NGGML_TYPES && ggml_types[type].name ? ggml_types[type].name : NULL;
}

/* Sizes of the scalar value types; 0 for string and array. */
static const uint8_t value_size[GGUF_V_COUNT] = {
	[GGUF_V_U8] = 1, [GGUF_V_I8] = 1, [GGUF_V_U16] = 2, [GGUF_V_I16] = 2, [GGUF_V_U32] = 4,
	[GGUF_V_I32] = 4, [GGUF_V_F32] = 4, [GGUF_V_BOOL] = 1, [GGUF_V_U64] = 8, [GGUF_V_I64] = 8,
	[GGUF_V_F64] = 8,
};

/* A cursor over the file's bytes; every read checks the bytes left. */
typedef struct Cur {
	const uint8_t *p;
	size_t size, pos;
	char *err;
	size_t nerr;
} Cur;

static uint64_t
le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static bool
rd(Cur *c, int n, uint64_t *out, const char *what)
{
	if (c->size - c->pos < (size_t)n)
		return fail(c->err, c->nerr, "truncated at byte %zu: %s needs %d bytes, %zu left", c->pos, what, n,
		            c->size - c->pos);
	*out = le(c->p + c->pos, n);
	c->pos += (size_t)n;
	return true;
}

/* A string: u64 length, bytes.  Names (is_name) are non-empty, bounded, without NUL;
 * the result is a malloc'ed NUL-terminated copy (NULL when out is NULL: skipped). */
static bool
rd_str(Cur *c, bool is_name, char **out, const char *what)
{
	uint64_t n = 0;
	if (!rd(c, 8, &n, what))
		return false;
	uint64_t max = is_name ? GGUF_MAX_NAME : GGUF_MAX_STRING;
	if (n > c->size - c->pos)
		return fail(c->err, c->nerr, "truncated at byte %zu: %s of %llu bytes, %zu left", c->pos, what,
		            (unsigned long long)n, c->size - c->pos);
	if (n > max)
		return fail(c->err, c->nerr, "%s at byte %zu is %llu bytes long, at most %llu allowed", what, c->pos,
		            (unsigned long long)n, (unsigned long long)max);
	if (is_name && n == 0)
		return fail(c->err, c->nerr, "%s at byte %zu is empty", what, c->pos);
	if (is_name && memchr(c->p + c->pos, 0, (size_t)n))
		return fail(c->err, c->nerr, "%s at byte %zu contains a NUL byte", what, c->pos);
	if (out) {
		*out = xmalloc((size_t)n + 1);
		memcpy(*out, c->p + c->pos, (size_t)n);
		(*out)[n] = '\0';
	}
	c->pos += (size_t)n;
	return true;
}

/* One metadata value of type `type` into kv (arrays: element type, count and the
 * offset of their payload, which is checked to fit and skipped). */
static bool
rd_value(Cur *c, uint32_t type, GgufKV *kv)
{
	if (type >= GGUF_V_COUNT)
		return fail(c->err, c->nerr, "key '%s': unknown value type %u", kv->key, type);
	kv->type = type;
	if (type == GGUF_V_STRING)
		return rd_str(c, false, &kv->str, "a string value");
	if (type != GGUF_V_ARRAY) {
		uint64_t u = 0;
		if (!rd(c, value_size[type], &u, "a value"))
			return false;
		kv->u = u;
		return true;
	}
	uint64_t at = 0, n = 0;
	if (!rd(c, 4, &at, "an array type") || !rd(c, 8, &n, "an array length"))
		return false;
	if (at >= GGUF_V_COUNT || at == GGUF_V_ARRAY)
		return fail(c->err, c->nerr, "key '%s': array of %s", kv->key,
		            at == GGUF_V_ARRAY ? "arrays is not supported" : "an unknown value type");
	kv->arr_type = (uint32_t)at;
	kv->arr_n = n;
	kv->arr_off = c->pos;
	if (at != GGUF_V_STRING) {
		if (n > (c->size - c->pos) / value_size[at])
			return fail(c->err, c->nerr, "key '%s': array of %llu values does not fit the %zu bytes left",
			            kv->key, (unsigned long long)n, c->size - c->pos);
		c->pos += (size_t)n * value_size[at];
		return true;
	}
	if (n > (c->size - c->pos) / 8)
		return fail(c->err, c->nerr, "key '%s': array of %llu strings does not fit the %zu bytes left", kv->key,
		            (unsigned long long)n, c->size - c->pos);
	for (uint64_t i = 0; i < n; i++)
		if (!rd_str(c, false, NULL, "an array string"))
			return false;
	return true;
}

static int
cmp_kv(const void *a, const void *b)
{
	return strcmp(((const GgufKV *)a)->key, ((const GgufKV *)b)->key);
}

static int
cmp_tensor_name(const void *a, const void *b)
{
	return strcmp((*(const GgufTensor *const *)a)->name, (*(const GgufTensor *const *)b)->name);
}

static int
cmp_tensor_off(const void *a, const void *b)
{
	const GgufTensor *x = *(const GgufTensor *const *)a, *y = *(const GgufTensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* One tensor info; offsets are checked against the data section later. */
static bool
rd_tensor(Cur *c, GgufTensor *t)
{
	if (!rd_str(c, true, (char **)&t->name, "a tensor name"))
		return false;
	uint64_t rank = 0, type = 0;
	if (!rd(c, 4, &rank, "a tensor rank"))
		return false;
	if (rank < 1 || rank > IR_MAX_RANK)
		return fail(c->err, c->nerr, "tensor '%s': rank %llu, expected 1 to %d", t->name, (unsigned long long)rank,
		            IR_MAX_RANK);
	t->rank = (int)rank;
	uint64_t numel = 1;
	for (int k = 0; k < t->rank; k++) {
		uint64_t e = 0;
		if (!rd(c, 8, &e, "a tensor extent"))
			return false;
		if (e == 0 || e > (1ull << 53) / numel)
			return fail(c->err, c->nerr, "tensor '%s': extent %llu of axis %d is %s", t->name,
			            (unsigned long long)e, k, e == 0 ? "zero" : "too large");
		numel *= e;
		t->shape[t->rank - 1 - k] = (int64_t)e; /* GGUF lists the innermost axis first */
	}
	if (!rd(c, 4, &type, "a tensor type") || !rd(c, 8, &t->offset, "a tensor offset"))
		return false;
	if (!gguf_type_name((uint32_t)type))
		return fail(c->err, c->nerr, "tensor '%s': unknown ggml type %llu", t->name, (unsigned long long)type);
	t->type = (uint32_t)type;
	uint64_t inner = (uint64_t)t->shape[t->rank - 1], bl = ggml_types[type].block;
	if (inner % bl)
		return fail(c->err, c->nerr, "tensor '%s': inner extent %llu is not a multiple of the %s block of %llu",
		            t->name, (unsigned long long)inner, ggml_types[type].name, (unsigned long long)bl);
	t->numel = numel;
	t->nbytes = numel / bl * ggml_types[type].bytes; /* numel < 2^53, bytes <= 292: no overflow */
	return true;
}

static bool
gguf_parse(GgufFile *f, char *err, size_t nerr)
{
	Cur c = { .p = f->bytes, .size = f->size, .err = err, .nerr = nerr };
	uint64_t magic = 0, version = 0, nt = 0, nkv = 0;
	if (!rd(&c, 4, &magic, "the magic"))
		return false;
	if (memcmp(f->bytes, "GGUF", 4) != 0)
		return fail(err, nerr, "not a GGUF file (the magic is not \"GGUF\")");
	if (!rd(&c, 4, &version, "the version"))
		return false;
	if (version != 2 && version != 3)
		return fail(err, nerr, "GGUF version %llu is not supported (2 and 3 are)", (unsigned long long)version);
	f->version = (uint32_t)version;
	if (!rd(&c, 8, &nt, "the tensor count") || !rd(&c, 8, &nkv, "the metadata count"))
		return false;
	/* a key-value takes at least 13 bytes (8 + 1 + 4 + 0-byte value), a tensor info 29 */
	if (nkv > (c.size - c.pos) / 13)
		return fail(err, nerr, "%llu metadata entries cannot fit the %zu bytes left", (unsigned long long)nkv,
		            c.size - c.pos);
	f->kv = xcalloc(nkv ? (size_t)nkv : 1, sizeof *f->kv);
	for (uint64_t i = 0; i < nkv; i++) {
		GgufKV *kv = &f->kv[i];
		uint64_t type = 0;
		if (!rd_str(&c, true, (char **)&kv->key, "a metadata key"))
			return false;
		f->nkv++;
		if (!rd(&c, 4, &type, "a value type") || !rd_value(&c, (uint32_t)type, kv))
			return false;
	}
	if (nt > (c.size - c.pos) / 29)
		return fail(err, nerr, "%llu tensors cannot fit the %zu bytes left", (unsigned long long)nt, c.size - c.pos);
	f->tensors = xcalloc(nt ? (size_t)nt : 1, sizeof *f->tensors);
	for (uint64_t i = 0; i < nt; i++) {
		f->ntensors++;
		if (!rd_tensor(&c, &f->tensors[i]))
			return false;
	}
	/* unique keys (sorted for gguf_find_kv) */
	qsort(f->kv, f->nkv, sizeof *f->kv, cmp_kv);
	for (uint32_t i = 1; i < f->nkv; i++)
		if (strcmp(f->kv[i - 1].key, f->kv[i].key) == 0)
			return fail(err, nerr, "metadata key '%s' appears twice", f->kv[i].key);
	f->alignment = GGUF_DEFAULT_ALIGN;
	const GgufKV *al = gguf_find_kv(f, "general.alignment");
	if (al) {
		if (al->type != GGUF_V_U32 || al->u == 0 || (al->u & (al->u - 1)) || al->u > (1u << 20))
			return fail(err, nerr, "general.alignment must be a u32 power of two up to 2^20");
		f->alignment = al->u;
	}
	uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
	if (pad > c.size - c.pos)
		return fail(err, nerr, "truncated: the data section would start at byte %llu, the file has %zu",
		            (unsigned long long)(c.pos + pad), c.size);
	f->data_off = c.pos + (size_t)pad;
	uint64_t datasize = f->size - f->data_off;
	/* tensors: inside the data section, aligned, unique names, no overlap */
	bool ok = true;
	GgufTensor **by = xmalloc((f->ntensors ? f->ntensors : 1) * sizeof *by);
	for (uint32_t i = 0; i < f->ntensors; i++) {
		GgufTensor *t = &f->tensors[i];
		by[i] = t;
		if (t->offset % f->alignment)
			ok = ok && fail(err, nerr, "tensor '%s': offset %llu is not a multiple of the alignment %llu", t->name,
			                (unsigned long long)t->offset, (unsigned long long)f->alignment);
		else if (t->offset > datasize || t->nbytes > datasize - t->offset)
			ok = ok && fail(err, nerr, "tensor '%s': bytes [%llu, %llu) lie outside the data section of %llu bytes",
			                t->name, (unsigned long long)t->offset, (unsigned long long)t->offset + t->nbytes,
			                (unsigned long long)datasize);
	}
	if (ok) {
		qsort(by, f->ntensors, sizeof *by, cmp_tensor_name);
		for (uint32_t i = 1; i < f->ntensors && ok; i++)
			if (strcmp(by[i - 1]->name, by[i]->name) == 0)
				ok = fail(err, nerr, "tensor '%s' appears twice", by[i]->name);
	}
	if (ok) {
		qsort(by, f->ntensors, sizeof *by, cmp_tensor_off);
		for (uint32_t i = 1; i < f->ntensors && ok; i++)
			if (by[i]->offset < by[i - 1]->offset + by[i - 1]->nbytes)
				ok = fail(err, nerr, "tensors '%s' and '%s' overlap", by[i - 1]->name, by[i]->name);
	}
	free(by);
	return ok;
}

GgufFile *
gguf_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr)
{
	GgufFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup("<memory>");
	f->bytes = xmemdup(bytes, size);
	f->size = size;
	if (!gguf_parse(f, err, nerr)) {
		gguf_close(f);
		return NULL;
	}
	return f;
}

GgufFile *
gguf_open(const char *path, char *err, size_t nerr)
{
	FILE *fp = file_fopen_read(path);
	if (!fp) {
		fail(err, nerr, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	/* a regular file, read to its end: a device (/dev/zero) would never end */
	struct stat sb;
	if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		fclose(fp);
		fail(err, nerr, "cannot read '%s': not a regular file", path);
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
	GgufFile *f = xcalloc(1, sizeof *f);
	f->path = xstrdup(path);
	f->bytes = buf;
	f->size = n;
	char e[480];
	if (!gguf_parse(f, e, sizeof e)) {
		fail(err, nerr, "%s: %s", path, e);
		gguf_close(f);
		return NULL;
	}
	return f;
}

void
gguf_close(GgufFile *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->nkv; i++) {
		free((void *)f->kv[i].key);
		free(f->kv[i].str);
	}
	for (uint32_t i = 0; i < f->ntensors; i++)
		free((void *)f->tensors[i].name);
	free(f->kv);
	free(f->tensors);
	free(f->bytes);
	free((void *)f->path);
	free(f);
}

const GgufKV *
gguf_find_kv(const GgufFile *f, const char *key)
{
	GgufKV k = { .key = key };
	return f->nkv ? bsearch(&k, f->kv, f->nkv, sizeof *f->kv, cmp_kv) : NULL;
}

const GgufTensor *
gguf_find_tensor(const GgufFile *f, const char *name)
{
	for (uint32_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}

bool
gguf_kv_int(const GgufFile *f, const char *key, int64_t *out)
{
	const GgufKV *kv = gguf_find_kv(f, key);
	if (!kv)
		return false;
	switch (kv->type) {
	case GGUF_V_U8: case GGUF_V_U16: case GGUF_V_U32: case GGUF_V_U64:
		if (kv->u > INT64_MAX)
			return false;
		*out = (int64_t)kv->u;
		return true;
	case GGUF_V_I8: *out = (int8_t)kv->u; return true;
	case GGUF_V_I16: *out = (int16_t)kv->u; return true;
	case GGUF_V_I32: *out = (int32_t)kv->u; return true;
	case GGUF_V_I64: *out = (int64_t)kv->u; return true;
	default: return false;
	}
}

bool
gguf_kv_float(const GgufFile *f, const char *key, double *out)
{
	const GgufKV *kv = gguf_find_kv(f, key);
	int64_t i;
	if (kv && kv->type == GGUF_V_F32) {
		uint32_t u = (uint32_t)kv->u;
		float v;
		memcpy(&v, &u, 4);
		*out = v;
		return true;
	}
	if (kv && kv->type == GGUF_V_F64) {
		memcpy(out, &kv->u, 8);
		return true;
	}
	if (gguf_kv_int(f, key, &i)) {
		*out = (double)i;
		return true;
	}
	return false;
}

const char *
gguf_kv_str(const GgufFile *f, const char *key)
{
	const GgufKV *kv = gguf_find_kv(f, key);
	return kv && kv->type == GGUF_V_STRING ? kv->str : NULL;
}

bool
gguf_read_f32(const GgufFile *f, const GgufTensor *t, float *dst, char *err, size_t nerr)
{
	const uint8_t *p = f->bytes + f->data_off + t->offset;
	uint64_t n = t->numel;
	if (f->data_off + t->offset + t->nbytes > f->size) /* checked at open; kept for callers' structs */
		return fail(err, nerr, "tensor '%s' lies outside the file", t->name);
	switch (t->type) {
	case GGML_F32:
		for (uint64_t i = 0; i < n; i++) {
			uint32_t u = (uint32_t)le(p + 4 * i, 4);
			memcpy(&dst[i], &u, 4);
		}
		return true;
	case GGML_F16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = ir_f16_to_f32((uint16_t)le(p + 2 * i, 2));
		return true;
	case GGML_BF16:
		for (uint64_t i = 0; i < n; i++) {
			uint32_t u = (uint32_t)le(p + 2 * i, 2) << 16;
			memcpy(&dst[i], &u, 4);
		}
		return true;
	case GGML_Q8_0: /* blocks of 32: f16 scale d, 32 int8 q; x = d q */
		for (uint64_t b = 0; b < n / 32; b++, p += 34) {
			float d = ir_f16_to_f32((uint16_t)le(p, 2));
			for (int j = 0; j < 32; j++)
				dst[b * 32 + j] = d * (float)(int8_t)p[2 + j];
		}
		return true;
	case GGML_Q4_0: /* blocks of 32: f16 scale d, 16 bytes; low nibbles are x[0..16), high x[16..32); x = d (q - 8) */
		for (uint64_t b = 0; b < n / 32; b++, p += 18) {
			float d = ir_f16_to_f32((uint16_t)le(p, 2));
			for (int j = 0; j < 16; j++) {
				dst[b * 32 + j] = d * (float)((p[2 + j] & 0x0f) - 8);
				dst[b * 32 + j + 16] = d * (float)((p[2 + j] >> 4) - 8);
			}
		}
		return true;
	default:
		return fail(err, nerr, "tensor '%s' has ggml type %s; elide reads F32, F16, BF16, Q8_0 and Q4_0", t->name,
		            gguf_type_name(t->type));
	}
}
