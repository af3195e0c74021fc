/* kernels.c - linear y[T,N] = x[T,K] W[N,K]^T with explicit vector IR.
 * W is packed in panels [N/NR][K][NR] (pack.c), NR = vec * nvec.  Both kernels are
 * tasks over panels, so threads split the weights and each streams its own
 * contiguous range of them exactly once:
 *   GEMV (one row): per panel, for k: broadcast x[k], FMA with the nvec panel
 *     vectors; two accumulator sets (even and odd k) hide the FMA latency.
 *   GEMM (T rows): per panel, blocks of MR rows go through a register-tiled
 *     micro-kernel holding MR x nvec accumulators; for k it loads nvec panel vectors
 *     once and FMAs them with MR broadcast activations.  The T mod MR rows left go
 *     through the micro-kernel generated for exactly that many rows (a switch).
 * The epilogue (fused unary and binary elementwise ops, plan.c) runs on the
 * accumulators before the store.  The last panel, when N is not a multiple of NR,
 * stores (and loads the other operand) with constant masks.
 * Task arguments: slot 0 x, 1 W panels, 2 y, 3 other operand, 4 T. */
#include "codegen/codegen.h"

#include <stdio.h>
#include <string.h>

typedef struct Lin {
	int64_t n, k, np;         /* outputs, inputs, panels */
	int nr, vec, nvec;
	int lastvalid;            /* valid outputs in the last panel (nr when full) */
	const Op *unary;          /* epilogue ops or NULL */
	const Op *binary;
	bool swap;
	bool other_row;           /* the other operand is one row for all rows */
	bool bf16;                /* bf16 panels (CG_BPANEL) instead of f32 */
	LLVMTypeRef wt;           /* element type of the panels: f32 or i16 */
	QFormat fmt;              /* q8/q4 (CG_QPANEL): the integer kernels below */
	int G;                    /* group */
	int64_t ng, kp, gbytes;   /* groups per row, K padded to groups, bytes per panel group */
} Lin;

static LLVMValueRef
mask_const(Cg *g, int valid, int vec)
{
	LLVMValueRef bits[64];
	for (int i = 0; i < vec; i++)
		bits[i] = LLVMConstInt(g->i1, i < valid, 0);
	return LLVMConstVector(bits, (unsigned)vec);
}

/* Epilogue and store of one row's nvec accumulators at y_row (and other_row). */
static void
store_row(Cg *g, const Lin *L, LLVMValueRef *acc, LLVMValueRef yrow, LLVMValueRef orow, bool last)
{
	for (int v = 0; v < L->nvec; v++) {
		int valid = last ? L->lastvalid - v * L->vec : L->vec;
		if (valid <= 0)
			continue;
		if (valid > L->vec)
			valid = L->vec;
		LLVMValueRef val = acc[v];
		LLVMValueRef yp = cg_gep(g, g->f32, yrow, cg_i64(g, v * L->vec));
		if (L->unary)
			val = cg_unary(g, L->unary, val);
		if (L->binary) {
			LLVMValueRef op = cg_gep(g, g->f32, orow, cg_i64(g, v * L->vec));
			LLVMValueRef o;
			if (valid == L->vec) {
				o = cg_load(g, g->vt, op, 4);
			} else {
				LLVMValueRef a[4] = { op, cg_i32c(g, 4), mask_const(g, valid, L->vec), LLVMConstNull(g->vt) };
				LLVMTypeRef tys[2] = { g->vt, g->ptr };
				unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
				LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2);
				o = LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), fn, a, 4, "");
			}
			val = L->swap ? cg_binary(g, L->binary->code, o, val) : cg_binary(g, L->binary->code, val, o);
		}
		if (valid == L->vec) {
			cg_store(g, val, yp, 4);
		} else {
			LLVMValueRef a[4] = { val, yp, cg_i32c(g, 4), mask_const(g, valid, L->vec) };
			LLVMTypeRef tys[2] = { g->vt, g->ptr };
			unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
			LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2);
			LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), fn, a, 4, "");
		}
	}
}

/* Stores rows with the masked path on the last panel when N % NR != 0. */
static void
store_rows(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef *acc, int rows, LLVMValueRef row0,
           LLVMValueRef y, LLVMValueRef other)
{
	LLVMBasicBlockRef full = NULL, part = NULL, done = NULL;
	int passes = L->lastvalid == L->nr ? 1 : 2;
	if (passes == 2) {
		full = LLVMAppendBasicBlockInContext(g->c, g->fn, "full");
		part = LLVMAppendBasicBlockInContext(g->c, g->fn, "partial");
		done = LLVMAppendBasicBlockInContext(g->c, g->fn, "stored");
		LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, p, cg_i64(g, L->np - 1), ""), part, full);
	}
	for (int pass = 0; pass < passes; pass++) {
		bool last = pass == 1;
		if (passes == 2)
			LLVMPositionBuilderAtEnd(g->b, last ? part : full);
		for (int r = 0; r < rows; r++) {
			LLVMValueRef row = LLVMBuildAdd(g->b, row0, cg_i64(g, r), "");
			LLVMValueRef off = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, row, cg_i64(g, L->n), ""),
			                                LLVMBuildMul(g->b, p, cg_i64(g, L->nr), ""), "");
			LLVMValueRef yrow = cg_gep(g, g->f32, y, off);
			LLVMValueRef ooff = L->other_row ? LLVMBuildMul(g->b, p, cg_i64(g, L->nr), "") : off;
			LLVMValueRef orow = L->binary ? cg_gep(g, g->f32, other, ooff) : NULL;
			store_row(g, L, acc + r * L->nvec, yrow, orow, last);
		}
		if (passes == 2)
			LLVMBuildBr(g->b, done);
	}
	if (passes == 2)
		LLVMPositionBuilderAtEnd(g->b, done);
}

/* store_rows of the rows * nvec accumulators kept in the allocas accs. */
static void
store_accs(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef *accs, int rows, LLVMValueRef row0,
           LLVMValueRef y, LLVMValueRef other)
{
	LLVMValueRef vals[16 * 8];
	for (int i = 0; i < rows * L->nvec; i++)
		vals[i] = cg_load(g, g->vt, accs[i], 64);
	store_rows(g, L, p, vals, rows, row0, y, other);
}

static LLVMValueRef
fma_v(Cg *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	LLVMValueRef args[3] = { a, b, c };
	return cg_call_intr(g, "llvm.fma", g->vt, args, 3);
}

/* The vector of panel elements at base[off..off+vec): f32, or bf16 widened (the
 * bits shifted into the high half of an f32: exact). */
