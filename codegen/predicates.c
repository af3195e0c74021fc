/* predicates.c - predicates and exit measures: cmp, and, or, not (a bool is an i32 0
 * or 1 in its buffer), the softmax measures of logits (margin, maxprob, entropy), the
 * cosine of two states and CALM's decaying threshold.  The measures are loops in
 * double, as the interpreter computes them:
 *   1. per row, one pass for the top two logits l1 >= l2 (l1 is the row's maximum);
 *   2. one pass for S = sum exp(x - l1) and, for entropy, E = sum exp(x - l1)(x - l1),
 *      vectorised: exp is polynomial IR (exp_nonpos) and the sums reassociate;
 *   3. maxprob = 1/S, margin = 1/S - exp(l2 - l1)/S, entropy = log S - E/S (which is
 *      -sum p log p); a row whose S is NaN gives -1 (margin, maxprob) or 0 (entropy),
 *      the interpreter's values for it;
 *   4. the least confident row decides: the smallest margin or top probability, the
 *      largest entropy, the smallest cosine. */
#include "codegen/codegen.h"

#include <math.h>

static LLVMValueRef
ldd(Cg *g, LLVMValueRef p)
{
	return cg_load(g, cg_f64(g), p, 8);
}

static LLVMValueRef
ext(Cg *g, LLVMValueRef f)
{
	return LLVMBuildFPExt(g->b, f, cg_f64(g), "");
}

static LLVMValueRef
intr1(Cg *g, const char *name, LLVMValueRef x)
{
	return cg_call_intr(g, name, cg_f64(g), &x, 1);
}

/* exp(d) for d <= 0 or NaN, in double, as straight-line IR so that the loop summing
 * it vectorises (libm's exp is a call per element): d = n ln2 + r with ln2 in two
 * parts (n ln2hi exact), |r| <= ln2 / 2; exp(r) by Taylor to r^13 (truncation below
 * 1e-17, relative); 2^n through the exponent bits.  Below d = -708 it gives 0 (the
 * true value is under 1e-307: next to the row maximum's term, exp(0) = 1, it changes
 * no sum); NaN stays NaN.  Within a few ulp of libm's exp. */
static LLVMValueRef
exp_nonpos(Cg *g, LLVMValueRef d)
{
	LLVMValueRef ok = LLVMBuildFCmp(g->b, LLVMRealOGE, d, cg_f64c(g, -708.0), "");
	LLVMValueRef dc = LLVMBuildSelect(g->b, ok, d, cg_f64c(g, 0.0), ""); /* no NaN or -inf below */
	LLVMValueRef fx = LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, dc, cg_f64c(g, 1.4426950408889634), ""), cg_f64c(g, 0.5), "");
	fx = intr1(g, "llvm.floor", fx);
	LLVMValueRef r = LLVMBuildFSub(g->b, dc, LLVMBuildFMul(g->b, fx, cg_f64c(g, 6.93147180369123816490e-01), ""), "");
	r = LLVMBuildFSub(g->b, r, LLVMBuildFMul(g->b, fx, cg_f64c(g, 1.90821492927058770002e-10), ""), "");
	double c = 1.0;
	for (int k = 2; k <= 13; k++)
		c /= k; /* 1/13! */
	LLVMValueRef p = cg_f64c(g, c);
	for (int k = 12; k >= 0; k--) {
		c *= k + 1; /* 1/k! */
		p = LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, p, r, ""), cg_f64c(g, c), "");
	}
	LLVMTypeRef i64 = LLVMInt64TypeInContext(g->c);
	LLVMValueRef n = LLVMBuildFPToSI(g->b, fx, i64, "");
	LLVMValueRef bits = LLVMBuildShl(g->b, LLVMBuildAdd(g->b, n, LLVMConstInt(i64, 1023, 0), ""),
	                                 LLVMConstInt(i64, 52, 0), "");
	LLVMValueRef y = LLVMBuildFMul(g->b, p, LLVMBuildBitCast(g->b, bits, cg_f64(g), ""), "");
	y = LLVMBuildSelect(g->b, ok, y, cg_f64c(g, 0.0), "");
	return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealUNO, d, d, ""), d, y, "");
}

