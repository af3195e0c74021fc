/* test_interp_ops.c - every interpreter op on small hand-computed inputs, the rope and
 * attention conventions (HF rotate_half vs llama2.c pairs, grouped heads, causal
 * cache, bidirectional), runtime errors as messages, the op hook. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

typedef struct T {
	Module *m;
	Func *f;
} T;

static const Loc L0 = { 0 };

/* A module with entry `step(token: i32, pos: i32)` or, when seq > 0,
 * `prefill(tokens: i32[<=seq], pos: i32)`. */
static T
mk(int seq)
{
	T t;
	t.m = ir_new_module("t");
	t.f = ir_new_func(t.m, seq ? "prefill" : "step", seq ? FN_PREFILL : FN_STEP, L0);
	Type tok = ir_type_scalar(DT_I32);
	if (seq) {
		tok = ir_type_vec(DT_I32, seq);
		tok.dyn0 = true;
	}
	ir_func_add_arg(t.m, t.f, seq ? "tokens" : "token", tok);
	ir_func_add_arg(t.m, t.f, "pos", ir_type_scalar(DT_I32));
	return t;
}

static ValueId
E(T *t, Opcode c, Type ty, ValueId a0, ValueId a1, ValueId a2, ValueId a3, int64_t i0, int64_t i1,
  int64_t i2, float f0)
{
	ValueId a[4] = { a0, a1, a2, a3 };
	uint32_t n = 0;
	while (n < 4 && a[n] != IR_NO_VALUE)
		n++;
	ValueId v = ir_emit(t->m, t->f, c, ty, a, n, L0);
	Op *op = ir_def(t->f, v);
	op->ia[0] = i0;
	op->ia[1] = i1;
	op->ia[2] = i2;
	op->fa[0] = f0;
	return v;
}

#define N IR_NO_VALUE
#define E1(t, c, ty, a) E(t, c, ty, a, N, N, N, 0, 0, 0, 0)
#define E2(t, c, ty, a, b) E(t, c, ty, a, b, N, N, 0, 0, 0, 0)

static Type
vec(int64_t n)
{
	return ir_type_vec(DT_F32, n);
}

static Type
mat(int64_t r, int64_t c)
{
	return ir_type_mat(DT_F32, r, c);
}

static Type
dynmat(int64_t r, int64_t c)
{
	Type ty = ir_type_mat(DT_F32, r, c);
	ty.dyn0 = true;
	return ty;
}

static ValueId
P(T *t, Type ty, const float *data)
{
	char name[16];
	snprintf(name, sizeof name, "p%u", t->m->nparams);
	uint32_t k = ir_add_param(t->m, name, name, ty, -1, L0);
	size_t n = (size_t)ir_type_numel(ty);
	t->m->params[k].data = memcpy(malloc(n * sizeof(float)), data, n * sizeof(float));
	return E(t, OP_PARAM, ty, N, N, N, N, k, 0, 0, 0);
}

static ValueId
tok(T *t)
{
	return E(t, OP_ARG, t->f->args[0].type, N, N, N, N, 0, 0, 0, 0);
}

static ValueId
pos(T *t)
{
	return E(t, OP_ARG, ir_type_scalar(DT_I32), N, N, N, N, 1, 0, 0, 0);
}

static void
ret(T *t, ValueId v)
{
	E1(t, OP_RET, ir_vtype(t->f, v), v);
	t->f->nrets = 1;
	t->f->rets = arena_alloc(&t->m->arena, sizeof *t->f->rets);
	t->f->rets[0] = ir_vtype(t->f, v);
}

/* Runs and returns whether it succeeded; err holds the message. */
static bool
run(T *t, const int32_t *toks, int64_t n, int32_t p, float *out, char *err)
{
	InterpState *s = interp_new(t->m);
	bool ok = interp_run(s, t->f->name, toks, n, p, out, err, 256);
	interp_free(s);
	return ok;
}

