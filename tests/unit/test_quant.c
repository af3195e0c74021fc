/* test_quant.c - the quantised formats of ir/quant.c: f16 and bf16 rounding against
 * independent references (bf16 to nearest even, and outward for the Quest page
 * bounds), q8 and q4 round trips (error within half a step, codes in
 * range, the largest element exact), group boundaries when the row length is not a
 * multiple of the group (q4: one step where a value clips at +7), activation quantisation, the integer dot product against
 * double arithmetic, and the quantize pass (formats, except names and roles,
 * layers, norm weights left f32, the manifest note). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

__extension__ typedef _Float16 Half; /* the compiler's own f16, as the reference */
#include "tests/support/randmodel.h"

static float
frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

Test(quant, f16_every_value_round_trips_and_rounding_matches_the_compiler)
{
	for (uint32_t h = 0; h < 65536; h++) {
		float f = ir_f16_to_f32((uint16_t)h);
		Half ref;
		memcpy(&ref, &h, 2);
		if ((h & 0x7c00) == 0x7c00) { /* inf, nan: same class, sign and payload */
			uint32_t fb, rb;
			float rf = (float)ref;
			memcpy(&fb, &f, 4);
			memcpy(&rb, &rf, 4);
			cr_assert_eq(isnan(f), isnan(rf), "class of 0x%04x", h);
			cr_assert_eq(fb & 0xffbfffffu, rb & 0xffbfffffu, "decode of 0x%04x: 0x%08x, want 0x%08x", h, fb, rb);
			continue;
		}
		cr_assert_eq(f, (float)ref, "decode of 0x%04x", h);
		cr_assert_eq(ir_f32_to_f16(f), h, "0x%04x does not round trip", h);
	}
	uint64_t s = 7;
	for (int i = 0; i < 200000; i++) {
		float x = frand(&s) * powf(2.0f, (float)(i % 40 - 28));
		Half r = (Half)x;
		uint16_t want;
		memcpy(&want, &r, 2);
		cr_assert_eq(ir_f32_to_f16(x), want, "f16 of %a", (double)x);
	}
	cr_assert_eq(ir_f32_to_f16(70000.0f), 0x7c00);
}

Test(quant, bf16_rounds_to_nearest_even)
{
	uint64_t s = 9;
	for (int i = 0; i < 200000; i++) {
		float x = frand(&s) * powf(2.0f, (float)(i % 60 - 30));
		uint32_t u;
		memcpy(&u, &x, 4);
		float lo = ir_bf16_to_f32((uint16_t)(u >> 16)), hi = ir_bf16_to_f32((uint16_t)((u >> 16) + 1));
		double dl = fabs((double)x - lo), dh = fabs((double)x - hi);
		uint16_t want = (uint16_t)(dl < dh || (dl == dh && ((u >> 16) & 1) == 0) ? u >> 16 : (u >> 16) + 1);
		cr_assert_eq(ir_f32_to_bf16(x), want, "bf16 of %a", (double)x);
	}
}

/* The finite bf16 values in ascending order (each zero once), for the outward
 * rounding's reference: a binary search for the neighbours of x. */
static double bf16_grid[65536];
static int bf16_ngrid;

static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
grid_init(void)
{
	bf16_ngrid = 0;
	for (uint32_t h = 0; h < 65536; h++)
		if ((h & 0x7f80) != 0x7f80 && h != 0x8000)
			bf16_grid[bf16_ngrid++] = ir_bf16_to_f32((uint16_t)h);
	qsort(bf16_grid, (size_t)bf16_ngrid, sizeof *bf16_grid, dcmp);
}

/* The largest finite bf16 <= x (floor) or smallest >= x (ceil); -max / +max when
 * there is none (the saturation ir.h documents). */
