/* ops.c - lowering of every op other than linear, as loops in the entry function.
 * The loops are plain scalar IR over static extents with fast-math flags on the
 * reductions; LLVM's loop vectoriser turns them into vector code for the target
 * (exp, erf and tanh are polynomial IR, so they vectorise too).  Attention is a
 * task over (row, head) pairs and runs through the parallel-for hook: it first
 * writes the new keys and values into the cache at pos.., then for each query row
 * attends causally over cache[0 .. pos+t] (or over all rows without a cache).
 * kv_write shares that cache write.  Control flow, select and stat are in control.c,
 * predicates and measures in predicates.c. */
#include "codegen/codegen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static LLVMValueRef
xfadd(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return cg_fast(LLVMBuildFAdd(g->b, a, b, ""));
}

static LLVMValueRef
xfmul(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return cg_fast(LLVMBuildFMul(g->b, a, b, ""));
}

static LLVMValueRef
ldf(Cg *g, LLVMValueRef base, LLVMValueRef idx)
{
	return cg_load(g, g->f32, cg_gep(g, g->f32, base, idx), 4);
}

static void
stf(Cg *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
	cg_store(g, v, cg_gep(g, g->f32, base, idx), 4);
}

static void
copy_bytes(Cg *g, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n)
{
	LLVMBuildMemCpy(g->b, dst, 4, src, 4, n);
}

/* Elementwise ops, with row broadcasting of an operand that has one row or is scalar. */
static void
lower_elemwise(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type t = f->vals[op->dst].type;
	int64_t cols = cg_cols(t);
	LLVMValueRef rows = cg_rows(g, t);
	LLVMValueRef y = cg_val_ptr(g, op->dst);
	LLVMValueRef in[2] = { NULL, NULL }, sc[2] = { NULL, NULL };
	int64_t stride[2] = { 0, 0 };
	for (uint32_t a = 0; a < op->nargs && a < 2; a++) {
		Type at = f->vals[op->args[a]].type;
		if (at.rank == 0) {
			sc[a] = cg_val_scalar(g, op->args[a]);
			continue;
		}
		in[a] = cg_val_ptr(g, op->args[a]);
		stride[a] = (ir_type_numel(at) == cols && !at.dyn0) ? 0 : cols;
	}
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "row");
	CgLoop lc = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, cols), NULL, "col");
	LLVMValueRef v[2];
	for (uint32_t a = 0; a < op->nargs && a < 2; a++)
		v[a] = sc[a] ? sc[a] : ldf(g, in[a], cg_iadd(g, cg_imulc(g, lr.iv, stride[a]), lc.iv));
	LLVMValueRef r = op->nargs == 2 ? cg_binary(g, op->code, v[0], v[1]) : cg_unary(g, op, v[0]);
	stf(g, r, y, cg_iadd(g, cg_imulc(g, lr.iv, cols), lc.iv));
	cg_loop_end(g, &lc);
	cg_loop_end(g, &lr);
}

/* Sum over a row of f(x[i]) with a reassociating reduction. */
static LLVMValueRef
row_sum(Cg *g, LLVMValueRef row, int64_t n, LLVMValueRef sub, bool square, LLVMValueRef acc)
{
	cg_store(g, cg_f32c(g, 0.0), acc, 4);
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, n), NULL, "sum");
	LLVMValueRef x = ldf(g, row, l.iv);
	if (sub)
		x = cg_fast(LLVMBuildFSub(g->b, x, sub, ""));
	if (square)
		x = xfmul(g, x, x);
	cg_store(g, xfadd(g, cg_load(g, g->f32, acc, 4), x), acc, 4);
	cg_loop_end(g, &l);
	return cg_load(g, g->f32, acc, 4);
}

static LLVMValueRef
rsqrt(Cg *g, LLVMValueRef x)
{
	LLVMValueRef s = cg_call_intr(g, "llvm.sqrt", g->f32, &x, 1);
	return LLVMBuildFDiv(g->b, cg_f32c(g, 1.0), s, "");
}