static void
expect_vals(const float *got, const float *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		cr_expect(fabs((double)got[i] - want[i]) <= tol, "element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static void
done(T *t)
{
	ir_free_module(t->m);
}

Test(interp_ops, embed_and_token_range)
{
	T t = mk(0);
	ValueId e = E2(&t, OP_EMBED, vec(2), P(&t, mat(3, 2), (float[]){ 1, 2, 3, 4, 5, 6 }), tok(&t));
	ret(&t, e);
	float out[2];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 2 }, 1, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 5, 6 }, 2, 0);
	cr_expect_not(run(&t, (int32_t[]){ 3 }, 1, 0, out, err));
	cr_expect(strstr(err, "token 3 out of range of the vocabulary (3)"), "%s", err);
	cr_expect_not(run(&t, (int32_t[]){ -1 }, 1, 0, out, err));
	cr_expect(strstr(err, "token -1 out of range"), "%s", err);
	cr_expect_not(run(&t, (int32_t[]){ 1, 2 }, 2, 0, out, err));
	cr_expect(strstr(err, "takes 1 tokens, got 2"), "%s", err);
	done(&t);
}

Test(interp_ops, linear_rows_and_sequence_bound)
{
	T t = mk(3);
	ValueId x = E2(&t, OP_EMBED, dynmat(3, 2), P(&t, mat(3, 2), (float[]){ 1, 2, 3, 4, 5, 6 }), tok(&t));
	ValueId y = E2(&t, OP_LINEAR, dynmat(3, 3), x, P(&t, mat(3, 2), (float[]){ 1, 0, 0, 1, 1, -1 }));
	ret(&t, y);
	float out[9];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0, 2 }, 2, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 1, 2, -1, 5, 6, -1 }, 6, 0);
	cr_expect_not(run(&t, (int32_t[]){ 0, 1, 2, 0 }, 4, 0, out, err));
	cr_expect(strstr(err, "sequence of 4 tokens longer than the bound of 3"), "%s", err);
	done(&t);
}

Test(interp_ops, elementwise)
{
	static const struct {
		Opcode c;
		float f0;
		int64_t i0;
		float want[2];
	} cases[] = {
		{ OP_ADD, 0, 0, { 4, 3 } },
		{ OP_SUB, 0, 0, { -2, -7 } },
		{ OP_MUL, 0, 0, { 3, -10 } },
		{ OP_SCALE, 0.5f, 0, { 0.5f, -1.0f } },
		{ OP_SILU, 0, 0, { 0.7310585786f, -0.2384058440f } },
		{ OP_TANH, 0, 0, { 0.7615941560f, -0.9640275801f } },
		{ OP_GELU, 0, 0, { 0.8413447461f, -0.0455002639f } },
		{ OP_GELU, 0, 1, { 0.8411919906f, -0.0454023059f } },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		T t = mk(0);
		ValueId a = P(&t, vec(2), (float[]){ 1, -2 }), b = P(&t, vec(2), (float[]){ 3, 5 });
		ValueId y = ir_op_arity[cases[i].c] == 2 ? E2(&t, cases[i].c, vec(2), a, b)
		                                         : E(&t, cases[i].c, vec(2), a, N, N, N, cases[i].i0, 0, 0, cases[i].f0);
		ret(&t, y);
		float out[2];
		char err[256];
		cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
		cr_log_info("case %zu (%s)", i, ir_op_names[cases[i].c]);
		expect_vals(out, cases[i].want, 2, 1e-6);
		done(&t);
	}
}

