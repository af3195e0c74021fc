/* lower.c - one LLVM module per elide module: LLVM helpers, entry functions, cg_compile.
 * Algorithm of cg_compile:
 *   1. Make the target machine; choose vector width, panel width and micro-kernel rows.
 *   2. Lay out the state region (K and V of every cache, 64-byte aligned).
 *   3. For every entry: plan fusion and arena offsets (plan.c), then emit
 *      `int NAME_ENTRY(ctx, args..., out)`: argument checks first (length, positions,
 *      token ids) so that a rejected call changes nothing, then one kernel call or
 *      inline loop per op in program order, then the statistics.
 *   4. The arena is the largest plan; the context is header + arena + state.
 *   5. Weight regions are added as kernels ask for them; the blob is packed last.
 *   6. The context API (glue.c) completes the module.
 * Entries take the context first, then each argument (an i32 scalar, or a pointer
 * and a length for a bounded array), then the output pointer; they return a status. */
#include "codegen/codegen.h"

#include <llvm-c/Analysis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>



/* ---- LLVM helpers ---- */

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

void
cg_loop_end(Cg *g, CgLoop *l)
{
	LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->iv, l->step, "");
	LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b);
	LLVMBuildBr(g->b, l->head);
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
	case OP_SCALE:
		return xfmul(g, x, splat_like(g, x, op->fa[0]));
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
			return xfmul(g, xfmul(g, x, splat_like(g, x, 0.5)), xfadd(g, cg_tanh(g, in), splat_like(g, x, 1.0)));
		}
		/* 0.5 x (1 + erf(x / sqrt 2)) */
		return xfmul(g, xfmul(g, x, splat_like(g, x, 0.5)),
		            xfadd(g, cg_erf(g, xfmul(g, x, splat_like(g, x, 0.7071067811865476))), splat_like(g, x, 1.0)));
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

LLVMValueRef
cg_kernel_find(Cg *g, const char *key)
{
	for (uint32_t i = 0; i < g->nk; i++)
		if (strcmp(g->knames[i], key) == 0)
			return g->kfns[i];
	return NULL;
}

void
cg_kernel_add(Cg *g, const char *key, LLVMValueRef fn)
{
	uint32_t cap = g->capk;
	VEC_PUSH(g->knames, g->nk, cap);
	VEC_PUSH(g->kfns, g->nk, g->capk);
	g->knames[g->nk] = xstrdup(key);
	g->kfns[g->nk++] = fn;
}

LLVMValueRef
cg_task_begin(Cg *g, const char *name, CgSave *save)
{
	save->b = g->b;
	save->fn = g->fn;
	char *full = arena_printf(&g->m->arena, "%s.%s", g->m->name, name);
	LLVMValueRef fn = LLVMAddFunction(g->mod, full, g->task_ty);
	LLVMSetLinkage(fn, LLVMInternalLinkage);
	unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
	LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->c, nounwind, 0));
	g->fn = fn;
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, fn, "entry"));
	return fn;
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

/* ---- values ---- */

LLVMValueRef
cg_rows(Cg *g, Type t)
{
	if (t.dyn0) {
		int64_t inner = 1;
		for (int i = 1; i + 1 < t.rank; i++)
			inner *= t.dims[i];
		return inner == 1 ? g->nrows : LLVMBuildMul(g->b, g->nrows, cg_i64(g, inner), "");
	}
	return cg_i64(g, cg_static_rows(t));
}

LLVMValueRef
cg_len(Cg *g, Type t)
{
	if (t.rank == 0)
		return cg_i64(g, 1);
	return t.dyn0 ? g->nrows : cg_i64(g, t.dims[0]);
}

bool
cg_known_early(const Func *f, ValueId v)
{
	Opcode c = f->ops[f->vals[v].def].code;
	return f->vals[v].type.rank == 0 && (c == OP_ARG || c == OP_CONST);
}

LLVMValueRef
cg_param_ptr(Cg *g, uint32_t param, CgLayout layout)
{
	uint32_t r = cg_weights_region(&g->r->weights, layout, (int32_t)param, 0, 0, 0.0, g->m,
	                               cg_target_nr(g->t));
	return cg_gepb(g, g->wts, (int64_t)g->r->weights.regions[r].offset);
}