static void
lower_norm(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type t = f->vals[op->dst].type;
	int64_t d = cg_cols(t);
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), w = cg_val_ptr(g, op->args[1]);
	LLVMValueRef bias = op->code == OP_LAYERNORM ? cg_val_ptr(g, op->args[2]) : NULL;
	LLVMValueRef y = cg_val_ptr(g, op->dst);
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc");
	LLVMValueRef eps = cg_f32c(g, op->fa[0]);
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, t), NULL, "row");
	LLVMValueRef xr = cg_gep(g, g->f32, x, cg_imulc(g, lr.iv, d));
	LLVMValueRef yr = cg_gep(g, g->f32, y, cg_imulc(g, lr.iv, d));
	LLVMValueRef mean = NULL, scale;
	if (op->code == OP_RMSNORM) {
		LLVMValueRef ss = row_sum(g, xr, d, NULL, true, acc);
		scale = rsqrt(g, LLVMBuildFAdd(g->b, LLVMBuildFDiv(g->b, ss, cg_f32c(g, (double)d), ""), eps, ""));
	} else {
		mean = LLVMBuildFDiv(g->b, row_sum(g, xr, d, NULL, false, acc), cg_f32c(g, (double)d), "");
		LLVMValueRef var = LLVMBuildFDiv(g->b, row_sum(g, xr, d, mean, true, acc), cg_f32c(g, (double)d), "");
		scale = rsqrt(g, LLVMBuildFAdd(g->b, var, eps, ""));
	}
	CgLoop lc = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, d), NULL, "col");
	LLVMValueRef v = ldf(g, xr, lc.iv);
	if (mean)
		v = LLVMBuildFSub(g->b, v, mean, "");
	v = LLVMBuildFMul(g->b, LLVMBuildFMul(g->b, v, scale, ""), ldf(g, w, lc.iv), "");
	if (bias)
		v = LLVMBuildFAdd(g->b, v, ldf(g, bias, lc.iv), "");
	stf(g, v, yr, lc.iv);
	cg_loop_end(g, &lc);
	cg_loop_end(g, &lr);
}

/* In-place softmax of n floats at row (n may be dynamic). */
void
cg_softmax_row(Cg *g, LLVMValueRef row, LLVMValueRef n, LLVMValueRef acc)
{
	cg_store(g, cg_f32c(g, -INFINITY), acc, 4);
	CgLoop l1 = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "max");
	LLVMValueRef a[2] = { cg_load(g, g->f32, acc, 4), ldf(g, row, l1.iv) };
	cg_store(g, cg_call_intr(g, "llvm.maxnum", g->f32, a, 2), acc, 4);
	cg_loop_end(g, &l1);
	LLVMValueRef mx = cg_load(g, g->f32, acc, 4);
	cg_store(g, cg_f32c(g, 0.0), acc, 4);
	CgLoop l2 = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "exp");
	LLVMValueRef e = cg_exp(g, LLVMBuildFSub(g->b, ldf(g, row, l2.iv), mx, ""));
	stf(g, e, row, l2.iv);
	cg_store(g, xfadd(g, cg_load(g, g->f32, acc, 4), e), acc, 4);
	cg_loop_end(g, &l2);
	LLVMValueRef inv = LLVMBuildFDiv(g->b, cg_f32c(g, 1.0), cg_load(g, g->f32, acc, 4), "");
	CgLoop l3 = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "norm");
	stf(g, LLVMBuildFMul(g->b, ldf(g, row, l3.iv), inv, ""), row, l3.iv);
	cg_loop_end(g, &l3);
}

/* The dot product of a query head held in nv vectors of vw floats (qv) with the hd =
 * nv * vw floats at row: multiply-adds per vector, then one reduction; the dense and
 * the sparse attention's scores both use it, so their scores agree bit for bit. */
LLVMValueRef
cg_dot_row(Cg *g, LLVMValueRef *qv, int nv, int vw, LLVMValueRef row)
{
	LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw);
	LLVMValueRef dv = NULL;
	for (int c = 0; c < nv; c++) {
		LLVMValueRef kv = cg_load(g, vt, cg_gep(g, g->f32, row, cg_i64(g, c * vw)), 4);
		if (!dv) {
			dv = cg_fast(LLVMBuildFMul(g->b, qv[c], kv, ""));
		} else {
			LLVMValueRef a[3] = { qv[c], kv, dv };
			dv = cg_call_intr(g, "llvm.fma", vt, a, 3);
		}
	}
	if (vw == 1)
		return LLVMBuildExtractElement(g->b, dv, cg_i32c(g, 0), "");
	LLVMValueRef a[2] = { cg_f32c(g, -0.0), dv };
	return cg_fast(cg_call_intr(g, "llvm.vector.reduce.fadd", vt, a, 2));
}

static void
lower_softmax(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->dst].type;
	int64_t d = cg_cols(t);
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), y = cg_val_ptr(g, op->dst);
	LLVMValueRef rows = cg_rows(g, t);
	copy_bytes(g, y, x, cg_imulc(g, rows, d * 4));
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc");
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "row");
	cg_softmax_row(g, cg_gep(g, g->f32, y, cg_imulc(g, lr.iv, d)), cg_i64(g, d), acc);
	cg_loop_end(g, &lr);
}