static LLVMValueRef
wload(Cg *g, const Lin *L, LLVMValueRef base, LLVMValueRef off)
{
	if (!L->bf16)
		return cg_load(g, g->vt, cg_gep(g, g->f32, base, off), (unsigned)(L->vec * 4 > 64 ? 64 : L->vec * 4));
	LLVMTypeRef i16 = LLVMInt16TypeInContext(g->c), vi32 = LLVMVectorType(g->i32, (unsigned)L->vec);
	LLVMValueRef h = cg_load(g, LLVMVectorType(i16, (unsigned)L->vec), cg_gep(g, i16, base, off), 2);
	LLVMValueRef w = LLVMBuildShl(g->b, LLVMBuildZExt(g->b, h, vi32, ""), cg_splat(g, cg_i32c(g, 16), L->vec), "");
	return LLVMBuildBitCast(g->b, w, g->vt, "");
}

/* The micro-kernel for `rows` rows starting at row0 of panel p: returns after the
 * epilogue and the stores.  Accumulators are allocas that SROA turns into registers. */
static void
micro_kernel(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef row0, int rows, LLVMValueRef x,
             LLVMValueRef wp, LLVMValueRef y, LLVMValueRef other, LLVMValueRef *accs)
{
	LLVMValueRef zero = LLVMConstNull(g->vt);
	int na = rows * L->nvec;
	for (int i = 0; i < na; i++)
		cg_store(g, zero, accs[i], 64);
	LLVMValueRef xrow0 = cg_gep(g, g->f32, x, LLVMBuildMul(g->b, row0, cg_i64(g, L->k), ""));
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->k), NULL, "k");
	LLVMValueRef bv[8];
	LLVMValueRef bk = cg_gep(g, L->wt, wp, LLVMBuildMul(g->b, l.iv, cg_i64(g, L->nr), ""));
	for (int v = 0; v < L->nvec; v++)
		bv[v] = wload(g, L, bk, cg_i64(g, v * L->vec));
	for (int r = 0; r < rows; r++) {
		LLVMValueRef xp = cg_gep(g, g->f32, xrow0, LLVMBuildAdd(g->b, l.iv, cg_i64(g, r * L->k), ""));
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, xp, 4), L->vec);
		for (int v = 0; v < L->nvec; v++) {
			LLVMValueRef ap = accs[r * L->nvec + v];
			cg_store(g, fma_v(g, bv[v], a, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &l);
	store_accs(g, L, p, accs, rows, row0, y, other);
}

/* GEMV: one row; two accumulator sets over even and odd k. */
static void
gemv_panel(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef x, LLVMValueRef wp, LLVMValueRef y,
           LLVMValueRef other, LLVMValueRef *accs)
{
	LLVMValueRef zero = LLVMConstNull(g->vt);
	for (int i = 0; i < 2 * L->nvec; i++)
		cg_store(g, zero, accs[i], 64);
	int64_t k2 = L->k / 2;
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k2), NULL, "k");
	for (int half = 0; half < 2; half++) {
		LLVMValueRef k = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, l.iv, cg_i64(g, 2), ""), cg_i64(g, half), "");
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, cg_gep(g, g->f32, x, k), 4), L->vec);
		LLVMValueRef bk = cg_gep(g, L->wt, wp, LLVMBuildMul(g->b, k, cg_i64(g, L->nr), ""));
		for (int v = 0; v < L->nvec; v++) {
			LLVMValueRef b = wload(g, L, bk, cg_i64(g, v * L->vec));
			LLVMValueRef ap = accs[half * L->nvec + v];
			cg_store(g, fma_v(g, b, a, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &l);
	LLVMValueRef vals[8];
	for (int v = 0; v < L->nvec; v++)
		vals[v] = LLVMBuildFAdd(g->b, cg_load(g, g->vt, accs[v], 64), cg_load(g, g->vt, accs[L->nvec + v], 64), "");
	if (L->k % 2) {
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, cg_gep(g, g->f32, x, cg_i64(g, L->k - 1)), 4), L->vec);
		LLVMValueRef bk = cg_gep(g, L->wt, wp, cg_i64(g, (L->k - 1) * L->nr));
		for (int v = 0; v < L->nvec; v++)
			vals[v] = fma_v(g, wload(g, L, bk, cg_i64(g, v * L->vec)), a, vals[v]);
	}
	store_rows(g, L, p, vals, 1, cg_i64(g, 0), y, other);
}

static LLVMValueRef
linear_task(Cg *g, const Lin *L, bool gemv)
{
	char key[256];
	snprintf(key, sizeof key, "linear.%s%s.%lld.%lld.u%d.%g.b%d%d%d", gemv ? "gemv" : "gemm", L->bf16 ? ".bf16" : "",
	         (long long)L->n, (long long)L->k, L->unary ? (int)L->unary->code * 4 + (int)L->unary->ia[0] : -1,
	         L->unary ? L->unary->fa[0] : 0.0, L->binary ? (int)L->binary->code : -1, L->swap, L->other_row);
	LLVMValueRef fn;
	CgSave save;
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef x = cg_slot_ptr(g, blk, 0), w = cg_slot_ptr(g, blk, 1), y = cg_slot_ptr(g, blk, 2);
	LLVMValueRef other = cg_slot_ptr(g, blk, 3), T = cg_slot_i64(g, blk, 4);
	int mr = g->t->mr;
	int nacc = gemv ? 2 * L->nvec : mr * L->nvec;
	LLVMValueRef accs[16 * 8];
	for (int i = 0; i < nacc; i++)
		accs[i] = cg_alloca(g, g->vt, "acc");
	CgLoop lp = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "panel");
	LLVMValueRef wp = cg_gep(g, L->wt, w, LLVMBuildMul(g->b, lp.iv, cg_i64(g, L->k * L->nr), ""));
	if (gemv) {
		gemv_panel(g, L, lp.iv, x, wp, y, other, accs);
	} else {
		/* full blocks of mr rows */
		LLVMValueRef full = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, T, cg_i64(g, mr), ""), cg_i64(g, mr), "");
		CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), full, cg_i64(g, mr), "rows");
		micro_kernel(g, L, lp.iv, lr.iv, mr, x, wp, y, other, accs);
		cg_loop_end(g, &lr);
		/* the rest: a switch over T mod mr */
		LLVMValueRef rem = LLVMBuildSub(g->b, T, full, "");
		LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest.done");
		LLVMValueRef sw = LLVMBuildSwitch(g->b, rem, after, (unsigned)mr);
		for (int r = 1; r < mr; r++) {
			LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest");
			LLVMAddCase(sw, cg_i64(g, r), bb);
			LLVMPositionBuilderAtEnd(g->b, bb);
			micro_kernel(g, L, lp.iv, full, r, x, wp, y, other, accs);
			LLVMBuildBr(g->b, after);
		}
		LLVMPositionBuilderAtEnd(g->b, after);
	}
	cg_loop_end(g, &lp);
	cg_task_end(g, &save);
	return fn;
}