LLVMValueRef
cg_rope_ptr(Cg *g, int64_t hd, double theta)
{
	uint32_t r = cg_weights_region(&g->r->weights, CG_ROPE, -1, g->rope_len, hd, theta, g->m,
	                               cg_target_nr(g->t));
	return cg_gepb(g, g->wts, (int64_t)g->r->weights.regions[r].offset);
}

LLVMValueRef
cg_val_ptr(Cg *g, ValueId v)
{
	const Op *d = ir_def((Func *)g->f, v);
	if (d->code == OP_ARG)
		return g->argv[d->ia[0]];
	if (d->code == OP_PARAM)
		return cg_param_ptr(g, (uint32_t)d->ia[0], CG_ROWMAJOR);
	if (g->plan.offset[v] < 0)
		ELIDE_ICE("value without a buffer");
	return cg_gepb(g, g->arena, g->plan.offset[v]);
}

LLVMValueRef
cg_val_scalar(Cg *g, ValueId v)
{
	const Op *d = ir_def((Func *)g->f, v);
	Type t = g->f->vals[v].type;
	if (d->code == OP_ARG)
		return g->argv[d->ia[0]];
	if (d->code == OP_CONST)
		return t.dtype == DT_F32 ? cg_f32c(g, d->fa[0]) : cg_i32c(g, (int32_t)d->ia[0]);
	return cg_load(g, t.dtype == DT_F32 ? g->f32 : g->i32, cg_val_ptr(g, v), 4);
}

/* ---- entries ---- */

void
cg_fail_if(Cg *g, LLVMValueRef cond, int status)
{
	LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(g->c, g->fn, "bad");
	LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(g->c, g->fn, "ok");
	LLVMBuildCondBr(g->b, cond, bad, ok);
	LLVMPositionBuilderAtEnd(g->b, bad);
	cg_store(g, cg_i32c(g, status), g->failst, 4);
	LLVMBuildBr(g->b, g->fail);
	LLVMPositionBuilderAtEnd(g->b, ok);
}

/* Whether embed op's indices are positions(tokens, start) with a start the up-front
 * checks can see. */
static bool
embeds_positions(const Func *f, const Op *op)
{
	const Op *d = ir_def((Func *)f, op->args[1]);
	return d->code == OP_POSITIONS && cg_known_early(f, d->args[1]);
}

/* Token arguments and early positions are checked up front; other computed indices
 * are checked where the embed runs. */
bool
cg_embed_checked_early(const Func *f, const Op *op)
{
	return ir_def((Func *)f, op->args[1])->code == OP_ARG || embeds_positions(f, op);
}

/* Fails the entry with `status` unless the i32 scalar start (sign-extended) and the
 * i64 count n satisfy 0 <= start and start + n <= bound. */
void
cg_fail_outside(Cg *g, LLVMValueRef start, LLVMValueRef n, int64_t bound, int status)
{
	LLVMValueRef s64 = LLVMBuildSExt(g->b, start, g->i64, "");
	LLVMValueRef end = LLVMBuildAdd(g->b, s64, n, "");
	cg_fail_if(g, LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, s64, cg_i64(g, 0), ""),
	                          LLVMBuildICmp(g->b, LLVMIntSGT, end, cg_i64(g, bound), ""), ""),
	           status);
}

/* Token ids of an argument below the table's rows. */
static void
check_token_arg(Cg *g, const Op *op)
{
	const Func *f = g->f;
	int64_t vocab = cg_static_rows(f->vals[op->args[0]].type);
	Type tt = f->vals[op->args[1]].type;
	if (tt.rank == 0) {
		LLVMValueRef tok = cg_val_scalar(g, op->args[1]);
		cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, tok, cg_i32c(g, (int32_t)vocab), ""), ELIDE_ERR_TOKEN);
		return;
	}
	LLVMValueRef toks = cg_val_ptr(g, op->args[1]);
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_len(g, tt), NULL, "tokcheck");
	LLVMValueRef tok = cg_load(g, g->i32, cg_gep(g, g->i32, toks, l.iv), 4);
	cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, tok, cg_i32c(g, (int32_t)vocab), ""), ELIDE_ERR_TOKEN);
	cg_loop_end(g, &l);
}