Test(interp_ops, norms_and_softmax)
{
	T t = mk(0);
	ValueId x = P(&t, vec(2), (float[]){ 3, 4 });
	ValueId r = E(&t, OP_RMSNORM, vec(2), x, P(&t, vec(2), (float[]){ 1, 2 }), N, N, 0, 0, 0, 0.0f);
	ValueId l = E(&t, OP_LAYERNORM, vec(2), P(&t, vec(2), (float[]){ 1, 3 }), P(&t, vec(2), (float[]){ 1, 1 }),
	              P(&t, vec(2), (float[]){ 0, 1 }), N, 0, 0, 0, 0.0f);
	ValueId s = E1(&t, OP_SOFTMAX, vec(2), P(&t, vec(2), (float[]){ 0, logf(3) }));
	ValueId c = E(&t, OP_CONCAT, vec(6), r, l, s, N, 0, 0, 0, 0);
	ret(&t, c);
	float out[6];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
	/* rms = sqrt((9 + 16) / 2); layernorm: mean 2, var 1 */
	expect_vals(out, (float[]){ 3 / sqrtf(12.5f), 8 / sqrtf(12.5f), -1, 2, 0.25f, 0.75f }, 6, 1e-6);
	done(&t);
	/* eps is used */
	t = mk(0);
	ret(&t, E(&t, OP_RMSNORM, vec(1), P(&t, vec(1), (float[]){ 1 }), P(&t, vec(1), (float[]){ 1 }), N, N, 0, 0, 0, 3.0f));
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 0.5f }, 1, 1e-7);
	done(&t);
}

/* One head of size 4, theta 100: frequencies 1 and 0.1. */
static void
rope_case(int style, const float *x, int32_t p, const float *want)
{
	T t = mk(0);
	ret(&t, E(&t, OP_ROPE, vec(4), P(&t, vec(4), x), pos(&t), N, N, 1, 4, style, 100.0f));
	float out[4];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, p, out, err), "%s", err);
	expect_vals(out, want, 4, 1e-6);
	done(&t);
}

Test(interp_ops, rope_conventions)
{
	/* style 0 (HF rotate_half): element 1 pairs with 3, frequency 0.1 */
	rope_case(0, (float[]){ 0, 1, 0, 0 }, 2, (float[]){ 0, cosf(0.2f), 0, sinf(0.2f) });
	rope_case(0, (float[]){ 0, 0, 1, 0 }, 2, (float[]){ -sinf(2), 0, cosf(2), 0 });
	/* style 1 (llama2.c): element 1 is the second of pair (0, 1), frequency 1 */
	rope_case(1, (float[]){ 0, 1, 0, 0 }, 2, (float[]){ -sinf(2), cosf(2), 0, 0 });
	rope_case(1, (float[]){ 0, 0, 1, 0 }, 2, (float[]){ 0, 0, cosf(0.2f), sinf(0.2f) });
	/* position 0 is the identity */
	rope_case(0, (float[]){ 1, 2, 3, 4 }, 0, (float[]){ 1, 2, 3, 4 });
	/* rows of a sequence use pos + t; two heads rotate independently */
	T t = mk(2);
	ValueId x = E2(&t, OP_EMBED, dynmat(2, 4), P(&t, mat(1, 4), (float[]){ 1, 0, 1, 0 }), tok(&t));
	ret(&t, E(&t, OP_ROPE, dynmat(2, 4), x, pos(&t), N, N, 2, 2, 0, 100.0f));
	float out[8];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0, 0 }, 2, 3, out, err), "%s", err);
	expect_vals(out, (float[]){ cosf(3), sinf(3), cosf(3), sinf(3), cosf(4), sinf(4), cosf(4), sinf(4) }, 8, 1e-6);
	cr_expect_not(run(&t, (int32_t[]){ 0, 0 }, 2, -1, out, err));
	done(&t);
}

/* attention(q, k, v, pos) with heads H, kv_heads KH and a cache of ctx 4 */
static T
attn_model(int H, int KH, int hd)
{
	T t = mk(0);
	ir_add_state(t.m, (State){ .name = "kv.0", .kind = ST_KVCACHE, .ctx = 4, .kv_heads = KH, .head_dim = hd });
	ValueId q = P(&t, vec(H * hd), (float[8]){ 0 }), k = P(&t, vec(KH * hd), (float[8]){ 0 }),
	        v = P(&t, vec(KH * hd), (float[8]){ 0 });
	ret(&t, E(&t, OP_ATTENTION, vec(H * hd), q, k, v, pos(&t), H, KH, 0, 0));
	return t;
}

