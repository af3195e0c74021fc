/* test_builder.c - the builder and ir_infer_type: result types of every op, the
 * bounded dynamic first dimension, and the exact error messages for bad operands
 * (reported through diag with the builder's location). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static const Loc L0 = { 0 };

typedef struct Fx {
	Module *m;
	Func *f;
	Builder b;
	Diag d;
	char *out;    /* diagnostics text */
	size_t nout;
	FILE *fp;
} Fx;

/* A module with params of the given shapes and an entry with args tok (i32[<=8] when
 * seq, else i32) and pos (i32). */
static void
fx_init(Fx *x, bool seq)
{
	memset(x, 0, sizeof *x);
	x->m = ir_new_module("t");
	x->f = ir_new_func(x->m, seq ? "prefill" : "step", seq ? FN_PREFILL : FN_STEP, L0);
	Type tok = ir_type_scalar(DT_I32);
	if (seq) {
		tok = ir_type_vec(DT_I32, 8);
		tok.dyn0 = true;
	}
	ir_func_add_arg(x->m, x->f, "tok", tok);
	ir_func_add_arg(x->m, x->f, "pos", ir_type_scalar(DT_I32));
	x->fp = open_memstream(&x->out, &x->nout);
	diag_init(&x->d, x->fp);
	x->b = (Builder){ .m = x->m, .f = x->f, .layer = -1, .diag = &x->d };
}

static const char *
fx_diag(Fx *x)
{
	fflush(x->fp);
	return x->out ? x->out : "";
}

static void
fx_fini(Fx *x)
{
	fclose(x->fp);
	free(x->out);
	ir_free_module(x->m);
}

static ValueId
P(Fx *x, const char *name, Type t)
{
	uint32_t k = ir_add_param(x->m, name, name, t, -1, L0);
	return ir_b_param(&x->b, k, L0);
}

static ValueId
op2(Fx *x, Opcode c, ValueId a, ValueId b)
{
	ValueId v[2] = { a, b };
	return ir_b_op(&x->b, c, v, 2, NULL, NULL, L0);
}

static ValueId
op1(Fx *x, Opcode c, ValueId a, int64_t i0, int64_t i1, float f0)
{
	int64_t ia[IR_NIA] = { i0, i1 };
	float fa[IR_NFA] = { f0 };
	return ir_b_op(&x->b, c, &a, 1, ia, fa, L0);
}

static void
expect_type(Fx *x, ValueId v, const char *want)
{
	cr_assert_neq(v, IR_NO_VALUE, "unexpected error: %s", fx_diag(x));
	char buf[96];
	cr_expect_str_eq(ir_type_str(ir_vtype(x->f, v), buf, sizeof buf), want);
}

Test(builder, llama_step_block_types)
{
	Fx x;
	fx_init(&x, false);
	ValueId tok = ir_b_arg(&x.b, 0, L0), pos = ir_b_arg(&x.b, 1, L0);
	ValueId emb = P(&x, "emb", ir_type_mat(DT_F32, 32, 16));
	ValueId h = op2(&x, OP_EMBED, emb, tok);
	expect_type(&x, h, "f32[16]");
	x.b.layer = 0;
	ValueId wq = P(&x, "wq", ir_type_mat(DT_F32, 16, 16)), wk = P(&x, "wk", ir_type_mat(DT_F32, 8, 16));
	ValueId q = op2(&x, OP_LINEAR, h, wq), k = op2(&x, OP_LINEAR, h, wk);
	expect_type(&x, k, "f32[8]");
	int64_t ria[IR_NIA] = { 4, 0, 0 };
	float rfa[IR_NFA] = { 10000.0f };
	ValueId qa[2] = { q, pos }, ka[2] = { k, pos };
	ValueId qr = ir_b_op(&x.b, OP_ROPE, qa, 2, ria, rfa, L0);
	ria[0] = 2;
	ValueId kr = ir_b_op(&x.b, OP_ROPE, ka, 2, ria, rfa, L0);
	expect_type(&x, kr, "f32[8]");
	ValueId aa[4] = { qr, kr, k, pos };
	int64_t aia[IR_NIA] = { 4, 2, 0 };
	ValueId at = ir_b_op(&x.b, OP_ATTENTION, aa, 4, aia, NULL, L0);
	expect_type(&x, at, "f32[16]");
	cr_expect_eq(ir_def(x.f, at)->layer, 0);
	ValueId am = op1(&x, OP_ARGMAX, at, 0, 0, 0);
	expect_type(&x, am, "i32");
	cr_expect_eq(x.d.nerrors, 0);
	fx_fini(&x);
}

