/* llvm_util.c - LLVM helpers of the lowering, used by lower.c, kernels.c and ops.c:
 * constants and splats, allocas, address arithmetic, aligned loads and stores,
 * fast-math flags, intrinsics, counted loops, exp/erf/tanh as polynomial IR (so
 * they vectorise), the elementwise unary and binary ops on scalars or vectors, the
 * kernel cache, task functions with their argument slots, and the parallel-for
 * call through the context's hook.  Nothing here knows about entries or plans. */
#include "codegen/codegen.h"

#include <llvm-c/DebugInfo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

LLVMValueRef
cg_i64(Cg *g, int64_t v)
{
	return LLVMConstInt(g->i64, (unsigned long long)v, 1);
}

LLVMValueRef
cg_i32c(Cg *g, int32_t v)
{
	return LLVMConstInt(g->i32, (unsigned long long)(int64_t)v, 1);
}

LLVMValueRef
cg_f32c(Cg *g, double v)
{
	return LLVMConstReal(g->f32, v);
}

/* Integer and scalar shorthands of the generated loops (i64 index arithmetic, f64
 * scores and sums).  The i64 sums and products are indices and byte offsets inside
 * a context's memory, far from 2^63, so they carry no-signed-wrap, which lets LLVM
 * fold the address arithmetic of the loops. */
LLVMValueRef
cg_iadd(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildNSWAdd(g->b, a, b, "");
}

LLVMValueRef
cg_isub(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSub(g->b, a, b, "");
}

LLVMValueRef
cg_imulc(Cg *g, LLVMValueRef a, int64_t c)
{
	return LLVMBuildNSWMul(g->b, a, cg_i64(g, c), "");
}

LLVMValueRef
cg_smin(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef
cg_smax(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, a, b, ""), a, b, "");
}

LLVMValueRef
cg_ld64(Cg *g, LLVMValueRef p)
{
	return cg_load(g, g->i64, p, 8);
}

void
cg_st64(Cg *g, LLVMValueRef v, LLVMValueRef p)
{
	cg_store(g, v, p, 8);
}

LLVMValueRef
cg_ldf(Cg *g, LLVMValueRef base, LLVMValueRef idx)
{
	return cg_load(g, g->f32, cg_gep(g, g->f32, base, idx), 4);
}

LLVMTypeRef
cg_f64(Cg *g)
{
	return LLVMDoubleTypeInContext(g->c);
}

LLVMValueRef
cg_f64c(Cg *g, double v)
{
	return LLVMConstReal(cg_f64(g), v);
}

LLVMValueRef
cg_splat(Cg *g, LLVMValueRef s, int n)
{
	LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)n);
	LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetPoison(vt), s, cg_i32c(g, 0), "");
	LLVMValueRef mask = LLVMConstNull(LLVMVectorType(g->i32, (unsigned)n));
	return LLVMBuildShuffleVector(g->b, v, LLVMGetPoison(vt), mask, "splat");
}

LLVMValueRef
cg_alloca(Cg *g, LLVMTypeRef ty, const char *name)
{
	LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(g->fn);
	LLVMBuilderRef tmp = LLVMCreateBuilderInContext(g->c);
	LLVMValueRef first = LLVMGetFirstInstruction(entry);
	if (first)
		LLVMPositionBuilderBefore(tmp, first);
	else
		LLVMPositionBuilderAtEnd(tmp, entry);
	LLVMValueRef a = LLVMBuildAlloca(tmp, ty, name);
	LLVMSetAlignment(a, 64);
	LLVMDisposeBuilder(tmp);
	return a;
}

LLVMValueRef
cg_gep(Cg *g, LLVMTypeRef elt, LLVMValueRef base, LLVMValueRef idx)
{
	return LLVMBuildInBoundsGEP2(g->b, elt, base, &idx, 1, "");
}

LLVMValueRef
cg_gepb(Cg *g, LLVMValueRef base, int64_t bytes)
{
	if (!bytes)
		return base;
	return cg_gep(g, g->i8, base, cg_i64(g, bytes));
}

LLVMValueRef
cg_load(Cg *g, LLVMTypeRef ty, LLVMValueRef p, unsigned align)
{
	LLVMValueRef v = LLVMBuildLoad2(g->b, ty, p, "");
	LLVMSetAlignment(v, align);
	return v;
}

void
cg_store(Cg *g, LLVMValueRef v, LLVMValueRef p, unsigned align)
{
	LLVMValueRef s = LLVMBuildStore(g->b, v, p);
	LLVMSetAlignment(s, align);
}

LLVMValueRef
cg_fast(LLVMValueRef v)
{
	if (LLVMCanValueUseFastMathFlags(v))
		LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract
		                            | LLVMFastMathNoSignedZeros);
	return v;
}