/* A bool result (i1) stored as i32 0 or 1. */
static void
store_bool(Cg *g, LLVMValueRef b, ValueId dst)
{
	cg_store(g, LLVMBuildZExt(g->b, b, g->i32, ""), cg_val_ptr(g, dst), 4);
}

static LLVMValueRef
load_bool(Cg *g, ValueId v)
{
	return LLVMBuildICmp(g->b, LLVMIntNE, cg_val_scalar(g, v), cg_i32c(g, 0), "");
}

/* x PRED y for predicate p (0 gt, 1 ge, 2 lt, 3 le, 4 eq, 5 ne); floats compare as C
 * does: ordered, except 'ne', which holds for NaN. */
static LLVMValueRef
compare(Cg *g, int64_t p, bool fl, LLVMValueRef x, LLVMValueRef y)
{
	static const LLVMRealPredicate rp[6] = { LLVMRealOGT, LLVMRealOGE, LLVMRealOLT,
		                                 LLVMRealOLE, LLVMRealOEQ, LLVMRealUNE };
	static const LLVMIntPredicate ip[6] = { LLVMIntSGT, LLVMIntSGE, LLVMIntSLT, LLVMIntSLE, LLVMIntEQ, LLVMIntNE };
	if (p < 0 || p > 5)
		ELIDE_ICE("cmp: predicate out of range");
	return fl ? LLVMBuildFCmp(g->b, rp[p], x, y, "") : LLVMBuildICmp(g->b, ip[p], x, y, "");
}

/* cmp: true when the predicate holds for every element (b may be one scalar). */
static void
lower_cmp(Cg *g, const Op *op)
{
	const Func *f = g->f;
	Type ta = f->vals[op->args[0]].type, tb = f->vals[op->args[1]].type;
	bool fl = ta.dtype == DT_F32;
	LLVMTypeRef et = fl ? g->f32 : g->i32;
	if (ta.rank == 0) {
		store_bool(g, compare(g, op->ia[0], fl, cg_val_scalar(g, op->args[0]), cg_val_scalar(g, op->args[1])),
		           op->dst);
		return;
	}
	bool bscalar = tb.rank == 0 || (!tb.dyn0 && ir_type_numel(tb) == 1);
	LLVMValueRef pa = cg_val_ptr(g, op->args[0]);
	LLVMValueRef pb = tb.rank ? cg_val_ptr(g, op->args[1]) : NULL;
	LLVMValueRef sb = tb.rank ? cg_load(g, et, pb, 4) : cg_val_scalar(g, op->args[1]);
	LLVMValueRef acc = cg_alloca(g, g->i32, "all");
	cg_store(g, cg_i32c(g, 1), acc, 4);
	LLVMValueRef n = LLVMBuildNSWMul(g->b, cg_rows(g, ta), cg_i64(g, cg_cols(ta)), "");
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), n, NULL, "cmp");
	LLVMValueRef x = cg_load(g, et, cg_gep(g, et, pa, l.iv), 4);
	LLVMValueRef y = bscalar ? sb : cg_load(g, et, cg_gep(g, et, pb, l.iv), 4);
	LLVMValueRef holds = LLVMBuildZExt(g->b, compare(g, op->ia[0], fl, x, y), g->i32, "");
	cg_store(g, LLVMBuildAnd(g->b, cg_load(g, g->i32, acc, 4), holds, ""), acc, 4);
	cg_loop_end(g, &l);
	store_bool(g, LLVMBuildICmp(g->b, LLVMIntNE, cg_load(g, g->i32, acc, 4), cg_i32c(g, 0), ""), op->dst);
}