/* ---- q8/q4: integer kernels over CG_QPANEL (codegen.h), the arithmetic of
 * ir_quant_row and ir_quant_dot (ir/quant.c) ----
 * The activations are quantised first, per row and group, into the entry's
 * scratch (codes, scales, code sums).  A task over panels then runs, per group, the
 * integer dot products of the weight codes (unsigned, zero point z) and the
 * activation codes (signed) in i32 accumulators, corrects them by z times the
 * activation codes' sum, converts and accumulates d_w * s_x * sum in f32 registers;
 * epilogue and stores are the f32 kernels'.  The dot product of 4 codes per i32 lane
 * is vpdpbusd (VNNI), sdot on AArch64 (with the weight codes made signed first, so
 * no correction), or widened multiplies and adds. */

static LLVMTypeRef
vec_of(LLVMTypeRef elt, int n)
{
	return LLVMVectorType(elt, (unsigned)n);
}

/* f16 bits (vector of i16) -> f32, exactly as ir_f16_to_f32. */
static LLVMValueRef
f16_decode(Cg *g, LLVMValueRef h, int n)
{
	LLVMTypeRef vi = vec_of(g->i32, n), vf = vec_of(g->f32, n);
	if (g->t->f16cvt) /* vcvtph2ps / fcvtl: exact, as is the widening below */
		return LLVMBuildFPExt(g->b, LLVMBuildBitCast(g->b, h, vec_of(LLVMHalfTypeInContext(g->c), n), ""), vf, "");
	LLVMValueRef w = LLVMBuildZExt(g->b, h, vi, "");
	LLVMValueRef mag = LLVMBuildShl(g->b, LLVMBuildAnd(g->b, w, cg_splat(g, cg_i32c(g, 0x7fff), n), ""),
	                                cg_splat(g, cg_i32c(g, 13), n), "");
	LLVMValueRef f = LLVMBuildFMul(g->b, LLVMBuildBitCast(g->b, mag, vf, ""), cg_splat(g, cg_f32c(g, 0x1p112), n), "");
	LLVMValueRef sign = LLVMBuildShl(g->b, LLVMBuildAnd(g->b, w, cg_splat(g, cg_i32c(g, 0x8000), n), ""),
	                                 cg_splat(g, cg_i32c(g, 16), n), "");
	return LLVMBuildBitCast(g->b, LLVMBuildOr(g->b, LLVMBuildBitCast(g->b, f, vi, ""), sign, ""), vf, "");
}

/* The scales of the NR rows of a panel group gp (f16, at its start) as nvec f32
 * vectors. */
static void
q_scales(Cg *g, const Lin *L, LLVMValueRef gp, LLVMValueRef *sv)
{
	LLVMTypeRef i16 = LLVMInt16TypeInContext(g->c);
	for (int v = 0; v < L->nvec; v++)
		sv[v] = f16_decode(g, cg_load(g, vec_of(i16, L->vec), cg_gep(g, i16, gp, cg_i64(g, v * L->vec)), 2), L->vec);
}

/* The raw code vectors of block b (4 k, q4: 8) of panel group gp: lane j of vector
 * v holds the 4 bytes of row v * vec + j. */
static void
q_block(Cg *g, const Lin *L, LLVMValueRef gp, LLVMValueRef b, LLVMValueRef *raw)
{
	LLVMValueRef cb = cg_gep(g, g->i8, gp, LLVMBuildAdd(g->b, cg_i64(g, 2 * L->nr),
	                                                  LLVMBuildMul(g->b, b, cg_i64(g, L->nr * 4), ""), ""));
	for (int v = 0; v < L->nvec; v++)
		raw[v] = cg_load(g, vec_of(g->i32, L->vec), cg_gep(g, g->i8, cb, cg_i64(g, v * L->vec * 4)), 1);
}

/* Code i of a block (0 .. 3, q4: 0 .. 7) from its raw i32 lanes, as f32 c - off:
 * q8 byte i; q4 the low nibble of byte i for i < 4, the high nibble of byte i - 4
 * otherwise (pack.c).  With 16 lanes (AVX-512, the only target with vec 16) a q4
 * code is one vpermps of a 16-entry table, which reads the low 4 bits of each
 * index: the shifted lanes need no mask and no int-to-float conversion. */
static LLVMValueRef
q_code(Cg *g, const Lin *L, LLVMValueRef raw, int i, int off)
{
	bool q4 = L->fmt == QF_Q4;
	int n = L->vec, sh = q4 ? (i < 4 ? 8 * i : 8 * (i - 4) + 4) : 8 * i;
	LLVMValueRef c = raw;
	if (sh)
		c = LLVMBuildLShr(g->b, c, cg_splat(g, cg_i32c(g, sh), n), "");
	if (q4 && n == 16) {
		LLVMValueRef tab[16];
		for (int j = 0; j < 16; j++)
			tab[j] = cg_f32c(g, (float)(j - off));
		LLVMValueRef a[2] = { LLVMConstVector(tab, 16), c };
		return cg_call_intr(g, "llvm.x86.avx512.permvar.sf.512", NULL, a, 2);
	}
	if (sh != 24 || q4)
		c = LLVMBuildAnd(g->b, c, cg_splat(g, cg_i32c(g, q4 ? 15 : 255), n), "");
	if (off)
		c = LLVMBuildSub(g->b, c, cg_splat(g, cg_i32c(g, off), n), "");
	return LLVMBuildSIToFP(g->b, c, g->vt, "");
}

/* acc (vec x i32) += per lane, the dot product of 4 weight codes (w) and 4
 * activation codes (x), both <4 vec x i8>. */