static double
grid_round(double x, bool up)
{
	int lo = 0, hi = bf16_ngrid - 1;
	if (!up) {
		if (x < bf16_grid[0])
			return bf16_grid[0];
		while (lo < hi) { /* the last index with grid <= x */
			int mid = (lo + hi + 1) / 2;
			if (bf16_grid[mid] <= x)
				lo = mid;
			else
				hi = mid - 1;
		}
	} else {
		if (x > bf16_grid[hi])
			return bf16_grid[hi];
		while (lo < hi) { /* the first index with grid >= x */
			int mid = (lo + hi) / 2;
			if (bf16_grid[mid] >= x)
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	return bf16_grid[lo];
}

static float
from_bits(uint32_t u)
{
	float x;
	memcpy(&x, &u, 4);
	return x;
}

/* The Quest page bounds' rounding (ir_bf16_floor / ir_bf16_ceil): for every high
 * half of an f32 and several low halves, the floor is the largest finite bf16 <= x
 * and the ceiling the smallest >= x (so outward: floor <= x <= ceil whenever x is
 * within bf16's finite range), zeros keep their sign, results are never NaN or
 * infinite; and the named cases. */
Test(quant, bf16_floor_and_ceil_round_outward)
{
	grid_init();
	cr_assert_eq(bf16_ngrid, 65536 - 256 - 1); /* no infinities, NaNs, -0 */
	const double maxbf = ir_bf16_to_f32(0x7f7f);
	const uint32_t lows[] = { 0, 1, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x1234 };
	uint64_t rs = 3;
	for (uint32_t h = 0; h < 65536; h++)
		for (size_t k = 0; k <= sizeof lows / sizeof *lows; k++) {
			rs = rs * 6364136223846793005ull + 1442695040888963407ull;
			uint32_t u = h << 16 | (k < sizeof lows / sizeof *lows ? lows[k] : (uint32_t)(rs >> 48));
			float x = from_bits(u);
			uint16_t f = ir_bf16_floor(x), c = ir_bf16_ceil(x);
			cr_assert((f & 0x7f80) != 0x7f80 && (c & 0x7f80) != 0x7f80, "0x%08x: 0x%04x 0x%04x not finite", u, f, c);
			if (isnan(x)) {
				cr_assert(f == 0xff7f && c == 0x7f7f, "NaN 0x%08x: 0x%04x 0x%04x", u, f, c);
				continue;
			}
			double fv = ir_bf16_to_f32(f), cv = ir_bf16_to_f32(c);
			cr_assert_eq(fv, grid_round(x, false), "floor of %a (0x%08x): %a", (double)x, u, fv);
			cr_assert_eq(cv, grid_round(x, true), "ceil of %a (0x%08x): %a", (double)x, u, cv);
			if (fabs((double)x) <= maxbf)
				cr_assert(fv <= x && x <= cv, "0x%08x not within its bounds", u);
			if (x == 0)
				cr_assert(f == u >> 16 && c == u >> 16, "zero 0x%08x loses its sign", u);
		}
	/* named cases: exact, negative, zero, subnormal, huge, infinite, NaN */
	struct { float x; uint16_t f, c; } cs[] = {
		{ 1.0f, 0x3f80, 0x3f80 },
		{ -2.5f, 0xc020, 0xc020 },
		{ 1.00390625f, 0x3f80, 0x3f81 },        /* 1 + 2^-8: between 1 and 1 + 2^-7 */
		{ -1.00390625f, 0xbf81, 0xbf80 },
		{ 0.0f, 0x0000, 0x0000 },
		{ -0.0f, 0x8000, 0x8000 },
		{ 0x1p-149f, 0x0000, 0x0001 },          /* the smallest f32 subnormal */
		{ -0x1p-149f, 0x8001, 0x8000 },
		{ 0x1p-133f, 0x0001, 0x0001 },          /* the smallest bf16 subnormal, exact */
		{ 3.0e38f, 0x7f61, 0x7f62 },
		{ -3.0e38f, 0xff62, 0xff61 },
		{ 3.4028235e38f, 0x7f7f, 0x7f7f },      /* FLT_MAX: the ceiling saturates */
		{ -3.4028235e38f, 0xff7f, 0xff7f },
		{ INFINITY, 0x7f7f, 0x7f7f },
		{ -INFINITY, 0xff7f, 0xff7f },
		{ NAN, 0xff7f, 0x7f7f },
		{ -NAN, 0xff7f, 0x7f7f },
	};
	for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
		cr_assert_eq(ir_bf16_floor(cs[i].x), cs[i].f, "floor of %a: 0x%04x", (double)cs[i].x, ir_bf16_floor(cs[i].x));
		cr_assert_eq(ir_bf16_ceil(cs[i].x), cs[i].c, "ceil of %a: 0x%04x", (double)cs[i].x, ir_bf16_ceil(cs[i].x));
	}
}

/* A loaded param [rows, k] of uniform values (times `big` on every 13th). */
static Param
make_param(int64_t rows, int64_t k, uint64_t seed, float big)
{
	Param p = { .name = "w", .type = ir_type_mat(DT_F32, rows, k) };
	p.data = xmalloc((size_t)(rows * k) * sizeof *p.data);
	for (int64_t i = 0; i < rows * k; i++)
		p.data[i] = frand(&seed) * (i % 13 == 0 ? big : 1.0f);
	return p;
}

/* Round trip of one format: per group, every dequantised value within half a step
 * of the original, codes in range, value = d * (c - z). */
static void
round_trip(QFormat f, int g, int64_t rows, int64_t k)
{
	Param p = make_param(rows, k, (uint64_t)(g * 1000 + k), 5.0f);
	float *orig = xmalloc((size_t)(rows * k) * sizeof *orig);
	memcpy(orig, p.data, (size_t)(rows * k) * sizeof *orig);
	char err[256];
	cr_assert(ir_quantize_param(&p, f, g, err, sizeof err), "%s", err);
	int64_t ng = ir_quant_groups(k, g);
	int z = ir_qformat_zero(f);
	for (int64_t r = 0; r < rows; r++) {
		const uint8_t *c = ir_quant_codes(&p, r);
		const uint16_t *sc = ir_quant_scales(&p, r);
		for (int64_t j = 0; j < ng; j++) {
			int64_t at = j * g, len = k - at < g ? k - at : g;
			float amax = 0;
			for (int64_t i = 0; i < len; i++)
				amax = fmaxf(amax, fabsf(orig[r * k + at + i]));
			float d = ir_f16_to_f32(sc[j]);
			/* the scale comes from this group's elements only */
			float want = f == QF_Q8 ? amax / 127.0f : amax / 8.0f;
			cr_assert(fabsf(fabsf(d) - want) <= want * 1e-3f, "group %lld of %lld: scale %g, want %g", (long long)j,
			          (long long)ng, (double)d, (double)want);
			for (int64_t i = 0; i < len; i++) {
				int64_t e = r * k + at + i;
				int q = (int)c[at + i] - z;
				cr_assert(f == QF_Q8 ? (q >= -127 && q <= 127) : (q >= -8 && q <= 7));
				cr_assert_eq(p.data[e], d * (float)q);
				/* q4's scale maps the largest magnitude to -8: a value of the other sign
				 * past 7 steps clips at 7, within one step */
				float tol = f == QF_Q4 && q == 7 ? 1.0f : 0.5f;
				cr_assert(fabsf(p.data[e] - orig[e]) <= fabsf(d) * tol * 1.002f + 1e-12f,
				          "element %lld: %g -> %g (step %g)", (long long)e, (double)orig[e], (double)p.data[e], (double)d);
			}
		}
	}
	free(orig);
	free(p.data);
	free(p.qdata);
}

Test(quant, q8_q4_round_trips_and_group_boundaries)
{
	int64_t ks[] = { 32, 64, 40, 20, 688, 100 };
	for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
		round_trip(QF_Q8, 32, 5, ks[i]);
		round_trip(QF_Q4, 32, 5, ks[i]);
		round_trip(QF_Q8, 8, 3, ks[i]);
		round_trip(QF_Q4, 64, 3, ks[i]);
	}
}

