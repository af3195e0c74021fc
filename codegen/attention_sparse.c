/* attention_sparse.c - the page-bounds update on every cache write (the bounds lie
 * where elide_kv_layout_of puts them) and attention_quest (docs/sparse.md).
 * attention_quest is a task over (row, kv head) pairs:
 *   1. n = pos + t + 1 keys are visible, in np pages of P; pages [0, sp) hold the
 *      sinks, [wp, np) the window and the current page; K pages are chosen among
 *      the nmid = wp - sp between them (K from the run-time budget, computed once
 *      by the entry);
 *   2. nmid <= K: every page is chosen, and the task calls the dense attention task
 *      for the group's heads (so the result is the dense one, bit for bit);
 *   3. else the page scores u = sum over the group's heads and channels of
 *      max(q min, q max) (the bf16 bounds widened to f32; a KV head's bounds are
 *      one contiguous stream) become order-preserving 32-bit keys; the K-th largest key
 *      is found bit by bit from the top (32 counting passes: a partial selection,
 *      no sort); pages above it, then pages equal to it in index order until K,
 *      join the forced ones in one ascending page list;
 *   4. each head of the group attends over the tokens of the listed pages: scores,
 *      softmax, weighted sum of the values (the dense kernel's vector code); the K
 *      (then V) rows of the page QUEST_PREFETCH places down the list are prefetched
 *      while a page is attended, since the pages lie anywhere in the cache;
 *   5. the pages visited (np when dense) go to the layer's stat slot (atomic add). */
#include "codegen/codegen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define QUEST_PREFETCH 2      /* pages of K (or V) prefetched ahead of the one attended */

static LLVMValueRef
state_part(Cg *g, int64_t si, uint64_t off)
{
	return cg_gepb(g, g->state, (int64_t)(g->r->state_off[si] + off));
}

/* The bf16 bits (an i16) of f32 x rounded toward +inf (up) or -inf: the bit
 * operations of ir_bf16_ceil / ir_bf16_floor (ir/quant.c), the interpreter's
 * reference: drop the low half, add one unit to the magnitude when that rounded the
 * wrong way, saturate past the largest finite bf16, and a NaN gives the widest. */
static LLVMValueRef
bf16_outward(Cg *g, LLVMValueRef x, bool up)
{
	LLVMValueRef u = LLVMBuildBitCast(g->b, x, g->i32, "");
	LLVMValueRef h = LLVMBuildLShr(g->b, u, cg_i32c(g, 16), "");
	LLVMValueRef nz = LLVMBuildICmp(g->b, LLVMIntNE, LLVMBuildAnd(g->b, u, cg_i32c(g, 0xffff), ""), cg_i32c(g, 0), "");
	LLVMValueRef neg = LLVMBuildICmp(g->b, LLVMIntSLT, u, cg_i32c(g, 0), "");
	LLVMValueRef wrong = up ? LLVMBuildNot(g->b, neg, "") : neg;
	h = LLVMBuildAdd(g->b, h, LLVMBuildZExt(g->b, LLVMBuildAnd(g->b, nz, wrong, ""), g->i32, ""), "");
	LLVMValueRef sat = LLVMBuildICmp(g->b, LLVMIntUGE, LLVMBuildAnd(g->b, h, cg_i32c(g, 0x7fff), ""),
	                                 cg_i32c(g, 0x7f80), "");
	h = LLVMBuildSelect(g->b, sat, LLVMBuildOr(g->b, LLVMBuildAnd(g->b, h, cg_i32c(g, 0x8000), ""),
	                                           cg_i32c(g, 0x7f7f), ""), h, "");
	LLVMValueRef nan = LLVMBuildICmp(g->b, LLVMIntUGT, LLVMBuildAnd(g->b, u, cg_i32c(g, 0x7fffffff), ""),
	                                 cg_i32c(g, 0x7f800000), "");
	h = LLVMBuildSelect(g->b, nan, cg_i32c(g, up ? 0x7f7f : 0xff7f), h, "");
	return LLVMBuildTrunc(g->b, h, LLVMInt16TypeInContext(g->c), "");
}