/* Positions and token ids are checked before anything is written. */
static void
emit_checks(Cg *g)
{
	const Func *f = g->f;
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		Type t0 = op->nargs ? f->vals[op->args[0]].type : (Type){ 0 };
		if (ir_op_is_attention(op->code) && op->ia[2] >= 0) {
			const State *s = &g->m->states[op->ia[2]];
			cg_fail_outside(g, cg_val_scalar(g, op->args[3]), cg_rows(g, t0), s->ctx, ELIDE_ERR_POS);
		} else if (op->code == OP_ROPE) {
			cg_fail_outside(g, cg_val_scalar(g, op->args[1]), cg_rows(g, t0), g->rope_len, ELIDE_ERR_POS);
		} else if (op->code == OP_ROW && t0.dyn0) {
			/* row i of a sequence needs i < T (or -i <= T from the end) */
			int64_t need = op->ia[0] >= 0 ? op->ia[0] + 1 : -op->ia[0];
			cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntSLT, cg_rows(g, t0), cg_i64(g, need), ""),
			           ELIDE_ERR_SEQ_LEN);
		} else if (op->code == OP_POSITIONS && cg_known_early(f, op->args[1])) {
			/* start + t must stay a valid i32 position */
			cg_fail_outside(g, cg_val_scalar(g, op->args[1]), cg_len(g, t0), (int64_t)INT32_MAX + 1,
			                ELIDE_ERR_POS);
		} else if (op->code == OP_EMBED && embeds_positions(f, op)) {
			/* a position table [P, D]: positions start.. start+T-1 must be below P */
			const Op *po = ir_def((Func *)f, op->args[1]);
			cg_fail_outside(g, cg_val_scalar(g, po->args[1]), cg_len(g, f->vals[po->args[0]].type),
			                cg_static_rows(t0), ELIDE_ERR_POS);
		} else if (op->code == OP_EMBED && ir_def((Func *)f, op->args[1])->code == OP_ARG) {
			check_token_arg(g, op);
		}
	}
}

static void
bump_stat(Cg *g, int idx, LLVMValueRef by)
{
	LLVMValueRef p = cg_gepb(g, g->ctx, CG_CTX_STATS + 8 * idx);
	cg_store(g, LLVMBuildAdd(g->b, cg_load(g, g->i64, p, 8), by, ""), p, 8);
}