Test(quant, last_group_of_a_ragged_row_has_its_own_scale)
{
	/* k = 40, group 32: the second group holds 8 small values; a scale shared with
	 * the first group (values near 100) would round them all to zero */
	Param p = { .name = "w", .type = ir_type_mat(DT_F32, 1, 40) };
	p.data = xmalloc(40 * sizeof *p.data);
	for (int i = 0; i < 40; i++)
		p.data[i] = i < 32 ? 100.0f - (float)i : 0.01f * (float)(i - 31);
	char err[256];
	cr_assert(ir_quantize_param(&p, QF_Q8, 32, err, sizeof err), "%s", err);
	cr_assert_eq(ir_quant_scales(&p, 0)[1], ir_f32_to_f16(0.08f / 127.0f));
	for (int i = 32; i < 40; i++)
		cr_assert(fabsf(p.data[i] - 0.01f * (float)(i - 31)) < 0.0004f, "element %d: %g", i, (double)p.data[i]);
	free(p.data);
	free(p.qdata);
}

Test(quant, bf16_param_and_bad_input)
{
	Param p = make_param(3, 10, 5, 1.0f);
	char err[256];
	cr_assert(ir_quantize_param(&p, QF_BF16, 0, err, sizeof err), "%s", err);
	const uint16_t *b = (const uint16_t *)p.qdata;
	for (int i = 0; i < 30; i++)
		cr_assert_eq(p.data[i], ir_bf16_to_f32(b[i]));
	cr_assert(!ir_quantize_param(&p, QF_Q8, 32, err, sizeof err), "quantised twice");
	free(p.data);
	free(p.qdata);
	Param q = make_param(2, 16, 6, 1.0f);
	cr_assert(!ir_quantize_param(&q, QF_Q8, 12, err, sizeof err));
	cr_assert(strstr(err, "multiple of 8"), "%s", err);
	q.data[3] = NAN;
	cr_assert(!ir_quantize_param(&q, QF_Q8, 32, err, sizeof err));
	free(q.data);
}