static void
lower_rope(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->dst].type;
	int64_t d = cg_cols(t), heads = op->ia[0], hd = op->ia[1] ? op->ia[1] : d / heads;
	int64_t half = hd / 2;
	bool inter = op->ia[2] == 1;
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), y = cg_val_ptr(g, op->dst);
	LLVMValueRef tab = cg_rope_ptr(g, hd, op);
	if (!cg_known_early(g->f, op->args[1])) /* a computed position (row-sink's): checked here */
		cg_fail_outside(g, cg_val_scalar(g, op->args[1]), cg_rows(g, t), g->rope_len, ELIDE_ERR_POS);
	LLVMValueRef pos = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[1]), g->i64, "");
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, t), NULL, "row");
	LLVMValueRef xr = cg_gep(g, g->f32, x, cg_imulc(g, lr.iv, d));
	LLVMValueRef yr = cg_gep(g, g->f32, y, cg_imulc(g, lr.iv, d));
	LLVMValueRef tr = cg_gep(g, g->f32, tab, cg_imulc(g, cg_iadd(g, pos, lr.iv), half * 2));
	CgLoop lh = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, heads), NULL, "head");
	LLVMValueRef hx = cg_gep(g, g->f32, xr, cg_imulc(g, lh.iv, hd));
	LLVMValueRef hy = cg_gep(g, g->f32, yr, cg_imulc(g, lh.iv, hd));
	CgLoop li = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, half), NULL, "pair");
	LLVMValueRef c = ldf(g, tr, cg_imulc(g, li.iv, 2));
	LLVMValueRef s = ldf(g, tr, cg_iadd(g, cg_imulc(g, li.iv, 2), cg_i64(g, 1)));
	LLVMValueRef i0 = inter ? cg_imulc(g, li.iv, 2) : li.iv;
	LLVMValueRef i1 = inter ? cg_iadd(g, i0, cg_i64(g, 1)) : cg_iadd(g, li.iv, cg_i64(g, half));
	LLVMValueRef x0 = ldf(g, hx, i0), x1 = ldf(g, hx, i1);
	stf(g, LLVMBuildFSub(g->b, LLVMBuildFMul(g->b, x0, c, ""), LLVMBuildFMul(g->b, x1, s, ""), ""), hy, i0);
	stf(g, LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, x0, s, ""), LLVMBuildFMul(g->b, x1, c, ""), ""), hy, i1);
	cg_loop_end(g, &li);
	cg_loop_end(g, &lh);
	cg_loop_end(g, &lr);
}

void
cg_cache_write(Cg *g, int64_t state, LLVMValueRef k, LLVMValueRef v, LLVMValueRef rows, LLVMValueRef pos,
               LLVMValueRef *K, LLVMValueRef *V)
{
	const State *s = &g->m->states[state];
	elide_kv_layout kl = elide_kv_layout_of(s->ctx, s->kv_heads, s->head_dim, s->page);
	LLVMValueRef kc = cg_gepb(g, g->state, (int64_t)g->r->state_off[state]);
	LLVMValueRef vc = cg_gepb(g, g->state, (int64_t)(g->r->state_off[state] + kl.v_offset));
	/* row t's head h (hd floats) to position pos + t of head h's contiguous keys */
	int64_t hd = s->head_dim, kvh = s->kv_heads;
	CgLoop lt = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "kvw.row");
	LLVMValueRef p = cg_iadd(g, pos, lt.iv);
	CgLoop lh = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, kvh), NULL, "kvw.head");
	LLVMValueRef src = cg_iadd(g, cg_imulc(g, lt.iv, kvh * hd), cg_imulc(g, lh.iv, hd));
	LLVMValueRef dst = cg_iadd(g, cg_imulc(g, lh.iv, s->ctx * hd), cg_imulc(g, p, hd));
	copy_bytes(g, cg_gep(g, g->f32, kc, dst), cg_gep(g, g->f32, k, src), cg_i64(g, hd * 4));
	copy_bytes(g, cg_gep(g, g->f32, vc, dst), cg_gep(g, g->f32, v, src), cg_i64(g, hd * 4));
	cg_loop_end(g, &lh);
	cg_loop_end(g, &lt);
	if (s->page > 0)
		cg_bounds_update(g, state, pos, rows, k);
	if (K)
		*K = kc;
	if (V)
		*V = vc;
}

/* kv_write: k and v rows into the cache at pos.. (no attention).  A position the
 * entry's up-front checks could not see (one computed by the graph) is checked here. */
