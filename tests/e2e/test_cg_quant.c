/* test_cg_quant.c - quantised weights (q8, q4, bf16) compiled against the reference
 * interpreter, which computes with the dequantised weights: random Llamas, MHA and
 * GQA, decode and prefill, serial and on a pool of 2 threads (max relative error
 * <= 1e-4, same argmax); q8 and q4 against the f32 model within the stated
 * tolerance; the linear kernels against C loops for every path this machine runs
 * (dequantising: AVX-512 and AVX2 vectors, f16 scales with and without F16C; int8
 * activations: vpdpbusd 512 and 256 bits and the widened multiplies), with K not a
 * multiple of the group and N not a multiple of the panel; AArch64 objects with and
 * without dotprod. */
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

static Module *
load_model(RmConfig c, const char *fmt, int group, char *path, size_t npath)
{
	snprintf(path, npath, "/tmp/elide_cg_quant_%d_%llu.safetensors", (int)getpid(), (unsigned long long)c.seed);
	cr_assert(rm_write_model(&c, path));
	Module *m = rm_build_module(&c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d), "cannot load params");
	if (fmt) {
		cr_assert(pass_quantize_add_stmt(m, fmt, group));
		cr_assert(pass_quantize(m, &d));
	}
	remove(path);
	return m;
}

/* prefill of np tokens then decode to nsteps positions, compiled against the
 * interpreter (threads: 1 serial, 2 a runtime pool). */
