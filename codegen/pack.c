/* pack.c - the packed weight payload: every region the kernels read, 64-byte aligned.
 * Linear weights W[N,K] become panels [ceil(N/NR)][K][NR] (NR = vector width times
 * vectors per panel), so that both the GEMV and the GEMM micro-kernel stream one
 * contiguous panel: at each k they load NR consecutive floats and multiply them with
 * one broadcast activation.  The last panel is zero padded.  Tables for embed and
 * norm weights stay row-major.  Rope tables hold (cos, sin) for every position and
 * frequency, computed in double once at compile time.  A param used in two layouts
 * (tied embedding and lm_head) is stored once per layout. */
#include "codegen/codegen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t
region_size(CgLayout layout, const Module *m, int32_t param, int64_t a, int64_t b, int nr)
{
	switch (layout) {
	case CG_ROWMAJOR:
		return (uint64_t)ir_type_numel(m->params[param].type) * sizeof(float);
	case CG_PANEL: {
		Type t = m->params[param].type;
		int64_t n = cg_static_rows(t), k = cg_cols(t);
		int64_t np = (n + nr - 1) / nr;
		return (uint64_t)(np * k * nr) * sizeof(float);
	}
	case CG_ROPE:
		return (uint64_t)(a * (b / 2) * 2) * sizeof(float);
	}
	ELIDE_UNREACHABLE();
}

uint32_t
cg_weights_region(CgWeights *w, CgLayout layout, int32_t param, int64_t a, int64_t b,
                  double theta, const Module *m, int nr)
{
	for (uint32_t i = 0; i < w->nregions; i++) {
		const CgRegion *r = &w->regions[i];
		if (r->layout == layout && r->param == param && r->a == a && r->b == b && r->theta == theta)
			return i;
	}
	VEC_PUSH(w->regions, w->nregions, w->capregions);
	CgRegion *r = &w->regions[w->nregions];
	*r = (CgRegion){ .layout = layout, .param = param, .a = a, .b = b, .theta = theta };
	r->offset = w->size;
	r->size = region_size(layout, m, param, a, b, nr);
	w->size += (r->size + 63) & ~(uint64_t)63;
	return w->nregions++;
}

static void
pack_panels(const float *src, int64_t n, int64_t k, int nr, float *dst)
{
	int64_t np = (n + nr - 1) / nr;
	for (int64_t p = 0; p < np; p++)
		for (int64_t kk = 0; kk < k; kk++) {
			float *o = dst + (p * k + kk) * nr;
			for (int j = 0; j < nr; j++) {
				int64_t row = p * nr + j;
				o[j] = row < n ? src[row * k + kk] : 0.0f;
			}
		}
}

static void
pack_rope(int64_t npos, int64_t hd, double theta, float *dst)
{
	int64_t half = hd / 2;
	for (int64_t p = 0; p < npos; p++)
		for (int64_t i = 0; i < half; i++) {
			double freq = pow(theta, -2.0 * (double)i / (double)hd);
			double ang = (double)p * freq;
			dst[(p * half + i) * 2] = (float)cos(ang);
			dst[(p * half + i) * 2 + 1] = (float)sin(ang);
		}
}

bool
cg_weights_pack(const CgWeights *w, const Module *m, int nr, uint8_t *payload, char *err, size_t nerr)
{
	for (uint32_t i = 0; i < w->nregions; i++) {
		const CgRegion *r = &w->regions[i];
		float *dst = (float *)(payload + r->offset);
		if (r->layout == CG_ROPE) {
			pack_rope(r->a, r->b, r->theta, dst);
			continue;
		}
		const Param *p = &m->params[r->param];
		if (!p->data) {
			snprintf(err, nerr, "weights of '%s' are not loaded", p->name);
			return false;
		}
		if (r->layout == CG_ROWMAJOR)
			memcpy(dst, p->data, r->size);
		else
			pack_panels(p->data, cg_static_rows(p->type), cg_cols(p->type), nr, dst);
	}
	return true;
}

/* Blob layout (until the runtime's format lands): a 64-byte header
 *   magic "ELIDEWTS", u32 version, u32 header bytes, u64 model hash,
 *   u64 payload bytes, u64 checksum (FNV-1a over the payload's 64-bit words)
 * then the payload. */
#define CG_BLOB_MAGIC "ELIDEWTS"
#define CG_BLOB_VERSION 1u
#define CG_BLOB_HDR 64u

uint64_t
cg_blob_checksum(const uint8_t *p, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint64_t w;
	for (uint64_t i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (uint64_t i = n & ~(uint64_t)7; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

uint8_t *
cg_blob_build(const CgWeights *w, const Module *m, int nr, uint64_t model_hash, size_t *size,
              char *err, size_t nerr)
{
	size_t n = CG_BLOB_HDR + w->size;
	uint8_t *b = aligned_alloc(64, (n + 63) & ~(size_t)63);
	if (!b) {
		snprintf(err, nerr, "out of memory for a weight blob of %zu bytes", n);
		return NULL;
	}
	memset(b, 0, n);
	if (!cg_weights_pack(w, m, nr, b + CG_BLOB_HDR, err, nerr)) {
		free(b);
		return NULL;
	}
	uint32_t ver = CG_BLOB_VERSION, hdr = CG_BLOB_HDR;
	uint64_t psize = w->size, sum = cg_blob_checksum(b + CG_BLOB_HDR, w->size);
	memcpy(b, CG_BLOB_MAGIC, 8);
	memcpy(b + 8, &ver, 4);
	memcpy(b + 12, &hdr, 4);
	memcpy(b + 16, &model_hash, 8);
	memcpy(b + 24, &psize, 8);
	memcpy(b + 32, &sum, 8);
	*size = n;
	return b;
}

int
cg_rt_blob_check(const void *blob, uint64_t size, uint64_t model_hash, const void **payload)
{
	const uint8_t *b = blob;
	uint32_t ver, hdr;
	uint64_t h, psize, sum;
	if (!b || size < CG_BLOB_HDR || memcmp(b, CG_BLOB_MAGIC, 8) != 0)
		return ELIDE_E_BLOB;
	memcpy(&ver, b + 8, 4);
	memcpy(&hdr, b + 12, 4);
	memcpy(&h, b + 16, 8);
	memcpy(&psize, b + 24, 8);
	memcpy(&sum, b + 32, 8);
	if (ver != CG_BLOB_VERSION || hdr != CG_BLOB_HDR)
		return ELIDE_E_BLOB;
	if (psize > size - hdr)
		return ELIDE_E_BLOB;
	if (h != model_hash)
		return ELIDE_E_MODEL;
	if (cg_blob_checksum(b + hdr, psize) != sum)
		return ELIDE_E_CHECKSUM;
	*payload = b + hdr;
	return ELIDE_OK;
}

int
cg_rt_blob_read_file(const char *path, void **blob, uint64_t *size)
{
	FILE *f = path ? fopen(path, "rb") : NULL;
	if (!f)
		return ELIDE_E_IO;
	if (fseek(f, 0, SEEK_END) != 0) {
		fclose(f);
		return ELIDE_E_IO;
	}
	long n = ftell(f);
	rewind(f);
	uint8_t *b = n >= 0 ? aligned_alloc(64, ((size_t)n + 64) & ~(size_t)63) : NULL;
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		fclose(f);
		return b ? ELIDE_E_IO : ELIDE_E_NOMEM;
	}
	fclose(f);
	*blob = b;
	*size = (uint64_t)n;
	return ELIDE_OK;
}