static void
lower_kv_write(Cg *g, const Op *op)
{
	const Func *f = g->f;
	LLVMValueRef rows = cg_rows(g, f->vals[op->args[0]].type);
	if (!cg_known_early(f, op->args[2]))
		cg_fail_outside(g, cg_val_scalar(g, op->args[2]), rows, g->m->states[op->ia[2]].ctx, ELIDE_ERR_POS);
	LLVMValueRef pos = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[2]), g->i64, "");
	cg_cache_write(g, op->ia[2], cg_val_ptr(g, op->args[0]), cg_val_ptr(g, op->args[1]), rows, pos, NULL, NULL);
}

/* Attention task over (row, head): slots 0 q, 1 K, 2 V, 3 out, 4 T, 5 pos (-1: no
 * cache, attend all T rows); the one-row variant (attention's one-row form) runs
 * over heads only, for row slot 6 of the T, with q and out one row.  K and V are a cache's, head-major ([kv_heads][cache_ctx]
 * [hd]: a head's keys one contiguous stream), when cache_ctx > 0; else the rows of k
 * and v ([T][kv_heads][hd]).  Explicit vectors of vw lanes (the widest of the
 * target's width, 8, 4, 2, 1 that divides head_dim): the query row stays in
 * registers; a score is one FMA chain over the key row and one horizontal sum; the
 * output row accumulates p_j * V[j] in registers and is stored once. */
static LLVMValueRef
attention_task(Cg *g, int64_t heads, int64_t kvh, int64_t hd, int64_t maxkeys, int64_t cache_ctx, bool one_row)
{
	char key[160];
	snprintf(key, sizeof key, "attention.%lld.%lld.%lld.%lld.%lld%s", (long long)heads, (long long)kvh,
	         (long long)hd, (long long)maxkeys, (long long)cache_ctx, one_row ? ".row" : "");
	LLVMValueRef fn;
	CgSave save;
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	int vw = cg_head_vec(g, hd);
	int nv = (int)(hd / vw);
	LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw);
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef q = cg_slot_ptr(g, blk, 0), K = cg_slot_ptr(g, blk, 1), V = cg_slot_ptr(g, blk, 2);
	LLVMValueRef out = cg_slot_ptr(g, blk, 3), T = cg_slot_i64(g, blk, 4), pos = cg_slot_i64(g, blk, 5);
	LLVMValueRef scores = cg_alloca(g, LLVMArrayType(g->f32, (unsigned)maxkeys), "scores");
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc");
	LLVMValueRef *ov = xmalloc((size_t)nv * sizeof *ov);
	for (int c = 0; c < nv; c++)
		ov[c] = cg_alloca(g, vt, "o");
	/* key j of kv head kh at K + j kd + kh hstride */
	int64_t qd = heads * hd, kd = cache_ctx > 0 ? hd : kvh * hd, group = heads / kvh;
	int64_t hstride = cache_ctx > 0 ? cache_ctx * hd : hd;
	double scale = 1.0 / sqrt((double)hd);
	CgLoop l = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "rowhead");
	LLVMValueRef tq = LLVMBuildSDiv(g->b, l.iv, cg_i64(g, heads), ""); /* the row of q and out */
	LLVMValueRef t = one_row ? cg_iadd(g, tq, cg_slot_i64(g, blk, 6)) : tq;
	LLVMValueRef h = LLVMBuildSRem(g->b, l.iv, cg_i64(g, heads), "");
	LLVMValueRef kh = LLVMBuildSDiv(g->b, h, cg_i64(g, group), "");
	LLVMValueRef cached = LLVMBuildICmp(g->b, LLVMIntSGE, pos, cg_i64(g, 0), "");
	LLVMValueRef n = LLVMBuildSelect(g->b, cached, cg_iadd(g, cg_iadd(g, pos, t), cg_i64(g, 1)), T, "n");
	LLVMValueRef qr = cg_gep(g, g->f32, q, cg_iadd(g, cg_imulc(g, tq, qd), cg_imulc(g, h, hd)));
	LLVMValueRef orow = cg_gep(g, g->f32, out, cg_iadd(g, cg_imulc(g, tq, qd), cg_imulc(g, h, hd)));
	LLVMValueRef koff = cg_imulc(g, kh, hstride);
	LLVMValueRef *qv = xmalloc((size_t)nv * sizeof *qv);
	for (int c = 0; c < nv; c++)
		qv[c] = cg_load(g, vt, cg_gep(g, g->f32, qr, cg_i64(g, c * vw)), 4);
	/* scores */
	CgLoop lj = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "key");
	LLVMValueRef kr = cg_gep(g, g->f32, K, cg_iadd(g, cg_imulc(g, lj.iv, kd), koff));
	LLVMValueRef dot = cg_dot_row(g, qv, nv, vw, kr);
	stf(g, LLVMBuildFMul(g->b, dot, cg_f32c(g, scale), ""), scores, lj.iv);
	cg_loop_end(g, &lj);
	cg_softmax_row(g, scores, n, acc);
	/* weighted sum of values, in registers */
	for (int c = 0; c < nv; c++)
		cg_store(g, LLVMConstNull(vt), ov[c], 64);
	CgLoop lv = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "val");
	LLVMValueRef p = cg_splat(g, ldf(g, scores, lv.iv), vw);
	if (vw == 1)
		p = LLVMBuildInsertElement(g->b, LLVMGetPoison(vt), ldf(g, scores, lv.iv), cg_i32c(g, 0), "");
	LLVMValueRef vr = cg_gep(g, g->f32, V, cg_iadd(g, cg_imulc(g, lv.iv, kd), koff));
	for (int c = 0; c < nv; c++) {
		LLVMValueRef a[3] = { p, cg_load(g, vt, cg_gep(g, g->f32, vr, cg_i64(g, c * vw)), 4),
			              cg_load(g, vt, ov[c], 64) };
		cg_store(g, cg_call_intr(g, "llvm.fma", vt, a, 3), ov[c], 64);
	}
	cg_loop_end(g, &lv);
	for (int c = 0; c < nv; c++)
		cg_store(g, cg_load(g, vt, ov[c], 64), cg_gep(g, g->f32, orow, cg_i64(g, c * vw)), 4);
	cg_loop_end(g, &l);
	cg_task_end(g, &save);
	free(ov);
	free(qv);
	return fn;
}