/* margin, maxprob, entropy of softmax(logits), the least confident row. */
static void
lower_measure(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->args[0]].type;
	int64_t N = cg_cols(t);
	bool ent = op->code == OP_ENTROPY;
	LLVMValueRef x = cg_val_ptr(g, op->args[0]);
	LLVMValueRef worst = cg_alloca(g, cg_f64(g), "worst"), s = cg_alloca(g, cg_f64(g), "s"), e = cg_alloca(g, cg_f64(g), "e");
	LLVMValueRef l1 = cg_alloca(g, g->f32, "l1"), l2 = cg_alloca(g, g->f32, "l2");
	cg_st64(g, cg_f64c(g, ent ? -INFINITY : INFINITY), worst);
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, t), NULL, "row");
	LLVMValueRef xr = cg_gep(g, g->f32, x, LLVMBuildNSWMul(g->b, lr.iv, cg_i64(g, N), ""));
	/* 1. the top two logits */
	cg_store(g, cg_f32c(g, -INFINITY), l1, 4);
	cg_store(g, cg_f32c(g, -INFINITY), l2, 4);
	CgLoop lk = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, N), NULL, "top2");
	LLVMValueRef v = cg_ldf(g, xr, lk.iv), a1 = cg_load(g, g->f32, l1, 4), a2 = cg_load(g, g->f32, l2, 4);
	LLVMValueRef gt1 = LLVMBuildFCmp(g->b, LLVMRealOGT, v, a1, "");
	LLVMValueRef gt2 = LLVMBuildFCmp(g->b, LLVMRealOGT, v, a2, "");
	cg_store(g, LLVMBuildSelect(g->b, gt1, a1, LLVMBuildSelect(g->b, gt2, v, a2, ""), ""), l2, 4);
	cg_store(g, LLVMBuildSelect(g->b, gt1, v, a1, ""), l1, 4);
	cg_loop_end(g, &lk);
	/* 2. S and E */
	LLVMValueRef mx = ext(g, cg_load(g, g->f32, l1, 4));
	cg_st64(g, cg_f64c(g, 0.0), s);
	cg_st64(g, cg_f64c(g, 0.0), e);
	CgLoop ls = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, N), NULL, "sum");
	LLVMValueRef d = LLVMBuildFSub(g->b, ext(g, cg_ldf(g, xr, ls.iv)), mx, "");
	LLVMValueRef ex = exp_nonpos(g, d);
	cg_st64(g, cg_fast(LLVMBuildFAdd(g->b, ldd(g, s), ex, "")), s);
	if (ent)
		cg_st64(g, cg_fast(LLVMBuildFAdd(g->b, ldd(g, e), LLVMBuildFMul(g->b, ex, d, ""), "")), e);
	cg_loop_end(g, &ls);
	/* 3. the measure of the row */
	LLVMValueRef S = ldd(g, s), c;
	LLVMValueRef p1 = LLVMBuildFDiv(g->b, cg_f64c(g, 1.0), S, "");
	if (op->code == OP_MAXPROB) {
		c = p1;
	} else if (op->code == OP_MARGIN) {
		LLVMValueRef e2 = intr1(g, "llvm.exp", LLVMBuildFSub(g->b, ext(g, cg_load(g, g->f32, l2, 4)), mx, ""));
		c = LLVMBuildFSub(g->b, p1, LLVMBuildFDiv(g->b, e2, S, ""), "");
	} else {
		c = LLVMBuildFSub(g->b, intr1(g, "llvm.log", S), LLVMBuildFDiv(g->b, ldd(g, e), S, ""), "");
	}
	LLVMValueRef nan = LLVMBuildFCmp(g->b, LLVMRealUNO, S, S, "");
	c = LLVMBuildSelect(g->b, nan, cg_f64c(g, ent ? 0.0 : -1.0), c, "");
	/* 4. the least confident row */
	LLVMValueRef w = ldd(g, worst);
	LLVMValueRef worse = LLVMBuildFCmp(g->b, ent ? LLVMRealOGT : LLVMRealOLT, c, w, "");
	cg_st64(g, LLVMBuildSelect(g->b, worse, c, w, ""), worst);
	cg_loop_end(g, &lr);
	cg_store(g, LLVMBuildFPTrunc(g->b, ldd(g, worst), g->f32, ""), cg_val_ptr(g, op->dst), 4);
}