static LLVMValueRef
idot(Cg *g, const Lin *L, LLVMValueRef acc, LLVMValueRef w, LLVMValueRef x)
{
	int n = L->vec;
	LLVMTypeRef vi = vec_of(g->i32, n), vb = vec_of(g->i8, 4 * n);
	switch (g->t->dot) {
	case CG_DOT_VNNI: {
		LLVMValueRef a[3] = { acc, LLVMBuildBitCast(g->b, w, vi, ""), LLVMBuildBitCast(g->b, x, vi, "") };
		return cg_call_intr(g, n == 16 ? "llvm.x86.avx512.vpdpbusd.512" : "llvm.x86.avx512.vpdpbusd.256", NULL, a, 3);
	}
	case CG_DOT_SDOT: {
		const char *nm = "llvm.aarch64.neon.sdot";
		unsigned id = LLVMLookupIntrinsicID(nm, strlen(nm));
		LLVMTypeRef tys[2] = { vi, vb };
		LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2);
		LLVMValueRef a[3] = { acc, w, x };
		return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), fn, a, 3, "");
	}
	case CG_DOT_GENERIC:
		break;
	}
	LLVMTypeRef wi = vec_of(g->i32, 4 * n);
	LLVMValueRef prod = LLVMBuildMul(g->b, LLVMBuildZExt(g->b, w, wi, ""), LLVMBuildSExt(g->b, x, wi, ""), "");
	for (int j = 0; j < 4; j++) {
		LLVMValueRef idx[64];
		for (int i = 0; i < n; i++)
			idx[i] = cg_i32c(g, 4 * i + j);
		acc = LLVMBuildAdd(g->b, acc,
		                   LLVMBuildShuffleVector(g->b, prod, LLVMGetPoison(wi), LLVMConstVector(idx, (unsigned)n), ""), "");
	}
	return acc;
}

/* The q micro-kernel: rows rows from row0 of panel p.  xq, xs, xsum: the quantised
 * activations; wp: the panel. */
static void
q_micro(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef row0, int rows, LLVMValueRef xq, LLVMValueRef xs,
        LLVMValueRef xsum, LLVMValueRef wp, LLVMValueRef y, LLVMValueRef other, LLVMValueRef *facc,
        LLVMValueRef *iacc)
{
	int nv = L->nvec, n = L->vec, na = rows * nv;
	bool q4 = L->fmt == QF_Q4, sdot = g->t->dot == CG_DOT_SDOT;
	LLVMTypeRef vi = vec_of(g->i32, n), vb = vec_of(g->i8, 4 * n);
	for (int i = 0; i < na; i++)
		cg_store(g, LLVMConstNull(g->vt), facc[i], 64);
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->ng), NULL, "group");
	LLVMValueRef gp = cg_gep(g, g->i8, wp, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->gbytes), ""));
	LLVMValueRef sv[8];
	q_scales(g, L, gp, sv);
	for (int i = 0; i < na; i++)
		cg_store(g, LLVMConstNull(vi), iacc[i], 64);
	LLVMValueRef xg = cg_gep(g, g->i8, xq, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, row0, cg_i64(g, L->kp), ""),
	                                                   LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""), ""));
	int nb = q4 ? L->G / 8 : L->G / 4;
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, nb), NULL, "kb");
	LLVMValueRef cb = cg_gep(g, g->i8, gp, LLVMBuildAdd(g->b, cg_i64(g, 2 * L->nr),
	                                                  LLVMBuildMul(g->b, lb.iv, cg_i64(g, L->nr * 4), ""), ""));
	LLVMValueRef raw[8];
	for (int v = 0; v < nv; v++)
		raw[v] = cg_load(g, vb, cg_gep(g, g->i8, cb, cg_i64(g, v * n * 4)), 1);
	for (int sub = 0; sub < (q4 ? 2 : 1); sub++) {
		LLVMValueRef wv[8];
		for (int v = 0; v < nv; v++) {
			LLVMValueRef c = raw[v];
			if (q4)
				c = sub == 0 ? LLVMBuildAnd(g->b, c, cg_splat(g, LLVMConstInt(g->i8, 15, 0), 4 * n), "")
				             : LLVMBuildLShr(g->b, c, cg_splat(g, LLVMConstInt(g->i8, 4, 0), 4 * n), "");
			if (sdot) /* the signed value c - z */
				c = LLVMBuildSub(g->b, c, cg_splat(g, LLVMConstInt(g->i8, (unsigned)ir_qformat_zero(L->fmt), 0), 4 * n), "");
			wv[v] = c;
		}
		LLVMValueRef kofs = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lb.iv, cg_i64(g, q4 ? 8 : 4), ""), cg_i64(g, sub * 4), "");
		for (int r = 0; r < rows; r++) {
			LLVMValueRef xp = cg_gep(g, g->i8, xg, LLVMBuildAdd(g->b, kofs, cg_i64(g, r * L->kp), ""));
			LLVMValueRef xb = LLVMBuildBitCast(g->b, cg_splat(g, cg_load(g, g->i32, xp, 1), n), vb, "");
			for (int v = 0; v < nv; v++) {
				LLVMValueRef ap = iacc[r * nv + v];
				cg_store(g, idot(g, L, cg_load(g, vi, ap, 64), wv[v], xb), ap, 64);
			}
		}
	}
	cg_loop_end(g, &lb);
	for (int r = 0; r < rows; r++) {
		LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildAdd(g->b, row0, cg_i64(g, r), ""),
		                                                  cg_i64(g, L->ng), ""), lg.iv, "");
		LLVMValueRef sx = cg_splat(g, cg_load(g, g->f32, cg_gep(g, g->f32, xs, at), 4), n);
		LLVMValueRef corr = NULL;
		if (!sdot) {
			LLVMValueRef sum = cg_load(g, g->i32, cg_gep(g, g->i32, xsum, at), 4);
			corr = cg_splat(g, LLVMBuildMul(g->b, sum, cg_i32c(g, ir_qformat_zero(L->fmt)), ""), n);
		}
		for (int v = 0; v < nv; v++) {
			LLVMValueRef iv = cg_load(g, vi, iacc[r * nv + v], 64);
			if (corr)
				iv = LLVMBuildSub(g->b, iv, corr, "");
			LLVMValueRef f = LLVMBuildSIToFP(g->b, iv, g->vt, "");
			LLVMValueRef sc = LLVMBuildFMul(g->b, sv[v], sx, "");
			LLVMValueRef ap = facc[r * nv + v];
			cg_store(g, fma_v(g, f, sc, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &lg);
	store_accs(g, L, p, facc, rows, row0, y, other);
}

/* The dequantising micro-kernel (the default): rows rows from row0 of panel p, with
 * f32 activations x[T, K].  Per group it decodes the NR scales; per block of 4 k
 * (q4: 8) it loads the codes of NR rows once as i32 lanes (lane j holds row j's
 * codes of the block), and for each k takes its byte (nibble) by a shift and a mask,
 * makes w = d * (c - z) in f32 (exactly the dequantised weight of ir/quant.c) and
 * FMAs it with the broadcast x[row, k] of every row.  A k past K (last group of a
 * row whose K is not a multiple of the group) reads 0 for x. */
static void
dq_micro(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef row0, int rows, LLVMValueRef x, LLVMValueRef wp,
         LLVMValueRef y, LLVMValueRef other, LLVMValueRef *facc)
{
	int nv = L->nvec, n = L->vec, na = rows * nv;
	int nk = L->fmt == QF_Q4 ? 8 : 4;
	for (int i = 0; i < na; i++)
		cg_store(g, LLVMConstNull(g->vt), facc[i], 64);
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->ng), NULL, "group");
	LLVMValueRef gp = cg_gep(g, g->i8, wp, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->gbytes), ""));
	LLVMValueRef sv[8];
	q_scales(g, L, gp, sv);
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->G / nk), NULL, "kb");
	LLVMValueRef raw[8];
	q_block(g, L, gp, lb.iv, raw);
	LLVMValueRef k0 = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""),
	                               LLVMBuildMul(g->b, lb.iv, cg_i64(g, nk), ""), "");
	bool ragged = L->k % L->G != 0;
	for (int i = 0; i < nk; i++) {
		LLVMValueRef wf[8];
		for (int v = 0; v < nv; v++)
			wf[v] = LLVMBuildFMul(g->b, sv[v], q_code(g, L, raw[v], i, ir_qformat_zero(L->fmt)), "");
		LLVMValueRef k = LLVMBuildAdd(g->b, k0, cg_i64(g, i), "");
		LLVMValueRef inside = NULL;
		if (ragged) {
			inside = LLVMBuildICmp(g->b, LLVMIntSLT, k, cg_i64(g, L->k), "");
			k = LLVMBuildSelect(g->b, inside, k, cg_i64(g, L->k - 1), "");
		}
		for (int r = 0; r < rows; r++) {
			LLVMValueRef row = LLVMBuildAdd(g->b, row0, cg_i64(g, r), "");
			LLVMValueRef xp = cg_gep(g, g->f32, x, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, row, cg_i64(g, L->k), ""), k, ""));
			LLVMValueRef xv = cg_load(g, g->f32, xp, 4);
			if (inside)
				xv = LLVMBuildSelect(g->b, inside, xv, cg_f32c(g, 0.0), "");
			LLVMValueRef a = cg_splat(g, xv, n);
			for (int v = 0; v < nv; v++) {
				LLVMValueRef ap = facc[r * nv + v];
				cg_store(g, fma_v(g, wf[v], a, cg_load(g, g->vt, ap, 64)), ap, 64);
			}
		}
	}
	cg_loop_end(g, &lb);
	cg_loop_end(g, &lg);
	store_accs(g, L, p, facc, rows, row0, y, other);
}