LLVMValueRef
cg_attention_task(Cg *g, int64_t heads, int64_t kvh, int64_t hd, int64_t maxkeys, int64_t cache_ctx)
{
	return attention_task(g, heads, kvh, hd, maxkeys, cache_ctx, false);
}

/* The dense attention task over (row, head) indices in a balanced order, for the
 * pool's contiguous chunks: with a cache the rows are causal, row t attending pos + t
 * + 1 keys, so the chunks of a plain row order hold very different work (two threads
 * on a 128-token prefill: a quarter and three quarters of it).  Index j of the rows
 * is row j / 2 when j is even and T - 1 - j / 2 when odd (rows from both ends, a
 * bijection of [0, T)), and each (row, head) runs through the dense task: the same
 * results, bit for bit, in any chunking. */
static LLVMValueRef
attention_balanced_task(Cg *g, LLVMValueRef dense, int64_t heads)
{
	char key[160];
	snprintf(key, sizeof key, "attention.balanced.%s.%lld", LLVMGetValueName(dense), (long long)heads);
	LLVMValueRef fn;
	CgSave save;
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	LLVMValueRef blk = LLVMGetParam(fn, 0), T = cg_slot_i64(g, blk, 4);
	CgLoop l = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "rowhead");
	LLVMValueRef j = LLVMBuildSDiv(g->b, l.iv, cg_i64(g, heads), "");
	LLVMValueRef h = LLVMBuildSRem(g->b, l.iv, cg_i64(g, heads), "");
	LLVMValueRef half = LLVMBuildAShr(g->b, j, cg_i64(g, 1), "");
	LLVMValueRef odd = LLVMBuildTrunc(g->b, LLVMBuildAnd(g->b, j, cg_i64(g, 1), ""), g->i1, "");
	LLVMValueRef t = LLVMBuildSelect(g->b, odd, LLVMBuildSub(g->b, LLVMBuildSub(g->b, T, cg_i64(g, 1), ""), half, ""),
	                                 half, "row");
	LLVMValueRef i = cg_iadd(g, cg_imulc(g, t, heads), h);
	LLVMValueRef a[3] = { blk, i, cg_iadd(g, i, cg_i64(g, 1)) };
	LLVMBuildCall2(g->b, g->task_ty, dense, a, 3, "");
	cg_loop_end(g, &l);
	cg_task_end(g, &save);
	return fn;
}