Test(quant, activations_and_integer_dot)
{
	int64_t k = 100;
	int g = 32;
	uint64_t s = 3;
	float x[100];
	for (int i = 0; i < k; i++)
		x[i] = frand(&s) * 3.0f;
	for (int i = 64; i < 96; i++)
		x[i] = 0.0f; /* an all-zero group */
	int8_t codes[100];
	float sc[4];
	int32_t sums[4];
	ir_quant_row(x, k, g, codes, sc, sums);
	for (int j = 0; j < 4; j++) {
		int32_t sum = 0;
		for (int i = j * g; i < k && i < (j + 1) * g; i++) {
			sum += codes[i];
			cr_assert(fabsf(x[i] - sc[j] * codes[i]) <= sc[j] * 0.5f * 1.001f);
		}
		cr_assert_eq(sums[j], sum);
	}
	cr_assert_eq(sc[2], 0.0f);
	Param p = make_param(4, k, 8, 1.0f);
	char err[256];
	cr_assert(ir_quantize_param(&p, QF_Q4, g, err, sizeof err), "%s", err);
	for (int n = 0; n < 4; n++) {
		double want = 0;
		int64_t ng = ir_quant_groups(k, g);
		for (int64_t j = 0; j < ng; j++)
			for (int64_t i = j * g; i < k && i < (j + 1) * g; i++)
				want += (double)p.data[n * k + i] * sc[j] * codes[i];
		float got = ir_quant_dot(&p, n, codes, sc, sums);
		cr_assert(fabs(got - want) <= 1e-5 * (fabs(want) + 1), "row %d: %g, want %g", n, (double)got, want);
	}
	free(p.data);
	free(p.qdata);
}

static Module *
model(void)
{
	RmConfig c = rm_default_config();
	c.ffn = 172;
	Module *m = rm_build_module(&c, "llama");
	cr_assert(rm_write_params(m, 4, "/tmp/elide_test_quant.safetensors"));
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, "/tmp/elide_test_quant.safetensors", &d));
	remove("/tmp/elide_test_quant.safetensors");
	return m;
}

/* except: NULL, or names separated by commas ("wq,lm_head") */
static void
add_stmt(Module *m, const char *fmt, int g, int64_t lo, int64_t hi, const char *except)
{
	cr_assert(pass_quantize_add_stmt(m, fmt, g, -1));
	PolicyStmt *s = &m->policy->stmts[m->policy->nstmts - 1];
	char err[256];
	if (hi > lo) {
		PolicyVal v = { .kind = PV_RANGE, .lo = lo, .hi = hi };
		cr_assert(ir_policy_set(s, PK_QUANTIZE_LAYERS, &v, (Loc){ 0 }, err, sizeof err), "%s", err);
	}
	if (except) {
		PolicyVal v = { .kind = PV_NAMES };
		for (const char *at = except; at;) {
			const char *end = strchr(at, ',');
			size_t len = end ? (size_t)(end - at) : strlen(at);
			v.strs[v.nstrs++] = arena_printf(&m->arena, "%.*s", (int)len, at);
			at = end ? end + 1 : NULL;
		}
		cr_assert(ir_policy_set(s, PK_QUANTIZE_EXCEPT, &v, (Loc){ 0 }, err, sizeof err), "%s", err);
		PolicyVal bad = { .kind = PV_STRING, .str = except }; /* the list's kind only */
		cr_assert(!ir_policy_set(s, PK_QUANTIZE_EXCEPT, &bad, (Loc){ 0 }, err, sizeof err));
		PolicyVal got = ir_policy_get(s, PK_QUANTIZE_EXCEPT);
		cr_assert_eq(got.kind, PV_NAMES);
		cr_assert_eq(got.nstrs, v.nstrs);
		for (uint32_t i = 0; i < v.nstrs; i++)
			cr_assert_str_eq(got.strs[i], v.strs[i]);
	}
}

static QFormat
fmt_of(const Module *m, const char *name)
{
	int32_t i = ir_find_param(m, name);
	cr_assert(i >= 0, "no param %s", name);
	return m->params[i].format;
}