/* The dequantising GEMV (one row): as dq_micro, but cheaper per weight, since one
 * row cannot share the conversion: per group, the unsigned codes c (as f32) are
 * multiplied with x in four accumulator sets (k mod 4: independent FMA chains), and
 * the group's sum is scaled once: y += d * (sum_k c x_k - z sum_k x_k), with the
 * group sums of x computed once per task into xg[ng].  The same value as the
 * reference up to f32 rounding. */
static void
dq_gemv(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef x, LLVMValueRef wp, LLVMValueRef xg, LLVMValueRef y,
        LLVMValueRef other, LLVMValueRef *facc, LLVMValueRef *gacc)
{
	int nv = L->nvec, n = L->vec;
	int nk = L->fmt == QF_Q4 ? 8 : 4;
	for (int i = 0; i < nv; i++)
		cg_store(g, LLVMConstNull(g->vt), facc[i], 64);
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->ng), NULL, "group");
	LLVMValueRef gp = cg_gep(g, g->i8, wp, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->gbytes), ""));
	for (int i = 0; i < 4 * nv; i++)
		cg_store(g, LLVMConstNull(g->vt), gacc[i], 64);
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->G / nk), NULL, "kb");
	LLVMValueRef raw[8];
	q_block(g, L, gp, lb.iv, raw);
	LLVMValueRef k0 = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""),
	                               LLVMBuildMul(g->b, lb.iv, cg_i64(g, nk), ""), "");
	bool ragged = L->k % L->G != 0;
	for (int i = 0; i < nk; i++) {
		LLVMValueRef k = LLVMBuildAdd(g->b, k0, cg_i64(g, i), "");
		LLVMValueRef inside = NULL;
		if (ragged) {
			inside = LLVMBuildICmp(g->b, LLVMIntSLT, k, cg_i64(g, L->k), "");
			k = LLVMBuildSelect(g->b, inside, k, cg_i64(g, L->k - 1), "");
		}
		LLVMValueRef xv = cg_load(g, g->f32, cg_gep(g, g->f32, x, k), 4);
		if (inside)
			xv = LLVMBuildSelect(g->b, inside, xv, cg_f32c(g, 0.0), "");
		LLVMValueRef a = cg_splat(g, xv, n);
		for (int v = 0; v < nv; v++) {
			LLVMValueRef ap = gacc[(i % 4) * nv + v];
			cg_store(g, fma_v(g, q_code(g, L, raw[v], i, 0), a, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &lb);
	LLVMValueRef zs = cg_splat(g, LLVMBuildFMul(g->b, cg_load(g, g->f32, cg_gep(g, g->f32, xg, lg.iv), 4),
	                                            cg_f32c(g, ir_qformat_zero(L->fmt)), ""), n);
	LLVMValueRef sv[8];
	q_scales(g, L, gp, sv);
	for (int v = 0; v < nv; v++) {
		LLVMValueRef sum = cg_load(g, g->vt, gacc[v], 64);
		for (int s2 = 1; s2 < 4; s2++)
			sum = LLVMBuildFAdd(g->b, sum, cg_load(g, g->vt, gacc[s2 * nv + v], 64), "");
		sum = LLVMBuildFSub(g->b, sum, zs, "");
		cg_store(g, fma_v(g, sum, sv[v], cg_load(g, g->vt, facc[v], 64)), facc[v], 64);
	}
	cg_loop_end(g, &lg);
	LLVMValueRef vals[8];
	for (int v = 0; v < nv; v++)
		vals[v] = cg_load(g, g->vt, facc[v], 64);
	store_rows(g, L, p, vals, 1, cg_i64(g, 0), y, other);
}

/* Group sums of x[K] into xg[ng] (the zero-point correction of dq_gemv). */
static void
group_sums(Cg *g, const Lin *L, LLVMValueRef x, LLVMValueRef xg)
{
	LLVMValueRef acc = cg_alloca(g, g->f32, "gsum");
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->ng), NULL, "gsum");
	cg_store(g, cg_f32c(g, 0.0), acc, 4);
	LLVMValueRef k0 = LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), "");
	LLVMValueRef end = LLVMBuildAdd(g->b, k0, cg_i64(g, L->G), "");
	LLVMValueRef over = LLVMBuildICmp(g->b, LLVMIntSGT, end, cg_i64(g, L->k), "");
	end = LLVMBuildSelect(g->b, over, cg_i64(g, L->k), end, "");
	CgLoop lk = cg_loop_begin(g, k0, end, NULL, "gsumk");
	LLVMValueRef v = cg_load(g, g->f32, cg_gep(g, g->f32, x, lk.iv), 4);
	cg_store(g, cg_fast(LLVMBuildFAdd(g->b, cg_load(g, g->f32, acc, 4), v, "")), acc, 4);
	cg_loop_end(g, &lk);
	cg_store(g, cg_load(g, g->f32, acc, 4), cg_gep(g, g->f32, xg, lg.iv), 4);
	cg_loop_end(g, &lg);
}