static void
lower_entry(Cg *g, const Func *f, uint32_t index)
{
	g->f = f;
	cg_plan_func(g->m, f, g->fuse, &g->plan);
	/* signature */
	LLVMTypeRef params[2 * 16 + 2];
	unsigned np = 0;
	params[np++] = g->ptr;
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		if (f->args[i].type.rank == 0) {
			params[np++] = g->i32;
		} else {
			params[np++] = g->ptr;
			params[np++] = g->i32;
		}
	}
	params[np++] = g->ptr;
	LLVMTypeRef fty = LLVMFunctionType(g->i32, params, np, 0);
	char *name = arena_printf(&g->m->arena, "%s_%s", g->m->name, f->name);
	g->fn = LLVMAddFunction(g->mod, name, fty);
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
	g->argblk = cg_alloca(g, LLVMArrayType(g->i64, 16), "args");
	g->failst = cg_alloca(g, g->i32, "status");
	g->fail = LLVMAppendBasicBlockInContext(g->c, g->fn, "fail");
	g->ctx = LLVMGetParam(g->fn, 0);
	g->out = LLVMGetParam(g->fn, np - 1);
	g->argv = arena_alloc(&g->m->arena, (f->nargs + 1) * sizeof *g->argv);
	g->nrows = cg_i64(g, 1);

	cg_fail_if(g, LLVMBuildIsNull(g->b, g->ctx, ""), ELIDE_ERR_ARG);
	LLVMValueRef magic = cg_load(g, g->i64, g->ctx, 8);
	cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntNE, magic, LLVMConstInt(g->i64, CG_CTX_MAGIC_VALUE, 0), ""),
	        ELIDE_ERR_ARG);
	cg_fail_if(g, LLVMBuildIsNull(g->b, g->out, ""), ELIDE_ERR_ARG);
	g->wts = cg_load(g, g->ptr, cg_gepb(g, g->ctx, CG_CTX_WEIGHTS), 8);
	cg_fail_if(g, LLVMBuildIsNull(g->b, g->wts, ""), ELIDE_ERR_NO_WEIGHTS);
	g->arena = cg_gepb(g, g->ctx, CG_CTX_HDR);
	g->state = cg_gepb(g, g->ctx, CG_CTX_HDR + (int64_t)g->r->arena_size);
	unsigned pi = 1;
	for (uint32_t i = 0; i < f->nargs; i++) {
		Type t = f->args[i].type;
		if (t.rank == 0) {
			g->argv[i] = LLVMGetParam(g->fn, pi++);
			continue;
		}
		g->argv[i] = LLVMGetParam(g->fn, pi++);
		LLVMValueRef len = LLVMGetParam(g->fn, pi++);
		cg_fail_if(g, LLVMBuildIsNull(g->b, g->argv[i], ""), ELIDE_ERR_ARG);
		int64_t bound = t.dims[0];
		if (t.dyn0) {
			cg_fail_if(g, LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, len, cg_i32c(g, 1), ""),
			                       LLVMBuildICmp(g->b, LLVMIntSGT, len, cg_i32c(g, (int32_t)bound), ""), ""),
			        ELIDE_ERR_SEQ_LEN);
			g->nrows = LLVMBuildSExt(g->b, len, g->i64, "T");
		} else {
			cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntNE, len, cg_i32c(g, (int32_t)bound), ""), ELIDE_ERR_SEQ_LEN);
		}
	}
	emit_checks(g);
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (g->plan.fuse[i].skip || (ir_op_flags[op->code] & OPF_LEAF))
			continue;
		if (op->code == OP_LINEAR)
			cg_lower_linear(g, i);
		else
			cg_lower_op(g, i);
	}
	bump_stat(g, 0, cg_i64(g, 1));
	bump_stat(g, 1, g->nrows);
	bump_stat(g, 2, LLVMBuildMul(g->b, g->nrows, cg_i64(g, g->m->nlayers), ""));
	LLVMBuildRet(g->b, cg_i32c(g, ELIDE_OK));
	LLVMPositionBuilderAtEnd(g->b, g->fail);
	LLVMBuildRet(g->b, cg_load(g, g->i32, g->failst, 4));
	LLVMDisposeBuilder(g->b);
	g->b = NULL;

	/* int NAME_ENTRY__call(ctx, const int64_t *argv, void *out): the entry with its
	 * arguments in an array (a scalar in one slot, an array as pointer and length),
	 * for callers that pick the entry at run time (the JIT of `elide run`) */
	LLVMValueRef entry = g->fn;
	LLVMTypeRef cp[3] = { g->ptr, g->ptr, g->ptr };
	g->fn = LLVMAddFunction(g->mod, arena_printf(&g->m->arena, "%s__call", name),
	                        LLVMFunctionType(g->i32, cp, 3, 0));
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
	LLVMValueRef av[2 * 16 + 2];
	unsigned na = 0, slot = 0;
	av[na++] = LLVMGetParam(g->fn, 0);
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		LLVMValueRef pa = LLVMGetParam(g->fn, 1);
		if (f->args[i].type.rank == 0) {
			av[na++] = LLVMBuildTrunc(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->i32, "");
		} else {
			av[na++] = LLVMBuildIntToPtr(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->ptr, "");
			av[na++] = LLVMBuildTrunc(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->i32, "");
		}
	}
	av[na++] = LLVMGetParam(g->fn, 2);
	LLVMBuildRet(g->b, LLVMBuildCall2(g->b, fty, entry, av, na, ""));
	LLVMDisposeBuilder(g->b);
	g->b = NULL;

	CgEntry *e = &g->r->entries[index];
	e->name = f->name;
	e->kind = f->kind;
	e->arena = g->plan.size;
	cg_plan_free(&g->plan);
}

/* Positions the rope tables cover: the longest cache, else the longest bounded argument. */
static int64_t
rope_positions(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nstates; i++)
		if (m->states[i].ctx > n)
			n = m->states[i].ctx;
	if (n)
		return n;
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t a = 0; a < m->funcs[i]->nargs; a++)
			if (m->funcs[i]->args[a].type.rank && m->funcs[i]->args[a].type.dims[0] > n)
				n = m->funcs[i]->args[a].type.dims[0];
	return n ? n : ir_config_get(m, "ctx", 1);
}