static void
lower_attention(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type qt = f->vals[op->args[0]].type, kt = f->vals[op->args[1]].type;
	int64_t heads = op->ia[0], kvh = op->ia[1] ? op->ia[1] : heads;
	int64_t hd = cg_cols(qt) / heads;
	bool one_row = qt.rank == 1 && kt.rank == 2;
	LLVMValueRef rows = cg_rows(g, kt);
	LLVMValueRef K, V, pos;
	int64_t maxkeys, cache_ctx = 0;
	if (op->ia[2] >= 0) {
		pos = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[3]), g->i64, "");
		cg_cache_write(g, op->ia[2], cg_val_ptr(g, op->args[1]), cg_val_ptr(g, op->args[2]), rows, pos, &K, &V);
		maxkeys = cache_ctx = g->m->states[op->ia[2]].ctx;
	} else {
		K = cg_val_ptr(g, op->args[1]);
		V = cg_val_ptr(g, op->args[2]);
		pos = cg_i64(g, -1);
		maxkeys = kt.rank >= 2 ? kt.dims[0] : 1;
	}
	LLVMValueRef task = attention_task(g, heads, kvh, hd, maxkeys, cache_ctx, one_row);
	if (op->ia[2] >= 0 && !one_row)
		task = attention_balanced_task(g, task, heads);
	cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
	cg_slot_set(g, 1, K);
	cg_slot_set(g, 2, V);
	cg_slot_set(g, 3, cg_val_ptr(g, op->dst));
	cg_slot_set(g, 4, rows);
	cg_slot_set(g, 5, pos);
	if (one_row) { /* the row was checked up front (lower.c); heads run in parallel */
		cg_slot_set(g, 6, op->ia[3] < 0 ? cg_iadd(g, rows, cg_i64(g, op->ia[3])) : cg_i64(g, op->ia[3]));
		cg_pfor(g, task, cg_i64(g, heads));
		return;
	}
	cg_pfor(g, task, cg_imulc(g, rows, heads));
}

static void
lower_argmax(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->args[0]].type;
	int64_t n = cg_cols(t);
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), y = cg_val_ptr(g, op->dst);
	LLVMValueRef best = cg_alloca(g, g->f32, "best"), bi = cg_alloca(g, g->i64, "bi");
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, t), NULL, "row");
	LLVMValueRef xr = cg_gep(g, g->f32, x, cg_imulc(g, lr.iv, n));
	cg_store(g, ldf(g, xr, cg_i64(g, 0)), best, 4);
	cg_store(g, cg_i64(g, 0), bi, 8);
	CgLoop lc = cg_loop_begin(g, cg_i64(g, 1), cg_i64(g, n), NULL, "col");
	LLVMValueRef v = ldf(g, xr, lc.iv);
	LLVMValueRef gt = LLVMBuildFCmp(g->b, LLVMRealOGT, v, cg_load(g, g->f32, best, 4), "");
	cg_store(g, LLVMBuildSelect(g->b, gt, v, cg_load(g, g->f32, best, 4), ""), best, 4);
	cg_store(g, LLVMBuildSelect(g->b, gt, lc.iv, cg_load(g, g->i64, bi, 8), ""), bi, 8);
	cg_loop_end(g, &lc);
	cg_store(g, LLVMBuildTrunc(g->b, cg_load(g, g->i64, bi, 8), g->i32, ""),
	         cg_gep(g, g->i32, y, lr.iv), 4);
	cg_loop_end(g, &lr);
}

/* Row `row` of a quantised table (CG_QROWS, CG_BROWS) dequantised into y: q8/q4
 * d * (c - z) with d the row's f16 scale of the element's group, as ir/quant.c. */
static void
embed_row_q(Cg *g, const Param *p, LLVMValueRef tab, LLVMValueRef row, LLVMValueRef y)
{
	int64_t k = cg_cols(p->type);
	LLVMTypeRef i16 = LLVMInt16TypeInContext(g->c);
	if (p->format == QF_BF16) {
		LLVMValueRef src = cg_gep(g, i16, tab, cg_imulc(g, row, k));
		CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k), NULL, "col");
		LLVMValueRef h = LLVMBuildZExt(g->b, cg_load(g, i16, cg_gep(g, i16, src, l.iv), 2), g->i32, "");
		stf(g, LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, h, cg_i32c(g, 16), ""), g->f32, ""), y, l.iv);
		cg_loop_end(g, &l);
		return;
	}
	int64_t ng = ir_quant_groups(k, p->group);
	bool q4 = p->format == QF_Q4;
	LLVMValueRef base = cg_gep(g, g->i8, tab, cg_imulc(g, row, cg_qrows_row_bytes(p->format, p->group, k)));
	LLVMValueRef codes = cg_gep(g, g->i8, base, cg_i64(g, 2 * ng));
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k), NULL, "col");
	LLVMValueRef gi = LLVMBuildUDiv(g->b, l.iv, cg_i64(g, p->group), "");
	LLVMValueRef h = LLVMBuildZExt(g->b, cg_load(g, i16, cg_gep(g, i16, base, gi), 2), g->i32, "");
	LLVMValueRef mag = LLVMBuildShl(g->b, LLVMBuildAnd(g->b, h, cg_i32c(g, 0x7fff), ""), cg_i32c(g, 13), "");
	LLVMValueRef df = LLVMBuildFMul(g->b, LLVMBuildBitCast(g->b, mag, g->f32, ""), cg_f32c(g, 0x1p112), "");
	LLVMValueRef sign = LLVMBuildShl(g->b, LLVMBuildAnd(g->b, h, cg_i32c(g, 0x8000), ""), cg_i32c(g, 16), "");
	df = LLVMBuildBitCast(g->b, LLVMBuildOr(g->b, LLVMBuildBitCast(g->b, df, g->i32, ""), sign, ""), g->f32, "");
	LLVMValueRef c;
	if (q4) {
		LLVMValueRef byte = cg_load(g, g->i8, cg_gep(g, g->i8, codes, LLVMBuildLShr(g->b, l.iv, cg_i64(g, 1), "")), 1);
		LLVMValueRef sh = LLVMBuildTrunc(g->b, LLVMBuildShl(g->b, LLVMBuildAnd(g->b, l.iv, cg_i64(g, 1), ""),
		                                                      cg_i64(g, 2), ""), g->i8, "");
		c = LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, byte, sh, ""), LLVMConstInt(g->i8, 15, 0), "");
	} else {
		c = cg_load(g, g->i8, cg_gep(g, g->i8, codes, l.iv), 1);
	}
	LLVMValueRef q = LLVMBuildSub(g->b, LLVMBuildZExt(g->b, c, g->i32, ""), cg_i32c(g, ir_qformat_zero(p->format)), "");
	stf(g, LLVMBuildFMul(g->b, df, LLVMBuildSIToFP(g->b, q, g->f32, ""), ""), y, l.iv);
	cg_loop_end(g, &l);
}