/* Dequantises panel wp (all groups) into buf, the f32 panel layout [Kp][NR]: each
 * weight d * (c - z) as dq_micro makes it.  The GEMM then runs the f32 micro-kernel
 * over every block of rows from buf, so the conversion is done once per panel. */
static void
dq_fill(Cg *g, const Lin *L, LLVMValueRef wp, LLVMValueRef buf)
{
	int nv = L->nvec, n = L->vec;
	int nk = L->fmt == QF_Q4 ? 8 : 4;
	CgLoop lg = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->ng), NULL, "fgroup");
	LLVMValueRef gp = cg_gep(g, g->i8, wp, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->gbytes), ""));
	LLVMValueRef sv[8];
	q_scales(g, L, gp, sv);
	CgLoop lb = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->G / nk), NULL, "fkb");
	LLVMValueRef raw[8];
	q_block(g, L, gp, lb.iv, raw);
	LLVMValueRef k0 = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""),
	                               LLVMBuildMul(g->b, lb.iv, cg_i64(g, nk), ""), "");
	for (int v = 0; v < nv; v++) {
		for (int i = 0; i < nk; i++) {
			LLVMValueRef wf = LLVMBuildFMul(g->b, sv[v], q_code(g, L, raw[v], i, ir_qformat_zero(L->fmt)), "");
			LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildAdd(g->b, k0, cg_i64(g, i), ""),
			                                                  cg_i64(g, L->nr), ""), cg_i64(g, v * n), "");
			cg_store(g, wf, cg_gep(g, g->f32, buf, at), 64);
		}
	}
	cg_loop_end(g, &lb);
	cg_loop_end(g, &lg);
}

/* Task over panels: slots 0 activations (int8: codes), 1 W, 2 y, 3 other, 4 T, and
 * for int8 activations 5 scales, 6 sums. */
static LLVMValueRef
qlinear_task(Cg *g, const Lin *L, bool gemv, bool int8)
{
	char key[256];
	snprintf(key, sizeof key, "qlinear%s.%s.%s.g%d.%lld.%lld.u%d.%g.b%d%d%d", int8 ? ".a8" : "", gemv ? "gemv" : "gemm",
	         ir_qformat_name(L->fmt), L->G, (long long)L->n, (long long)L->k,
	         L->unary ? (int)L->unary->code * 4 + (int)L->unary->ia[0] : -1, L->unary ? L->unary->fa[0] : 0.0,
	         L->binary ? (int)L->binary->code : -1, L->swap, L->other_row);
	LLVMValueRef fn;
	CgSave save;
	if (!cg_task_open(g, key, &fn, &save))
		return fn;
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef xq = cg_slot_ptr(g, blk, 0), w = cg_slot_ptr(g, blk, 1), y = cg_slot_ptr(g, blk, 2);
	LLVMValueRef other = cg_slot_ptr(g, blk, 3), T = cg_slot_i64(g, blk, 4);
	LLVMValueRef xs = cg_slot_ptr(g, blk, 5), xsum = cg_slot_ptr(g, blk, 6);
	int mr = gemv ? 1 : int8 ? g->t->qmr : g->t->mr;
	LLVMValueRef facc[16 * 8], iacc[16 * 8];
	for (int i = 0; i < mr * L->nvec; i++) {
		facc[i] = cg_alloca(g, g->vt, "facc");
		iacc[i] = cg_alloca(g, vec_of(g->i32, L->vec), "iacc");
	}
	LLVMValueRef xg = NULL, gacc[4 * 8];
	if (gemv && !int8) {
		xg = cg_alloca(g, LLVMArrayType(g->f32, (unsigned)L->ng), "xg");
		for (int i = 0; i < 4 * L->nvec; i++)
			gacc[i] = cg_alloca(g, g->vt, "gacc");
		group_sums(g, L, xq, xg);
	}
	/* the GEMM dequantises each panel once into an f32 panel on the stack (at most
	 * 1 MiB: larger ones convert per block of rows, dq_micro) */
	bool fill = !gemv && !int8 && L->kp * L->nr * 4 <= (1 << 20);
	LLVMValueRef buf = NULL, accs[16 * 8];
	Lin F = *L;
	if (fill) {
		buf = LLVMBuildArrayAlloca(g->b, g->f32, cg_i64(g, L->kp * L->nr), "panelbuf");
		LLVMSetAlignment(buf, 64);
		F.bf16 = false;
		F.wt = g->f32;
		for (int i = 0; i < g->t->mr * L->nvec; i++)
			accs[i] = cg_alloca(g, g->vt, "acc");
		mr = g->t->mr;
	}
	CgLoop lp = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "panel");
	LLVMValueRef wp = cg_gep(g, g->i8, w, LLVMBuildMul(g->b, lp.iv, cg_i64(g, L->ng * L->gbytes), ""));
	if (fill)
		dq_fill(g, L, wp, buf);
#define MICRO(row0, rows) \
	(int8 ? q_micro(g, L, lp.iv, row0, rows, xq, xs, xsum, wp, y, other, facc, iacc) \
	 : fill ? micro_kernel(g, &F, lp.iv, row0, rows, xq, buf, y, other, accs) \
	        : dq_micro(g, L, lp.iv, row0, rows, xq, wp, y, other, facc))
	if (gemv && !int8) {
		dq_gemv(g, L, lp.iv, xq, wp, xg, y, other, facc, gacc);
	} else if (gemv) {
		MICRO(cg_i64(g, 0), 1);
	} else {
		LLVMValueRef full = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, T, cg_i64(g, mr), ""), cg_i64(g, mr), "");
		CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), full, cg_i64(g, mr), "rows");
		MICRO(lr.iv, mr);
		cg_loop_end(g, &lr);
		LLVMValueRef rem = LLVMBuildSub(g->b, T, full, "");
		LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest.done");
		LLVMValueRef sw = LLVMBuildSwitch(g->b, rem, after, (unsigned)mr);
		for (int r = 1; r < mr; r++) {
			LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest");
			LLVMAddCase(sw, cg_i64(g, r), bb);
			LLVMPositionBuilderAtEnd(g->b, bb);
			MICRO(full, r);
			LLVMBuildBr(g->b, after);
		}
		LLVMPositionBuilderAtEnd(g->b, after);
	}
