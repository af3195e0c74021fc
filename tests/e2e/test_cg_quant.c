/* test_cg_quant.c - quantised weights (q8, q4, bf16) compiled against the reference
 * interpreter, which computes what the param records: with f32 activations the
 * dequantised weights times the f32 input, with int8 activations (the default for
 * q8 and q4) ir_quant_row and ir_quant_dot.  q8 and q4 x {int8, f32} activations x
 * {MHA, GQA} x {1, 2 threads}, a decode of 200 positions and prefills of 1 to 64
 * tokens (max relative error <= 1e-4, same argmax; with int8 activations the codes
 * of the output projection's input are compared too); bf16 the same on fewer
 * positions; each format against the f32 model within the tolerance stated in
 * docs/quantization.md; the linear kernels against C loops for every path this
 * machine runs (dequantising: AVX-512 and AVX2 vectors, f16 scales with and without
 * F16C; int8 activations: vpdpbusd 512 and 256 bits and the widened multiplies),
 * with K not a multiple of the group and N not a multiple of the panel; AArch64
 * objects with and without dotprod, int8 and f32 activations. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passes/passes.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);
typedef int (*ThreadsFn)(void *, int32_t);

/* act: an ActFormat, or -1 for the default (int8 for q8 and q4) */
static Module *
load_model(RmConfig c, const char *fmt, int group, int act, char *path, size_t npath)
{
	snprintf(path, npath, "/tmp/elide_cg_quant_%d_%llu.safetensors", (int)getpid(), (unsigned long long)c.seed);
	cr_assert(rm_write_model(&c, path));
	Module *m = rm_build_module(&c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d), "cannot load params");
	if (fmt) {
		cr_assert(pass_quantize_add_stmt(m, fmt, group, act));
		cr_assert(pass_quantize(m, &d));
	}
	remove(path);
	return m;
}

/* What the interpreter's op hook sees of the inputs of int8-activation linears:
 * the smallest relative margin of an activation to its rounding boundary, over the
 * codes of one call (a near tie, which f32 noise can round the other way), and the
 * input of the last linear (the output projection) of `step` and `prefill`, to
 * compare its codes with those the compiled code left in its scratch region. */
typedef struct Seen {
	const Module *m;
	const Func *f[2];     /* step, prefill */
	int32_t *group[2];    /* per value: group of the int8 linear it feeds, 0 if none */
	ValueId last[2];      /* the output projection's input */
	double margin;        /* min over codes of |frac(x/s) - 1/2| / |x/s| this call */
	float *x;             /* the last input seen */
	int64_t rows, cols;
} Seen;

static void
seen_hook(void *user, const Func *f, const Op *op, const float *val, int64_t rows, int64_t cols)
{
	Seen *sn = user;
	int w = f == sn->f[0] ? 0 : f == sn->f[1] ? 1 : -1;
	if (w < 0 || op->dst >= f->nvals || !sn->group[w][op->dst])
		return;
	int64_t g = sn->group[w][op->dst];
	for (int64_t r = 0; r < rows; r++)
		for (int64_t a = 0; a < cols; a += g) {
			const float *x = val + r * cols + a;
			int64_t len = cols - a < g ? cols - a : g;
			float am = 0.0f;
			for (int64_t i = 0; i < len; i++)
				am = fmaxf(am, fabsf(x[i]));
			float inv = am > 0.0f ? 127.0f / am : 0.0f;
			for (int64_t i = 0; i < len; i++) {
				double v = fabs((double)(x[i] * inv)), m = fabs(v - floor(v) - 0.5) / (v > 0.5 ? v : 0.5);
				if (m > 0 && m < sn->margin) /* 0: an exact tie, rounded to even by both */
					sn->margin = m;

			}
		}
	if (op->dst == sn->last[w]) {
		free(sn->x);
		sn->x = xmalloc((size_t)(rows * cols) * sizeof *sn->x);
		memcpy(sn->x, val, (size_t)(rows * cols) * sizeof *sn->x);
		sn->rows = rows;
		sn->cols = cols;
	}
}