Test(builder, dyn0_flows_through_row_ops)
{
	Fx x;
	fx_init(&x, true);
	ValueId tok = ir_b_arg(&x.b, 0, L0);
	expect_type(&x, tok, "i32[<=8]");
	ValueId emb = P(&x, "emb", ir_type_mat(DT_F32, 32, 16));
	ValueId h = op2(&x, OP_EMBED, emb, tok);
	expect_type(&x, h, "f32[<=8, 16]");
	ValueId w = P(&x, "w", ir_type_mat(DT_F32, 24, 16));
	ValueId y = op2(&x, OP_LINEAR, h, w);
	expect_type(&x, y, "f32[<=8, 24]");
	expect_type(&x, op1(&x, OP_SILU, y, 0, 0, 0), "f32[<=8, 24]");
	expect_type(&x, op1(&x, OP_SOFTMAX, y, 0, 0, 0), "f32[<=8, 24]");
	expect_type(&x, op1(&x, OP_SLICE, y, 4, 8, 0), "f32[<=8, 8]");
	expect_type(&x, op1(&x, OP_ARGMAX, y, 0, 0, 0), "i32[<=8]");
	expect_type(&x, op1(&x, OP_ROW, y, -1, 0, 0), "f32[24]");
	expect_type(&x, op1(&x, OP_ROW, y, 0, 0, 0), "f32[24]");
	ValueId ca[3] = { y, h, y };
	expect_type(&x, ir_b_op(&x.b, OP_CONCAT, ca, 3, NULL, NULL, L0), "f32[<=8, 64]");
	ValueId nw = P(&x, "nw", ir_type_vec(DT_F32, 24));
	float eps[IR_NFA] = { 1e-5f };
	ValueId na[3] = { y, nw, nw };
	expect_type(&x, ir_b_op(&x.b, OP_RMSNORM, na, 2, NULL, eps, L0), "f32[<=8, 24]");
	expect_type(&x, ir_b_op(&x.b, OP_LAYERNORM, na, 3, NULL, eps, L0), "f32[<=8, 24]");
	cr_expect_eq(x.d.nerrors, 0, "%s", fx_diag(&x));
	/* a row in the middle of a sequence of unknown length is rejected */
	cr_expect_eq(op1(&x, OP_ROW, y, 3, 0, 0), IR_NO_VALUE);
	cr_expect(strstr(fx_diag(&x), "row: expected row 0 or -1 of f32[<=8, 24] (its length varies), saw 3"),
	          "%s", fx_diag(&x));
	/* a static matrix cannot be added to a bounded one */
	ValueId s = P(&x, "s", ir_type_mat(DT_F32, 8, 24));
	cr_expect_eq(op2(&x, OP_ADD, y, s), IR_NO_VALUE);
	cr_expect(strstr(fx_diag(&x), "add: expected second operand f32[<=8, 24], saw f32[8, 24]"), "%s",
	          fx_diag(&x));
	fx_fini(&x);
}

Test(builder, linear_message_and_location)
{
	Fx x;
	fx_init(&x, false);
	ValueId a = P(&x, "a", ir_type_vec(DT_F32, 288));
	ValueId w = P(&x, "w", ir_type_mat(DT_F32, 768, 512));
	Loc at = { .file = "m.elide", .line = 3, .col = 7 };
	ValueId v[2] = { a, w };
	cr_expect_eq(ir_b_op(&x.b, OP_LINEAR, v, 2, NULL, NULL, at), IR_NO_VALUE);
	cr_expect(strstr(fx_diag(&x), "m.elide:3:7: error: linear: expected weight with 288 columns, saw f32[768, 512]"),
	          "%s", fx_diag(&x));
	cr_expect_eq(x.d.nerrors, 1);
	cr_expect_eq(x.f->nops, 2, "a failed op must not be emitted");
	/* an operand that already failed is not reported again */
	ValueId bad[2] = { IR_NO_VALUE, w };
	cr_expect_eq(ir_b_op(&x.b, OP_LINEAR, bad, 2, NULL, NULL, at), IR_NO_VALUE);
	cr_expect_eq(x.d.nerrors, 1);
	fx_fini(&x);
}

/* Expects ir_infer_type to reject op with a message containing want. */
static void
expect_reject(Fx *x, Op op, const char *want)
{
	Type t;
	char err[256] = "";
	cr_expect_not(ir_infer_type(x->m, x->f, &op, &t, err, sizeof err), "accepted %s", ir_op_names[op.code]);
	cr_expect(strstr(err, want), "message '%s' lacks '%s'", err, want);
}