static void
set(T *t, uint32_t p, const float *x, int n)
{
	memcpy(t->m->params[p].data, x, (size_t)n * sizeof(float));
}

Test(interp_ops, attention_causal_cache)
{
	T t = attn_model(2, 1, 1);
	InterpState *s = interp_new(t.m);
	float out[2];
	char err[256];
	set(&t, 0, (float[]){ 1, 2 }, 2);
	set(&t, 1, (float[]){ 1 }, 1);
	set(&t, 2, (float[]){ 10 }, 1);
	cr_assert(interp_run(s, "step", (int32_t[]){ 0 }, 1, 0, out, err, sizeof err), "%s", err);
	expect_vals(out, (float[]){ 10, 10 }, 2, 1e-6);
	set(&t, 1, (float[]){ 2 }, 1);
	set(&t, 2, (float[]){ 20 }, 1);
	cr_assert(interp_run(s, "step", (int32_t[]){ 0 }, 1, 1, out, err, sizeof err), "%s", err);
	/* head 0: softmax(1, 2); head 1: softmax(2, 4) over v = (10, 20) */
	double p0 = 1 / (1 + exp(1.0)), p1 = 1 / (1 + exp(2.0));
	expect_vals(out, (float[]){ (float)(10 * p0 + 20 * (1 - p0)), (float)(10 * p1 + 20 * (1 - p1)) }, 2, 1e-5);
	cr_expect_not(interp_run(s, "step", (int32_t[]){ 0 }, 1, 4, out, err, sizeof err));
	cr_expect(strstr(err, "position 4 past the context of 4"), "%s", err);
	/* after a reset only the new position is visible */
	interp_reset(s);
	cr_assert(interp_run(s, "step", (int32_t[]){ 0 }, 1, 1, out, err, sizeof err), "%s", err);
	p0 = 1 / (1 + exp(2.0)); /* position 0 holds k = 0, v = 0 after the reset */
	expect_vals(out, (float[]){ (float)(20 * (1 - p0)), (float)(20 * (1 - 1 / (1 + exp(4.0)))) }, 2, 1e-5);
	interp_free(s);
	done(&t);
}

Test(interp_ops, attention_scale_and_groups)
{
	/* 4 heads, 2 kv heads: heads 0, 1 read kv head 0, heads 2, 3 kv head 1 */
	T t = attn_model(4, 2, 1);
	set(&t, 2, (float[]){ 10, 20 }, 2);
	float out[4];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 10, 10, 20, 20 }, 4, 1e-6);
	done(&t);
	/* head_dim 4: scores scaled by 1/2 */
	t = attn_model(1, 1, 4);
	InterpState *s = interp_new(t.m);
	set(&t, 0, (float[]){ 1, 1, 1, 1 }, 4);
	set(&t, 1, (float[]){ 0, 0, 0, 0 }, 4);
	set(&t, 2, (float[]){ 0, 0, 0, 0 }, 4);
	cr_assert(interp_run(s, "step", (int32_t[]){ 0 }, 1, 0, out, err, sizeof err), "%s", err);
	set(&t, 1, (float[]){ 1, 1, 0, 0 }, 4); /* q.k = 2, scaled 1 */
	set(&t, 2, (float[]){ 1, 2, 3, 4 }, 4);
	cr_assert(interp_run(s, "step", (int32_t[]){ 0 }, 1, 1, out, err, sizeof err), "%s", err);
	double p = exp(1.0) / (1 + exp(1.0));
	expect_vals(out, (float[]){ (float)p, (float)(2 * p), (float)(3 * p), (float)(4 * p) }, 4, 1e-6);
	interp_free(s);
	done(&t);
}