static void
seen_init(Seen *sn, const Module *m)
{
	memset(sn, 0, sizeof *sn);
	sn->m = m;
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		const Func *f = m->funcs[i];
		int w = strcmp(f->name, "step") == 0 ? 0 : strcmp(f->name, "prefill") == 0 ? 1 : -1;
		if (w < 0)
			continue;
		sn->f[w] = f;
		sn->group[w] = xcalloc(f->nvals + 1, sizeof *sn->group[w]);
		for (uint32_t j = 0; j < f->nops; j++) {
			const Op *op = &f->ops[j], *wd;
			if (op->code != OP_LINEAR || (wd = &f->ops[f->vals[op->args[1]].def])->code != OP_PARAM)
				continue;
			const Param *pm = &m->params[wd->ia[0]];
			if (pm->act == AF_INT8)
				sn->group[w][op->args[0]] = pm->group;
			sn->last[w] = op->args[0];
		}
	}
}

/* Codes of the output projection's input that differ between the compiled code (the
 * arena's quantised activations, written by the last q8/q4 linear of the call) and
 * ir_quant_row of the interpreter's input; *off counts those off by more than one. */
static int64_t
code_flips(const TJit *t, const Seen *sn, int which, int64_t *ncodes, int64_t *off)
{
	const Func *f = sn->f[which];
	cr_assert(f && sn->x);
	CgPlan p;
	cg_plan_func(sn->m, f, true, &p);
	cr_assert(p.qscratch >= 0);
	const Op *lin = NULL;
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].code == OP_LINEAR)
			lin = &f->ops[i];
	const Param *pm = &sn->m->params[f->ops[f->vals[lin->args[1]].def].ia[0]];
	int64_t k = sn->cols, ng = ir_quant_groups(k, pm->group), kp = ng * pm->group, n = 0;
	const int8_t *cq = (const int8_t *)t->ctx + t->r->arena_off + p.qscratch;
	int8_t *codes = xmalloc((size_t)k);
	float *sc = xmalloc((size_t)ng * sizeof *sc);
	int32_t *sums = xmalloc((size_t)ng * sizeof *sums);
	for (int64_t r = 0; r < sn->rows; r++) {
		ir_quant_row(sn->x + r * k, k, pm->group, codes, sc, sums);
		for (int64_t i = 0; i < k; i++) {
			int d = abs((int)codes[i] - (int)cq[r * kp + i]);
			n += d != 0;
			*off += d > 1;
		}
	}
	*ncodes += sn->rows * k;
	free(codes);
	free(sc);
	free(sums);
	cg_plan_free(&p);
	return n;
}

/* Copies the interpreter's KV caches (positions below pos; position-major there)
 * into the compiled context's state (head-major, elide_kv_layout_of): the compiled
 * step then starts from the interpreter's state. */
static void
sync_caches(const TJit *t, const Module *m, const InterpState *is, int pos)
{
	uint8_t *st = (uint8_t *)t->ctx + t->r->arena_off + t->r->arena_size;
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		const float *k, *v;
		cr_assert(interp_kv(is, i, &k, &v));
		elide_kv_layout l = elide_kv_layout_of(s->ctx, s->kv_heads, s->head_dim, s->page);
		cr_assert_eq(s->page, 0);
		float *dk = (float *)(st + t->r->state_off[i]), *dv = (float *)(st + t->r->state_off[i] + l.v_offset);
		size_t hd = (size_t)s->head_dim, row = hd * sizeof(float);
		for (int64_t h = 0; h < s->kv_heads; h++)
			for (int j = 0; j < pos; j++) {
				size_t to = ((size_t)h * (size_t)s->ctx + (size_t)j) * hd, from = ((size_t)j * (size_t)s->kv_heads + (size_t)h) * hd;
				memcpy(dk + to, k + from, row);
				memcpy(dv + to, v + from, row);
			}
	}
}