LLVMValueRef
cg_call_intr(Cg *g, const char *name, LLVMTypeRef ovl, LLVMValueRef *args, unsigned n)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	if (!id)
		ELIDE_ICE("unknown intrinsic");
	LLVMTypeRef tys[1] = { ovl };
	LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, ovl ? 1 : 0);
	LLVMTypeRef fty = LLVMIntrinsicGetType(g->c, id, tys, ovl ? 1 : 0);
	return LLVMBuildCall2(g->b, fty, fn, args, n, "");
}

CgLoop
cg_loop_begin(Cg *g, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step, const char *name)
{
	CgLoop l;
	l.pre = LLVMGetInsertBlock(g->b);
	l.head = LLVMAppendBasicBlockInContext(g->c, g->fn, name);
	l.body = LLVMAppendBasicBlockInContext(g->c, g->fn, "body");
	l.exit = LLVMAppendBasicBlockInContext(g->c, g->fn, "exit");
	l.step = step ? step : LLVMConstInt(LLVMTypeOf(lo), 1, 0);
	LLVMBuildBr(g->b, l.head);
	LLVMPositionBuilderAtEnd(g->b, l.head);
	l.iv = LLVMBuildPhi(g->b, LLVMTypeOf(lo), "i");
	LLVMAddIncoming(l.iv, &lo, &l.pre, 1);
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l.iv, hi, ""), l.body, l.exit);
	LLVMPositionBuilderAtEnd(g->b, l.body);
	return l;
}

/* Loop metadata: not unrolled, not interleaved (the vectoriser may still widen it). */
static LLVMValueRef
no_unroll_md(Cg *g)
{
	LLVMMetadataRef tmp = LLVMTemporaryMDNode(g->c, NULL, 0);
	LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(g->i32, 1, 0));
	LLVMMetadataRef un[1] = { LLVMMDStringInContext2(g->c, "llvm.loop.unroll.disable", 24) };
	LLVMMetadataRef il[2] = { LLVMMDStringInContext2(g->c, "llvm.loop.interleave.count", 26), one };
	LLVMMetadataRef ops[3] = { tmp, LLVMMDNodeInContext2(g->c, un, 1), LLVMMDNodeInContext2(g->c, il, 2) };
	LLVMMetadataRef loop = LLVMMDNodeInContext2(g->c, ops, 3);
	LLVMMetadataReplaceAllUsesWith(tmp, loop); /* the first operand is the node itself */
	return LLVMMetadataAsValue(g->c, loop);
}

void
cg_loop_end(Cg *g, CgLoop *l)
{
	LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->iv, l->step, "");
	LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b);
	LLVMValueRef br = LLVMBuildBr(g->b, l->head);
	if (g->fn == g->body_fn) /* entry bodies: see Cg.body_fn */
		LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->c, "llvm.loop", 9), no_unroll_md(g));
	LLVMAddIncoming(l->iv, &next, &from, 1);
	LLVMPositionBuilderAtEnd(g->b, l->exit);
}

static LLVMValueRef
splat_like(Cg *g, LLVMValueRef like, double c)
{
	LLVMTypeRef ty = LLVMTypeOf(like);
	if (LLVMGetTypeKind(ty) == LLVMVectorTypeKind)
		return cg_splat(g, cg_f32c(g, c), (int)LLVMGetVectorSize(ty));
	return cg_f32c(g, c);
}

static LLVMValueRef
xfmul(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return cg_fast(LLVMBuildFMul(g->b, a, b, ""));
}

static LLVMValueRef
xfadd(Cg *g, LLVMValueRef a, LLVMValueRef b)
{
	return cg_fast(LLVMBuildFAdd(g->b, a, b, ""));
}

/* exp(x): Cephes expf, range reduction by ln 2 in two parts, degree-6 polynomial,
 * then 2^n through the exponent bits.  Relative error about 2e-7 on [-87, 88]. */