#undef MICRO
	cg_loop_end(g, &lp);
	cg_task_end(g, &save);
	return fn;
}

/* One group of len elements at xr quantised into qr: returns its max |x| and the
 * sum of its codes (i32), ir_quant_row's operations.  w > 1: in vectors of w lanes
 * (len a multiple of w), the max and the sum reduced at the end (both exact, so
 * the same values as one element at a time); w = 1: scalar. */
static void
quant_group(Cg *g, LLVMValueRef xr, LLVMValueRef qr, int64_t len, int w, LLVMValueRef *amax, LLVMValueRef *sum)
{
	LLVMTypeRef vf = w > 1 ? vec_of(g->f32, w) : g->f32, vi = w > 1 ? vec_of(g->i32, w) : g->i32;
	LLVMTypeRef vb = w > 1 ? vec_of(g->i8, w) : g->i8;
#define SPLAT(c) (w > 1 ? cg_splat(g, (c), w) : (c))
	LLVMValueRef am = cg_alloca(g, vf, "amax"), sm = cg_alloca(g, vi, "qsum");
	cg_store(g, LLVMConstNull(vf), am, 4);
	CgLoop l1 = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, len / w), NULL, "qmax");
	LLVMValueRef v = cg_load(g, vf, cg_gep(g, vf, xr, l1.iv), 4);
	LLVMValueRef a2[2] = { cg_load(g, vf, am, 4), cg_call_intr(g, "llvm.fabs", vf, &v, 1) };
	/* maximum, not maxnum: a NaN makes the group's scale NaN, so it reaches the result */
	cg_store(g, cg_call_intr(g, "llvm.maximum", vf, a2, 2), am, 4);
	cg_loop_end(g, &l1);
	LLVMValueRef m = cg_load(g, vf, am, 4);
	if (w > 1)
		m = cg_call_intr(g, "llvm.vector.reduce.fmaximum", vf, &m, 1);
	LLVMValueRef pos = LLVMBuildFCmp(g->b, LLVMRealOGT, m, cg_f32c(g, 0.0), "");
	LLVMValueRef inv = LLVMBuildSelect(g->b, pos, LLVMBuildFDiv(g->b, cg_f32c(g, 127.0), m, ""), cg_f32c(g, 0.0), "");
	inv = SPLAT(inv);
	cg_store(g, LLVMConstNull(vi), sm, 4);
	CgLoop l2 = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, len / w), NULL, "qcode");
	LLVMValueRef xv = cg_load(g, vf, cg_gep(g, vf, xr, l2.iv), 4);
	LLVMValueRef r = LLVMBuildFMul(g->b, xv, inv, "");
	r = cg_call_intr(g, "llvm.roundeven", vf, &r, 1);
	LLVMValueRef lo[2] = { r, SPLAT(cg_f32c(g, -127.0)) };
	r = cg_call_intr(g, "llvm.maxnum", vf, lo, 2);
	LLVMValueRef hi[2] = { r, SPLAT(cg_f32c(g, 127.0)) };
	r = cg_call_intr(g, "llvm.minnum", vf, hi, 2);
	LLVMValueRef q = LLVMBuildFPToSI(g->b, r, vi, "");
	cg_store(g, LLVMBuildTrunc(g->b, q, vb, ""), cg_gep(g, vb, qr, l2.iv), 1);
	cg_store(g, LLVMBuildAdd(g->b, cg_load(g, vi, sm, 4), q, ""), sm, 4);
	cg_loop_end(g, &l2);
#undef SPLAT
	LLVMValueRef s = cg_load(g, vi, sm, 4);
	if (w > 1)
		s = cg_call_intr(g, "llvm.vector.reduce.add", vi, &s, 1);
	*amax = m;
	*sum = s;
}

/* The activations x[T, K] quantised per row and group into codes [T][Kp] (zero past
 * K), scales and sums [T][ng]: ir_quant_row.  The full groups go in vectors (the
 * widest of the target's width, 8 or 4 that divides G), a last group shorter than
 * G (K not a multiple of G) element by element, its codes past K set to 0. */
static void
quantize_rows(Cg *g, const Lin *L, LLVMValueRef x, LLVMValueRef rows, LLVMValueRef xq, LLVMValueRef xs,
              LLVMValueRef xsum)
{
	int64_t last = L->k - (L->ng - 1) * L->G, nfull = last == L->G ? L->ng : L->ng - 1;
	int w = L->vec;
	while (w > 1 && L->G % w)
		w /= 2;
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), rows, NULL, "qrow");
	for (int part = 0; part < 2; part++) {
		if (part == 0 ? nfull == 0 : nfull == L->ng)
			continue;
		CgLoop lg = cg_loop_begin(g, cg_i64(g, part ? L->ng - 1 : 0), cg_i64(g, part ? L->ng : nfull), NULL, "qgroup");
		LLVMValueRef xr = cg_gep(g, g->f32, x, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, L->k), ""),
		                                                   LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""), ""));
		LLVMValueRef qr = cg_gep(g, g->i8, xq, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, L->kp), ""),
		                                                   LLVMBuildMul(g->b, lg.iv, cg_i64(g, L->G), ""), ""));
		LLVMValueRef am, sum;
		quant_group(g, xr, qr, part ? last : L->G, part ? 1 : w, &am, &sum);
		if (part) { /* zero codes past K in the last group */
			CgLoop l3 = cg_loop_begin(g, cg_i64(g, last), cg_i64(g, L->G), NULL, "qpad");
			cg_store(g, LLVMConstInt(g->i8, 0, 0), cg_gep(g, g->i8, qr, l3.iv), 1);
			cg_loop_end(g, &l3);
		}
		LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, L->ng), ""), lg.iv, "");
		cg_store(g, LLVMBuildFDiv(g->b, am, cg_f32c(g, 127.0), ""), cg_gep(g, g->f32, xs, at), 4);
		cg_store(g, sum, cg_gep(g, g->i32, xsum, at), 4);
		cg_loop_end(g, &lg);
	}
	cg_loop_end(g, &lr);
}

