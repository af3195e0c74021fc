/* pack.c - the packed weight payload: every region the kernels read, 64-byte aligned.
 * Linear weights W[N,K] become panels [ceil(N/NR)][K][NR] (NR = vector width times
 * vectors per panel), so that both the GEMV and the GEMM micro-kernel stream one
 * contiguous panel: at each k they load NR consecutive floats and multiply them with
 * one broadcast activation.  The last panel is zero padded.  Tables for embed and
 * norm weights stay row-major.  Rope tables hold (cos, sin) for every position and
 * frequency, computed in double once at compile time.  A param used in two layouts
 * (tied embedding and lm_head) is stored once per layout.  Quantised params
 * (q8, q4, bf16; ir/quant.c) have layouts of their own, described at CgLayout. */
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
	case CG_QPANEL: {
		const Param *p = &m->params[param];
		int64_t n = cg_static_rows(p->type), k = cg_cols(p->type);
		int64_t np = (n + nr - 1) / nr, ng = ir_quant_groups(k, p->group);
		return (uint64_t)(np * ng * cg_qpanel_group_bytes(p->format, p->group, nr));
	}
	case CG_QROWS: {
		const Param *p = &m->params[param];
		return (uint64_t)(cg_static_rows(p->type) * cg_qrows_row_bytes(p->format, p->group, cg_cols(p->type)));
	}
	case CG_BPANEL: {
		Type t = m->params[param].type;
		int64_t n = cg_static_rows(t), k = cg_cols(t);
		return (uint64_t)(((n + nr - 1) / nr) * k * nr) * 2;
	}
	case CG_BROWS:
		return (uint64_t)ir_type_numel(m->params[param].type) * 2;
	}
	ELIDE_UNREACHABLE();
}

int64_t
cg_qpanel_group_bytes(QFormat f, int group, int nr)
{
	return 2 * (int64_t)nr + (f == QF_Q4 ? (int64_t)group * nr / 2 : (int64_t)group * nr);
}

int64_t
cg_qrows_row_bytes(QFormat f, int group, int64_t k)
{
	int64_t ng = ir_quant_groups(k, group), kp = ng * group;
	return 2 * ng + (f == QF_Q4 ? kp / 2 : kp);
}