LLVMValueRef
cg_exp(Cg *g, LLVMValueRef x)
{
	LLVMTypeRef ty = LLVMTypeOf(x);
	bool vec = LLVMGetTypeKind(ty) == LLVMVectorTypeKind;
	LLVMTypeRef ity = vec ? LLVMVectorType(g->i32, LLVMGetVectorSize(ty)) : g->i32;
	LLVMValueRef a[2];
	a[0] = x;
	a[1] = splat_like(g, x, 88.3);
	x = cg_call_intr(g, "llvm.minnum", ty, a, 2);
	a[0] = x;
	a[1] = splat_like(g, x, -87.3);
	x = cg_call_intr(g, "llvm.maxnum", ty, a, 2);
	LLVMValueRef fx = xfadd(g, xfmul(g, x, splat_like(g, x, 1.44269504088896341)), splat_like(g, x, 0.5));
	fx = cg_call_intr(g, "llvm.floor", ty, &fx, 1);
	LLVMValueRef r = LLVMBuildFSub(g->b, x, LLVMBuildFMul(g->b, fx, splat_like(g, x, 0.693359375), ""), "");
	r = LLVMBuildFSub(g->b, r, LLVMBuildFMul(g->b, fx, splat_like(g, x, -2.12194440e-4), ""), "");
	static const double c[] = { 1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
		                    4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1 };
	LLVMValueRef p = splat_like(g, x, c[0]);
	for (int i = 1; i < 6; i++)
		p = xfadd(g, xfmul(g, p, r), splat_like(g, x, c[i]));
	LLVMValueRef z = xfmul(g, r, r);
	p = xfadd(g, xfadd(g, xfmul(g, p, z), r), splat_like(g, x, 1.0));
	LLVMValueRef n = LLVMBuildFPToSI(g->b, fx, ity, "");
	LLVMValueRef k127 = vec ? cg_splat(g, cg_i32c(g, 127), (int)LLVMGetVectorSize(ty)) : cg_i32c(g, 127);
	LLVMValueRef k23 = vec ? cg_splat(g, cg_i32c(g, 23), (int)LLVMGetVectorSize(ty)) : cg_i32c(g, 23);
	LLVMValueRef bits = LLVMBuildShl(g->b, LLVMBuildAdd(g->b, n, k127, ""), k23, "");
	return xfmul(g, p, LLVMBuildBitCast(g->b, bits, ty, ""));
}

/* erf(x): Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7). */
LLVMValueRef
cg_erf(Cg *g, LLVMValueRef x)
{
	LLVMTypeRef ty = LLVMTypeOf(x);
	LLVMValueRef ax = cg_call_intr(g, "llvm.fabs", ty, &x, 1);
	LLVMValueRef t = LLVMBuildFDiv(g->b, splat_like(g, x, 1.0),
	                               xfadd(g, splat_like(g, x, 1.0), xfmul(g, ax, splat_like(g, x, 0.3275911))), "");
	static const double a[] = { 1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592 };
	LLVMValueRef p = splat_like(g, x, a[0]);
	for (int i = 1; i < 5; i++)
		p = xfadd(g, xfmul(g, p, t), splat_like(g, x, a[i]));
	p = xfmul(g, p, t);
	LLVMValueRef e = cg_exp(g, LLVMBuildFNeg(g->b, xfmul(g, ax, ax), ""));
	LLVMValueRef y = LLVMBuildFSub(g->b, splat_like(g, x, 1.0), xfmul(g, p, e), "");
	LLVMValueRef args[2] = { y, x };
	return cg_call_intr(g, "llvm.copysign", ty, args, 2);
}

/* tanh(x) = sign(x) * (1 - 2 / (exp(2|x|) + 1)); exp is clamped, so large |x| gives 1. */
LLVMValueRef
cg_tanh(Cg *g, LLVMValueRef x)
{
	LLVMTypeRef ty = LLVMTypeOf(x);
	LLVMValueRef ax = cg_call_intr(g, "llvm.fabs", ty, &x, 1);
	LLVMValueRef e = cg_exp(g, xfmul(g, ax, splat_like(g, x, 2.0)));
	LLVMValueRef y = LLVMBuildFSub(g->b, splat_like(g, x, 1.0),
	                               LLVMBuildFDiv(g->b, splat_like(g, x, 2.0), xfadd(g, e, splat_like(g, x, 1.0)), ""), "");
	LLVMValueRef args[2] = { y, x };
	return cg_call_intr(g, "llvm.copysign", ty, args, 2);
}

LLVMValueRef
cg_unary(Cg *g, const Op *op, LLVMValueRef x)
{
	switch (op->code) {
	case OP_SCALE: /* IEEE, no fast-math: LLVM must not merge two scales (docs/codegen.md) */
		return LLVMBuildFMul(g->b, x, splat_like(g, x, op->fa[0]), "");
	case OP_SILU: {
		LLVMValueRef e = cg_exp(g, LLVMBuildFNeg(g->b, x, ""));
		return LLVMBuildFDiv(g->b, x, xfadd(g, e, splat_like(g, x, 1.0)), "");
	}
	case OP_TANH:
		return cg_tanh(g, x);
	case OP_GELU:
		if (op->ia[0] == 1) {
			/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
			LLVMValueRef x3 = xfmul(g, xfmul(g, x, x), x);
			LLVMValueRef in = xfmul(g, xfadd(g, x, xfmul(g, x3, splat_like(g, x, 0.044715))),
			                       splat_like(g, x, 0.7978845608028654));
			return LLVMBuildFMul(g->b, xfmul(g, x, splat_like(g, x, 0.5)),
			                     xfadd(g, cg_tanh(g, in), splat_like(g, x, 1.0)), "");
		}
		/* 0.5 x (1 + erf(x / sqrt 2)) */
		return LLVMBuildFMul(
			g->b, xfmul(g, x, splat_like(g, x, 0.5)),
			xfadd(g, cg_erf(g, xfmul(g, x, splat_like(g, x, 0.7071067811865476))), splat_like(g, x, 1.0)), "");
	default:
		ELIDE_UNREACHABLE();
	}
}