/* The f32 value of bf16 bits b (an i16, or a vector of them). */
static LLVMValueRef
bf16_value(Cg *g, LLVMValueRef b)
{
	LLVMTypeRef t = LLVMTypeOf(b), wide = g->i32, ft = g->f32;
	if (LLVMGetTypeKind(t) == LLVMVectorTypeKind) {
		unsigned n = LLVMGetVectorSize(t);
		wide = LLVMVectorType(g->i32, n);
		ft = LLVMVectorType(g->f32, n);
	}
	LLVMValueRef w = LLVMBuildZExt(g->b, b, wide, "");
	LLVMValueRef sh = LLVMConstInt(g->i32, 16, 0);
	if (wide != g->i32) {
		LLVMValueRef *e = xmalloc(LLVMGetVectorSize(wide) * sizeof *e);
		for (unsigned i = 0; i < LLVMGetVectorSize(wide); i++)
			e[i] = sh;
		sh = LLVMConstVector(e, LLVMGetVectorSize(wide));
		free(e);
	}
	return LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, w, sh, ""), ft, "");
}

void
cg_bounds_update(Cg *g, int64_t si, LLVMValueRef pos, LLVMValueRef rows, LLVMValueRef keys)
{
	const State *s = &g->m->states[si];
	int64_t kvh = s->kv_heads, hd = s->head_dim, P = s->page, np = (s->ctx + P - 1) / P;
	LLVMTypeRef i16 = LLVMInt16TypeInContext(g->c);
	LLVMValueRef B = state_part(g, si, elide_kv_layout_of(s->ctx, s->kv_heads, s->head_dim, s->page).bounds_offset);
	CgLoop lt = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "bnd.row");
	LLVMValueRef p = cg_iadd(g, pos, lt.iv);
	LLVMValueRef first = LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildSRem(g->b, p, cg_i64(g, P), ""), cg_i64(g, 0), "");
	/* [kv_heads][np][2][hd]: the page's bounds of head 0, a head's np pages apart */
	LLVMValueRef pb = cg_gep(g, i16, B, cg_imulc(g, LLVMBuildSDiv(g->b, p, cg_i64(g, P), ""), 2 * hd));
	LLVMValueRef kr = cg_gep(g, g->f32, keys, cg_imulc(g, lt.iv, kvh * hd));
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, kvh), NULL, "bnd.head");
	LLVMValueRef mnr = cg_gep(g, i16, pb, cg_imulc(g, lg.iv, np * 2 * hd));
	LLVMValueRef mxr = cg_gep(g, i16, mnr, cg_i64(g, hd));
	LLVMValueRef krh = cg_gep(g, g->f32, kr, cg_imulc(g, lg.iv, hd));
	CgLoop le = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, hd), NULL, "bnd.ch");
	LLVMValueRef x = cg_ldf(g, krh, le.iv);
	LLVMValueRef lo = bf16_outward(g, x, false), hi = bf16_outward(g, x, true);
	LLVMValueRef pmn = cg_gep(g, i16, mnr, le.iv), pmx = cg_gep(g, i16, mxr, le.iv);
	LLVMValueRef omn = cg_load(g, i16, pmn, 2), omx = cg_load(g, i16, pmx, 2);
	/* as the interpreter: the new value when first or strictly beyond (never NaN) */
	LLVMValueRef tmn = LLVMBuildOr(g->b, first, LLVMBuildFCmp(g->b, LLVMRealOLT, bf16_value(g, lo), bf16_value(g, omn), ""), "");
	LLVMValueRef tmx = LLVMBuildOr(g->b, first, LLVMBuildFCmp(g->b, LLVMRealOGT, bf16_value(g, hi), bf16_value(g, omx), ""), "");
	cg_store(g, LLVMBuildSelect(g->b, tmn, lo, omn, ""), pmn, 2);
	cg_store(g, LLVMBuildSelect(g->b, tmx, hi, omx, ""), pmx, 2);
	cg_loop_end(g, &le);
	cg_loop_end(g, &lg);
	cg_loop_end(g, &lt);
}

