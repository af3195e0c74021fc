/* attention_block.c - block-sparse prefill attention (attention_block, docs/sparse.md)
 * as a task over (query block, kv head) pairs, and the visit counters of the sparse
 * attention ops.  A query block holds the rows of this call inside one block of B
 * absolute positions; they see the keys [0, end).
 *   1. a call of fewer than min_tokens rows, a block with fewer than three key blocks,
 *      or a top-K that covers every candidate block: dense (step 5);
 *   2. block scores in double, in the interpreter's order: the mean of the block's
 *      queries per head of the group, the mean of each key block's keys (below end),
 *      s_j = the sum over the group's heads and channels of their products, times
 *      1/sqrt(hd);
 *   3. the candidates, key blocks 1 .. qb-1, get a weight (topk: 1; coverage: the
 *      estimated mass n_j exp((s_j - max s) / group)) and an order-preserving 64-bit
 *      key of s_j; the target is K (topk) or gamma of the total mass with the first
 *      and diagonal blocks counted first (coverage); the threshold key is the largest
 *      whose candidates at or above it reach the target with the forced blocks, found
 *      bit by bit from the top (64 counting passes: a partial selection, no sort);
 *   4. candidates above the threshold, then those equal to it in index order while
 *      the target is not reached, join blocks 0 and qb in one ascending list;
 *   5. every block chosen: the dense attention task for the block's rows and the
 *      group's heads (bit for bit the dense result);
 *   6. else each row and head attends over the listed blocks' keys up to its own
 *      position (causal inside the diagonal block): the dense kernel's vector code;
 *   7. the blocks visited times the block's rows are added to the layer's stat slot
 *      (an atomic add: the tasks run in parallel). */
#include "codegen/codegen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static LLVMValueRef
ldd(Cg *g, LLVMValueRef base, LLVMValueRef idx)
{
	return cg_load(g, cg_f64(g), cg_gep(g, cg_f64(g), base, idx), 8);
}

static void
std_(Cg *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
	cg_store(g, v, cg_gep(g, cg_f64(g), base, idx), 8);
}

static LLVMValueRef
to_d(Cg *g, LLVMValueRef x)
{
	return LLVMTypeOf(x) == g->i64 ? LLVMBuildSIToFP(g->b, x, cg_f64(g), "") : LLVMBuildFPExt(g->b, x, cg_f64(g), "");
}

void
cg_count_visits(Cg *g, LLVMValueRef slot, LLVMValueRef n)
{
	LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, slot, n, LLVMAtomicOrderingMonotonic, 0);
}

/* The block parameters of one attention_block kernel. */
typedef struct BlockSpec {
	int64_t heads, kvh, hd, ctx; /* shapes; ctx bounds the keys */
	int64_t B, topk;             /* block (positions); topk 0: coverage */
	double gamma;                /* coverage target */
	bool counted;                /* slot 6 points at a stat slot */
} BlockSpec;

/* Slots: 0 q, 1 K, 2 V, 3 out, 4 T, 5 pos, 6 stat slot, 7 dense (1: fewer rows than
 * min_tokens). */