static void
lower_qlinear(Cg *g, const Op *op, const CgFuse *fu, Lin *L, const Param *pm, uint32_t param, bool gemv)
{
	Type xt = g->f->vals[op->args[0]].type;
	L->fmt = pm->format;
	L->G = pm->group;
	L->ng = ir_quant_groups(L->k, L->G);
	L->kp = L->ng * L->G;
	L->gbytes = cg_qpanel_group_bytes(L->fmt, L->G, L->nr);
	int64_t rows = cg_static_rows(xt);
	if (pm->act != AF_INT8) { /* f32 activations: the dequantising kernels */
		LLVMValueRef task = qlinear_task(g, L, gemv, false);
		cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
		cg_slot_set(g, 1, cg_param_ptr(g, param, CG_QPANEL));
		cg_slot_set(g, 2, cg_val_ptr(g, fu->out));
		cg_slot_set(g, 3, L->binary ? cg_val_ptr(g, fu->other) : LLVMConstNull(g->ptr));
		cg_slot_set(g, 4, cg_rows(g, xt));
		cg_pfor(g, task, cg_i64(g, L->np));
		return;
	}
	if (g->plan.qscratch < 0)
		ELIDE_ICE("quantised linear without scratch");
	LLVMValueRef xq = cg_gepb(g, g->arena, g->plan.qscratch);
	LLVMValueRef xs = cg_gepb(g, g->arena, g->plan.qscratch + cg_qscratch_codes(rows, L->kp));
	LLVMValueRef xsum = cg_gepb(g, g->arena, g->plan.qscratch + cg_qscratch_codes(rows, L->kp)
	                                         + ((rows * L->ng * 4 + 63) & ~(int64_t)63));
	quantize_rows(g, L, cg_val_ptr(g, op->args[0]), cg_rows(g, xt), xq, xs, xsum);
	LLVMValueRef task = qlinear_task(g, L, gemv, true);
	cg_slot_set(g, 0, xq);
	cg_slot_set(g, 1, cg_param_ptr(g, param, CG_QPANEL));
	cg_slot_set(g, 2, cg_val_ptr(g, fu->out));
	cg_slot_set(g, 3, L->binary ? cg_val_ptr(g, fu->other) : LLVMConstNull(g->ptr));
	cg_slot_set(g, 4, cg_rows(g, xt));
	cg_slot_set(g, 5, xs);
	cg_slot_set(g, 6, xsum);
	cg_pfor(g, task, cg_i64(g, L->np));
}

/* A weight computed at run time (not a param, so not packed): plain loops over the
 * row-major W[N,K], with the epilogue per element. */
static void
linear_computed(Cg *g, const Op *op, const CgFuse *fu)
{
	const Func *f = g->f;
	Type xt = f->vals[op->args[0]].type, wt = f->vals[op->args[1]].type;
	int64_t n = cg_static_rows(wt), k = cg_cols(wt);
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), w = cg_val_ptr(g, op->args[1]), y = cg_val_ptr(g, fu->out);
	LLVMValueRef other = fu->binary >= 0 ? cg_val_ptr(g, fu->other) : NULL;
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc");
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, xt), NULL, "row");
	CgLoop ln = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, n), NULL, "n");
	cg_store(g, cg_f32c(g, 0.0), acc, 4);
	CgLoop lk = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k), NULL, "k");
	LLVMValueRef xv = cg_load(g, g->f32, cg_gep(g, g->f32, x, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, k), ""), lk.iv, "")), 4);
	LLVMValueRef wv = cg_load(g, g->f32, cg_gep(g, g->f32, w, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, ln.iv, cg_i64(g, k), ""), lk.iv, "")), 4);
	cg_store(g, cg_fast(LLVMBuildFAdd(g->b, cg_load(g, g->f32, acc, 4), cg_fast(LLVMBuildFMul(g->b, xv, wv, "")), "")), acc, 4);
	cg_loop_end(g, &lk);
	LLVMValueRef v = cg_load(g, g->f32, acc, 4);
	LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, n), ""), ln.iv, "");
	if (fu->unary >= 0)
		v = cg_unary(g, &f->ops[fu->unary], v);
	if (fu->binary >= 0) {
		LLVMValueRef o = cg_load(g, g->f32, cg_gep(g, g->f32, other, fu->other_row ? ln.iv : at), 4);
		Opcode c = f->ops[fu->binary].code;
		v = fu->bin_swap ? cg_binary(g, c, o, v) : cg_binary(g, c, v, o);
	}
	cg_store(g, v, cg_gep(g, g->f32, y, at), 4);
	cg_loop_end(g, &ln);
	cg_loop_end(g, &lr);
}

void
cg_lower_linear(Cg *g, uint32_t opi)
{
	const Func *f = g->f;
	const Op *op = &f->ops[opi];
	const CgFuse *fu = &g->plan.fuse[opi];
	Type xt = f->vals[op->args[0]].type, wt = f->vals[op->args[1]].type;
	const Op *wdef = ir_def((Func *)f, op->args[1]);
	if (wdef->code != OP_PARAM) {
		linear_computed(g, op, fu);
		return;
	}
	Lin L = { .n = cg_static_rows(wt), .k = cg_cols(wt), .nr = cg_target_nr(g->t), .vec = g->t->vec,
	          .nvec = g->t->nvec };
	L.np = (L.n + L.nr - 1) / L.nr;
	L.lastvalid = (int)(L.n - (L.np - 1) * L.nr);
	L.unary = fu->unary >= 0 ? &f->ops[fu->unary] : NULL;
	L.binary = fu->binary >= 0 ? &f->ops[fu->binary] : NULL;
	L.swap = fu->bin_swap;
	L.other_row = fu->other_row;
	bool gemv = !xt.dyn0 && cg_static_rows(xt) == 1;
	const Param *pm = &g->m->params[wdef->ia[0]];
	if (pm->format == QF_Q8 || pm->format == QF_Q4) {
		lower_qlinear(g, op, fu, &L, pm, (uint32_t)wdef->ia[0], gemv);
		return;
	}
	L.bf16 = pm->format == QF_BF16;
	L.wt = L.bf16 ? LLVMInt16TypeInContext(g->c) : g->f32;
	LLVMValueRef task = linear_task(g, &L, gemv);
	cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
	cg_slot_set(g, 1, cg_param_ptr(g, (uint32_t)wdef->ia[0], L.bf16 ? CG_BPANEL : CG_PANEL));
	cg_slot_set(g, 2, cg_val_ptr(g, fu->out));
	cg_slot_set(g, 3, L.binary ? cg_val_ptr(g, fu->other) : LLVMConstNull(g->ptr));
	cg_slot_set(g, 4, cg_rows(g, xt));
	cg_pfor(g, task, cg_i64(g, L.np));
}