/* Branches to a new block when cond holds, else to another; returns them. */
static void
branch(Cg *g, LLVMValueRef cond, const char *yes, const char *no, LLVMBasicBlockRef *by, LLVMBasicBlockRef *bn)
{
	*by = LLVMAppendBasicBlockInContext(g->c, g->fn, yes);
	*bn = LLVMAppendBasicBlockInContext(g->c, g->fn, no);
	LLVMBuildCondBr(g->b, cond, *by, *bn);
}

/* Software prefetch of the P rows of page plist[i] (when i < npl, and rows below n)
 * of a cache at base: each row's head slice koff.. (hd floats) at stride kd floats.
 * The chosen pages lie anywhere in the cache, so the hardware prefetchers, which
 * follow one stride, lose each page's first rows without it.  Into L2 (locality 2,
 * prefetcht1 on x86), not L1: a page is 64 lines, more misses than L1 keeps in
 * flight, and L1-bound prefetches ran Quest's attention ~1.5x slower (twin at 8000,
 * 1 thread, alternating: 1.33-1.46 ms with locality 3 or 0, 0.83-1.07 with 2 or 1). */
static void
prefetch_page(Cg *g, LLVMValueRef base, LLVMValueRef plist, LLVMValueRef i, LLVMValueRef npl, LLVMValueRef n,
              int64_t P, int64_t kd, LLVMValueRef koff, int64_t hd)
{
	LLVMBasicBlockRef by, bn;
	branch(g, LLVMBuildICmp(g->b, LLVMIntSLT, i, npl, ""), "pf", "pf.done", &by, &bn);
	LLVMPositionBuilderAtEnd(g->b, by);
	LLVMValueRef j0 = cg_imulc(g, cg_ld64(g, cg_gep(g, g->i64, plist, i)), P);
	CgLoop lr = cg_loop_begin(g, j0, cg_smin(g, cg_iadd(g, j0, cg_i64(g, P)), n), NULL, "pf.row");
	LLVMValueRef row = cg_gep(g, g->f32, base, cg_iadd(g, cg_imulc(g, lr.iv, kd), koff));
	for (int64_t b = 0; b < hd * 4; b += 64) {
		LLVMValueRef a[4] = { cg_gepb(g, row, b), cg_i32c(g, 0), cg_i32c(g, 2), cg_i32c(g, 1) };
		cg_call_intr(g, "llvm.prefetch", g->ptr, a, 4);
	}
	cg_loop_end(g, &lr);
	LLVMBuildBr(g->b, bn);
	LLVMPositionBuilderAtEnd(g->b, bn);
}

/* One query head hq (a row of hd floats) attends over the keys below n of the nl
 * spans of B positions listed in blist (Quest's pages, the block prefill's key
 * blocks), into orow: scores, softmax, weighted sum of the values, with the dense
 * kernel's vector code.  scores: f32[ctx]; acc: f32; ci: i64; ov: the nv vector
 * accumulators.  prefetch: the K (then V) rows of the span QUEST_PREFETCH places
 * down the list are prefetched while one is attended (the spans lie anywhere). */