static LLVMValueRef
block_task(Cg *g, const BlockSpec *bs)
{
	char key[200];
	snprintf(key, sizeof key, "ablock.%lld.%lld.%lld.%lld.%lld.%lld.%a.%d", (long long)bs->heads, (long long)bs->kvh,
	         (long long)bs->hd, (long long)bs->ctx, (long long)bs->B, (long long)bs->topk, bs->gamma,
	         (int)bs->counted);
	LLVMValueRef fn;
	CgSave save;
	LLVMValueRef dense = cg_attention_task(g, bs->heads, bs->kvh, bs->hd, bs->ctx, bs->ctx);
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	int64_t heads = bs->heads, kvh = bs->kvh, hd = bs->hd, B = bs->B;
	int64_t group = heads / kvh, qd = heads * hd, kd = hd, maxb = (bs->ctx + B - 1) / B;
	int vw = cg_head_vec(g, hd);
	LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw), d = cg_f64(g);
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef q = cg_slot_ptr(g, blk, 0), K = cg_slot_ptr(g, blk, 1), V = cg_slot_ptr(g, blk, 2);
	LLVMValueRef out = cg_slot_ptr(g, blk, 3), T = cg_slot_i64(g, blk, 4), pos = cg_slot_i64(g, blk, 5);
	LLVMValueRef stat = cg_slot_ptr(g, blk, 6), small = cg_slot_i64(g, blk, 7);
	LLVMValueRef qbar = cg_alloca(g, LLVMArrayType(d, (unsigned)(group * hd)), "qbar");
	LLVMValueRef kbar = cg_alloca(g, LLVMArrayType(d, (unsigned)hd), "kbar");
	LLVMValueRef score = cg_alloca(g, LLVMArrayType(d, (unsigned)maxb), "bscore");
	LLVMValueRef wt = cg_alloca(g, LLVMArrayType(d, (unsigned)maxb), "bweight");
	LLVMValueRef bkey = cg_alloca(g, LLVMArrayType(g->i64, (unsigned)maxb), "bkey");
	LLVMValueRef blist = cg_alloca(g, LLVMArrayType(g->i64, (unsigned)maxb), "blist");
	LLVMValueRef scores = cg_alloca(g, LLVMArrayType(g->f32, (unsigned)bs->ctx), "scores");
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc"), dacc = cg_alloca(g, d, "dacc");
	LLVMValueRef smx = cg_alloca(g, d, "smax"), forced = cg_alloca(g, d, "forced"), need = cg_alloca(g, d, "need");
	LLVMValueRef covered = cg_alloca(g, d, "covered"), thr = cg_alloca(g, g->i64, "thr");
	LLVMValueRef nl = cg_alloca(g, g->i64, "nl"), nsel = cg_alloca(g, g->i64, "nsel"), ci = cg_alloca(g, g->i64, "c");
	int nv = (int)(hd / vw);
	LLVMValueRef *ov = xmalloc((size_t)nv * sizeof *ov);
	for (int c = 0; c < nv; c++)
		ov[c] = cg_alloca(g, vt, "o");

	CgLoop l = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "qbkv");
	LLVMValueRef qb = cg_iadd(g, LLVMBuildSDiv(g->b, pos, cg_i64(g, B), ""), LLVMBuildSDiv(g->b, l.iv, cg_i64(g, kvh), ""));
	LLVMValueRef gk = LLVMBuildSRem(g->b, l.iv, cg_i64(g, kvh), "");
	LLVMValueRef end = cg_smin(g, cg_imulc(g, cg_iadd(g, qb, cg_i64(g, 1)), B), cg_iadd(g, pos, T));
	LLVMValueRef t0 = cg_isub(g, cg_smax(g, cg_imulc(g, qb, B), pos), pos), t1 = cg_isub(g, end, pos);
	LLVMValueRef rows = cg_isub(g, t1, t0);
	LLVMValueRef qoff = cg_imulc(g, gk, group * hd); /* the group's heads within a query row */
	LLVMValueRef koff = cg_imulc(g, gk, bs->ctx * hd); /* the cache is head-major: key j at j hd + koff */
	cg_st64(g, cg_iadd(g, qb, cg_i64(g, 1)), nsel);
	LLVMValueRef ncand = cg_isub(g, qb, cg_i64(g, 1));
	LLVMValueRef alld = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, small, cg_i64(g, 0), ""),
	                                LLVMBuildICmp(g->b, LLVMIntSLT, qb, cg_i64(g, 2), ""), "");
	if (bs->topk > 0)
		alld = LLVMBuildOr(g->b, alld, LLVMBuildICmp(g->b, LLVMIntSLE, ncand, cg_i64(g, bs->topk), ""), "");
	LLVMBasicBlockRef bdense = LLVMAppendBasicBlockInContext(g->c, g->fn, "blk.dense");
	LLVMBasicBlockRef bscore = LLVMAppendBasicBlockInContext(g->c, g->fn, "blk.score");
	LLVMBasicBlockRef bsparse = LLVMAppendBasicBlockInContext(g->c, g->fn, "blk.sparse");
	LLVMBasicBlockRef bcount = LLVMAppendBasicBlockInContext(g->c, g->fn, "blk.count");
	LLVMBuildCondBr(g->b, alld, bdense, bscore);

	/* 2. block scores */
	LLVMPositionBuilderAtEnd(g->b, bscore);
	CgLoop lz = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group * hd), NULL, "qz");
	std_(g, cg_f64c(g, 0.0), qbar, lz.iv);
	cg_loop_end(g, &lz);
	CgLoop lt = cg_loop_begin(g, t0, t1, NULL, "qsum");
	LLVMValueRef qr = cg_gep(g, g->f32, q, cg_iadd(g, cg_imulc(g, lt.iv, qd), qoff));
	CgLoop le = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group * hd), NULL, "qch");
	LLVMValueRef x = to_d(g, cg_load(g, g->f32, cg_gep(g, g->f32, qr, le.iv), 4));
	std_(g, LLVMBuildFAdd(g->b, ldd(g, qbar, le.iv), x, ""), qbar, le.iv);
	cg_loop_end(g, &le);
	cg_loop_end(g, &lt);
	LLVMValueRef drows = to_d(g, rows);
	CgLoop lm = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group * hd), NULL, "qmean");
	std_(g, LLVMBuildFDiv(g->b, ldd(g, qbar, lm.iv), drows, ""), qbar, lm.iv);
	cg_loop_end(g, &lm);
	cg_store(g, cg_f64c(g, -INFINITY), smx, 8);
	CgLoop lk = cg_loop_begin(g, cg_i64(g, 0), cg_iadd(g, qb, cg_i64(g, 1)), NULL, "kblk");
	LLVMValueRef j0 = cg_imulc(g, lk.iv, B), j1 = cg_smin(g, cg_iadd(g, j0, cg_i64(g, B)), end);
	CgLoop lz2 = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, hd), NULL, "kz");
	std_(g, cg_f64c(g, 0.0), kbar, lz2.iv);
	cg_loop_end(g, &lz2);
	CgLoop lj = cg_loop_begin(g, j0, j1, NULL, "ksum");
	LLVMValueRef kr = cg_gep(g, g->f32, K, cg_iadd(g, cg_imulc(g, lj.iv, kd), koff));
	CgLoop lc = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, hd), NULL, "kch");
	LLVMValueRef kx = to_d(g, cg_load(g, g->f32, cg_gep(g, g->f32, kr, lc.iv), 4));
	std_(g, LLVMBuildFAdd(g->b, ldd(g, kbar, lc.iv), kx, ""), kbar, lc.iv);
	cg_loop_end(g, &lc);
	cg_loop_end(g, &lj);
	LLVMValueRef dn = to_d(g, cg_isub(g, j1, j0));
	CgLoop lkm = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, hd), NULL, "kmean");
	std_(g, LLVMBuildFDiv(g->b, ldd(g, kbar, lkm.iv), dn, ""), kbar, lkm.iv);
	cg_loop_end(g, &lkm);
	cg_store(g, cg_f64c(g, 0.0), dacc, 8);
	CgLoop lh = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group), NULL, "sh");
	CgLoop ls = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, hd), NULL, "sch");
	LLVMValueRef pq = LLVMBuildFMul(g->b, ldd(g, qbar, cg_iadd(g, cg_imulc(g, lh.iv, hd), ls.iv)), ldd(g, kbar, ls.iv), "");
	cg_store(g, LLVMBuildFAdd(g->b, cg_load(g, d, dacc, 8), pq, ""), dacc, 8);
	cg_loop_end(g, &ls);
	cg_loop_end(g, &lh);
	LLVMValueRef sj = LLVMBuildFMul(g->b, cg_load(g, d, dacc, 8), cg_f64c(g, 1.0 / sqrt((double)hd)), "");
	std_(g, sj, score, lk.iv);
	LLVMValueRef sm = cg_load(g, d, smx, 8);
	cg_store(g, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, sj, sm, ""), sj, sm, ""), smx, 8);
	cg_loop_end(g, &lk);

	/* 3. weights, keys and the target */
	cg_store(g, cg_f64c(g, 0.0), forced, 8);
	cg_store(g, cg_f64c(g, 0.0), dacc, 8); /* the total mass */
	CgLoop lw = cg_loop_begin(g, cg_i64(g, 0), cg_iadd(g, qb, cg_i64(g, 1)), NULL, "bw");
	LLVMValueRef s = ldd(g, score, lw.iv);
	LLVMValueRef fixed = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, lw.iv, cg_i64(g, 0), ""),
	                                 LLVMBuildICmp(g->b, LLVMIntEQ, lw.iv, qb, ""), "");
	LLVMValueRef w = cg_f64c(g, 1.0);
	if (bs->topk == 0) {
		LLVMValueRef e = LLVMBuildFDiv(g->b, LLVMBuildFSub(g->b, s, cg_load(g, d, smx, 8), ""), cg_f64c(g, (double)group), "");
		LLVMValueRef nb = to_d(g, cg_isub(g, cg_smin(g, cg_imulc(g, cg_iadd(g, lw.iv, cg_i64(g, 1)), B), end), cg_imulc(g, lw.iv, B)));
		w = LLVMBuildFMul(g->b, nb, cg_call_intr(g, "llvm.exp", d, &e, 1), "");
		cg_store(g, LLVMBuildFAdd(g->b, cg_load(g, d, dacc, 8), w, ""), dacc, 8);
		LLVMValueRef fo = cg_load(g, d, forced, 8);
		cg_store(g, LLVMBuildSelect(g->b, fixed, LLVMBuildFAdd(g->b, fo, w, ""), fo, ""), forced, 8);
	}
	std_(g, w, wt, lw.iv);
	LLVMValueRef bits = LLVMBuildBitCast(g->b, s, g->i64, "");
	LLVMValueRef neg = LLVMBuildICmp(g->b, LLVMIntSLT, bits, cg_i64(g, 0), "");
	LLVMValueRef k = LLVMBuildSelect(g->b, neg, LLVMBuildNot(g->b, bits, ""), LLVMBuildOr(g->b, bits, cg_i64(g, INT64_MIN), ""),
	                                 "key");
	cg_st64(g, k, cg_gep(g, g->i64, bkey, lw.iv));
	cg_loop_end(g, &lw);
	LLVMValueRef target = bs->topk ? cg_f64c(g, (double)bs->topk)
	                               : LLVMBuildFMul(g->b, cg_f64c(g, bs->gamma), cg_load(g, d, dacc, 8), "");
	cg_store(g, target, need, 8);

	/* the threshold key, bit by bit from the top */
	cg_st64(g, cg_i64(g, 0), thr);
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, 64), NULL, "bit");
	LLVMValueRef cand = LLVMBuildOr(g->b, cg_ld64(g, thr), LLVMBuildShl(g->b, cg_i64(g, 1), cg_isub(g, cg_i64(g, 63), lb.iv), ""), "");
	cg_store(g, cg_load(g, d, forced, 8), covered, 8);
	CgLoop lcn = cg_loop_begin(g, cg_i64(g, 1), qb, NULL, "count");
	LLVMValueRef ge = LLVMBuildICmp(g->b, LLVMIntUGE, cg_ld64(g, cg_gep(g, g->i64, bkey, lcn.iv)), cand, "");
	LLVMValueRef cv = cg_load(g, d, covered, 8);
	cg_store(g, LLVMBuildSelect(g->b, ge, LLVMBuildFAdd(g->b, cv, ldd(g, wt, lcn.iv), ""), cv, ""), covered, 8);
	cg_loop_end(g, &lcn);
	LLVMValueRef ok = LLVMBuildFCmp(g->b, LLVMRealOGE, cg_load(g, d, covered, 8), cg_load(g, d, need, 8), "");
	cg_st64(g, LLVMBuildSelect(g->b, ok, cand, cg_ld64(g, thr), ""), thr);
	cg_loop_end(g, &lb);
	LLVMValueRef tv = cg_ld64(g, thr);
	cg_store(g, cg_load(g, d, forced, 8), covered, 8);
	CgLoop la = cg_loop_begin(g, cg_i64(g, 1), qb, NULL, "above");
	LLVMValueRef gt = LLVMBuildICmp(g->b, LLVMIntUGT, cg_ld64(g, cg_gep(g, g->i64, bkey, la.iv)), tv, "");
	LLVMValueRef cva = cg_load(g, d, covered, 8);
	cg_store(g, LLVMBuildSelect(g->b, gt, LLVMBuildFAdd(g->b, cva, ldd(g, wt, la.iv), ""), cva, ""), covered, 8);
	cg_loop_end(g, &la);

	/* 4. the block list, ascending */
	cg_st64(g, cg_i64(g, 0), cg_gep(g, g->i64, blist, cg_i64(g, 0)));
	cg_st64(g, cg_i64(g, 1), nl);
	CgLoop lsel = cg_loop_begin(g, cg_i64(g, 1), qb, NULL, "pick");
	LLVMValueRef kj = cg_ld64(g, cg_gep(g, g->i64, bkey, lsel.iv));
	LLVMValueRef cvs = cg_load(g, d, covered, 8);
	LLVMValueRef eq = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, kj, tv, ""),
	                               LLVMBuildFCmp(g->b, LLVMRealOLT, cvs, cg_load(g, d, need, 8), ""), "");
	LLVMValueRef take = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntUGT, kj, tv, ""), eq, "");
	cg_store(g, LLVMBuildSelect(g->b, eq, LLVMBuildFAdd(g->b, cvs, ldd(g, wt, lsel.iv), ""), cvs, ""), covered, 8);
	cg_st64(g, lsel.iv, cg_gep(g, g->i64, blist, cg_ld64(g, nl)));
	cg_st64(g, cg_iadd(g, cg_ld64(g, nl), LLVMBuildZExt(g->b, take, g->i64, "")), nl);
	cg_loop_end(g, &lsel);
	cg_st64(g, qb, cg_gep(g, g->i64, blist, cg_ld64(g, nl)));
	LLVMValueRef nblk = cg_iadd(g, cg_ld64(g, nl), cg_i64(g, 1));
	cg_st64(g, nblk, nl);
	cg_st64(g, nblk, nsel);
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, nblk, cg_iadd(g, qb, cg_i64(g, 1)), ""), bdense, bsparse);

	/* 5. every block: the dense task for the block's rows and the group's heads */
	LLVMPositionBuilderAtEnd(g->b, bdense);
	CgLoop ld = cg_loop_begin(g, t0, t1, NULL, "drow");
	LLVMValueRef h0 = cg_iadd(g, cg_imulc(g, ld.iv, heads), cg_imulc(g, gk, group));
	LLVMValueRef da[3] = { blk, h0, cg_iadd(g, h0, cg_i64(g, group)) };
	LLVMBuildCall2(g->b, g->task_ty, dense, da, 3, "");
	cg_loop_end(g, &ld);
	LLVMBuildBr(g->b, bcount);

	/* 6. the listed blocks */
	LLVMPositionBuilderAtEnd(g->b, bsparse);
	LLVMValueRef nlist = cg_ld64(g, nl);
	CgLoop lr = cg_loop_begin(g, t0, t1, NULL, "srow");
	LLVMValueRef n = cg_iadd(g, cg_iadd(g, pos, lr.iv), cg_i64(g, 1));
	CgLoop lhd = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, group), NULL, "shead");
	LLVMValueRef at = cg_iadd(g, cg_iadd(g, cg_imulc(g, lr.iv, qd), qoff), cg_imulc(g, lhd.iv, hd));
	cg_attend_listed(g, cg_gep(g, g->f32, q, at), cg_gep(g, g->f32, out, at), K, V, koff, blist, nlist, n, B, kd, hd,
	                 scores, acc, ci, ov, false);
	cg_loop_end(g, &lhd);
	cg_loop_end(g, &lr);
	LLVMBuildBr(g->b, bcount);

	/* 7. the visits */
	LLVMPositionBuilderAtEnd(g->b, bcount);
	if (bs->counted)
		cg_count_visits(g, stat, LLVMBuildMul(g->b, cg_ld64(g, nsel), rows, ""));
	cg_loop_end(g, &l);
	cg_task_end(g, &save);
	free(ov);
	return fn;
}