LLVMValueRef
cg_binary(Cg *g, Opcode code, LLVMValueRef a, LLVMValueRef b)
{
	switch (code) {
	case OP_ADD:
		return LLVMBuildFAdd(g->b, a, b, "");
	case OP_SUB:
		return LLVMBuildFSub(g->b, a, b, "");
	case OP_MUL:
		return LLVMBuildFMul(g->b, a, b, "");
	default:
		ELIDE_UNREACHABLE();
	}
}

static LLVMValueRef
kernel_find(Cg *g, const char *key)
{
	for (uint32_t i = 0; i < g->nk; i++)
		if (strcmp(g->knames[i], key) == 0)
			return g->kfns[i];
	return NULL;
}

static void
kernel_add(Cg *g, const char *key, LLVMValueRef fn)
{
	uint32_t cap = g->capk;
	VEC_PUSH(g->knames, g->nk, cap);
	VEC_PUSH(g->kfns, g->nk, g->capk);
	g->knames[g->nk] = xstrdup(key);
	g->kfns[g->nk++] = fn;
}

bool
cg_task_open(Cg *g, const char *key, LLVMValueRef *fn, CgSave *save)
{
	*fn = kernel_find(g, key);
	if (*fn)
		return false;
	save->b = g->b;
	save->fn = g->fn;
	char *full = arena_printf(&g->m->arena, "%s.%s", g->m->name, key);
	*fn = LLVMAddFunction(g->mod, full, g->task_ty);
	LLVMSetLinkage(*fn, LLVMInternalLinkage);
	unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
	LLVMAddAttributeAtIndex(*fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->c, nounwind, 0));
	kernel_add(g, key, *fn);
	g->fn = *fn;
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, *fn, "entry"));
	return true;
}

int
cg_head_vec(const Cg *g, int64_t hd)
{
	int vw = g->t->vec;
	while (vw > 1 && hd % vw)
		vw /= 2;
	return vw;
}

void
cg_task_end(Cg *g, CgSave *save)
{
	LLVMBuildRetVoid(g->b);
	LLVMDisposeBuilder(g->b);
	g->b = save->b;
	g->fn = save->fn;
}

LLVMValueRef
cg_slot_ptr(Cg *g, LLVMValueRef blk, int slot)
{
	return cg_load(g, g->ptr, cg_gepb(g, blk, 8 * slot), 8);
}

LLVMValueRef
cg_slot_i64(Cg *g, LLVMValueRef blk, int slot)
{
	return cg_load(g, g->i64, cg_gepb(g, blk, 8 * slot), 8);
}

void
cg_slot_set(Cg *g, int slot, LLVMValueRef v)
{
	cg_store(g, v, cg_gepb(g, g->argblk, 8 * slot), 8);
}

void
cg_pfor(Cg *g, LLVMValueRef task, LLVMValueRef n)
{
	LLVMValueRef pf = cg_load(g, g->ptr, cg_gepb(g, g->ctx, CG_CTX_PFOR), 8);
	LLVMBasicBlockRef serial = LLVMAppendBasicBlockInContext(g->c, g->fn, "serial");
	LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(g->c, g->fn, "parallel");
	LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(g->c, g->fn, "done");
	LLVMBuildCondBr(g->b, LLVMBuildIsNull(g->b, pf, ""), serial, par);
	LLVMPositionBuilderAtEnd(g->b, serial);
	LLVMValueRef a1[3] = { g->argblk, cg_i64(g, 0), n };
	LLVMBuildCall2(g->b, g->task_ty, task, a1, 3, "");
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, par);
	LLVMValueRef pool = cg_load(g, g->ptr, cg_gepb(g, g->ctx, CG_CTX_POOL), 8);
	LLVMValueRef a2[4] = { pool, n, task, g->argblk };
	LLVMBuildCall2(g->b, g->pfor_ty, pf, a2, 4, "");
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, done);
}
