/* test_cg_kernels.c - generated kernels against plain C loops: linear as GEMV (one
 * row) and GEMM (every remainder of the micro-kernel rows), shapes that leave a
 * partial last panel, and fused epilogues (silu, then add or mul). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"

static float
frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static float *
rand_param(Module *m, const char *name, int64_t r, int64_t c, uint64_t *seed)
{
	uint32_t p = ir_add_param(m, name, name, ir_type_mat(DT_F32, r, c), -1, (Loc){ 0 });
	float *d = xmalloc((size_t)(r * c) * sizeof *d);
	for (int64_t i = 0; i < r * c; i++)
		d[i] = frand(seed);
	m->params[p].data = d;
	return d;
}

static ValueId
op(Module *m, Func *f, Opcode c, Type t, ValueId a, ValueId b, int64_t ia0)
{
	ValueId args[2] = { a, b };
	ValueId v = ir_emit(m, f, c, t, args, b == IR_NO_VALUE ? (a == IR_NO_VALUE ? 0 : 1) : 2, (Loc){ 0 });
	ir_def(f, v)->ia[0] = ia0;
	return v;
}

/* y = epi(embed(X, toks) W^T) with epi: 0 none, 1 silu, 2 silu then + embed(B, toks),
 * 3 * embed(B, toks) */
static void
check_linear(int64_t n, int64_t k, int64_t ctx, int epi, bool seq, bool hook)
{
	uint64_t seed = (uint64_t)(n * 131 + k * 7 + epi);
	Module *m = ir_new_module("lin");
	int64_t vocab = 16;
	float *X = rand_param(m, "x", vocab, k, &seed);
	float *W = rand_param(m, "w", n, k, &seed);
	float *B = rand_param(m, "b", vocab, n, &seed);
	Func *f = ir_new_func(m, "run", seq ? FN_PREFILL : FN_STEP, (Loc){ 0 });
	Type tt = seq ? ir_type_vec(DT_I32, ctx) : ir_type_scalar(DT_I32);
	tt.dyn0 = seq;
	ir_func_add_arg(m, f, "tokens", tt);
	Type xt = seq ? ir_type_mat(DT_F32, ctx, k) : ir_type_vec(DT_F32, k);
	Type yt = seq ? ir_type_mat(DT_F32, ctx, n) : ir_type_vec(DT_F32, n);
	xt.dyn0 = yt.dyn0 = seq;
	ValueId tok = op(m, f, OP_ARG, tt, IR_NO_VALUE, IR_NO_VALUE, 0);
	ValueId px = op(m, f, OP_PARAM, ir_type_mat(DT_F32, vocab, k), IR_NO_VALUE, IR_NO_VALUE, 0);
	ValueId pw = op(m, f, OP_PARAM, ir_type_mat(DT_F32, n, k), IR_NO_VALUE, IR_NO_VALUE, 1);
	ValueId pb = op(m, f, OP_PARAM, ir_type_mat(DT_F32, vocab, n), IR_NO_VALUE, IR_NO_VALUE, 2);
	ValueId bb = op(m, f, OP_EMBED, yt, pb, tok, 0);
	ValueId x = op(m, f, OP_EMBED, xt, px, tok, 0);
	ValueId y = op(m, f, OP_LINEAR, yt, x, pw, 0);
	if (epi >= 1 && epi <= 2)
		y = op(m, f, OP_SILU, yt, y, IR_NO_VALUE, 0);
	if (epi == 2)
		y = op(m, f, OP_ADD, yt, bb, y, 0);
	if (epi == 3)
		y = op(m, f, OP_MUL, yt, y, bb, 0);
	if (epi == 0)
		op(m, f, OP_ADD, yt, bb, bb, 0); /* keeps bb used */
	op(m, f, OP_RET, yt, y, IR_NO_VALUE, 0);
	f->rets = arena_alloc(&m->arena, sizeof *f->rets);
	f->rets[0] = yt;
	f->nrets = 1;

	TJit *t = tj_new(m, true);
	if (hook) {
		void (*spf)(void *, void *, void *) = (void (*)(void *, void *, void *))tj_sym(t, "set_parallel_for");
		void (*pf)(void *, int64_t, void (*)(void *, int64_t, int64_t), void *) = tj_reverse_pfor;
		void *pfp;
		memcpy(&pfp, &pf, sizeof pfp);
		spf(t->ctx, pfp, NULL);
	}
	int64_t maxT = seq ? ctx : 1;
	float *out = xmalloc((size_t)(maxT * n) * sizeof *out);
	float *ref = xmalloc((size_t)(maxT * n) * sizeof *ref);
	int32_t *toks = xmalloc((size_t)maxT * sizeof *toks);
	for (int64_t T = 1; T <= maxT; T++) {
		for (int64_t i = 0; i < T; i++)
			toks[i] = (int32_t)((i * 5 + T) % vocab);
		for (int64_t r = 0; r < T; r++)
			for (int64_t j = 0; j < n; j++) {
				double acc = 0;
				for (int64_t kk = 0; kk < k; kk++)
					acc += (double)X[toks[r] * k + kk] * W[j * k + kk];
				float v = (float)acc;
				if (epi == 1 || epi == 2)
					v = v / (1.0f + expf(-v));
				if (epi == 2)
					v += B[toks[r] * n + j];
				if (epi == 3)
					v *= B[toks[r] * n + j];
				ref[r * n + j] = v;
			}
		memset(out, 0, (size_t)(T * n) * sizeof *out);
		int st;
		if (seq) {
			int (*fn)(void *, const int32_t *, int32_t, float *) = (int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "run");
			st = fn(t->ctx, toks, (int32_t)T, out);
		} else {
			int (*fn)(void *, int32_t, float *) = (int (*)(void *, int32_t, float *))tj_sym(t, "run");
			st = fn(t->ctx, toks[0], out);
		}
		cr_assert_eq(st, ELIDE_OK);
		double e = ts_rel_err(out, ref, T * n);
		cr_assert(e <= 1e-5, "n=%lld k=%lld T=%lld epi=%d: relative error %g", (long long)n, (long long)k,
		          (long long)T, epi, e);
	}
	free(out);
	free(ref);
	free(toks);
	tj_free(t);
	ir_free_module(m);
}

Test(cg_kernels, gemv_shapes)
{
	check_linear(64, 64, 1, 0, false, false);
	check_linear(37, 19, 1, 0, false, false);
	check_linear(100, 33, 1, 1, false, false);
	check_linear(200, 48, 1, 2, false, false);
	check_linear(5, 8, 1, 3, false, false);
}

Test(cg_kernels, gemm_every_remainder)
{
	check_linear(64, 32, 20, 0, true, false);
	check_linear(37, 19, 17, 0, true, false);
	check_linear(70, 21, 13, 2, true, false);
	check_linear(33, 40, 9, 3, true, false);
}

Test(cg_kernels, parallel_for_split)
{
	/* the same linear through the hook that runs chunks in reverse */
	check_linear(150, 24, 1, 0, false, true);
	check_linear(150, 24, 30, 2, true, true);
}