typedef struct Tally {
	int64_t calls, over;          /* logits rows compared, and those over 1e-4 */
	double worst, worst_over;     /* max error of the rows within 1e-4, of those over */
	double tie_lo, tie_hi;        /* the interpreter's nearest tie in the rows over 1e-4 */
	char where[96];
	int64_t codes, flipped, off;  /* the output projection's codes: compared, differing */
} Tally;

/* One logits row: within 1e-4 relative error with the same argmax, or (only with
 * int8 activations, where a code can round the other way) counted as over, with
 * the interpreter's nearest tie of the call (margin). */
static bool
check_row(const float *out, const float *ref, int64_t n, bool a8, double margin, const char *what, int at,
          Tally *ty)
{
	double e = ts_rel_err(out, ref, n);
	ty->calls++;
	if (a8 && e > 1e-4 && isfinite(e)) {
		if (ty->over++ == 0)
			ty->tie_lo = ty->tie_hi = margin;
		ty->tie_lo = fmin(ty->tie_lo, margin);
		ty->tie_hi = fmax(ty->tie_hi, margin);
		ty->worst_over = fmax(ty->worst_over, e);
		return false;
	}
	if (e > ty->worst) {
		ty->worst = e;
		snprintf(ty->where, sizeof ty->where, "%s at %d", what, at);
	}
	cr_assert(e <= 1e-4, "%s at %d: relative error %g", what, at, e);
	cr_assert_eq(ts_argmax(out, n), ts_argmax(ref, n), "%s argmax at %d", what, at);
	return true;
}

/* A compiled model of format fmt and activations act against the interpreter
 * (threads: 1 serial, 2 a runtime pool): a decode of nsteps positions from an empty
 * cache, then for each prefill length in pre[] a prefill from position 0 and four
 * decode steps after it.  Each logits row within 1e-4 relative error with the same
 * argmax.  With f32 activations the compiled model runs on its own from start to end
 * and every row is held to that.  With int8 activations an activation code rounds
 * the other way when the f32 noise between compiled and interpreted inputs (a few
 * ulps; more in attention outputs that cancel) crosses its rounding boundary
 * (docs/quantization.md); one such code moves the logits by about 1e-3 and the KV
 * cache would carry it on.  So each compiled call starts from the interpreter's
 * caches (copied before it).  Every row within 1e-4 must have the same argmax and
 * the same output projection codes as the interpreter; a row over 1e-4 is allowed
 * only as a demonstrated rounding flip: the output projection's codes differ from
 * the interpreter's by one step, and the interpreter's nearest activation lies
 * within 1e-5 (relative) of a rounding boundary. */