Test(interp_ops, attention_bidirectional)
{
	T t = mk(0);
	ValueId q = P(&t, mat(2, 1), (float[]){ 1, 1 }), k = P(&t, mat(2, 1), (float[]){ 0, logf(3) }),
	        v = P(&t, mat(2, 1), (float[]){ 4, 8 });
	ret(&t, E(&t, OP_ATTENTION, mat(2, 1), q, k, v, pos(&t), 1, 1, -1, 0));
	float out[2];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 7, 7 }, 2, 1e-5); /* both rows see both keys: 0.25*4 + 0.75*8 */
	done(&t);
}

Test(interp_ops, prefill_attention_is_causal)
{
	/* rows of one prefill see positions 0..pos+t only */
	T t = mk(2);
	ir_add_state(t.m, (State){ .name = "kv.0", .kind = ST_KVCACHE, .ctx = 4, .kv_heads = 1, .head_dim = 1 });
	ValueId one = E2(&t, OP_EMBED, dynmat(2, 1), P(&t, mat(2, 1), (float[]){ 1, 0 }), tok(&t));
	ValueId v = E2(&t, OP_EMBED, dynmat(2, 1), P(&t, mat(2, 1), (float[]){ 4, 8 }), tok(&t));
	ret(&t, E(&t, OP_ATTENTION, dynmat(2, 1), one, one, v, pos(&t), 1, 1, 0, 0));
	float out[2];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0, 1 }, 2, 0, out, err), "%s", err);
	/* row 0 sees only itself; row 1 has q = 0, so equal weights on both */
	expect_vals(out, (float[]){ 4, 6 }, 2, 1e-5);
	cr_expect_not(run(&t, (int32_t[]){ 0, 1 }, 2, 3, out, err));
	cr_expect(strstr(err, "position 4 past the context of 4"), "%s", err);
	done(&t);
}

Test(interp_ops, argmax_row_slice_concat_const)
{
	T t = mk(0);
	ValueId x = P(&t, vec(4), (float[]){ 1, 5, 5, 2 });
	ValueId am = E1(&t, OP_ARGMAX, ir_type_scalar(DT_I32), x);
	ret(&t, am);
	int32_t got[4];
	char err[256];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, (float *)got, err), "%s", err);
	cr_expect_eq(got[0], 1, "the first maximum wins");
	done(&t);

	for (int idx = -3; idx <= 3; idx++) {
		t = mk(0);
		ValueId m = P(&t, mat(3, 2), (float[]){ 1, 2, 3, 4, 5, 6 });
		ret(&t, E(&t, OP_ROW, vec(2), m, N, N, N, idx, 0, 0, 0));
		float out[2];
		bool ok = run(&t, (int32_t[]){ 0 }, 1, 0, out, err);
		if (idx == 3) {
			cr_expect_not(ok);
			cr_expect(strstr(err, "row 3 out of range of 3 rows"), "%s", err);
		} else {
			cr_assert(ok, "%s", err);
			int r = idx < 0 ? idx + 3 : idx;
			expect_vals(out, (float[]){ (float)(2 * r + 1), (float)(2 * r + 2) }, 2, 0);
		}
		done(&t);
	}

	t = mk(0);
	ValueId s = E(&t, OP_SLICE, vec(2), P(&t, vec(4), (float[]){ 1, 2, 3, 4 }), N, N, N, 1, 2, 0, 0);
	ValueId c = E(&t, OP_CONST, ir_type_scalar(DT_F32), N, N, N, N, 0, 0, 0, 2.5f);
	ret(&t, E(&t, OP_CONCAT, vec(3), s, c, N, N, 0, 0, 0, 0));
	float out[3];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, out, err), "%s", err);
	expect_vals(out, (float[]){ 2, 3, 2.5f }, 3, 0);
	done(&t);

	/* a row [N] is repeated over every row of [T, N] (a bias), on either side */
	t = mk(0);
	ValueId mtx = P(&t, mat(2, 2), (float[]){ 1, 2, 3, 4 }), rowv = P(&t, vec(2), (float[]){ 10, 20 });
	ValueId sum = E2(&t, OP_ADD, mat(2, 2), mtx, rowv);
	ret(&t, E2(&t, OP_SUB, mat(2, 2), rowv, sum));
	float o4[4];
	cr_assert(run(&t, (int32_t[]){ 0 }, 1, 0, o4, err), "%s", err);
	expect_vals(o4, (float[]){ -1, -2, -3, -4 }, 4, 0);
	done(&t);

	/* add of mismatched shapes (malformed IR) is a message */
	t = mk(0);
	ret(&t, E2(&t, OP_ADD, vec(2), P(&t, vec(2), (float[]){ 1, 2 }), P(&t, vec(1), (float[]){ 1 })));
	cr_expect_not(run(&t, (int32_t[]){ 0 }, 1, 0, out, err));
	cr_expect(strstr(err, "op 'add': operands of 2 and 1 elements"), "%s", err);
	done(&t);
}