static uint64_t
model_hash(const CgResult *r)
{
	const Module *m = r->m;
	char buf[512];
	uint64_t h = ir_hash_bytes(m->name, strlen(m->name), 0);
	int n = snprintf(buf, sizeof buf, "%s|%d|%d|%d", r->target->triple, r->target->vec,
	                 r->target->nvec, m->nlayers);
	h = ir_hash_bytes(buf, (size_t)n, h);
	for (uint32_t i = 0; i < r->weights.nregions; i++) {
		const CgRegion *g = &r->weights.regions[i];
		char ty[128] = "";
		if (g->param >= 0)
			ir_type_str(m->params[g->param].type, ty, sizeof ty);
		n = snprintf(buf, sizeof buf, "%d|%s|%s|%lld|%lld|%g|%llu", (int)g->layout,
		             g->param >= 0 ? m->params[g->param].name : "", ty, (long long)g->a,
		             (long long)g->b, g->theta, (unsigned long long)g->offset);
		h = ir_hash_bytes(buf, (size_t)n, h);
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		n = snprintf(buf, sizeof buf, "st|%lld|%lld|%lld|%lld", (long long)m->states[i].ctx,
		             (long long)m->states[i].kv_heads, (long long)m->states[i].head_dim, (long long)m->states[i].page);
		h = ir_hash_bytes(buf, (size_t)n, h);
	}
	return h;
}

static void
compute_costs(CgResult *r)
{
	const Module *m = r->m;
	for (uint32_t e = 0; e < m->nfuncs; e++) {
		const Func *f = m->funcs[e];
		CgEntry *ce = &r->entries[e];
		ce->nlayers = (uint32_t)m->nlayers + 1;
		ce->layers = xcalloc(ce->nlayers, sizeof *ce->layers);
		for (uint32_t l = 0; l < ce->nlayers; l++)
			ce->layers[l].layer = (int32_t)l - 1;
		for (uint32_t i = 0; i < f->nops; i++) {
			const Op *op = &f->ops[i];
			int32_t l = op->layer >= 0 && op->layer < m->nlayers ? op->layer + 1 : 0;
			double flops = 0, bytes = 0;
			if (op->code == OP_LINEAR) {
				Type w = f->vals[op->args[1]].type;
				flops = 2.0 * (double)cg_static_rows(w) * (double)cg_cols(w);
				bytes = 4.0 * (double)cg_static_rows(w) * (double)cg_cols(w);
			} else if (op->code == OP_EMBED) {
				bytes = 4.0 * (double)cg_cols(f->vals[op->args[0]].type);
			} else if (ir_op_flags[op->code] & OPF_ELEMWISE) {
				flops = (double)cg_cols(f->vals[op->dst].type);
			}
			ce->layers[l].flops += flops;
			ce->layers[l].bytes += bytes;
			ce->flops += flops;
			ce->bytes += bytes;
		}
	}
}

