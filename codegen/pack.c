/* pack.c - the packed weight payload: every region the kernels read, 64-byte aligned.
 * Linear weights W[N,K] become panels [ceil(N/NR)][K][NR] (NR = vector width times
 * vectors per panel), so that both the GEMV and the GEMM micro-kernel stream one
 * contiguous panel: at each k they load NR consecutive floats and multiply them with
 * one broadcast activation.  The last panel is zero padded.  Tables for embed and
 * norm weights stay row-major.  Rope tables hold (cos, sin) for every position and
 * frequency, computed in double once at compile time.  A param used in two layouts
 * (tied embedding and lm_head) is stored once per layout. */
#include "codegen/codegen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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


/* Rows p0 .. p0+npos-1 of the table of rope region r.  The frequencies are the
 * interpreter's (ir_rope_freq), scaling included. */
static void
pack_rope(const CgRegion *r, int64_t p0, int64_t npos, float *dst)
{
	int64_t hd = r->b, half = hd / 2;
	Op op = { .code = OP_ROPE, .ia = { [3] = r->orig }, .fa = { (float)r->theta, r->scale[0], r->scale[1], r->scale[2] } };
	for (int64_t p = 0; p < npos; p++)
		for (int64_t i = 0; i < half; i++) {
			double freq = ir_rope_freq(&op, i, hd);
			double ang = (double)(p0 + p) * freq;
			dst[(p * half + i) * 2] = (float)cos(ang);
			dst[(p * half + i) * 2 + 1] = (float)sin(ang);
		}
}

/* Whether a layout holds a param's quantised storage (Param.qdata). */
static bool
quantised_layout(CgLayout l)
{
	return l == CG_QPANEL || l == CG_QROWS || l == CG_BPANEL || l == CG_BROWS;
}

/* A quantised region of param p into dst (r->size bytes). */
static void
pack_quantised(const CgRegion *r, const Param *p, int nr, uint8_t *dst)
{
	if (r->layout == CG_QPANEL)
		pack_qpanel(p, nr, dst);
	else if (r->layout == CG_QROWS)
		pack_qrows(p, dst);
	else if (r->layout == CG_BPANEL)
		pack_bpanel((const uint16_t *)p->qdata, cg_static_rows(p->type), cg_cols(p->type), nr, (uint16_t *)dst);
	else
		memcpy(dst, p->qdata, r->size);
}