static void
run_compare(RmConfig c, const char *fmt, int np, int nsteps, int threads)
{
	char path[256];
	Module *m = load_model(c, fmt, 32, path, sizeof path);
	TJit *t = tj_new(m, true);
	if (threads > 1)
		cr_assert_eq(((ThreadsFn)tj_sym(t, "set_threads"))(t->ctx, threads), ELIDE_OK);
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	InterpState *is = interp_new(m);
	float *out = xmalloc((size_t)c.vocab * sizeof *out), *ref = xmalloc((size_t)c.vocab * sizeof *ref);
	char err[256];
	int32_t toks[64];
	for (int i = 0; i < 64; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	int pos = 0;
	int32_t tok = toks[0];
	if (np > 0) {
		cr_assert_eq(prefill(t->ctx, toks, np, 0, out), ELIDE_OK);
		cr_assert(interp_run(is, "prefill", toks, np, 0, ref, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref, c.vocab);
		cr_assert(e <= 1e-4, "%s prefill of %d: relative error %g", fmt, np, e);
		cr_assert_eq(ts_argmax(out, c.vocab), ts_argmax(ref, c.vocab));
		pos = np;
		tok = (int32_t)ts_argmax(ref, c.vocab);
	}
	for (; pos < nsteps; pos++) {
		cr_assert_eq(step(t->ctx, tok, pos, out), ELIDE_OK);
		cr_assert(interp_run(is, "step", &tok, 1, pos, ref, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref, c.vocab);
		cr_assert(e <= 1e-4, "%s step at %d: relative error %g", fmt, pos, e);
		cr_assert_eq(ts_argmax(out, c.vocab), ts_argmax(ref, c.vocab), "%s argmax at %d", fmt, pos);
		tok = (int32_t)((ts_argmax(ref, c.vocab) + pos) % c.vocab);
	}
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
	if (!gqa)
		c.kv_heads = c.heads;
	c.seed = seed;
	return c;
}

static const char *const formats[] = { "q8", "q4", "bf16" };

Test(cg_quant, gqa_decode_prefill_1_thread)
{
	for (int i = 0; i < 3; i++) {
		run_compare(config(true, 11 + i), formats[i], 0, 24, 1);
		run_compare(config(true, 21 + i), formats[i], 13, 30, 1);
	}
}

Test(cg_quant, mha_decode_prefill_1_thread)
{
	for (int i = 0; i < 3; i++) {
		run_compare(config(false, 31 + i), formats[i], 0, 24, 1);
		run_compare(config(false, 41 + i), formats[i], 9, 30, 1);
	}
}

Test(cg_quant, gqa_mha_2_threads)
{
	for (int i = 0; i < 3; i++) {
		run_compare(config(true, 51 + i), formats[i], 17, 32, 2);
		run_compare(config(false, 61 + i), formats[i], 7, 20, 2);
	}
}

/* The logits of the quantised model against the f32 model's, decode over 32
 * positions: the max relative error stays under tol (q8 1.5e-2, q4 2.5e-1, bf16
 * 1e-2 on these random weights, uniform in +-0.5 and so harder than trained ones). */
static void
against_f32(const char *fmt, double tol)
{
	char path[256];
	RmConfig c = config(true, 77);
	Module *mf = load_model(c, NULL, 32, path, sizeof path);
	Module *mq = load_model(c, fmt, 32, path, sizeof path);
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
	cr_log_info("%s against f32: max relative error %g", fmt, worst);
	cr_assert(worst <= tol, "%s against f32: relative error %g > %g", fmt, worst, tol);
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
	against_f32("q8", 1.5e-2);
	against_f32("q4", 2.5e-1);
	against_f32("bf16", 1e-2);
}

/* ---- kernels: linear of a q8/q4 param against C loops ---- */

static float
frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

/* y = embed(X, toks) W^T + embed(B, toks) with W quantised to fmt (group g): the
 * compiled code against (int8 false) the f32 product with the dequantised W, or
 * (int8 true) ir_quant_row and ir_quant_dot. */
static void
check_qlinear(const char *fmt, int g, int64_t n, int64_t k, int64_t rows, const CgOptions *o)
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
	char err[256];
	cr_assert(ir_quantize_param(&m->params[1], (QFormat)ir_qformat_from_name(fmt), g, err, sizeof err), "%s", err);
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
	int32_t toks[24];
	for (int i = 0; i < 24; i++)
		toks[i] = (i * 5 + 3) % (int)vocab;
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
		if (o->int8_act)
			ir_quant_row(xr, k, g, codes, sc, sums);
		for (int64_t j = 0; j < n; j++) {
			float v;
			if (o->int8_act) {
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
	double e = ts_rel_err(out, ref, T * n);
	cr_assert(e <= 2e-6, "%s g%d n%lld k%lld rows %lld (%s%s): relative error %g", fmt, g, (long long)n, (long long)k,
	          (long long)T, o->features ? o->features : "host", o->int8_act ? ", int8" : "", e);
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
all_shapes(const CgOptions *o)
{
	static const int64_t shapes[][3] = {
		{ 48, 64, 1 }, { 70, 100, 1 }, { 33, 688, 1 }, { 64, 96, 5 }, { 37, 104, 13 }, { 96, 256, 24 },
	};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		for (int q = 0; q < 2; q++) {
			check_qlinear(q ? "q4" : "q8", 32, shapes[i][0], shapes[i][1], shapes[i][2], o);
			check_qlinear(q ? "q4" : "q8", 8, shapes[i][0], shapes[i][1], shapes[i][2], o);
		}
}

Test(cg_quant, kernels_dequantising)
{
	CgOptions o = { .opt_level = 3, .fuse = true };
	all_shapes(&o);
	o.cpu = "x86-64-v3";
	o.features = "+avx2,+fma,+f16c";
	all_shapes(&o);
	o.features = "+avx2,+fma,-f16c"; /* the f16 scales widened by integer operations */
	for (int q = 0; q < 2; q++) {
		check_qlinear(q ? "q4" : "q8", 32, 70, 100, 1, &o);
		check_qlinear(q ? "q4" : "q8", 8, 37, 104, 13, &o);
	}
}

Test(cg_quant, kernels_int8_activations)
{
	CgOptions o = { .opt_level = 3, .fuse = true, .int8_act = true };
	char err[256];
	CgTarget *host = cg_target_new(NULL, NULL, NULL, 3, err, sizeof err);
	cr_assert(host);
	cr_log_info("host dot product: %s", host->dot == CG_DOT_VNNI ? "vpdpbusd" : "generic");
	bool vnni = host->dot == CG_DOT_VNNI;
	cg_target_free(host);
	all_shapes(&o); /* vpdpbusd (512) on a VNNI host */
	char feats[2048];
	snprintf(feats, sizeof feats, "%s,-avx512vnni", LLVMGetHostCPUFeatures());
	o.features = feats; /* the widened multiplies with AVX-512 vectors */
	all_shapes(&o);
	o.cpu = "x86-64-v3";
	o.features = "+avx2,+fma,+f16c"; /* widened multiplies with AVX2 vectors */
	all_shapes(&o);
	if (vnni) {
		o.features = "+avx2,+fma,+f16c,+avx512vnni,+avx512vl"; /* vpdpbusd on 256 bits */
		all_shapes(&o);
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
				Module *m = load_model(config(true, 90), q ? "q4" : "q8", 32, path, sizeof path);
				CgOptions o = { .triple = "aarch64-linux-gnu", .cpu = "generic", .features = feats[fi], .opt_level = 3,
				                .fuse = true, .int8_act = a8 };
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