Test(quant, pass_formats_except_layers)
{
	Module *m = model();
	add_stmt(m, "q8", 32, 0, 0, "lm_head");
	add_stmt(m, "q4", 32, 1, 2, "w2");
	add_stmt(m, "bf16", 0, 0, 0, "embed");
	Diag d;
	diag_init(&d, stderr);
	/* the bf16 statement (last) covers everything but the table: it overrides */
	cr_assert(pass_quantize(m, &d));
	cr_assert_eq(fmt_of(m, "emb"), QF_Q8);
	cr_assert_eq(fmt_of(m, "lm_head"), QF_BF16);
	cr_assert_eq(fmt_of(m, "wq.1"), QF_BF16);
	cr_assert_eq(fmt_of(m, "attn_norm.0"), QF_F32);
	cr_assert_eq(fmt_of(m, "norm"), QF_F32);
	cr_assert_eq(m->policy->nstmts, 0u, "statements left");
	cr_assert(m->manifest_notes && strstr(m->manifest_notes, "quantize: f32 "), "%s", m->manifest_notes);
	ir_free_module(m);

	m = model();
	add_stmt(m, "q8", 32, 0, 0, "lm_head");
	add_stmt(m, "q4", 32, 1, 2, "w2");
	cr_assert(pass_quantize(m, &d));
	cr_assert_eq(fmt_of(m, "emb"), QF_Q8);
	cr_assert_eq(fmt_of(m, "lm_head"), QF_F32);
	cr_assert_eq(fmt_of(m, "wq.0"), QF_Q8);
	cr_assert_eq(fmt_of(m, "wq.1"), QF_Q4);
	cr_assert_eq(fmt_of(m, "w2.1"), QF_Q8);
	cr_assert_eq(m->params[ir_find_param(m, "w2.1")].group, 32);
	ir_free_module(m);

	m = model();
	add_stmt(m, "q8", 32, 0, 0, "nothing_like_this");
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	diag_init(&d, out);
	cr_assert(!pass_quantize(m, &d));
	fclose(out);
	cr_assert(strstr(buf, "'nothing_like_this' names no weight of the model"), "%s", buf);
	free(buf);
	ir_free_module(m);
}

/* Activations: int8 by default for q8 and q4, f32 when a statement names it, f32
 * for bf16 and f32 weights; int8 with bf16 is refused; pass_quantize_set_act
 * overrides the statements (elide compile --activations). */
Test(quant, pass_activations)
{
	Module *m = model();
	cr_assert(pass_quantize_add_stmt(m, "q8", 32, -1));
	cr_assert(pass_quantize_add_stmt(m, "q4", 32, AF_F32));
	PolicyVal v = { .kind = PV_RANGE, .lo = 1, .hi = 2 };
	char err[256];
	cr_assert(ir_policy_set(&m->policy->stmts[1], PK_QUANTIZE_LAYERS, &v, (Loc){ 0 }, err, sizeof err), "%s", err);
	Diag d;
	diag_init(&d, stderr);
	cr_assert(pass_quantize(m, &d));
	cr_assert_eq(m->params[ir_find_param(m, "wq.0")].act, AF_INT8);
	cr_assert_eq(m->params[ir_find_param(m, "wq.1")].act, AF_F32);
	cr_assert_eq(m->params[ir_find_param(m, "wq.1")].format, QF_Q4);
	cr_assert_eq(m->params[ir_find_param(m, "lm_head")].act, AF_INT8);
	cr_assert_eq(m->params[ir_find_param(m, "norm")].act, AF_F32);
	cr_assert(strstr(m->manifest_notes, "q8 (int8 activations) "), "%s", m->manifest_notes);
	cr_assert(strstr(m->manifest_notes, "q4 (f32 activations) "), "%s", m->manifest_notes);
	/* the verifier accepts the recorded choice, and refuses int8 on an f32 param */
	cr_assert(ir_verify(m, &d));
	m->params[ir_find_param(m, "norm")].act = AF_INT8; /* an f32 vector cannot have int8 activations */
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	Diag d2;
	diag_init(&d2, out);
	cr_assert(!ir_verify(m, &d2));
	fclose(out);
	cr_assert(strstr(buf, "param 'norm': f32 weights cannot have int8 activations"), "%s", buf);
	free(buf);
	ir_free_module(m);

	m = model();
	cr_assert(!pass_quantize_add_stmt(m, "bf16", 0, AF_INT8), "int8 activations with bf16");
	cr_assert(pass_quantize_add_stmt(m, "bf16", 0, AF_F32));
	cr_assert(pass_quantize_add_stmt(m, "q4", 32, AF_F32));
	cr_assert_eq(pass_quantize_set_act(m, AF_INT8), 1, "only the q4 statement");
	cr_assert(pass_quantize(m, &d));
	cr_assert_eq(m->params[ir_find_param(m, "wq.0")].act, AF_INT8);
	ir_free_module(m);
}