void
cg_attend_listed(Cg *g, LLVMValueRef hq, LLVMValueRef orow, LLVMValueRef K, LLVMValueRef V, LLVMValueRef koff,
              LLVMValueRef blist, LLVMValueRef nl, LLVMValueRef n, int64_t B, int64_t kd, int64_t hd,
              LLVMValueRef scores, LLVMValueRef acc, LLVMValueRef ci, LLVMValueRef *ov, bool prefetch)
{
	int vw = cg_head_vec(g, hd);
	int nv = (int)(hd / vw);
	LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw);
	double scale = 1.0 / sqrt((double)hd);
	LLVMValueRef *qv = xmalloc((size_t)nv * sizeof *qv);
	for (int c = 0; c < nv; c++)
		qv[c] = cg_load(g, vt, cg_gep(g, g->f32, hq, cg_i64(g, c * vw)), 4);
	cg_st64(g, cg_i64(g, 0), ci);
	for (int64_t d = 0; prefetch && d < QUEST_PREFETCH; d++)
		prefetch_page(g, K, blist, cg_i64(g, d), nl, n, B, kd, koff, hd);
	CgLoop l1 = cg_loop_begin(g, cg_i64(g, 0), nl, NULL, "sblk");
	if (prefetch)
		prefetch_page(g, K, blist, cg_iadd(g, l1.iv, cg_i64(g, QUEST_PREFETCH)), nl, n, B, kd, koff, hd);
	LLVMValueRef j0 = cg_imulc(g, cg_ld64(g, cg_gep(g, g->i64, blist, l1.iv)), B);
	CgLoop lj = cg_loop_begin(g, j0, cg_smin(g, cg_iadd(g, j0, cg_i64(g, B)), n), NULL, "skey");
	LLVMValueRef kr = cg_gep(g, g->f32, K, cg_iadd(g, cg_imulc(g, lj.iv, kd), koff));
	LLVMValueRef dot = cg_dot_row(g, qv, nv, vw, kr);
	LLVMValueRef cc = cg_ld64(g, ci);
	cg_store(g, LLVMBuildFMul(g->b, dot, cg_f32c(g, scale), ""), cg_gep(g, g->f32, scores, cc), 4);
	cg_st64(g, cg_iadd(g, cc, cg_i64(g, 1)), ci);
	cg_loop_end(g, &lj);
	cg_loop_end(g, &l1);
	for (int64_t d = 0; prefetch && d < QUEST_PREFETCH; d++)
		prefetch_page(g, V, blist, cg_i64(g, d), nl, n, B, kd, koff, hd);
	cg_softmax_row(g, scores, cg_ld64(g, ci), acc);
	for (int c = 0; c < nv; c++)
		cg_store(g, LLVMConstNull(vt), ov[c], 64);
	cg_st64(g, cg_i64(g, 0), ci);
	CgLoop l2 = cg_loop_begin(g, cg_i64(g, 0), nl, NULL, "vblk");
	if (prefetch)
		prefetch_page(g, V, blist, cg_iadd(g, l2.iv, cg_i64(g, QUEST_PREFETCH)), nl, n, B, kd, koff, hd);
	LLVMValueRef v0 = cg_imulc(g, cg_ld64(g, cg_gep(g, g->i64, blist, l2.iv)), B);
	CgLoop lv = cg_loop_begin(g, v0, cg_smin(g, cg_iadd(g, v0, cg_i64(g, B)), n), NULL, "vkey");
	LLVMValueRef c2 = cg_ld64(g, ci);
	LLVMValueRef pr = cg_load(g, g->f32, cg_gep(g, g->f32, scores, c2), 4);
	LLVMValueRef p = vw == 1 ? LLVMBuildInsertElement(g->b, LLVMGetPoison(vt), pr, cg_i32c(g, 0), "")
	                         : cg_splat(g, pr, vw);
	LLVMValueRef vr = cg_gep(g, g->f32, V, cg_iadd(g, cg_imulc(g, lv.iv, kd), koff));
	for (int c = 0; c < nv; c++) {
		LLVMValueRef a[3] = { p, cg_load(g, vt, cg_gep(g, g->f32, vr, cg_i64(g, c * vw)), 4),
			              cg_load(g, vt, ov[c], 64) };
		cg_store(g, cg_call_intr(g, "llvm.fma", vt, a, 3), ov[c], 64);
	}
	cg_st64(g, cg_iadd(g, c2, cg_i64(g, 1)), ci);
	cg_loop_end(g, &lv);
	cg_loop_end(g, &l2);
	for (int c = 0; c < nv; c++)
		cg_store(g, cg_load(g, vt, ov[c], 64), cg_gep(g, g->f32, orow, cg_i64(g, c * vw)), 4);
	free(qv);
}