Test(builder, rejections)
{
	Fx x;
	fx_init(&x, false);
	ValueId tok = ir_b_arg(&x.b, 0, L0), pos = ir_b_arg(&x.b, 1, L0);
	ValueId v16 = P(&x, "v16", ir_type_vec(DT_F32, 16)), v8 = P(&x, "v8", ir_type_vec(DT_F32, 8));
	ValueId m = P(&x, "m", ir_type_mat(DT_F32, 4, 16));
	expect_reject(&x, (Op){ .code = OP_EMBED, .nargs = 2, .args = { v16, tok } }, "embed: expected table f32[V, D], saw f32[16]");
	expect_reject(&x, (Op){ .code = OP_EMBED, .nargs = 2, .args = { m, v8 } }, "embed: expected token ids i32 or i32[T], saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_LINEAR, .nargs = 1, .args = { v16 } }, "linear: expected 2 operands, saw 1");
	expect_reject(&x, (Op){ .code = OP_LINEAR, .nargs = 2, .args = { tok, m } }, "linear: expected input f32[.., K], saw i32");
	expect_reject(&x, (Op){ .code = OP_MUL, .nargs = 2, .args = { v16, v8 } }, "mul: expected second operand f32[16], saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_SILU, .nargs = 1, .args = { tok } }, "silu: expected an f32 operand, saw i32");
	expect_reject(&x, (Op){ .code = OP_SOFTMAX, .nargs = 1, .args = { pos } }, "softmax: expected f32[.., N], saw i32");
	expect_reject(&x, (Op){ .code = OP_RMSNORM, .nargs = 2, .args = { v16, v8 } }, "rmsnorm: expected weight f32[16], saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_LAYERNORM, .nargs = 3, .args = { v16, v16, v8 } }, "layernorm: expected bias f32[16], saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_ROPE, .nargs = 2, .args = { v16, pos }, .ia = { 3 }, .fa = { 1e4f } },
	              "rope: expected 16 features to split into 3 heads of an even size");
	expect_reject(&x, (Op){ .code = OP_ROPE, .nargs = 2, .args = { v16, v16 }, .ia = { 4 }, .fa = { 1e4f } },
	              "rope: expected position i32, saw f32[16]");
	expect_reject(&x, (Op){ .code = OP_ROPE, .nargs = 2, .args = { v16, pos }, .ia = { 4, 0, 2 }, .fa = { 1e4f } },
	              "rope: expected style 0 (half) or 1 (interleaved), saw 2");
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { v16, v8, v8, pos }, .ia = { 4, 3 } },
	              "attention: expected heads divisible by kv_heads, saw 4 heads and 3 kv heads");
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { v16, v16, v8, pos }, .ia = { 4, 2 } },
	              "attention: expected k f32[8], saw f32[16]");
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { v16, v8, v8, v8 }, .ia = { 4, 2 } },
	              "attention: expected position i32, saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_ARGMAX, .nargs = 1, .args = { pos } }, "argmax: expected f32[N] or f32[T, N], saw i32");
	expect_reject(&x, (Op){ .code = OP_ROW, .nargs = 1, .args = { m }, .ia = { 4 } }, "row: expected row in -4..3, saw 4");
	expect_reject(&x, (Op){ .code = OP_ROW, .nargs = 1, .args = { v16 } }, "row: expected matrix f32[T, D], saw f32[16]");
	expect_reject(&x, (Op){ .code = OP_SLICE, .nargs = 1, .args = { v16 }, .ia = { 10, 8 } },
	              "slice: expected start and length inside 16 columns, saw 10 and 8");
	expect_reject(&x, (Op){ .code = OP_CONCAT, .nargs = 2, .args = { m, v8 } }, "concat: expected operand 1 with the rows of f32[4, 16], saw f32[8]");
	expect_reject(&x, (Op){ .code = OP_PARAM, .ia = { 99 } }, "param: expected a param index below 3, saw 99");
	expect_reject(&x, (Op){ .code = OP_ARG, .ia = { 2 } }, "arg: expected an argument index below 2, saw 2");
	expect_reject(&x, (Op){ .code = OP_ADD, .nargs = 2, .args = { v16, 999 } }, "add: operand 1 is not a value of 'step'");
	cr_expect_eq(ir_b_arg(&x.b, 5, L0), IR_NO_VALUE);
	cr_expect_eq(ir_b_param(&x.b, 77, L0), IR_NO_VALUE);
	cr_expect_eq(x.d.nerrors, 2);
	fx_fini(&x);
}

Test(builder, attention_grouped_and_bidirectional)
{
	Fx x;
	fx_init(&x, true);
	Type q = ir_type_mat(DT_F32, 8, 24), kv = ir_type_mat(DT_F32, 8, 8);
	q.dyn0 = kv.dyn0 = true;
	ValueId pos = ir_b_arg(&x.b, 1, L0);
	ValueId vq = P(&x, "q", q), vk = P(&x, "k", kv);
	ValueId a[4] = { vq, vk, vk, pos };
	int64_t ia[IR_NIA] = { 6, 2, -1 };
	expect_type(&x, ir_b_op(&x.b, OP_ATTENTION, a, 4, ia, NULL, L0), "f32[<=8, 24]");
	ia[1] = 4;
	cr_expect_eq(ir_b_op(&x.b, OP_ATTENTION, a, 4, ia, NULL, L0), IR_NO_VALUE);
	ia[1] = 2;
	ia[2] = -2;
	cr_expect_eq(ir_b_op(&x.b, OP_ATTENTION, a, 4, ia, NULL, L0), IR_NO_VALUE);
	cr_expect(strstr(fx_diag(&x), "attention: expected state index >= -1, saw -2"), "%s", fx_diag(&x));
	fx_fini(&x);
}