bool
cg_weights_pack(const CgWeights *w, const Module *m, int nr, uint8_t *payload, char *err, size_t nerr)
{
	for (uint32_t i = 0; i < w->nregions; i++) {
		const CgRegion *r = &w->regions[i];
		float *dst = (float *)(payload + r->offset);
		if (r->layout == CG_ROPE) {
			pack_rope(r, 0, r->a, dst);
			continue;
		}
		const Param *p = &m->params[r->param];
		if (!p->data) {
			snprintf(err, nerr, "weights of '%s' are not loaded", p->name);
			return false;
		}
		if (quantised_layout(r->layout) && !p->qdata) {
			snprintf(err, nerr, "param '%s' is declared %s but not quantised", p->name, ir_qformat_name(p->format));
			return false;
		}
		if (r->layout == CG_ROWMAJOR)
			memcpy(dst, p->data, r->size);
		else if (quantised_layout(r->layout))
			pack_quantised(r, p, nr, (uint8_t *)dst);
		else
			pack_panels(p->data, cg_static_rows(p->type), cg_cols(p->type), nr, dst);
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

const uint8_t *
cg_blob(CgResult *r, char *err, size_t nerr)
{
	if (!r->blob) {
		size_t n = 0;
		r->blob = cg_blob_build(&r->weights, r->m, cg_target_nr(r->target), r->model_hash, &n, err, nerr);
		if (!r->blob)
			return NULL;
	}
	return r->blob;
}

/* Streaming: the payload is packed region by region (panels a few at a time) through
 * one buffer of BLOB_BUF bytes into the file, with the checksum computed on the way;
 * the header, which holds the checksum, is written last.  Memory: the params and the
 * buffer, never the blob. */
#define BLOB_BUF (4u << 20)

typedef struct BlobWriter {
	int fd;
	uint64_t pos;             /* file offset of buf[0] */
	uint8_t *buf; size_t n;   /* pending bytes */
	elide_checksum_state ck;
	uint64_t done, total;     /* payload bytes, for progress */
	Phases *ph;
	bool ok;
	const char *shown;        /* the file's name in messages */
	char *err; size_t nerr;
} BlobWriter;

static void
bw_pwrite(BlobWriter *bw, const uint8_t *p, size_t n, uint64_t at)
{
	while (bw->ok && n) {
		ssize_t k = pwrite(bw->fd, p, n, (off_t)at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(bw->err, bw->nerr, "cannot write '%s': %s", bw->shown, k < 0 ? strerror(errno) : "short write");
			bw->ok = false;
			return;
		}
		p += k;
		n -= (size_t)k;
		at += (uint64_t)k;
	}
}

static void
bw_flush(BlobWriter *bw)
{
	bw_pwrite(bw, bw->buf, bw->n, bw->pos);
	bw->pos += bw->n;
	bw->n = 0;
	phase_progress(bw->ph, bw->done, bw->total);
}

static void
bw_put(BlobWriter *bw, const void *data, size_t n)
{
	const uint8_t *p = data;
	elide_checksum_update(&bw->ck, p, n);
	while (n) {
		size_t k = BLOB_BUF - bw->n < n ? BLOB_BUF - bw->n : n;
		memcpy(bw->buf + bw->n, p, k);
		bw->n += k;
		bw->done += k;
		p += k;
		n -= k;
		if (bw->n == BLOB_BUF)
			bw_flush(bw);
	}
}

static void
bw_zeros(BlobWriter *bw, uint64_t n)
{
	static const uint8_t z[64];
	for (; n; n -= n < 64 ? n : 64)
		bw_put(bw, z, n < 64 ? n : 64);
}

/* One region into the writer: row-major as is, panels one at a time, rope tables one
 * position at a time, quantised regions whole. */
static void
bw_region(BlobWriter *bw, const CgRegion *r, const Module *m, int nr)
{
	if (r->layout == CG_ROPE) {
		int64_t half = r->b / 2;
		float *row = xmalloc((size_t)(half ? half : 1) * 2 * sizeof *row);
		for (int64_t p = 0; p < r->a; p++) {
			pack_rope(r, p, 1, row);
			bw_put(bw, row, (size_t)half * 2 * sizeof *row);
		}
		free(row);
		return;
	}
	const Param *p = &m->params[r->param];
	if (!p->data) {
		snprintf(bw->err, bw->nerr, "weights of '%s' are not loaded", p->name);
		bw->ok = false;
		return;
	}
	if (r->layout == CG_ROWMAJOR) {
		bw_put(bw, p->data, r->size);
		return;
	}
	if (quantised_layout(r->layout)) { /* a quarter or less of the f32 bytes: packed whole */
		if (!p->qdata) {
			snprintf(bw->err, bw->nerr, "param '%s' is declared %s but not quantised", p->name,
			         ir_qformat_name(p->format));
			bw->ok = false;
			return;
		}
		uint8_t *buf = xcalloc(r->size ? r->size : 1, 1);
		pack_quantised(r, p, nr, buf);
		bw_put(bw, buf, r->size);
		free(buf);
		return;
	}
	int64_t n = cg_static_rows(p->type), k = cg_cols(p->type), np = (n + nr - 1) / nr;
	float *panel = xmalloc((size_t)(k ? k : 1) * (size_t)nr * sizeof *panel);
	for (int64_t q = 0; q < np && bw->ok; q++) {
		int64_t rows = n - q * nr < nr ? n - q * nr : nr;
		pack_panels(p->data + q * nr * k, rows, k, nr, panel);
		bw_put(bw, panel, (size_t)k * (size_t)nr * sizeof *panel);
	}
	free(panel);
}

bool
cg_blob_write(const CgResult *r, int fd, uint64_t at, const char *shown, Phases *ph, char *err, size_t nerr)
{
	const CgWeights *w = &r->weights;
	BlobWriter bw = { .fd = fd, .pos = at + ELIDE_BLOB_HEADER_SIZE, .buf = xmalloc(BLOB_BUF), .total = w->size,
	                  .ph = ph, .ok = true, .shown = shown, .err = err, .nerr = nerr };
	elide_checksum_init(&bw.ck);
	int nr = cg_target_nr(r->target);
	for (uint32_t i = 0; i < w->nregions && bw.ok; i++) {
		const CgRegion *g = &w->regions[i];
		bw_zeros(&bw, g->offset - bw.done);
		bw_region(&bw, g, r->m, nr);
	}
	if (bw.ok)
		bw_zeros(&bw, w->size - bw.done);
	if (bw.ok)
		bw_flush(&bw);
	free(bw.buf);
	if (!bw.ok)
		return false;
	uint8_t hdr[ELIDE_BLOB_HEADER_SIZE];
	elide_blob_header_fill(hdr, r->model_hash, w->size, elide_checksum_final(&bw.ck));
	bw_pwrite(&bw, hdr, sizeof hdr, at);
	return bw.ok;
}