/* Slots: 0 q, 1 K, 2 V, 3 out, 4 T, 5 pos, 6 page bounds, 7 K (pages to choose),
 * 8 the stat slot that counts the pages visited (when counted). */
static LLVMValueRef
quest_task(Cg *g, int64_t heads, int64_t kvh, int64_t hd, int64_t ctx, int64_t P, int64_t S, int64_t W, bool counted)
{
	char key[160];
	snprintf(key, sizeof key, "quest.%lld.%lld.%lld.%lld.%lld.%lld.%lld.%d", (long long)heads, (long long)kvh,
	         (long long)hd, (long long)ctx, (long long)P, (long long)S, (long long)W, (int)counted);
	LLVMValueRef fn;
	CgSave save;
	LLVMValueRef dense = cg_attention_task(g, heads, kvh, hd, ctx, ctx);
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	int vw = cg_head_vec(g, hd);
	int nv = (int)(hd / vw);
	/* the cache is head-major: key j of KV head gk at K + j hd + gk ctx hd */
	int64_t group = heads / kvh, qd = heads * hd, kd = hd, maxp = (ctx + P - 1) / P;
	LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw), i16 = LLVMInt16TypeInContext(g->c);
	LLVMTypeRef ht = LLVMVectorType(i16, (unsigned)vw);
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef q = cg_slot_ptr(g, blk, 0), K = cg_slot_ptr(g, blk, 1), V = cg_slot_ptr(g, blk, 2);
	LLVMValueRef out = cg_slot_ptr(g, blk, 3), pos = cg_slot_i64(g, blk, 5);
	LLVMValueRef bnd = cg_slot_ptr(g, blk, 6), kp = cg_slot_i64(g, blk, 7);
	LLVMValueRef pkey = cg_alloca(g, LLVMArrayType(g->i32, (unsigned)maxp), "pkey");
	LLVMValueRef plist = cg_alloca(g, LLVMArrayType(g->i64, (unsigned)maxp), "plist");
	LLVMValueRef scores = cg_alloca(g, LLVMArrayType(g->f32, (unsigned)ctx), "scores");
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc"), uacc = cg_alloca(g, vt, "u");
	LLVMValueRef thr = cg_alloca(g, g->i32, "thr"), cnt = cg_alloca(g, g->i64, "cnt");
	LLVMValueRef need = cg_alloca(g, g->i64, "need"), nl = cg_alloca(g, g->i64, "nl");
	LLVMValueRef ci = cg_alloca(g, g->i64, "c");
	LLVMValueRef *ov = xmalloc((size_t)nv * sizeof *ov);
	for (int c = 0; c < nv; c++)
		ov[c] = cg_alloca(g, vt, "o");
	LLVMTypeRef u32 = g->i32;

	CgLoop l = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "rowkv");
	LLVMValueRef t = LLVMBuildSDiv(g->b, l.iv, cg_i64(g, kvh), "");
	LLVMValueRef gk = LLVMBuildSRem(g->b, l.iv, cg_i64(g, kvh), "");
	LLVMValueRef n = cg_iadd(g, cg_iadd(g, pos, t), cg_i64(g, 1));
	LLVMValueRef np = LLVMBuildSDiv(g->b, cg_iadd(g, n, cg_i64(g, P - 1)), cg_i64(g, P), "np");
	LLVMValueRef sp = cg_smin(g, np, cg_i64(g, (S + P - 1) / P));
	LLVMValueRef wp;
	if (W > 0) {
		LLVMValueRef back = LLVMBuildSDiv(g->b, cg_isub(g, n, cg_i64(g, W)), cg_i64(g, P), "");
		wp = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, n, cg_i64(g, W), ""), back, cg_i64(g, 0), "");
	} else {
		wp = cg_isub(g, np, cg_i64(g, 1));
	}
	wp = cg_smax(g, cg_smin(g, wp, cg_isub(g, np, cg_i64(g, 1))), sp);
	LLVMValueRef nmid = cg_isub(g, wp, sp);
	LLVMBasicBlockRef bd, bs, bnext = LLVMAppendBasicBlockInContext(g->c, g->fn, "quest.next");
	branch(g, LLVMBuildICmp(g->b, LLVMIntSLE, nmid, kp, ""), "quest.dense", "quest.sparse", &bd, &bs);

	/* 2. every page: the dense task for the group's heads */
	LLVMPositionBuilderAtEnd(g->b, bd);
	LLVMValueRef h0 = cg_iadd(g, cg_imulc(g, t, heads), cg_imulc(g, gk, group));
	LLVMValueRef da[3] = { blk, h0, cg_iadd(g, h0, cg_i64(g, group)) };
	LLVMBuildCall2(g->b, g->task_ty, dense, da, 3, "");
	if (counted)
		cg_count_visits(g, cg_slot_ptr(g, blk, 8), np);
	LLVMBuildBr(g->b, bnext);

	/* 3. page scores as keys */
	LLVMPositionBuilderAtEnd(g->b, bs);
	LLVMValueRef qrow = cg_gep(g, g->f32, q, cg_iadd(g, cg_imulc(g, t, qd), cg_imulc(g, gk, group * hd)));
	CgLoop lp = cg_loop_begin(g, sp, wp, NULL, "page");
	/* a KV head's bounds are contiguous, page after page: one stream */
	LLVMValueRef mnp = cg_gep(g, i16, bnd, cg_imulc(g, cg_iadd(g, cg_imulc(g, gk, maxp), lp.iv), 2 * hd));
	cg_store(g, LLVMConstNull(vt), uacc, 64);
	CgLoop lh = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group), NULL, "ph");
	LLVMValueRef qh = cg_gep(g, g->f32, qrow, cg_imulc(g, lh.iv, hd));
	LLVMValueRef u = cg_load(g, vt, uacc, 64);
	for (int c = 0; c < nv; c++) {
		LLVMValueRef x = cg_load(g, vt, cg_gep(g, g->f32, qh, cg_i64(g, c * vw)), 4);
		LLVMValueRef mn = bf16_value(g, cg_load(g, ht, cg_gep(g, i16, mnp, cg_i64(g, c * vw)), 2));
		LLVMValueRef mx = bf16_value(g, cg_load(g, ht, cg_gep(g, i16, mnp, cg_i64(g, hd + c * vw)), 2));
		/* lo > hi ? lo : hi, as the interpreter: one max instruction (maxnum would add
		 * the NaN handling of IEEE maxNum) */
		LLVMValueRef lo = cg_fast(LLVMBuildFMul(g->b, x, mn, "")), hi = cg_fast(LLVMBuildFMul(g->b, x, mx, ""));
		LLVMValueRef m = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, lo, hi, ""), lo, hi, "");
		u = cg_fast(LLVMBuildFAdd(g->b, u, m, ""));
	}
	cg_store(g, u, uacc, 64);
	cg_loop_end(g, &lh);
	LLVMValueRef us = cg_load(g, vt, uacc, 64);
	if (vw > 1) {
		LLVMValueRef a[2] = { cg_f32c(g, -0.0), us };
		us = cg_fast(cg_call_intr(g, "llvm.vector.reduce.fadd", vt, a, 2));
	} else {
		us = LLVMBuildExtractElement(g->b, us, cg_i32c(g, 0), "");
	}
	LLVMValueRef bits = LLVMBuildBitCast(g->b, us, u32, "");
	LLVMValueRef neg = LLVMBuildICmp(g->b, LLVMIntSLT, bits, cg_i32c(g, 0), "");
	LLVMValueRef pk = LLVMBuildSelect(g->b, neg, LLVMBuildNot(g->b, bits, ""),
	                                  LLVMBuildOr(g->b, bits, cg_i32c(g, INT32_MIN), ""), "key");
	cg_store(g, pk, cg_gep(g, g->i32, pkey, cg_isub(g, lp.iv, sp)), 4);
	cg_loop_end(g, &lp);

	/* the K-th largest key, bit by bit */
	cg_store(g, cg_i32c(g, 0), thr, 4);
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, 32), NULL, "bit");
	LLVMValueRef bit = LLVMBuildShl(g->b, cg_i32c(g, 1), LLVMBuildTrunc(g->b, cg_isub(g, cg_i64(g, 31), lb.iv), u32, ""), "");
	LLVMValueRef cand = LLVMBuildOr(g->b, cg_load(g, u32, thr, 4), bit, "");
	cg_st64(g, cg_i64(g, 0), cnt);
	CgLoop lc = cg_loop_begin(g, cg_i64(g, 0), nmid, NULL, "count");
	LLVMValueRef ge = LLVMBuildICmp(g->b, LLVMIntUGE, cg_load(g, u32, cg_gep(g, g->i32, pkey, lc.iv), 4), cand, "");
	cg_st64(g, cg_iadd(g, cg_ld64(g, cnt), LLVMBuildZExt(g->b, ge, g->i64, "")), cnt);
	cg_loop_end(g, &lc);
	LLVMValueRef ok = LLVMBuildICmp(g->b, LLVMIntSGE, cg_ld64(g, cnt), kp, "");
	cg_store(g, LLVMBuildSelect(g->b, ok, cand, cg_load(g, u32, thr, 4), ""), thr, 4);
	cg_loop_end(g, &lb);
	LLVMValueRef tv = cg_load(g, u32, thr, 4);
	cg_st64(g, cg_i64(g, 0), cnt);
	CgLoop lg2 = cg_loop_begin(g, cg_i64(g, 0), nmid, NULL, "above");
	LLVMValueRef gt = LLVMBuildICmp(g->b, LLVMIntUGT, cg_load(g, u32, cg_gep(g, g->i32, pkey, lg2.iv), 4), tv, "");
	cg_st64(g, cg_iadd(g, cg_ld64(g, cnt), LLVMBuildZExt(g->b, gt, g->i64, "")), cnt);
	cg_loop_end(g, &lg2);
	cg_st64(g, cg_isub(g, kp, cg_ld64(g, cnt)), need);

	/* the page list, ascending */
	cg_st64(g, cg_i64(g, 0), nl);
	CgLoop ls = cg_loop_begin(g, cg_i64(g, 0), sp, NULL, "sinks");
	cg_st64(g, ls.iv, cg_gep(g, g->i64, plist, cg_ld64(g, nl)));
	cg_st64(g, cg_iadd(g, cg_ld64(g, nl), cg_i64(g, 1)), nl);
	cg_loop_end(g, &ls);
	CgLoop lm = cg_loop_begin(g, cg_i64(g, 0), nmid, NULL, "mid");
	LLVMValueRef kj = cg_load(g, u32, cg_gep(g, g->i32, pkey, lm.iv), 4);
	LLVMValueRef nd = cg_ld64(g, need);
	LLVMValueRef eq = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, kj, tv, ""),
	                               LLVMBuildICmp(g->b, LLVMIntSGT, nd, cg_i64(g, 0), ""), "");
	LLVMValueRef take = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntUGT, kj, tv, ""), eq, "");
	cg_st64(g, cg_isub(g, nd, LLVMBuildZExt(g->b, eq, g->i64, "")), need);
	cg_st64(g, cg_iadd(g, sp, lm.iv), cg_gep(g, g->i64, plist, cg_ld64(g, nl)));
	cg_st64(g, cg_iadd(g, cg_ld64(g, nl), LLVMBuildZExt(g->b, take, g->i64, "")), nl);
	cg_loop_end(g, &lm);
	CgLoop lw = cg_loop_begin(g, wp, np, NULL, "window");
	cg_st64(g, lw.iv, cg_gep(g, g->i64, plist, cg_ld64(g, nl)));
	cg_st64(g, cg_iadd(g, cg_ld64(g, nl), cg_i64(g, 1)), nl);
	cg_loop_end(g, &lw);
	LLVMValueRef npl = cg_ld64(g, nl);
	if (counted)
		cg_count_visits(g, cg_slot_ptr(g, blk, 8), npl);

	/* 4. each head of the group over the listed pages */
	CgLoop la = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group), NULL, "head");
	LLVMValueRef hq = cg_gep(g, g->f32, qrow, cg_imulc(g, la.iv, hd));
	LLVMValueRef orow = cg_gep(g, g->f32, out, cg_iadd(g, cg_imulc(g, t, qd), cg_iadd(g, cg_imulc(g, gk, group * hd), cg_imulc(g, la.iv, hd))));
	LLVMValueRef koff = cg_imulc(g, gk, ctx * hd);
	cg_attend_listed(g, hq, orow, K, V, koff, plist, npl, n, P, kd, hd, scores, acc, ci, ov, true);
	cg_loop_end(g, &la);
	LLVMBuildBr(g->b, bnext);

	LLVMPositionBuilderAtEnd(g->b, bnext);
	cg_loop_end(g, &l);
	cg_task_end(g, &save);
	free(ov);
	return fn;
}