/* The one-row form (row-sink): q of one row, k and v of T; the row 0 or -1 of a
 * varying T, any row of a fixed one; the full form keeps row 0. */
Test(builder, attention_one_row)
{
	Fx x;
	fx_init(&x, true);
	Type kv = ir_type_mat(DT_F32, 8, 8), ks = ir_type_mat(DT_F32, 5, 8);
	kv.dyn0 = true;
	ValueId pos = ir_b_arg(&x.b, 1, L0);
	ValueId vq = P(&x, "q", ir_type_vec(DT_F32, 24)), vk = P(&x, "k", kv), vs = P(&x, "ks", ks);
	ValueId a[4] = { vq, vk, vk, pos }, s[4] = { vq, vs, vs, pos };
	int64_t ia[IR_NIA] = { 6, 2, -1, -1 };
	expect_type(&x, ir_b_op(&x.b, OP_ATTENTION, a, 4, ia, NULL, L0), "f32[24]");
	ia[3] = 0;
	expect_type(&x, ir_b_op(&x.b, OP_ATTENTION, a, 4, ia, NULL, L0), "f32[24]");
	ia[3] = 3;
	expect_type(&x, ir_b_op(&x.b, OP_ATTENTION, s, 4, ia, NULL, L0), "f32[24]");
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { vq, vk, vk, pos }, .ia = { 6, 2, -1, 2 } },
	              "attention: expected query row 0 or -1 of f32[<=8, 8] (its length varies), saw 2");
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { vq, vs, vs, pos }, .ia = { 6, 2, -1, 5 } },
	              "attention: expected query row in -5..4, saw 5");
	ValueId vk24 = P(&x, "k24", ir_type_mat(DT_F32, 8, 24));
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { vq, vk24, vk24, pos }, .ia = { 6, 2, -1 } },
	              "attention: expected k f32[8, 8], saw f32[8, 24]");
	expect_reject(&x, (Op){ .code = OP_ATTENTION_BLOCK, .nargs = 4, .args = { vq, vk, vk, pos }, .ia = { 6, 2, 0, 4 } },
	              "attention_block: expected k f32[8], saw f32[<=8, 8]");
	Type qm = ir_type_mat(DT_F32, 8, 24);
	qm.dyn0 = true;
	ValueId vqm = P(&x, "qm", qm);
	expect_reject(&x, (Op){ .code = OP_ATTENTION, .nargs = 4, .args = { vqm, vk, vk, pos }, .ia = { 6, 2, -1, -1 } },
	              "attention: expected row 0 when q has the rows of k, saw -1");
	ValueId ps = P(&x, "ps", (Type){ .dtype = DT_I32, .rank = 1, .dyn0 = true, .dims = { 8 } });
	expect_type(&x, op1(&x, OP_ROW, ps, -1, 0, 0), "i32");
	expect_reject(&x, (Op){ .code = OP_ROW, .nargs = 1, .args = { pos } }, "row: expected positions i32[T], saw i32");
	fx_fini(&x);
}

Test(builder, constants_keep_their_type)
{
	Fx x;
	fx_init(&x, false);
	ValueId c = ir_b_const_f32(&x.b, 2.5f, L0);
	ValueId i = ir_b_const_i32(&x.b, -3, L0);
	expect_type(&x, c, "f32");
	expect_type(&x, i, "i32");
	cr_expect_float_eq(ir_def(x.f, c)->fa[0], 2.5f, 0);
	cr_expect_eq(ir_def(x.f, i)->ia[0], -3);
	Type t;
	char err[128];
	x.f->vals[c].type = ir_type_vec(DT_F32, 4); /* a splat */
	cr_expect(ir_infer_type(x.m, x.f, ir_def(x.f, c), &t, err, sizeof err));
	cr_expect(ir_type_eq(t, ir_type_vec(DT_F32, 4)));
	x.f->vals[c].type = ir_type_vec(DT_BF16, 4);
	cr_expect_not(ir_infer_type(x.m, x.f, ir_def(x.f, c), &t, err, sizeof err));
	ValueId s = op1(&x, OP_SCALE, c, 0, 0, 0.5f);
	cr_expect_eq(s, IR_NO_VALUE);
	fx_fini(&x);
}