/* Rows of the table for each index; an index the entry's up-front checks did not
 * cover (one computed by the graph) is checked here, before the table is read. */
static void
lower_embed(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type tab_t = f->vals[op->args[0]].type, tt = f->vals[op->args[1]].type;
	int64_t d = cg_cols(tab_t), nrow = cg_static_rows(tab_t);
	bool checked = cg_embed_checked_early(f, op);
	const Op *td = ir_def((Func *)f, op->args[0]);
	const Param *qp = td->code == OP_PARAM ? &g->m->params[td->ia[0]] : NULL;
	LLVMValueRef tab;
	if (qp && qp->format == QF_BF16)
		tab = cg_param_ptr(g, (uint32_t)td->ia[0], CG_BROWS);
	else if (qp && qp->format != QF_F32)
		tab = cg_param_ptr(g, (uint32_t)td->ia[0], CG_QROWS);
	else
		tab = cg_val_ptr(g, op->args[0]);
	LLVMValueRef y = cg_val_ptr(g, op->dst);
	LLVMValueRef toks = tt.rank ? cg_val_ptr(g, op->args[1]) : NULL;
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_len(g, tt), NULL, "tok");
	LLVMValueRef tok = toks ? cg_load(g, g->i32, cg_gep(g, g->i32, toks, l.iv), 4) : cg_val_scalar(g, op->args[1]);
	if (!checked)
		cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, tok, cg_i32c(g, (int32_t)nrow), ""), ELIDE_ERR_TOKEN);
	LLVMValueRef t64 = LLVMBuildZExt(g->b, tok, g->i64, "");
	if (qp && qp->format != QF_F32)
		embed_row_q(g, qp, tab, t64, cg_gep(g, g->f32, y, cg_imulc(g, l.iv, d)));
	else
		copy_bytes(g, cg_gep(g, g->f32, y, cg_imulc(g, l.iv, d)), cg_gep(g, g->f32, tab, cg_imulc(g, t64, d)),
		           cg_i64(g, d * 4));
	cg_loop_end(g, &l);
}

/* positions: start + t for token t, over the tokens' length at run time.  A start
 * the up-front checks could not see is checked here (negative, or past i32). */
static void
lower_positions(Cg *g, const Op *op)
{
	const Func *f = g->f;
	LLVMValueRef start = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[1]), g->i64, "");
	LLVMValueRef n = cg_len(g, f->vals[op->args[0]].type);
	if (!cg_known_early(f, op->args[1]))
		cg_fail_outside(g, cg_val_scalar(g, op->args[1]), n, (int64_t)INT32_MAX + 1, ELIDE_ERR_POS);
	LLVMValueRef y = cg_val_ptr(g, op->dst);
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "pos");
	cg_store(g, LLVMBuildTrunc(g->b, cg_iadd(g, start, l.iv), g->i32, ""), cg_gep(g, g->i32, y, l.iv), 4);
	cg_loop_end(g, &l);
}

/* Copies `len` columns from column `start` of every row of src into dst at column
 * `at` (dst rows have `dcols` columns). */