LLVMValueRef
cg_stat_slot_ptr(Cg *g, int64_t slot_plus_one)
{
	if (slot_plus_one <= 0)
		return LLVMConstNull(g->ptr);
	return cg_gepb(g, g->ctx, (int64_t)(g->r->stat_off + 8 * (uint64_t)(slot_plus_one - 1)));
}

void
cg_lower_attention_block(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type qt = f->vals[op->args[0]].type;
	const State *s = &g->m->states[op->ia[2]];
	BlockSpec bs = { .heads = op->ia[0], .kvh = op->ia[1], .ctx = s->ctx, .B = op->ia[3], .topk = op->ia[4],
		         .gamma = op->ia[4] ? 0.0 : (double)op->fa[0], .counted = op->ia[6] > 0 };
	bs.hd = cg_cols(qt) / bs.heads;
	LLVMValueRef rows = cg_rows(g, qt), K, V;
	LLVMValueRef pos = LLVMBuildSExt(g->b, cg_val_scalar(g, op->args[3]), g->i64, "");
	cg_cache_write(g, op->ia[2], cg_val_ptr(g, op->args[1]), cg_val_ptr(g, op->args[2]), rows, pos, &K, &V);
	LLVMValueRef task = block_task(g, &bs);
	cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
	cg_slot_set(g, 1, K);
	cg_slot_set(g, 2, V);
	cg_slot_set(g, 3, cg_val_ptr(g, op->dst));
	cg_slot_set(g, 4, rows);
	cg_slot_set(g, 5, pos);
	cg_slot_set(g, 6, cg_stat_slot_ptr(g, op->ia[6]));
	cg_slot_set(g, 7, LLVMBuildZExt(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, rows, cg_i64(g, op->ia[5]), ""), g->i64, ""));
	/* query blocks of this call times kv heads; none for no rows */
	LLVMValueRef last = cg_isub(g, cg_iadd(g, pos, rows), cg_i64(g, 1));
	LLVMValueRef nqb = cg_iadd(g, cg_isub(g, LLVMBuildSDiv(g->b, last, cg_i64(g, bs.B), ""),
	                              LLVMBuildSDiv(g->b, pos, cg_i64(g, bs.B), "")), cg_i64(g, 1));
	nqb = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, rows, cg_i64(g, 0), ""), nqb, cg_i64(g, 0), "");
	cg_pfor(g, task, cg_imulc(g, nqb, bs.kvh));
}