Test(interp_ops, errors_are_messages)
{
	char err[256];
	float out[4];
	T t = mk(0);
	uint32_t k = ir_add_param(t.m, "w", "w", vec(2), -1, L0);
	ret(&t, E(&t, OP_PARAM, vec(2), N, N, N, N, k, 0, 0, 0));
	cr_expect_not(run(&t, (int32_t[]){ 0 }, 1, 0, out, err));
	cr_expect(strstr(err, "param 'w' has no data"), "%s", err);
	InterpState *s = interp_new(t.m);
	cr_expect_not(interp_run(s, "nope", (int32_t[]){ 0 }, 1, 0, out, err, sizeof err));
	cr_expect(strstr(err, "no entry 'nope'"), "%s", err);
	interp_free(s);
	done(&t);
	/* linear with mismatched widths (malformed IR) is an error, not a crash */
	t = mk(0);
	ret(&t, E2(&t, OP_LINEAR, vec(3), P(&t, vec(2), (float[]){ 1, 2 }), P(&t, mat(3, 3), (float[9]){ 0 })));
	cr_expect_not(run(&t, (int32_t[]){ 0 }, 1, 0, out, err));
	cr_expect(strstr(err, "op 'linear'"), "%s", err);
	done(&t);
	/* no ret */
	t = mk(0);
	P(&t, vec(1), (float[]){ 1 });
	cr_expect_not(run(&t, (int32_t[]){ 0 }, 1, 0, out, err));
	cr_expect(strstr(err, "no 'ret'"), "%s", err);
	done(&t);
}

typedef struct HookLog {
	int calls;
	int64_t rows[16], cols[16];
	Opcode code[16];
} HookLog;

static void
hook(void *user, const Func *f, const Op *op, const float *val, int64_t rows, int64_t cols)
{
	HookLog *h = user;
	(void)f;
	(void)val;
	if (h->calls < 16) {
		h->rows[h->calls] = rows;
		h->cols[h->calls] = cols;
		h->code[h->calls] = op->code;
	}
	h->calls++;
}

Test(interp_ops, op_hook_sees_every_f32_result)
{
	T t = mk(3);
	ValueId x = E2(&t, OP_EMBED, dynmat(3, 2), P(&t, mat(3, 2), (float[]){ 1, 2, 3, 4, 5, 6 }), tok(&t));
	ValueId y = E1(&t, OP_SILU, dynmat(3, 2), x);
	ret(&t, E(&t, OP_ROW, vec(2), y, N, N, N, -1, 0, 0, 0));
	InterpState *s = interp_new(t.m);
	HookLog h = { 0 };
	interp_set_op_hook(s, hook, &h);
	float out[2];
	char err[256];
	cr_assert(interp_run(s, "prefill", (int32_t[]){ 0, 1 }, 2, 0, out, err, sizeof err), "%s", err);
	/* param, embed, silu, row (the i32 args are not reported) */
	cr_assert_eq(h.calls, 4);
	cr_expect(h.code[1] == OP_EMBED && h.rows[1] == 2 && h.cols[1] == 2);
	cr_expect(h.code[2] == OP_SILU && h.rows[2] == 2);
	cr_expect(h.code[3] == OP_ROW && h.rows[3] == 1 && h.cols[3] == 2);
	interp_free(s);
	done(&t);
}