CgResult *
cg_compile(Module *m, const CgOptions *o, Diag *d)
{
	char err[512];
	CgTarget *t = cg_target_new(o->triple, o->cpu, o->features, o->opt_level, err, sizeof err);
	if (!t) {
		diag_error(d, (Loc){ 0 }, "%s", err);
		return NULL;
	}
	CgResult *r = xcalloc(1, sizeof *r);
	r->m = m;
	r->target = t;
	r->llctx = LLVMContextCreate();
	r->mod = LLVMModuleCreateWithNameInContext(m->name, r->llctx);
	LLVMSetTarget(r->mod, t->triple);
	char *dl = LLVMCopyStringRepOfTargetData(t->td);
	LLVMSetDataLayout(r->mod, dl);
	LLVMDisposeMessage(dl);

	Cg g = { .r = r, .m = m, .t = t, .c = r->llctx, .mod = r->mod };
	g.f32 = LLVMFloatTypeInContext(g.c);
	g.i32 = LLVMInt32TypeInContext(g.c);
	g.i64 = LLVMInt64TypeInContext(g.c);
	g.i8 = LLVMInt8TypeInContext(g.c);
	g.i1 = LLVMInt1TypeInContext(g.c);
	g.ptr = LLVMPointerTypeInContext(g.c, 0);
	g.voidt = LLVMVoidTypeInContext(g.c);
	g.vt = LLVMVectorType(g.f32, (unsigned)t->vec);
	LLVMTypeRef tp[3] = { g.ptr, g.i64, g.i64 };
	g.task_ty = LLVMFunctionType(g.voidt, tp, 3, 0);
	LLVMTypeRef pp[4] = { g.ptr, g.i64, g.ptr, g.ptr };
	g.pfor_ty = LLVMFunctionType(g.voidt, pp, 4, 0);
	g.rope_len = rope_positions(m);
	g.fuse = o->fuse;
	g.d = d;
	int errors0 = d->nerrors;

	/* state layout */
	r->state_off = xcalloc(m->nstates + 1, sizeof *r->state_off);
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		r->state_off[i] = r->state_size;
		r->state_size += cg_state_layout(s).size;
	}
	/* arena size first: entries address the state after the arena */
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		CgPlan p;
		cg_plan_func(m, m->funcs[i], o->fuse, &p);
		if (p.size > r->arena_size)
			r->arena_size = p.size;
		cg_plan_free(&p);
	}
	r->arena_size = (r->arena_size + 63) & ~(uint64_t)63;
	r->ctx_size = CG_CTX_HDR + r->arena_size + r->state_size;
	r->nentries = m->nfuncs;
	r->entries = xcalloc(m->nfuncs + 1, sizeof *r->entries);
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		lower_entry(&g, m->funcs[i], i);
		if (diag_too_many(d))
			break;
	}
	if (d->nerrors > errors0) {
		cg_result_free(r);
		return NULL;
	}
	compute_costs(r);
	r->model_hash = model_hash(r);
	r->blob = cg_blob_build(&r->weights, m, cg_target_nr(t), r->model_hash, &r->blob_size, err, sizeof err);
	if (!r->blob) {
		diag_error(d, (Loc){ 0 }, "%s", err);
		cg_result_free(r);
		return NULL;
	}
	r->weights_size = r->blob_size;
	char buf[256];
	int n = snprintf(buf, sizeof buf, "%llx|%llu|%llu|%llu", (unsigned long long)r->model_hash,
	                 (unsigned long long)r->ctx_size, (unsigned long long)r->arena_size,
	                 (unsigned long long)r->state_size);
	r->abi_hash = ir_hash_bytes(buf, (size_t)n, 0);
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		const Func *f = m->funcs[i];
		r->abi_hash = ir_hash_bytes(f->name, strlen(f->name), r->abi_hash);
		for (uint32_t a = 0; a < f->nargs; a++)
			r->abi_hash = ir_hash_bytes(&f->args[a].type, sizeof f->args[a].type, r->abi_hash);
	}

	LLVMBuilderRef b = LLVMCreateBuilderInContext(g.c);
	LLVMValueRef emb = NULL;
	if (o->embed_weights) {
		LLVMValueRef init = LLVMConstStringInContext2(g.c, (const char *)r->blob, r->blob_size, 1);
		char *nm = arena_printf(&m->arena, "%s_embedded_weights", m->name);
		emb = LLVMAddGlobal(r->mod, LLVMTypeOf(init), nm);
		LLVMSetInitializer(emb, init);
		LLVMSetGlobalConstant(emb, 1);
		LLVMSetLinkage(emb, LLVMInternalLinkage);
		LLVMSetAlignment(emb, 64);
	}
	cg_emit_glue(r, b, emb);
	LLVMDisposeBuilder(b);
	for (uint32_t i = 0; i < g.nk; i++)
		free(g.knames[i]);
	free(g.knames);
	free(g.kfns);

	char *msg = NULL;
	if (LLVMVerifyModule(r->mod, LLVMReturnStatusAction, &msg)) {
		fprintf(stderr, "%s\n", msg);
		LLVMDisposeMessage(msg);
		ELIDE_ICE("generated LLVM module does not verify");
	}
	LLVMDisposeMessage(msg);
	return r;
}

void
cg_result_free(CgResult *r)
{
	if (!r)
		return;
	if (r->mod)
		LLVMDisposeModule(r->mod);
	if (r->llctx)
		LLVMContextDispose(r->llctx);
	cg_target_free(r->target);
	for (uint32_t i = 0; i < r->nentries; i++)
		free(r->entries[i].layers);
	free(r->entries);
	free(r->weights.regions);
	free(r->state_off);
	free(r->blob);
	free(r);
}