static void
copy_cols(Cg *g, LLVMValueRef dst, int64_t dcols, int64_t at, LLVMValueRef src, int64_t scols,
          int64_t start, int64_t len, LLVMValueRef rows)
{
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "row");
	copy_bytes(g, cg_gep(g, g->f32, dst, cg_iadd(g, cg_imulc(g, lr.iv, dcols), cg_i64(g, at))),
	           cg_gep(g, g->f32, src, cg_iadd(g, cg_imulc(g, lr.iv, scols), cg_i64(g, start))), cg_i64(g, len * 4));
	cg_loop_end(g, &lr);
}

/* One op.  The switch names every opcode and has no default: a new op of ops.def
 * does not build until it is lowered here (-Wswitch-enum is an error). */
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wswitch"
#pragma GCC diagnostic error "-Wswitch-enum"
void
cg_lower_op(Cg *g, uint32_t opi)
{
	const Func *f = g->f;
	const Op *op = &f->ops[opi];
	Type t = f->vals[op->dst].type;
	switch (op->code) {
	case OP_ADD:
	case OP_SUB:
	case OP_MUL:
	case OP_SCALE:
	case OP_SILU:
	case OP_GELU:
	case OP_TANH:
		lower_elemwise(g, op);
		return;
	case OP_RMSNORM:
	case OP_LAYERNORM:
		lower_norm(g, op);
		return;
	case OP_SOFTMAX:
		lower_softmax(g, op);
		return;
	case OP_ROPE:
		lower_rope(g, op);
		return;
	case OP_ATTENTION:
		lower_attention(g, op);
		return;
	case OP_ATTENTION_QUEST:
		cg_lower_attention_quest(g, op);
		return;
	case OP_ATTENTION_BLOCK:
		cg_lower_attention_block(g, op);
		return;
	case OP_ARGMAX:
		lower_argmax(g, op);
		return;
	case OP_EMBED:
		lower_embed(g, op);
		return;
	case OP_POSITIONS:
		lower_positions(g, op);
		return;
	case OP_ROW: {
		Type xt = f->vals[op->args[0]].type;
		int64_t d = xt.rank == 1 ? 1 : cg_cols(xt); /* i32[T] -> i32: one element per row */
		LLVMValueRef rows = xt.rank == 1 && !xt.dyn0 ? cg_i64(g, xt.dims[0]) : cg_rows(g, xt);
		LLVMValueRef idx = cg_i64(g, op->ia[0]);
		if (op->ia[0] < 0)
			idx = LLVMBuildAdd(g->b, rows, idx, "");
		copy_bytes(g, cg_val_ptr(g, op->dst), cg_gep(g, g->f32, cg_val_ptr(g, op->args[0]), cg_imulc(g, idx, d)),
		           cg_i64(g, d * 4));
		return;
	}
	case OP_SLICE: {
		Type xt = f->vals[op->args[0]].type;
		copy_cols(g, cg_val_ptr(g, op->dst), cg_cols(t), 0, cg_val_ptr(g, op->args[0]), cg_cols(xt), op->ia[0],
		          op->ia[1], cg_rows(g, t));
		return;
	}
	case OP_CONCAT: {
		int64_t at = 0;
		for (uint32_t a = 0; a < op->nargs; a++) {
			Type xt = f->vals[op->args[a]].type;
			copy_cols(g, cg_val_ptr(g, op->dst), cg_cols(t), at, cg_val_ptr(g, op->args[a]), cg_cols(xt), 0,
			          cg_cols(xt), cg_rows(g, t));
			at += cg_cols(xt);
		}
		return;
	}
	case OP_KV_WRITE:
		lower_kv_write(g, op);
		return;
	case OP_IF:
	case OP_ELSE:
	case OP_END:
	case OP_PHI:
	case OP_RET:
	case OP_SELECT:
	case OP_STAT:
	case OP_KNOB_SET:
		cg_lower_control(g, opi);
		return;
	case OP_CMP:
	case OP_AND:
	case OP_OR:
	case OP_NOT:
	case OP_MARGIN:
	case OP_MAXPROB:
	case OP_ENTROPY:
	case OP_COSINE:
	case OP_DECAY:
		cg_lower_predicate(g, opi);
		return;
	case OP_KNOB:
		return; /* a leaf: read where it is used (cg_val_scalar) */
	case OP_LINEAR:
		cg_lower_linear(g, opi);
		return;
	case OP_ARG:
	case OP_PARAM:
	case OP_CONST: /* values the entry's setup binds (arguments, weights, splats): no code */
		return;
	case OP_COUNT:
		break;
	}
	diag_error(g->d, op->loc, "op '%s' in '%s' has no code generator", (unsigned)op->code < OP_COUNT ? ir_op_names[op->code] : "?", f->name);
}
#pragma GCC diagnostic pop