void
cg_lower_attention_quest(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type qt = f->vals[op->args[0]].type;
	const State *s = &g->m->states[op->ia[2]];
	int64_t heads = op->ia[0], kvh = op->ia[1], hd = cg_cols(qt) / heads, P = s->page;
	elide_kv_layout kl = elide_kv_layout_of(s->ctx, s->kv_heads, s->head_dim, s->page);
	LLVMValueRef rows = cg_rows(g, qt), K, V;
	LLVMValueRef pos = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[3]), g->i64, "");
	cg_cache_write(g, op->ia[2], cg_val_ptr(g, op->args[1]), cg_val_ptr(g, op->args[2]), rows, pos, &K, &V);
	/* pages to choose: max(3, min(budget, compiled) / P), the budget at least a page;
	 * a compiled budget of 0 chooses none (sinks and window only) */
	LLVMValueRef kp = cg_i64(g, 0);
	if (op->ia[3] > 0) {
		LLVMValueRef b = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[4]), g->i64, "");
		b = cg_smax(g, cg_smin(g, b, cg_i64(g, op->ia[3])), cg_i64(g, P));
		kp = cg_smax(g, LLVMBuildSDiv(g->b, b, cg_i64(g, P), ""), cg_i64(g, 3));
	}
	LLVMValueRef task = quest_task(g, heads, kvh, hd, s->ctx, P, op->ia[4], op->ia[5], op->ia[6] > 0);
	cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
	cg_slot_set(g, 1, K);
	cg_slot_set(g, 2, V);
	cg_slot_set(g, 3, cg_val_ptr(g, op->dst));
	cg_slot_set(g, 4, rows);
	cg_slot_set(g, 5, pos);
	cg_slot_set(g, 6, state_part(g, op->ia[2], kl.bounds_offset));
	cg_slot_set(g, 7, kp);
	cg_slot_set(g, 8, cg_stat_slot_ptr(g, op->ia[6]));
	cg_pfor(g, task, cg_imulc(g, rows, kvh));
}