/* cosine(a, b): per row ab / sqrt(aa bb) (0 when a row is zero), the smallest. */
static void
lower_cosine(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->args[0]].type;
	int64_t D = cg_cols(t);
	LLVMValueRef a = cg_val_ptr(g, op->args[0]), b = cg_val_ptr(g, op->args[1]);
	LLVMValueRef worst = cg_alloca(g, cg_f64(g), "worst");
	LLVMValueRef acc[3] = { cg_alloca(g, cg_f64(g), "ab"), cg_alloca(g, cg_f64(g), "aa"), cg_alloca(g, cg_f64(g), "bb") };
	cg_st64(g, cg_f64c(g, INFINITY), worst);
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, t), NULL, "row");
	LLVMValueRef off = LLVMBuildNSWMul(g->b, lr.iv, cg_i64(g, D), "");
	LLVMValueRef ar = cg_gep(g, g->f32, a, off), brow = cg_gep(g, g->f32, b, off);
	for (int k = 0; k < 3; k++)
		cg_st64(g, cg_f64c(g, 0.0), acc[k]);
	CgLoop lk = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, D), NULL, "dot");
	LLVMValueRef x = ext(g, cg_ldf(g, ar, lk.iv)), y = ext(g, cg_ldf(g, brow, lk.iv));
	LLVMValueRef pr[3] = { LLVMBuildFMul(g->b, x, y, ""), LLVMBuildFMul(g->b, x, x, ""), LLVMBuildFMul(g->b, y, y, "") };
	for (int k = 0; k < 3; k++)
		cg_st64(g, cg_fast(LLVMBuildFAdd(g->b, ldd(g, acc[k]), pr[k], "")), acc[k]);
	cg_loop_end(g, &lk);
	LLVMValueRef ab = ldd(g, acc[0]), aa = ldd(g, acc[1]), bb = ldd(g, acc[2]);
	LLVMValueRef nz = LLVMBuildAnd(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, aa, cg_f64c(g, 0.0), ""),
	                               LLVMBuildFCmp(g->b, LLVMRealOGT, bb, cg_f64c(g, 0.0), ""), "");
	LLVMValueRef c = LLVMBuildSelect(
		g->b, nz, LLVMBuildFDiv(g->b, ab, intr1(g, "llvm.sqrt", LLVMBuildFMul(g->b, aa, bb, "")), ""), cg_f64c(g, 0.0), "");
	LLVMValueRef w = ldd(g, worst);
	cg_st64(g, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOLT, c, w, ""), c, w, ""), worst);
	cg_loop_end(g, &lr);
	cg_store(g, LLVMBuildFPTrunc(g->b, ldd(g, worst), g->f32, ""), cg_val_ptr(g, op->dst), 4);
}

/* decay(lambda, tau, pos): lambda * (0.9 + 0.1 exp(-tau pos / n)), in double. */
static void
lower_decay(Cg *g, const Op *op)
{
	LLVMValueRef lam = ext(g, cg_val_scalar(g, op->args[0])), tau = ext(g, cg_val_scalar(g, op->args[1]));
	LLVMValueRef pos = LLVMBuildSIToFP(g->b, cg_val_scalar(g, op->args[2]), cg_f64(g), "");
	LLVMValueRef a = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, LLVMBuildFNeg(g->b, tau, ""), pos, ""),
	                               cg_f64c(g, (double)op->ia[0]), "");
	LLVMValueRef fac = LLVMBuildFAdd(g->b, cg_f64c(g, 0.9), LLVMBuildFMul(g->b, cg_f64c(g, 0.1), intr1(g, "llvm.exp", a), ""), "");
	cg_store(g, LLVMBuildFPTrunc(g->b, LLVMBuildFMul(g->b, lam, fac, ""), g->f32, ""), cg_val_ptr(g, op->dst), 4);
}

/* if-chains rather than a switch over every opcode: this file handles a few. */
void
cg_lower_predicate(Cg *g, uint32_t opi)
{
	const Op *op = &g->f->ops[opi];
	Opcode c = op->code;
	if (c == OP_CMP) {
		lower_cmp(g, op);
	} else if (c == OP_AND || c == OP_OR) {
		LLVMValueRef x = load_bool(g, op->args[0]), y = load_bool(g, op->args[1]);
		store_bool(g, c == OP_AND ? LLVMBuildAnd(g->b, x, y, "") : LLVMBuildOr(g->b, x, y, ""), op->dst);
	} else if (c == OP_NOT) {
		store_bool(g, LLVMBuildNot(g->b, load_bool(g, op->args[0]), ""), op->dst);
	} else if (c == OP_MARGIN || c == OP_MAXPROB || c == OP_ENTROPY) {
		lower_measure(g, op);
	} else if (c == OP_COSINE) {
		lower_cosine(g, op);
	} else if (c == OP_DECAY) {
		lower_decay(g, op);
	} else {
		ELIDE_ICE("not a predicate or measure");
	}
}