/* A rope table is keyed by positions, head size, theta and scaling (rope: its op). */
uint32_t
cg_weights_region(CgWeights *w, CgLayout layout, int32_t param, int64_t a, int64_t b,
                  const Op *rope, const Module *m, int nr)
{
	CgRegion k = { .layout = layout, .param = param, .a = a, .b = b };
	if (rope) {
		k.theta = rope->fa[0] > 0 ? rope->fa[0] : 10000.0;
		memcpy(k.scale, rope->fa + 1, sizeof k.scale);
		k.orig = rope->ia[3];
	}
	for (uint32_t i = 0; i < w->nregions; i++) {
		const CgRegion *r = &w->regions[i];
		if (r->layout == layout && r->param == param && r->a == a && r->b == b && r->theta == k.theta
		    && memcmp(r->scale, k.scale, sizeof k.scale) == 0 && r->orig == k.orig)
			return i;
	}
	VEC_PUSH(w->regions, w->nregions, w->capregions);
	CgRegion *r = &w->regions[w->nregions];
	*r = k;
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

/* CG_QPANEL (codegen.h): codes past K and rows past N hold the zero point (value 0). */
static void
pack_qpanel(const Param *p, int nr, uint8_t *dst)
{
	int64_t n = cg_static_rows(p->type), k = cg_cols(p->type), G = p->group;
	int64_t np = (n + nr - 1) / nr, ng = ir_quant_groups(k, p->group);
	int64_t gb = cg_qpanel_group_bytes(p->format, p->group, nr);
	uint8_t z = (uint8_t)ir_qformat_zero(p->format);
	bool q4 = p->format == QF_Q4;
	for (int64_t pi = 0; pi < np; pi++)
		for (int64_t g = 0; g < ng; g++) {
			uint8_t *o = dst + (pi * ng + g) * gb;
			uint16_t sc[256];
			for (int j = 0; j < nr; j++) {
				int64_t row = pi * nr + j;
				sc[j] = row < n ? ir_quant_scales(p, row)[g] : 0;
			}
			memcpy(o, sc, (size_t)nr * 2);
			uint8_t *c = o + 2 * nr;
			for (int64_t kk = 0; kk < G; kk++) {
				int64_t col = g * G + kk, b = kk / 4, i = kk % 4;
				for (int j = 0; j < nr; j++) {
					int64_t row = pi * nr + j;
					uint8_t code = row < n && col < k ? ir_quant_codes(p, row)[col] : z;
					if (!q4) {
						c[(b * nr + j) * 4 + i] = code;
					} else {
						/* block pair b/2: low nibble the even block, high the odd */
						uint8_t *at = &c[((b / 2) * nr + j) * 4 + i];
						*at = (uint8_t)(b % 2 ? (*at & 0x0f) | (code << 4) : (*at & 0xf0) | code);
					}
				}
			}
		}
}

static void
pack_qrows(const Param *p, uint8_t *dst)
{
	int64_t n = cg_static_rows(p->type), k = cg_cols(p->type);
	int64_t ng = ir_quant_groups(k, p->group), rb = cg_qrows_row_bytes(p->format, p->group, k);
	uint8_t z = (uint8_t)ir_qformat_zero(p->format);
	for (int64_t r = 0; r < n; r++) {
		uint8_t *o = dst + r * rb;
		memcpy(o, ir_quant_scales(p, r), (size_t)ng * 2);
		uint8_t *c = o + 2 * ng;
		const uint8_t *src = ir_quant_codes(p, r);
		for (int64_t kk = 0; kk < ng * p->group; kk++) {
			uint8_t code = kk < k ? src[kk] : z;
			if (p->format == QF_Q4)
				c[kk / 2] = (uint8_t)(kk % 2 ? (c[kk / 2] & 0x0f) | (code << 4) : (c[kk / 2] & 0xf0) | code);
			else
				c[kk] = code;
		}
	}
}

static void
pack_bpanel(const uint16_t *src, int64_t n, int64_t k, int nr, uint16_t *dst)
{
	int64_t np = (n + nr - 1) / nr;
	for (int64_t p = 0; p < np; p++)
		for (int64_t kk = 0; kk < k; kk++)
			for (int j = 0; j < nr; j++) {
				int64_t row = p * nr + j;
				dst[(p * k + kk) * nr + j] = row < n ? src[row * k + kk] : 0;
			}
}


/* The frequencies are the interpreter's (ir_rope_freq), scaling included. */
static void
pack_rope(const CgRegion *r, float *dst)
{
	int64_t npos = r->a, hd = r->b, half = hd / 2;
	Op op = { .code = OP_ROPE, .ia = { [3] = r->orig }, .fa = { (float)r->theta, r->scale[0], r->scale[1], r->scale[2] } };
	for (int64_t p = 0; p < npos; p++)
		for (int64_t i = 0; i < half; i++) {
			double freq = ir_rope_freq(&op, i, hd);
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
			pack_rope(r, dst);
			continue;
		}
		const Param *p = &m->params[r->param];
		if (!p->data) {
			snprintf(err, nerr, "weights of '%s' are not loaded", p->name);
			return false;
		}
		bool needq = r->layout == CG_QPANEL || r->layout == CG_QROWS || r->layout == CG_BPANEL
		             || r->layout == CG_BROWS;
		if (needq && !p->qdata) {
			snprintf(err, nerr, "param '%s' is declared %s but not quantised", p->name, ir_qformat_name(p->format));
			return false;
		}
		if (r->layout == CG_ROWMAJOR)
			memcpy(dst, p->data, r->size);
		else if (r->layout == CG_PANEL)
			pack_panels(p->data, cg_static_rows(p->type), cg_cols(p->type), nr, dst);
		else if (r->layout == CG_QPANEL)
			pack_qpanel(p, nr, (uint8_t *)dst);
		else if (r->layout == CG_QROWS)
			pack_qrows(p, (uint8_t *)dst);
		else if (r->layout == CG_BPANEL)
			pack_bpanel((const uint16_t *)p->qdata, cg_static_rows(p->type), cg_cols(p->type), nr, (uint16_t *)dst);
		else
			memcpy(dst, p->qdata, r->size);
	}
	return true;
}

/* The blob: the runtime's 64-byte header (magic, version, model hash, payload size,
 * checksum; runtime/elide_rt.h, docs/blob.md), then the payload. */

uint8_t *
cg_blob_build(const CgWeights *w, const Module *m, int nr, uint64_t model_hash, size_t *size,
              char *err, size_t nerr)
{
	size_t n = ELIDE_BLOB_HEADER_SIZE + w->size;
	uint8_t *b = aligned_alloc(64, (n + 63) & ~(size_t)63);
	if (!b) {
		snprintf(err, nerr, "out of memory for a weight blob of %zu bytes", n);
		return NULL;
	}
	memset(b, 0, n);
	if (!cg_weights_pack(w, m, nr, b + ELIDE_BLOB_HEADER_SIZE, err, nerr)) {
		free(b);
		return NULL;
	}
	elide_blob_header_init(b, model_hash, b + ELIDE_BLOB_HEADER_SIZE, w->size);
	*size = n;
	return b;
}