static void
run_compare(RmConfig c, const char *fmt, int act, int nsteps, const int *pre, int npre, int threads)
{
	char path[256];
	Module *m = load_model(c, fmt, 32, act, path, sizeof path);
	bool a8 = false;
	for (uint32_t i = 0; i < m->nparams; i++)
		a8 |= m->params[i].act == AF_INT8;
	cr_assert_eq(a8, fmt && (act == AF_INT8 || (act < 0 && strcmp(fmt, "bf16") != 0)), "%s: activations", fmt);
	TJit *t = tj_new(m, true);
	if (threads > 1)
		cr_assert_eq(((ThreadsFn)tj_sym(t, "set_threads"))(t->ctx, threads), ELIDE_OK);
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	InterpState *is = interp_new(m);
	Seen sn;
	seen_init(&sn, m);
	if (a8)
		interp_set_op_hook(is, seen_hook, &sn);
	Tally ty = { 0 };
	float *out = xmalloc((size_t)c.vocab * sizeof *out), *ref = xmalloc((size_t)c.vocab * sizeof *ref);
	char err[256], what[64];
	int32_t toks[64];
	for (int i = 0; i < 64; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	const char *an = a8 ? "int8" : "f32";
	for (int run = -1; run < npre; run++) {
		int np = run < 0 ? 0 : pre[run], end = run < 0 ? nsteps : np + 4, pos = 0;
		int32_t tok = toks[0];
		interp_reset(is);
		if (np > 0) {
			sn.margin = 1;
			cr_assert_eq(prefill(t->ctx, toks, np, 0, out), ELIDE_OK);
			cr_assert(interp_run(is, "prefill", toks, np, 0, ref, err, sizeof err), "%s", err);
			snprintf(what, sizeof what, "%s/%s prefill of %d", fmt, an, np);
			bool held = check_row(out, ref, c.vocab, a8, sn.margin, what, np, &ty);
			if (a8) {
				int64_t fl = code_flips(t, &sn, 1, &ty.codes, &ty.off);
				ty.flipped += fl;
				cr_assert(!held || fl == 0, "%s: %lld codes differ", what, (long long)fl);
				cr_assert(held || fl > 0, "%s: over 1e-4 with the same output projection codes", what);
			}
			pos = np;
			tok = (int32_t)ts_argmax(ref, c.vocab);
		}
		for (; pos < end; pos++) {
			if (a8)
				sync_caches(t, m, is, pos);
			sn.margin = 1;
			cr_assert_eq(step(t->ctx, tok, pos, out), ELIDE_OK);
			cr_assert(interp_run(is, "step", &tok, 1, pos, ref, err, sizeof err), "%s", err);
			snprintf(what, sizeof what, "%s/%s step after %d", fmt, an, np);
			bool held = check_row(out, ref, c.vocab, a8, sn.margin, what, pos, &ty);
			if (a8) {
				int64_t fl = code_flips(t, &sn, 0, &ty.codes, &ty.off);
				ty.flipped += fl;
				cr_assert(!held || fl == 0, "%s at %d: %lld codes differ", what, pos, (long long)fl);
				cr_assert(held || fl > 0, "%s at %d: over 1e-4 with the same output projection codes", what, pos);
			}
			tok = (int32_t)((ts_argmax(ref, c.vocab) + pos) % c.vocab);
		}
	}
	cr_log_info("%s, %s activations, %s, %d thread(s): %lld rows, max relative error %.3g (%s); %lld rows over "
	            "1e-4 (up to %.3g; relative margin of the interpreter's nearest tie in them %.2g to %.2g)",
	            fmt, an, c.kv_heads < c.heads ? "GQA" : "MHA", threads, (long long)ty.calls, ty.worst, ty.where,
	            (long long)ty.over, ty.worst_over, ty.tie_lo, ty.tie_hi);
	if (a8) {
		cr_log_info("  output projection's codes: %lld of %lld differ, %lld by more than one", (long long)ty.flipped,
		            (long long)ty.codes, (long long)ty.off);
		cr_assert_eq(ty.off, 0);
		cr_assert(ty.over == 0 || ty.tie_hi < 1e-5, "a row over 1e-4 without a near tie (margin %g)", ty.tie_hi);
	}
	for (int w = 0; w < 2; w++)
		free(sn.group[w]);
	free(sn.x);
	free(out);
	free(ref);
	interp_free(is);
	tj_free(t);
	ir_free_module(m);
}

static RmConfig
config(bool gqa, uint64_t seed)
{
	RmConfig c = rm_default_config();
	c.ffn = 172; /* not a multiple of the group: a ragged last group in down_proj */
	c.ctx = 256; /* room for a decode of 200 positions */
	if (!gqa)
		c.kv_heads = c.heads;
	c.seed = seed;
	return c;
}

static const int prefills[] = { 1, 5, 13, 32, 64 };
#define NPRE ((int)(sizeof prefills / sizeof prefills[0]))

/* q8 and q4 with each activation format: GQA and MHA, decode of 200 positions and
 * prefills of 1 to 64 tokens, serial and on a pool of 2 threads */
static void
compare_format(const char *fmt, int act, uint64_t seed)
{
	for (int gqa = 0; gqa < 2; gqa++)
		for (int th = 1; th <= 2; th++)
			run_compare(config(gqa, seed + (uint64_t)(2 * gqa + th)), fmt, act, 200, prefills, NPRE, th);
}

Test(cg_quant, q8_int8_activations, .timeout = 600) { compare_format("q8", -1, 10); }
Test(cg_quant, q8_f32_activations, .timeout = 600) { compare_format("q8", AF_F32, 20); }
Test(cg_quant, q4_int8_activations, .timeout = 600) { compare_format("q4", AF_INT8, 30); }
Test(cg_quant, q4_f32_activations, .timeout = 600) { compare_format("q4", AF_F32, 40); }

Test(cg_quant, bf16_decode_prefill, .timeout = 600)
{
	run_compare(config(true, 51), "bf16", -1, 30, prefills, 3, 1);
	run_compare(config(false, 52), "bf16", -1, 30, prefills, 3, 2);
}

/* The logits of the quantised model against the f32 model's, decode over 32
 * positions: the max relative error stays under tol (measured on these random
 * weights, uniform in +-0.5 and so harder than trained ones; docs/quantization.md). */
static void
against_f32(const char *fmt, int act, double tol)
{
	char path[256];
	RmConfig c = config(true, 77);
	Module *mf = load_model(c, NULL, 32, -1, path, sizeof path);
	Module *mq = load_model(c, fmt, 32, act, path, sizeof path);
	TJit *tf = tj_new(mf, true), *tq = tj_new(mq, true);
	StepFn sf = (StepFn)tj_sym(tf, "step"), sq = (StepFn)tj_sym(tq, "step");
	float *of = xmalloc((size_t)c.vocab * 4), *oq = xmalloc((size_t)c.vocab * 4);
	double worst = 0;
	for (int pos = 0; pos < 32; pos++) {
		int32_t tok = (int32_t)((pos * 29 + 3) % c.vocab);
		cr_assert_eq(sf(tf->ctx, tok, pos, of), ELIDE_OK);
		cr_assert_eq(sq(tq->ctx, tok, pos, oq), ELIDE_OK);
		double e = ts_rel_err(oq, of, c.vocab);
		worst = e > worst ? e : worst;
	}
	const char *an = act < 0 ? "default" : ir_actformat_name((ActFormat)act);
	cr_log_info("%s (%s activations) against f32: max relative error %g", fmt, an, worst);
	cr_assert(worst <= tol, "%s (%s activations) against f32: relative error %g > %g", fmt, an, worst, tol);
	cr_assert(worst > 0, "%s gave the f32 logits exactly: not quantised", fmt);
	free(of);
	free(oq);
	tj_free(tf);
	tj_free(tq);
	ir_free_module(mf);
	ir_free_module(mq);
}

Test(cg_quant, q8_q4_bf16_against_f32)
{
	against_f32("q8", AF_INT8, 1.5e-2);
	against_f32("q8", AF_F32, 1.5e-2);
	against_f32("q4", AF_INT8, 2.5e-1);
	against_f32("q4", AF_F32, 2.5e-1);
	against_f32("bf16", -1, 1e-2);
}

/* ---- kernels: linear of a q8/q4 param against C loops ---- */

static float
frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

/* y = embed(X, toks) W^T + embed(B, toks) with W quantised to fmt (group g): the
 * compiled code against (a8 false: f32 activations) the f32 product with the
 * dequantised W, or (a8 true: int8 activations) ir_quant_row and ir_quant_dot.
 * nan: one input of the first token's row is NaN, and every output of the rows of
 * that token must be NaN (a NaN reaches the result, compiled and interpreted). */
static void
check_qlinear(const char *fmt, int g, int64_t n, int64_t k, int64_t rows, const CgOptions *o, bool a8, bool nan)
{
	uint64_t seed = (uint64_t)(n * 131 + k * 7 + rows);
	Module *m = ir_new_module("ql");
	int64_t vocab = 16, ctx = 24;
	bool seq = rows > 1 || rows == 0;
	const char *names[3] = { "x", "w", "b" };
	int64_t shapes[3][2] = { { vocab, k }, { n, k }, { vocab, n } };
	for (int i = 0; i < 3; i++) {
		uint32_t p = ir_add_param(m, names[i], names[i], ir_type_mat(DT_F32, shapes[i][0], shapes[i][1]), -1, (Loc){ 0 });
		float *d = xmalloc((size_t)(shapes[i][0] * shapes[i][1]) * sizeof *d);
		for (int64_t j = 0; j < shapes[i][0] * shapes[i][1]; j++)
			d[j] = frand(&seed) * (i == 0 && j % 7 == 0 ? 9.0f : 1.0f);
		m->params[p].data = d;
	}
	int32_t toks[24];
	for (int i = 0; i < 24; i++)
		toks[i] = (i * 5 + 3) % (int)vocab;
	if (nan)
		m->params[0].data[toks[0] * k + k / 2] = NAN;
	char err[256];
	cr_assert(ir_quantize_param(&m->params[1], (QFormat)ir_qformat_from_name(fmt), g, err, sizeof err), "%s", err);
	m->params[1].act = a8 ? AF_INT8 : AF_F32;
	Func *f = ir_new_func(m, "run", seq ? FN_PREFILL : FN_STEP, (Loc){ 0 });
	Type tt = seq ? ir_type_vec(DT_I32, ctx) : ir_type_scalar(DT_I32);
	tt.dyn0 = seq;
	ir_func_add_arg(m, f, "tokens", tt);
	Type xt = seq ? ir_type_mat(DT_F32, ctx, k) : ir_type_vec(DT_F32, k);
	Type yt = seq ? ir_type_mat(DT_F32, ctx, n) : ir_type_vec(DT_F32, n);
	xt.dyn0 = yt.dyn0 = seq;
	ValueId a[2];
	ValueId tok = ir_emit(m, f, OP_ARG, tt, NULL, 0, (Loc){ 0 });
	ValueId pv[3];
	for (int i = 0; i < 3; i++) {
		pv[i] = ir_emit(m, f, OP_PARAM, ir_type_mat(DT_F32, shapes[i][0], shapes[i][1]), NULL, 0, (Loc){ 0 });
		ir_def(f, pv[i])->ia[0] = i;
	}
	a[0] = pv[2]; a[1] = tok;
	ValueId bb = ir_emit(m, f, OP_EMBED, yt, a, 2, (Loc){ 0 });
	a[0] = pv[0];
	ValueId x = ir_emit(m, f, OP_EMBED, xt, a, 2, (Loc){ 0 });
	a[0] = x; a[1] = pv[1];
	ValueId y = ir_emit(m, f, OP_LINEAR, yt, a, 2, (Loc){ 0 });
	a[0] = y; a[1] = bb;
	y = ir_emit(m, f, OP_ADD, yt, a, 2, (Loc){ 0 });
	a[0] = y;
	ir_emit(m, f, OP_RET, yt, a, 1, (Loc){ 0 });
	f->rets = arena_alloc(&m->arena, sizeof *f->rets);
	f->rets[0] = yt;
	f->nrets = 1;

	TJit *t = tj_new_opts(m, o);
	int64_t T = seq ? rows : 1;
	float *out = xmalloc((size_t)(T * n) * sizeof *out), *ref = xmalloc((size_t)(T * n) * sizeof *ref);
	int rc;
	if (seq)
		rc = ((int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "run"))(t->ctx, toks, (int32_t)T, out);
	else
		rc = ((int (*)(void *, int32_t, float *))tj_sym(t, "run"))(t->ctx, toks[0], out);
	cr_assert_eq(rc, ELIDE_OK);
	const Param *W = &m->params[1];
	const float *X = m->params[0].data, *B = m->params[2].data;
	int64_t ng = ir_quant_groups(k, g);
	int8_t *codes = xmalloc((size_t)k);
	float *sc = xmalloc((size_t)ng * 4);
	int32_t *sums = xmalloc((size_t)ng * 4);
	for (int64_t r = 0; r < T; r++) {
		const float *xr = X + toks[r] * k;
		if (a8)
			ir_quant_row(xr, k, g, codes, sc, sums);
		for (int64_t j = 0; j < n; j++) {
			float v;
			if (a8) {
				v = ir_quant_dot(W, j, codes, sc, sums);
			} else {
				double acc = 0;
				for (int64_t i = 0; i < k; i++)
					acc += (double)xr[i] * W->data[j * k + i];
				v = (float)acc;
			}
			ref[r * n + j] = v + B[toks[r] * n + j];
		}
	}
	/* the interpreter computes the reference exactly, bit for bit (NaN for NaN) */
	InterpState *is = interp_new(m);
	float *iout = xmalloc((size_t)(T * n) * sizeof *iout);
	char ierr[256];
	cr_assert(interp_run(is, "run", toks, T, 0, iout, ierr, sizeof ierr), "%s", ierr);
	for (int64_t i = 0; i < T * n; i++)
		cr_assert(memcmp(&iout[i], &ref[i], sizeof *iout) == 0 || (isnan(iout[i]) && isnan(ref[i])),
		          "%s g%d: the interpreter is not the reference%s at %lld", fmt, g, a8 ? " (int8)" : "", (long long)i);
	free(iout);
	interp_free(is);
	if (nan) /* the rows of the poisoned token: NaN everywhere, then left out */
		for (int64_t r = 0; r < T; r++)
			for (int64_t j = 0; r < T && toks[r] == toks[0] && j < n; j++) {
				cr_assert(isnan(out[r * n + j]) && isnan(ref[r * n + j]), "%s row %lld output %lld: %g, not NaN",
				          fmt, (long long)r, (long long)j, (double)out[r * n + j]);
				out[r * n + j] = ref[r * n + j] = 0.0f;
			}
	double e = ts_rel_err(out, ref, T * n);
	cr_assert(e <= 2e-6, "%s g%d n%lld k%lld rows %lld (%s%s): relative error %g", fmt, g, (long long)n, (long long)k,
	          (long long)T, o->features ? o->features : "host", a8 ? ", int8" : "", e);
	free(codes);
	free(sc);
	free(sums);
	free(out);
	free(ref);
	tj_free(t);
	ir_free_module(m);
}

/* Every path on this machine: the host (AVX-512, VNNI where it has it), VNNI off
 * (widened multiplies), AVX2 vectors with and without 256-bit VNNI. */
static void
all_shapes(const CgOptions *o, bool a8)
{
	static const int64_t shapes[][3] = {
		{ 48, 64, 1 }, { 70, 100, 1 }, { 33, 688, 1 }, { 64, 96, 5 }, { 37, 104, 13 }, { 96, 256, 24 },
	};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		for (int q = 0; q < 2; q++) {
			check_qlinear(q ? "q4" : "q8", 32, shapes[i][0], shapes[i][1], shapes[i][2], o, a8, false);
			check_qlinear(q ? "q4" : "q8", 8, shapes[i][0], shapes[i][1], shapes[i][2], o, a8, false);
		}
}

Test(cg_quant, kernels_dequantising)
{
	CgOptions o = { .opt_level = 3, .fuse = true };
	all_shapes(&o, false);
	o.cpu = "x86-64-v3";
	o.features = "+avx2,+fma,+f16c";
	all_shapes(&o, false);
	o.features = "+avx2,+fma,-f16c"; /* the f16 scales widened by integer operations */
	for (int q = 0; q < 2; q++) {
		check_qlinear(q ? "q4" : "q8", 32, 70, 100, 1, &o, false, false);
		check_qlinear(q ? "q4" : "q8", 8, 37, 104, 13, &o, false, false);
	}
}

/* A NaN in the input of a q8/q4 linear reaches every output of its row, with either
 * activations, on each x86 path (int8: the group's scale becomes NaN). */
Test(cg_quant, kernels_nan_input)
{
	CgOptions o = { .opt_level = 3, .fuse = true };
	for (int pass = 0; pass < 2; pass++) {
		if (pass) {
			o.cpu = "x86-64-v3";
			o.features = "+avx2,+fma,+f16c";
		}
		for (int q = 0; q < 2; q++)
			for (int a8 = 0; a8 < 2; a8++) {
				check_qlinear(q ? "q4" : "q8", 32, 48, 64, 1, &o, a8, true);
				check_qlinear(q ? "q4" : "q8", 8, 37, 104, 13, &o, a8, true);
			}
	}
}

Test(cg_quant, kernels_int8_activations)
{
	CgOptions o = { .opt_level = 3, .fuse = true };
	char err[256];
	CgTarget *host = cg_target_new(NULL, NULL, NULL, 3, err, sizeof err);
	cr_assert(host);
	cr_log_info("host dot product: %s", host->dot == CG_DOT_VNNI ? "vpdpbusd" : "generic");
	bool vnni = host->dot == CG_DOT_VNNI;
	cg_target_free(host);
	all_shapes(&o, true); /* vpdpbusd (512) on a VNNI host */
	char feats[2048];
	snprintf(feats, sizeof feats, "%s,-avx512vnni", LLVMGetHostCPUFeatures());
	o.features = feats; /* the widened multiplies with AVX-512 vectors */
	all_shapes(&o, true);
	o.cpu = "x86-64-v3";
	o.features = "+avx2,+fma,+f16c"; /* widened multiplies with AVX2 vectors */
	all_shapes(&o, true);
	if (vnni) {
		o.features = "+avx2,+fma,+f16c,+avx512vnni,+avx512vl"; /* vpdpbusd on 256 bits */
		all_shapes(&o, true);
	}
}

/* The AArch64 code of q8 and q4 linears, with sdot (+dotprod) and without, int8 or
 * not, compiles to an object. */
Test(cg_quant, aarch64_objects)
{
	const char *feats[2] = { "+neon", "+neon,+dotprod" };
	for (int q = 0; q < 2; q++)
		for (int fi = 0; fi < 2; fi++)
			for (int a8 = fi; a8 < 2; a8++) { /* without dotprod: int8 and not; with: int8 */
				char path[256];
				Module *m = load_model(config(true, 90), q ? "q4" : "q8", 32, a8 ? AF_INT8 : AF_F32, path, sizeof path);
				CgOptions o = { .triple = "aarch64-linux-gnu", .cpu = "generic", .features = feats[fi], .opt_level = 3,
				                .fuse = true };
				Diag d;
				diag_init(&d, stderr);
				CgResult *r = cg_compile(m, &o, &d);
				cr_assert(r);
				cr_assert_eq(r->target->dot, fi ? CG_DOT_SDOT : CG_DOT_GENERIC);
				char err[256];
				cr_assert(cg_optimize(r, 3, err, sizeof err), "%s", err);
				char dir[] = "/tmp/elide_cg_quant_aXXXXXX";
				cr_assert(mkdtemp(dir));
				cr_assert(cg_write_outputs(r, dir, CG_EMIT_OBJ | CG_EMIT_ASM, NULL, &d));
				char cmd[512];
				snprintf(cmd, sizeof cmd, "grep -q %s %s/llama.s", fi && a8 ? "sdot" : "fmla", dir);
				cr_assert_eq(system(cmd), 0, "no %s in the AArch64 assembly", fi && a8 ? "sdot" : "fmla");
				snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
				cr_assert_eq(system(cmd), 0);
				cg_result_free(r);
				ir_free_module(m);
			}
}