/* positions(tokens, start): start for one token, start + t for row t of a sequence
 * (the run's length, not the bound); embedding them past the table is an error. */
Test(interp_ops, positions_scalar_and_sequence)
{
	char err[256];
	T t = mk(0);
	ret(&t, E2(&t, OP_POSITIONS, ir_type_scalar(DT_I32), tok(&t), pos(&t)));
	for (int32_t p = 0; p < 12; p += 5) {
		int32_t out = -1;
		cr_assert(run(&t, (int32_t[]){ 9 }, 1, p, (float *)&out, err), "%s", err);
		cr_expect_eq(out, p, "one token at %d: got %d", p, out);
	}
	done(&t);

	Type seq = ir_type_vec(DT_I32, 4);
	seq.dyn0 = true;
	for (int32_t p = 0; p < 12; p += 7) {
		for (int n = 1; n <= 4; n++) {
			t = mk(4);
			ret(&t, E2(&t, OP_POSITIONS, seq, tok(&t), pos(&t)));
			int32_t out[4] = { -1, -1, -1, -1 };
			cr_assert(run(&t, (int32_t[]){ 3, 1, 4, 1 }, n, p, (float *)out, err), "%s", err);
			for (int i = 0; i < 4; i++)
				cr_expect_eq(out[i], i < n ? p + i : -1, "%d tokens at %d, row %d: got %d", n, p, i, out[i]);
			done(&t);
		}
	}
	/* a constant start: the op does not depend on the entry's position */
	t = mk(4);
	ret(&t, E2(&t, OP_POSITIONS, seq, tok(&t), E(&t, OP_CONST, ir_type_scalar(DT_I32), N, N, N, N, 2, 0, 0, 0)));
	int32_t out[4];
	cr_assert(run(&t, (int32_t[]){ 0, 0, 0 }, 3, 9, (float *)out, err), "%s", err);
	cr_expect(out[0] == 2 && out[1] == 3 && out[2] == 4, "got %d %d %d", out[0], out[1], out[2]);
	done(&t);
}

Test(interp_ops, positions_embedded_and_bounds)
{
	char err[256];
	T t = mk(4);
	Type seq = ir_type_vec(DT_I32, 4);
	seq.dyn0 = true;
	ValueId ps = E2(&t, OP_POSITIONS, seq, tok(&t), pos(&t));
	ret(&t, E2(&t, OP_EMBED, dynmat(4, 2), P(&t, mat(3, 2), (float[]){ 1, 2, 3, 4, 5, 6 }), ps));
	float out[8];
	cr_assert(run(&t, (int32_t[]){ 7, 7 }, 2, 1, out, err), "%s", err);
	expect_vals(out, (float[]){ 3, 4, 5, 6 }, 4, 0);
	cr_expect_not(run(&t, (int32_t[]){ 7, 7 }, 2, 2, out, err));
	cr_expect(strstr(err, "position 3 past the table of 3 positions"), "%s", err);
	cr_expect_not(run(&t, (int32_t[]){ 7 }, 1, 3, out, err));
	cr_expect(strstr(err, "position 3 past the table of 3 positions"), "%s", err);
	done(&t);
	/* a negative start is an error of positions itself */
	t = mk(4);
	ret(&t, E2(&t, OP_POSITIONS, seq, tok(&t), E(&t, OP_CONST, ir_type_scalar(DT_I32), N, N, N, N, -1, 0, 0, 0)));
	int32_t o[4];
	cr_expect_not(run(&t, (int32_t[]){ 0 }, 1, 0, (float *)o, err));
	cr_expect(strstr(err, "op 'positions': negative position -1"), "%s", err);
	done(&t);
}
